"""Build ``runs/<exp>/report.html``: the IO shell around :mod:`.data`, :mod:`.embed`, :mod:`.images`,
:mod:`.figures` and :mod:`.html`.

Files written: ``report.html`` and ``report_files/`` next to it (``plotly.min.js``, ``crops/``,
``thumbs/``; the two image folders are rewritten on every build). Nothing is fetched from the network.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel import layout
from pseudolabel.pipeline import PipelineError

from . import data as D
from . import embed as E
from .images import KEPT_RGB, PRUNED_RGB, FrameReader, context_crop, draw_box_on_crop, thumbnail, write_jpeg

log = logging.getLogger("pseudolabel")

FILES_DIR = "report_files"
QUALITY = ("precision", "recall", "f1")  # per-video columns, when metrics.json has ``per_video``


@dataclass
class ReportOptions:
    """Options of :func:`build_report` (bounds keep the build to seconds on a few thousand boxes)."""

    crops_per_group: int = 24       # crops shown per round and per group (kept / each pruning reason)
    max_points: int = 300           # boxes on the embedding map per round
    box_embedding: str = "pixels"   # pixels | cnn: for boxes without detector features
    use_detector_features: bool = True  # features.npz where it covers the map's boxes
    per_video_standardise: bool = True  # remove per-video appearance offsets before PCA (as the pruner does)
    n_clusters: int = 5
    max_frames: int = 300           # frames in "frames like this one" (evenly spaced when more)
    n_neighbours: int = 6
    n_suspects: int = 12
    crop_size: int = 96
    crop_context: float = 3.0
    thumb_width: int = 480
    seed: int = 0
    gt_centre_distance: float = 4.0  # with ground truth: a crop "is a ball" when its centre is this close (px)
    review_frames: int = 20         # "review these frames first": the most informative frames of each round


class ReportError(PipelineError):
    """The experiment has nothing to report (no round with a dataset), or an option is invalid."""


def report_from_config(cfg) -> Path:
    """``python -m pseudolabel stage=report exp=NAME [report.<option>=…]``: the dashboard of the
    experiment at ``paths.exp_dir`` (options: config group ``report``, fields of :class:`ReportOptions`)."""
    from omegaconf import OmegaConf

    from pseudolabel.pipeline import exp_dir, frames_dir

    opts = OmegaConf.to_container(cfg.get("report") or {}, resolve=True)
    unknown = sorted(set(opts) - set(ReportOptions.__dataclass_fields__))
    if unknown:
        raise ReportError(f"unknown report option(s) {unknown}; known: {sorted(ReportOptions.__dataclass_fields__)}")
    gt, gt_spec = None, OmegaConf.select(cfg, "data.ground_truth")
    if gt_spec:
        from pseudolabel.gt_readers import load_ground_truth

        gt = load_ground_truth(OmegaConf.to_container(gt_spec, resolve=True))
    return build_report(exp_dir(cfg), frames_dir=frames_dir(cfg), title=str(cfg.exp), options=ReportOptions(**opts),
                        ground_truth=gt)


def build_report(exp_dir: str | Path, *, frames_dir: str | Path | None = None, out: str | Path | None = None,
                 title: str | None = None, options: ReportOptions | None = None, ground_truth=None,
                 **overrides: Any) -> Path:
    """Write the dashboard of the experiment in ``exp_dir``.

    Parameters
    ----------
    exp_dir : path
        ``runs/<exp>``, with ``round_<N>/annotations.json`` (or ``pruned.json``) for some rounds.
    frames_dir : path, optional
        Where frame ``file_name``\\ s are relative to; default ``exp_dir/frames``.
    out : path, optional
        The page; default ``exp_dir/report.html``. ``report_files/`` is written next to it.
    title : str, optional
    options : ReportOptions, optional
    ground_truth : Dataset, optional
        When given, every crop says whether it is a ground-truth ball (centre within
        ``options.gt_centre_distance`` px), so "pruned but true" and "kept but false" show.
    **overrides
        Fields of :class:`ReportOptions`.

    Returns
    -------
    pathlib.Path
        The written page.
    """
    from pseudolabel.files import atomic_write_bytes

    t0 = time.perf_counter()
    opts = options or ReportOptions()
    if overrides:
        opts = ReportOptions(**{**opts.__dict__, **overrides})
    if opts.box_embedding not in (E.PIXELS, E.CNN):
        raise ReportError(f"box_embedding must be {E.PIXELS!r} or {E.CNN!r}, got {opts.box_embedding!r}")
    exp_dir = Path(exp_dir)
    rounds = layout.rounds_with_dataset(exp_dir)
    if not rounds:
        raise ReportError(f"{exp_dir}: no round_<N>/annotations.json (or pruned.json) to report on; "
                          "run a round first (make round N=0 EXP=<name>)")
    rds = [D.load_round(exp_dir, k) for k in rounds]  # a malformed file stops here, the old report intact
    out = Path(out) if out is not None else exp_dir / layout.REPORT_PAGE
    files = out.parent / FILES_DIR
    for sub in ("crops", "thumbs", "review"):
        shutil.rmtree(files / sub, ignore_errors=True)
    _copy_plotly(files / "plotly.min.js")
    reader = FrameReader(frames_dir if frames_dir is not None else layout.default_frames_dir(exp_dir))
    from pseudolabel.review.stage import load_reviewed

    reviewed = load_reviewed(exp_dir)
    ctx = _Ctx(out_dir=out.parent, files=files, reader=reader, opts=opts, ground_truth=ground_truth,
               reviewed_keys=[f.key for f in reviewed.frames] if reviewed is not None else [])

    table = D.curves_table({rd.round: rd.metrics for rd in rds})
    all_groups = list(dict.fromkeys([D.KEPT_GROUP] + [g for rd in rds for g in D.groups(rd.ds.boxes)]
                                    + list(table["reasons"])))
    from .figures import group_colours

    colours = group_colours(all_groups)
    try:
        sections = [_round_section(rd, ctx, colours) for rd in rds]
        knn = _frames_knn(rds[-1], ctx)
    except OSError as e:  # a frame file missing or unreadable
        raise ReportError(f"{e} (frames are read from {reader.frames_dir}; set paths.frames_dir)") from None
    model = page_model(exp_name=title or exp_dir.name, rds=rds, table=table, colours=colours,
                       sections=sections, knn=knn, opts=opts, seconds=time.perf_counter() - t0)
    from .html import render_page

    atomic_write_bytes(out, render_page(model).encode())
    log.info("report: %s (%.1f s)", out, time.perf_counter() - t0)
    return out


@dataclass
class _Ctx:
    out_dir: Path
    files: Path
    reader: FrameReader
    opts: ReportOptions
    ground_truth: object = None  # Dataset of ground-truth boxes, or None
    reviewed_keys: list = None   # frame keys of the experiment's reviewed set

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()


def _copy_plotly(dest: Path) -> None:
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs().encode()
    if not dest.is_file() or dest.stat().st_size != len(js) or dest.read_bytes() != js:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(js)


# ------------------------------------------------------------------------------------ per round
def _round_section(rd: D.RoundData, ctx: _Ctx, colours: dict[str, str]) -> dict[str, Any]:
    o = ctx.opts
    frames = {f.id: f for f in rd.ds.frames}
    crop_dir = ctx.files / "crops" / layout.round_dirname(rd.round)
    cache: dict[int, np.ndarray] = {}  # box id -> raw crop (shared by grid and map)

    def raw_crop(b) -> np.ndarray:
        if b.id not in cache:
            cache[b.id] = context_crop(ctx.reader(frames[b.image_id].file_name), b.xyxy, size=o.crop_size,
                                       context=o.crop_context)
        return cache[b.id]

    def crop_file(b) -> str:
        path = crop_dir / f"{b.id}.jpg"
        if not path.is_file():
            colour = KEPT_RGB if b.kept else PRUNED_RGB
            write_jpeg(path, draw_box_on_crop(raw_crop(b), b.xyxy, context=o.crop_context, colour=colour))
        return ctx.rel(path)

    crops = []
    totals = D.groups(rd.ds.boxes)
    balls = (None if ctx.ground_truth is None else
             D.ground_truth_matches(rd.ds, ctx.ground_truth, max_centre_distance=o.gt_centre_distance))
    for g, boxes in D.select_crops(_sorted_by_frame(rd.ds.boxes, frames), per_group=o.crops_per_group).items():
        items = [{"src": crop_file(b), "box_id": b.id, "caption": f"{b.score:.2f} · {frames[b.image_id].video_id}",
                  "title": _box_text(b, frames[b.image_id], sep=" | "),
                  "truth": None if balls is None else ("ball" if b.id in balls else "no ball")} for b in boxes]
        truth = None if balls is None else {"ball": sum(b.id in balls for b in totals[g]),
                                            "no_ball": sum(b.id not in balls for b in totals[g])}
        crops.append({"group": g, "colour": colours[g], "total": len(totals[g]), "shown": items, "truth": truth})

    per_video = rd.metrics.get("per_video")
    videos = D.per_video_rows(rd.ds, per_video if isinstance(per_video, dict) else None)
    total = {"video": "all", **{k: sum(r[k] for r in videos) for k in ("frames", "kept", "pruned", "negatives")},
             "reasons": D.round_counts(rd.ds)["pruned_by_reason"], **{k: rd.metrics.get(k) for k in QUALITY}}
    has_quality = any("f1" in r for r in videos)
    for r in videos + [total]:
        r["reasons_text"] = _reasons_text(r["reasons"])
        r["quality"] = [_fmt(r.get(k)) for k in QUALITY] if has_quality else []

    map_div, map_note, preview_id = _embedding_map(rd, ctx, colours, raw_crop, crop_file)
    return {"round": rd.round, "crops": crops, "videos": videos, "total": total, "has_quality": has_quality,
            "map_div": map_div, "map_note": map_note, "preview_id": preview_id, "review": _review_first(rd, ctx)}


def _review_first(rd: D.RoundData, ctx: _Ctx) -> list[dict[str, Any]]:
    """The round's ``review_frames`` most informative frames not reviewed yet, each with a thumbnail and why."""
    from pseudolabel.export.common import image_name
    from pseudolabel.review.informative import review_order

    o = ctx.opts
    if o.review_frames <= 0:
        return []
    by_image = rd.ds.boxes_by_image()
    rows = []
    for rank, s in enumerate(review_order(rd.ds, budget=o.review_frames, reviewed_keys=ctx.reviewed_keys or []),
                             start=1):
        f, bs = s.frame, by_image.get(s.frame.id, [])
        path = ctx.files / "review" / layout.round_dirname(rd.round) / f"{f.id}.jpg"
        write_jpeg(path, thumbnail(ctx.reader(f.file_name), width=o.thumb_width, kept=[b.xyxy for b in bs if b.kept],
                                   pruned=[b.xyxy for b in bs if not b.kept]))
        rows.append({"rank": rank, "label": f"{f.video_id} / {f.frame_index:06d}", "image": image_name(f),
                     "score": f"{s.score:.2f}", "why": ", ".join(f"{k} {v:.2f}" for k, v in s.why().items()),
                     "src": ctx.rel(path)})
    return rows


