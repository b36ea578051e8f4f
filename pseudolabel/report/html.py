"""The report page: a Jinja2 template rendered from a plain page model (see :func:`render_page`)."""
from __future__ import annotations

import json
from typing import Any, Mapping

CSS = """
:root { --kept: #2ca02c; --pruned: #d62728; --ink: #222; --muted: #666; --line: #ddd; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0; background: #fafafa; }
header { padding: 16px 24px 8px; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 2px 0; color: var(--muted); }
#controls { position: sticky; top: 0; z-index: 10; background: #fff; border-bottom: 1px solid var(--line);
            padding: 8px 24px; display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center; }
#controls label { white-space: nowrap; }
#controls .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 3px 0 2px; }
#controls button { font-size: 12px; }
main { padding: 8px 24px 40px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px;
          margin: 14px 0; }
section h2 { margin: 0 0 6px; font-size: 18px; }
.note { color: var(--muted); margin: 2px 0 8px; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
.is-hidden { display: none !important; }
.crop-group { margin: 10px 0 14px; }
.crop-group h3 { font-size: 15px; margin: 4px 0 6px; }
.crop-group h3 .swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
                         margin-right: 6px; vertical-align: -1px; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; }
figure.crop { margin: 0; width: 104px; text-align: center; font-size: 11px; color: var(--muted); }
figure.crop img { width: 96px; height: 96px; image-rendering: pixelated; border: 3px solid var(--c, #999);
                  border-radius: 3px; display: block; margin: 0 auto; }
figure.crop figcaption { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
figcaption b.truth.ball { color: #1b7f3b; } figcaption b.truth.noball { color: #c62828; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #bbb; }
th.reasons, td.reasons { text-align: left; color: var(--muted); font-size: 12px; }
.map-wrap { display: grid; grid-template-columns: minmax(0, 1fr) 180px; gap: 12px; align-items: start; }
.map-preview { font-size: 12px; color: var(--muted); text-align: center; padding-top: 50px; }
.map-preview img { width: 160px; height: 160px; image-rendering: pixelated; border: 1px solid var(--line); }
#knn-query { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
#knn-query figure { margin: 0; max-width: 484px; font-size: 13px; }
#knn-query img { width: 480px; max-width: 100%; border: 2px solid #333; display: block; }
#knn-neighbours { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 10px; }
figure.nbr { margin: 0; width: 304px; font-size: 12px; cursor: pointer; }
figure.nbr img { width: 300px; border: 2px solid #bbb; display: block; }
figure.nbr.suspect img { border-color: #e377c2; border-width: 3px; }
figure.nbr.suspect figcaption b { color: #c2188b; }
.suspects button { margin: 2px; font-size: 12px; }
"""

JS_HEAD = """
window.reportAttachPreview = function (plotId, previewId) {
  var gd = document.getElementById(plotId);
  if (!gd || !gd.on) { return; }
  gd.on('plotly_click', function (ev) {
    var box = document.getElementById(previewId);  // looked up now: it follows the plot in the page
    if (!box || !ev || !ev.points || !ev.points.length) { return; }
    var p = ev.points[0];
    box.textContent = '';
    var img = document.createElement('img');
    img.src = p.customdata; img.alt = 'crop';
    var cap = document.createElement('div');
    cap.textContent = String(p.text || '').split('<br>').join(' \\u00b7 ');
    box.appendChild(img); box.appendChild(cap);
  });
};
"""

