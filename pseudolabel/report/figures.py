"""Plotly figures of the report, built from the plain tables of :mod:`.data` (pure functions)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .data import KEPT_GROUP

KEPT_COLOUR = "#2ca02c"
# reasons get these in order of first appearance (no green: green means kept)
REASON_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                  "#1f77b4", "#aec7e8", "#ffbb78", "#c5b0d5")
CLUSTER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf")
_LAYOUT = dict(template="plotly_white", height=360, margin=dict(l=50, r=20, t=50, b=40),
               legend=dict(orientation="h", y=-0.18), font=dict(size=12))


def group_colours(groups: Sequence[str]) -> dict[str, str]:
    """A fixed colour per group: green for kept, then :data:`REASON_COLOURS` in the given order."""
    out, i = {}, 0
    for g in groups:
        if g in out:
            continue
        if g == KEPT_GROUP:
            out[g] = KEPT_COLOUR
        else:
            out[g] = REASON_COLOURS[i % len(REASON_COLOURS)]
            i += 1
    return out


def _round_axis(fig, rounds: Sequence[int]) -> None:
    fig.update_xaxes(title_text="round", tickmode="array", tickvals=list(rounds),
                     range=[min(rounds) - 0.3, max(rounds) + 0.3] if rounds else None)


def counts_figure(table: Mapping[str, Any], colours: Mapping[str, str]):
    """Kept boxes, all pruned boxes and pruned boxes per reason across rounds."""
    import plotly.graph_objects as go

    r = table["rounds"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=r, y=table["kept"], name="kept boxes", mode="lines+markers",
                             line=dict(color=KEPT_COLOUR, width=3)))
    fig.add_trace(go.Scatter(x=r, y=table["pruned"], name="pruned (all)", mode="lines+markers",
                             line=dict(color="#444", width=2)))
    fig.add_trace(go.Scatter(x=r, y=table["negatives"], name="negative frames", mode="lines+markers",
                             line=dict(color="#999", width=1, dash="dot"), visible="legendonly"))
    for reason, ys in table["reasons"].items():
        fig.add_trace(go.Scatter(x=r, y=ys, name=f"pruned: {reason}", mode="lines+markers",
                                 line=dict(color=colours.get(reason), dash="dash")))
    fig.update_layout(title="Boxes in each round's dataset", yaxis_title="boxes", **_LAYOUT)
    _round_axis(fig, r)
    return fig


def quality_figure(table: Mapping[str, Any]):
    """Precision / recall / F1 / AP50 / AP across rounds, or None when no round has ground truth."""
    if not table["quality"]:
        return None
    import plotly.graph_objects as go

    r = table["rounds"]
    fig = go.Figure()
    for name, ys in table["quality"].items():
        fig.add_trace(go.Scatter(x=r, y=ys, name=name, mode="lines+markers", connectgaps=False))
    fig.update_layout(title="Quality against ground truth (IoU 0.5)", yaxis_title="value",
                      yaxis_range=[0, 1.02], **_LAYOUT)
    _round_axis(fig, r)
    return fig


def embedding_figure(points: Mapping[str, Any], colours: Mapping[str, str], *, title: str):
    """2-D map of box embeddings, coloured by decision (default) or by k-means cluster (a dropdown).

    Parameters
    ----------
    points : mapping
        ``xy`` (N, 2), ``group`` (N,), ``cluster`` (N,), ``text`` (N,) hover lines and ``crop`` (N,)
        crop file paths (relative to the page; the page shows a crop when its point is clicked).
    """
    import numpy as np
    import plotly.graph_objects as go

    xy = np.asarray(points["xy"], dtype=float).reshape(-1, 2)
    group = np.asarray(points["group"], dtype=object)
    cluster = np.asarray(points["cluster"], dtype=int)
    text = np.asarray(points["text"], dtype=object)
    crop = np.asarray(points["crop"], dtype=object)
    fig = go.Figure()
    by_decision = list(dict.fromkeys(group.tolist()))
    by_cluster = sorted(set(cluster.tolist()))
    for g in by_decision:
        m = group == g
        fig.add_trace(go.Scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=f"{g} ({int(m.sum())})",
                                   marker=dict(color=colours.get(g), size=8 if g == KEPT_GROUP else 9,
                                               opacity=0.75, line=dict(width=0.5, color="white")),
                                   text=text[m], customdata=crop[m], hovertemplate="%{text}<extra></extra>"))
    for c in by_cluster:
        m = cluster == c
        fig.add_trace(go.Scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=f"cluster {c} ({int(m.sum())})",
                                   visible=False, marker=dict(color=CLUSTER_COLOURS[c % len(CLUSTER_COLOURS)],
                                                              size=8, opacity=0.75),
                                   text=text[m], customdata=crop[m], hovertemplate="%{text}<extra></extra>"))
    nd, nc = len(by_decision), len(by_cluster)
    fig.update_layout(
        title=title, xaxis_title="PC 1", yaxis_title="PC 2", **{**_LAYOUT, "height": 460},
        updatemenus=[dict(type="buttons", direction="right", x=1.0, xanchor="right", y=1.13, yanchor="top",
                          showactive=True, buttons=[
                              dict(label="colour: decision", method="update",
                                   args=[{"visible": [True] * nd + [False] * nc}]),
                              dict(label="colour: k-means cluster", method="update",
                                   args=[{"visible": [False] * nd + [True] * nc}])])])
    return fig


def figure_div(fig, *, div_id: str, post_script: str | None = None) -> str:
    """The figure as an HTML fragment that expects ``Plotly`` to be loaded by the page."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, post_script=post_script,
                       config={"displaylogo": False, "responsive": True})