def _sorted_by_frame(boxes, frames):
    return sorted(boxes, key=lambda b: (frames[b.image_id].key, b.id))


def _fmt(v) -> str:
    return "" if not isinstance(v, (int, float)) else f"{v:.3f}"


def _reasons_text(reasons: dict[str, int]) -> str:
    return ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))


def _box_text(b, frame, *, sep: str = "<br>") -> str:
    parts = [f"box {b.id} ({D.group_of(b)})", f"{frame.video_id} frame {frame.frame_index}",
             f"score {b.score:.3f}, round {b.round}, {b.source}"]
    return sep.join(parts)


def _embedding_map(rd: D.RoundData, ctx: _Ctx, colours, raw_crop, crop_file) -> tuple[str | None, str, str]:
    from .figures import embedding_figure, figure_div

    o = ctx.opts
    frames = {f.id: f for f in rd.ds.frames}
    preview_id = f"map-preview-{rd.round}"
    with_feat = [b for b in rd.ds.boxes if b.id in rd.features]
    boxes = D.select_map_boxes(rd.ds.boxes, max_points=o.max_points)
    if o.use_detector_features and len(with_feat) >= max(3, 0.5 * len(rd.ds.boxes)):
        boxes = D.select_map_boxes(with_feat, max_points=o.max_points)
        X = np.stack([rd.features[b.id] for b in boxes]).astype(np.float64)
        method = E.DETECTOR
        missing = len(rd.ds.boxes) - len(with_feat)
        extra = (f"; the {missing} boxes without one (carried over from earlier rounds, or added by a pruner) "
                 "are not shown" if missing else "")
    else:
        crops = [raw_crop(b) for b in boxes]
        X = E.cnn_features(crops) if o.box_embedding == E.CNN else E.pixel_features(crops)
        method, extra = o.box_embedding, ""
    if len(boxes) < 3:
        return None, f"round {rd.round}: too few boxes ({len(boxes)}) for a map", preview_id
    if o.per_video_standardise:
        from pseudolabel.prune.features import standardise_per_group

        X = standardise_per_group(X, np.array([frames[b.image_id].video_id for b in boxes], dtype=object),
                                  min_group=5)
    xy, var = E.project_2d(X, seed=o.seed)
    clusters = E.kmeans_labels(X, n_clusters=o.n_clusters, seed=o.seed)
    points = {"xy": xy, "group": [D.group_of(b) for b in boxes], "cluster": clusters,
              "text": [_box_text(b, frames[b.image_id]) for b in boxes], "crop": [crop_file(b) for b in boxes]}
    fig = embedding_figure(points, colours, title=f"Round {rd.round}: {len(boxes)} of {len(rd.ds.boxes)} boxes")
    fig.update_layout(xaxis_title=f"PC 1 ({var[0]:.0%} of variance)", yaxis_title=f"PC 2 ({var[1]:.0%})")
    div = figure_div(fig, div_id=f"map-{rd.round}",
                     post_script=f"window.reportAttachPreview('{{plot_id}}', '{preview_id}');")
    std = "standardised per video (median / MAD)" if o.per_video_standardise else "standardised"
    note = (f"Embedding: {E.DESCRIPTIONS[method]}, {std}; {len(boxes)} boxes sampled across "
            f"decisions and scores (at most {o.max_points}){extra}; k-means with "
            f"{len(set(clusters.tolist()))} clusters.")
    return div, note, preview_id