JS_BODY = """
(function () {
  var roundSel = document.getElementById('round-select');
  var filters = Array.prototype.slice.call(document.querySelectorAll('input.reason-filter'));
  function visibleCrops() {
    return Array.prototype.filter.call(document.querySelectorAll('figure.crop'),
      function (el) { return el.offsetParent !== null; }).length;
  }
  function apply() {
    var r = roundSel.value;
    var on = {};
    filters.forEach(function (f) { on[f.value] = f.checked; });
    document.querySelectorAll('[data-round]').forEach(function (el) {
      el.classList.toggle('is-hidden', el.getAttribute('data-round') !== r);
    });
    document.querySelectorAll('.crop-group').forEach(function (el) {
      el.classList.toggle('is-hidden', !on[el.getAttribute('data-group')]);
    });
    if (window.Plotly) {  // plots drawn hidden, or before the grid had all its columns, have a stale size
      document.querySelectorAll('.js-plotly-plot').forEach(function (p) {
        if (p.offsetParent !== null) { window.Plotly.Plots.resize(p); }
      });
    }
    document.getElementById('crop-count').textContent = visibleCrops() + ' crops shown';
  }
  roundSel.addEventListener('change', apply);
  filters.forEach(function (f) { f.addEventListener('change', apply); });
  document.getElementById('reasons-all').addEventListener('click', function () {
    filters.forEach(function (f) { f.checked = true; }); apply(); });
  document.getElementById('reasons-none').addEventListener('click', function () {
    filters.forEach(function (f) { f.checked = false; }); apply(); });
  apply();

  // ---- frames like this one
  var dataEl = document.getElementById('knn-data');
  if (!dataEl) { return; }
  var knn = JSON.parse(dataEl.textContent);
  var qSel = document.getElementById('knn-select');
  function card(f, extra) {
    var fig = document.createElement('figure');
    var img = document.createElement('img');
    img.src = f.src; img.alt = f.label;
    var cap = document.createElement('figcaption');
    var b = document.createElement('b');
    b.textContent = extra;
    cap.appendChild(b);
    cap.appendChild(document.createTextNode(' ' + f.label + ' \\u00b7 ' + f.kept + ' kept, ' + f.pruned + ' pruned'));
    fig.appendChild(img); fig.appendChild(cap);
    return fig;
  }
  function show(i) {
    var q = knn.frames[i];
    qSel.value = String(i);
    var qBox = document.getElementById('knn-query');
    qBox.textContent = '';
    var withBox = q.nbrs.filter(function (pair) { return knn.frames[pair[0]].kept > 0; }).length;
    var qCard = card(q, q.kept === 0 && withBox > 0
      ? 'query (no kept box, but ' + withBox + ' of its ' + q.nbrs.length + ' look-alikes have one):'
      : 'query:');
    qBox.appendChild(qCard);
    var nb = document.getElementById('knn-neighbours');
    nb.textContent = '';
    q.nbrs.forEach(function (pair) {
      var f = knn.frames[pair[0]];
      var suspect = q.kept > 0 && f.kept === 0;
      var el = card(f, (suspect ? 'no kept box \\u2014 missed ball? ' : '') + 'sim ' + pair[1].toFixed(3));
      el.className = 'nbr' + (suspect ? ' suspect' : '');
      el.addEventListener('click', function () { show(pair[0]); });
      nb.appendChild(el);
    });
  }
  qSel.addEventListener('change', function () { show(parseInt(qSel.value, 10)); });
  document.querySelectorAll('button[data-frame]').forEach(function (b) {
    b.addEventListener('click', function () {
      show(parseInt(b.getAttribute('data-frame'), 10));
      document.getElementById('knn').scrollIntoView();
    });
  });
  show(knn.default);
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>{{ css }}</style>
<script src="{{ plotly_src }}"></script>
<script>{{ js_head }}</script>
</head>
<body>
<header>
  <h1>{{ title }}</h1>
  {% for line in summary %}<p>{{ line }}</p>{% endfor %}
</header>
<div id="controls">
  <label>Round <select id="round-select">
    {% for r in rounds %}<option value="{{ r }}"{% if r == latest %} selected{% endif %}>round {{ r }}</option>{% endfor %}
  </select></label>
  <span>Show crops of:
    {% for g in groups %}<label><input type="checkbox" class="reason-filter" value="{{ g.name }}" checked><span
      class="swatch" style="background: {{ g.colour }}"></span>{{ g.name }}</label> {% endfor %}
    <button type="button" id="reasons-all">all</button><button type="button" id="reasons-none">none</button>
  </span>
  <span id="crop-count" class="note"></span>
</div>
<main>
<section id="curves">
  <h2>Across rounds</h2>
  <p class="note">{{ curves_note }}</p>
  <div class="plots">{% for div in curves %}<div>{{ div | safe }}</div>{% endfor %}</div>
</section>

<section id="crops">
  <h2>Kept and pruned boxes</h2>
  <p class="note">{{ crops_note }}</p>
  {% for rs in round_sections %}
  <div data-round="{{ rs.round }}">
    {% for cg in rs.crops %}
    <div class="crop-group" data-group="{{ cg.group }}">
      <h3><span class="swatch" style="background: {{ cg.colour }}"></span>{{ cg.group }}
        <span class="note">({{ cg.shown | length }} shown of {{ cg.total }}{% if cg.truth %}; against ground truth:
        {{ cg.truth.ball }} ball, {{ cg.truth.no_ball }} no ball{% endif %})</span></h3>
      <div class="grid">
        {% for c in cg.shown %}<figure class="crop" style="--c: {{ cg.colour }}" title="{{ c.title }}"><img
          src="{{ c.src }}" width="96" height="96" alt="{{ cg.group }} box {{ c.box_id }}"><figcaption>{% if c.truth %}<b class="truth {{ 'ball' if c.truth == 'ball' else 'noball' }}">{{ '✓ ball' if c.truth == 'ball' else '✗ no ball' }}</b> {% endif %}{{ c.caption }}</figcaption></figure>{% endfor %}
      </div>
    </div>
    {% else %}<p class="note">no boxes in round {{ rs.round }}</p>
    {% endfor %}
  </div>
  {% endfor %}
</section>

<section id="videos">
  <h2>Per video</h2>
  <p class="note">Frames, kept and pruned boxes, and negatives (frames without a kept box) of each video
    in the selected round's dataset; precision / recall / F1 per video when metrics.json has them.</p>
  {% for rs in round_sections %}
  <div data-round="{{ rs.round }}">
    <table>
      <thead><tr><th>video</th><th>frames</th><th>kept</th><th>pruned</th><th>negatives</th>
        {% if rs.has_quality %}<th>precision</th><th>recall</th><th>F1</th>{% endif %}
        <th class="reasons">pruned by reason</th></tr></thead>
      <tbody>
      {% for row in rs.videos + [rs.total] %}<tr{% if loop.last %} class="total"{% endif %}>
        <td>{{ row.video }}</td><td>{{ row.frames }}</td><td>{{ row.kept }}</td>
        <td>{{ row.pruned }}</td><td>{{ row.negatives }}</td>{% for q in row.quality %}<td>{{ q }}</td>{% endfor %}
        <td class="reasons">{{ row.reasons_text }}</td></tr>
      {% endfor %}
      </tbody>
    </table>
  </div>
  {% endfor %}
</section>

<section id="review">
  <h2>Review these frames first</h2>
  <p class="note">The selected round's most informative frames, not reviewed yet: the rounds disagree on a box
    (disagreement), a box near score 0.5 (mid_confidence), a confident box a pruner removed (pruned_confident), a
    ball that vanishes, appears alone or changes track (track_break); the score is their sum. Boxes drawn: green
    kept, red pruned. <code>make export EXP=&lt;exp&gt; ARGS="export.budget=N"</code> exports these frames in this
    order; after review, <code>make review-import</code> brings the corrections back.</p>
  {% for rs in round_sections %}
  <div data-round="{{ rs.round }}">
    {% if rs.review %}
    <table>
      <thead><tr><th>#</th><th>frame</th><th>score</th><th class="reasons">why</th><th>frame</th></tr></thead>
      <tbody>
      {% for r in rs.review %}<tr><td>{{ r.rank }}</td><td title="{{ r.image }}">{{ r.label }}</td>
        <td>{{ r.score }}</td><td class="reasons">{{ r.why }}</td>
        <td><img src="{{ r.src }}" width="240" alt="{{ r.label }}"></td></tr>
      {% endfor %}
      </tbody>
    </table>
    {% else %}<p class="note">nothing to review in round {{ rs.round }}</p>{% endif %}
  </div>
  {% endfor %}
</section>

<section id="map">
  <h2>Embedding map</h2>
  <p class="note">Each point is one box; PCA to 2-D of its embedding. Buttons switch the colouring
    between decision and k-means cluster; click a point to see its crop.</p>
  {% for rs in round_sections %}
  <div data-round="{{ rs.round }}">
    <p class="note">{{ rs.map_note }}</p>
    {% if rs.map_div %}<div class="map-wrap"><div>{{ rs.map_div | safe }}</div>
      <div class="map-preview" id="{{ rs.preview_id }}">click a point</div></div>{% endif %}
  </div>
  {% endfor %}
</section>

<section id="knn">
  <h2>Frames like this one</h2>
  <p class="note">{{ knn_note }}</p>
  {% if knn_json %}
  {% if suspects %}<p class="suspects">Frames without a kept box whose look-alikes have one (possible missed
    balls):{% for s in suspects %} <button type="button" data-frame="{{ s.index }}">{{ s.label }}</button>{% endfor %}</p>{% endif %}
  <label>Frame <select id="knn-select">
    {% for f in knn_options %}<option value="{{ f.index }}">{{ f.label }} ({{ f.kept }} kept)</option>{% endfor %}
  </select></label>
  <div id="knn-query"></div>
  <div id="knn-neighbours"></div>
  <script type="application/json" id="knn-data">{{ knn_json | safe }}</script>
  {% endif %}
</section>
<p class="note">{{ footer }}</p>
</main>
<script>{{ js_body }}</script>
</body>
</html>
"""


def json_for_script(obj: Any) -> str:
    """JSON safe to embed in a ``<script>`` element (no ``</`` sequence)."""
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def render_page(model: Mapping[str, Any]) -> str:
    """The HTML of the report from its page model (keys used by :data:`PAGE`; see
    :func:`pseudolabel.report.build.page_model`)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    from markupsafe import Markup

    return env.from_string(PAGE).render(css=Markup(CSS), js_head=Markup(JS_HEAD), js_body=Markup(JS_BODY),
                                        **model)