# ------------------------------------------------------------------------- frames like this one
def _frames_knn(rd: D.RoundData, ctx: _Ctx) -> dict[str, Any] | None:
    o = ctx.opts
    frames = sorted(rd.ds.frames, key=lambda f: f.key)
    if len(frames) > o.max_frames:
        idx = np.unique(np.round(np.linspace(0, len(frames) - 1, o.max_frames)).astype(int))
        frames = [frames[i] for i in idx]
    if len(frames) < 2:
        return None
    by_image = rd.ds.boxes_by_image()
    images, entries = [], []
    for f in frames:
        im = ctx.reader(f.file_name)
        images.append(im)
        bs = by_image.get(f.id, [])
        kept = [b.xyxy for b in bs if b.kept]
        pruned = [b.xyxy for b in bs if not b.kept]
        path = ctx.files / "thumbs" / f"{f.id}.jpg"
        write_jpeg(path, thumbnail(im, width=o.thumb_width, kept=kept, pruned=pruned))
        entries.append({"src": ctx.rel(path), "label": f"{f.video_id} / {f.frame_index:06d}", "kept": len(kept),
                        "pruned": len(pruned)})
    X = E.pixel_features(images, grid=(32, 18), bins=4)
    del images
    idx, sim = E.cosine_knn(X, k=o.n_neighbours)
    for e, ii, ss in zip(entries, idx, sim):
        e["nbrs"] = [[int(i), round(float(s), 4)] for i, s in zip(ii, ss)]
    return {"frames": entries, "suspects": suspect_frames(entries, n=o.n_suspects),
            "n_total": len(rd.ds.frames)}


def suspect_frames(entries: list[dict[str, Any]], *, n: int) -> list[int]:
    """Indices of frames with no kept box whose neighbours mostly have one (similarity-weighted share,
    > 0.5), most suspicious first: candidates for a missed ball."""
    scored = []
    for i, e in enumerate(entries):
        if e["kept"] or not e["nbrs"]:
            continue
        w = np.array([max(s, 0.0) for _, s in e["nbrs"]])
        has = np.array([entries[j]["kept"] > 0 for j, _ in e["nbrs"]], dtype=float)
        share = float((w * has).sum() / w.sum()) if w.sum() > 0 else 0.0
        if share > 0.5:
            scored.append((-share, i))
    return [i for _, i in sorted(scored)[:n]]


# ------------------------------------------------------------------------------------ page model
def page_model(*, exp_name: str, rds: list[D.RoundData], table: dict, colours: dict[str, str],
               sections: list[dict], knn: dict | None, opts: ReportOptions, seconds: float) -> dict[str, Any]:
    """Everything the template needs, as plain data (figures already rendered to HTML fragments)."""
    from .figures import counts_figure, figure_div, quality_figure
    from .html import json_for_script

    last = rds[-1]
    m = last.metrics
    summary = [f"Rounds {', '.join(str(r.round) for r in rds)}; the last round's dataset: "
               f"{m.get('n_boxes', 0)} kept boxes and {m.get('n_pruned', 0)} pruned on {m.get('n_images', 0)} "
               f"frames ({m.get('n_negative_frames', 0)} negatives)."]
    if table["quality"]:
        q = {k: v[-1] for k, v in table["quality"].items() if v[-1] is not None}
        summary.append("Last round against ground truth: " + ", ".join(f"{k} {v:.3f}" for k, v in q.items()) + ".")
    curves = [figure_div(counts_figure(table, colours), div_id="curve-counts")]
    qfig = quality_figure(table)
    if qfig is not None:
        curves.append(figure_div(qfig, div_id="curve-quality"))
    curves_note = ("Counts of each round's merged dataset (metrics.json). "
                   + ("Precision / recall / F1 / AP at IoU 0.5 from metrics.json." if qfig is not None
                      else "No round has ground-truth metrics, so there is no quality curve."))
    groups = [{"name": g, "colour": c} for g, c in colours.items()]
    crops_note = (f"Up to {opts.crops_per_group} boxes per decision, spread over the score range (low to high), "
                  f"cut from the frames with {opts.crop_context:g}x the box size as context; the box is "
                  "outlined. Caption: score · video; hover for details. Use the round selector and the "
                  "reason filter above.")
    model = {"title": f"Label-quality report: {exp_name}", "summary": summary, "plotly_src":
             f"{FILES_DIR}/plotly.min.js", "rounds": [r.round for r in rds], "latest": last.round,
             "groups": groups, "curves": curves, "curves_note": curves_note, "crops_note": crops_note,
             "round_sections": sections, "knn_json": None, "knn_options": [], "suspects": [],
             "footer": f"Built by python -m pseudolabel stage=report in {seconds:.1f} s "
                       "(static files; no network needed)."}
    if knn is None:
        model["knn_note"] = "Fewer than two frames: nothing to compare."
        return model
    frames = knn["frames"]
    default = knn["suspects"][0] if knn["suspects"] else 0
    if not knn["suspects"]:
        with_box = [i for i, f in enumerate(frames) if f["kept"]]
        default = with_box[0] if with_box else 0
    model["knn_json"] = json_for_script({"frames": frames, "default": default})
    model["knn_options"] = [{"index": i, "label": f["label"], "kept": f["kept"]} for i, f in enumerate(frames)]
    model["suspects"] = [{"index": i, "label": frames[i]["label"]} for i in knn["suspects"]]
    shown = (f"{len(frames)} of {knn['n_total']} frames (evenly spaced)" if len(frames) < knn["n_total"]
             else f"all {len(frames)} frames")
    model["knn_note"] = (f"Nearest frames by cosine similarity of a frame embedding (downsampled 32x18 RGB + "
                         f"colour histogram, standardised) over {shown} of round {last.round}. Boxes drawn: "
                         "green kept, red pruned. A look-alike with no kept box next to a query that has one "
                         "is flagged: a ball may have been missed there. Click a neighbour to follow it.")
    return model
