"""Per-round tables of the report: pure functions over :class:`~pseudolabel.records.Dataset` and
``metrics.json`` dicts, plus :func:`load_round`, the thin reader of one round directory.

A box's *group* is ``"kept"`` or, for a pruned box, its pruning reason (``"pruned"`` when it has none).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pseudolabel import layout
from pseudolabel.records import Box, Dataset

KEPT_GROUP = "kept"
# (metrics.json key, label) of the quality curves, in display order
QUALITY_KEYS = (("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("ap50", "AP50"), ("ap", "AP"))


@dataclass
class RoundData:
    """What the report reads of one round: its dataset, metrics and box features.

    ``features`` maps a box id of ``ds`` to the detector's feature vector of that box (student rounds
    write them, see :func:`map_features`); empty when the round has none.
    """

    round: int
    ds: Dataset
    metrics: dict[str, Any] = field(default_factory=dict)
    features: dict[int, np.ndarray] = field(default_factory=dict)
    source_file: str = layout.ANNOTATIONS


# ------------------------------------------------------------------------------------------ pure
def group_of(box: Box) -> str:
    """``"kept"``, or the pruning reason of a pruned box (``"pruned"`` when it has none)."""
    return KEPT_GROUP if box.kept else (box.reason or "pruned")


def round_counts(ds: Dataset) -> dict[str, Any]:
    """The count fields of ``metrics.json`` recomputed from a round's dataset."""
    kept = ds.kept_boxes()
    return {
        "n_images": len(ds.frames), "n_boxes": len(kept), "n_pruned": len(ds.boxes) - len(kept),
        "pruned_by_reason": dict(Counter(group_of(b) for b in ds.boxes if not b.kept)),
        "n_negative_frames": sum(1 for v in ds.boxes_by_image(kept_only=True).values() if not v),
    }


def curves_table(metrics_by_round: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Series across rounds for the curves.

    Parameters
    ----------
    metrics_by_round : mapping round -> metrics dict
        ``metrics.json`` contents (or :func:`round_counts` where it is absent).

    Returns
    -------
    dict
        ``rounds`` (sorted), ``kept``, ``pruned``, ``negatives`` (lists aligned with ``rounds``),
        ``reasons`` (reason -> counts, 0 where a round has none; reasons by decreasing total) and
        ``quality`` (label -> values, None where a round lacks it; only metrics that some round has).
    """
    rounds = sorted(int(k) for k in metrics_by_round)
    ms = [metrics_by_round[k] for k in rounds]
    totals: Counter = Counter()
    for m in ms:
        totals.update({r: int(n) for r, n in (m.get("pruned_by_reason") or {}).items()})
    reasons = {r: [int((m.get("pruned_by_reason") or {}).get(r, 0)) for m in ms]
               for r, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))}
    quality = {}
    for key, label in QUALITY_KEYS:
        values = [_number(m.get(key)) for m in ms]
        if any(v is not None for v in values):
            quality[label] = values
    return {"rounds": rounds, "kept": [int(m.get("n_boxes", 0)) for m in ms],
            "pruned": [int(m.get("n_pruned", 0)) for m in ms],
            "negatives": [int(m.get("n_negative_frames", 0)) for m in ms],
            "reasons": reasons, "quality": quality}


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else None


def per_video_rows(ds: Dataset, per_video_metrics: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> list[dict[str, Any]]:
    """One row per video: ``video``, ``frames``, ``kept``, ``pruned``, ``negatives`` (frames without a
    kept box) and ``reasons`` (reason -> pruned count), videos sorted by name; with
    ``per_video_metrics`` (``metrics.json``'s ``per_video``) also ``precision``, ``recall``, ``f1``
    (None for a video it lacks)."""
    video_of = {f.id: f.video_id for f in ds.frames}
    rows: dict[str, dict[str, Any]] = {}
    for f in ds.frames:
        rows.setdefault(f.video_id, {"video": f.video_id, "frames": 0, "kept": 0, "pruned": 0,
                                     "negatives": 0, "reasons": Counter()})["frames"] += 1
    for b in ds.boxes:
        row = rows[video_of[b.image_id]]
        if b.kept:
            row["kept"] += 1
        else:
            row["pruned"] += 1
            row["reasons"][group_of(b)] += 1
    for image_id, boxes in ds.boxes_by_image(kept_only=True).items():
        if not boxes:
            rows[video_of[image_id]]["negatives"] += 1
    out = [{**r, "reasons": dict(r["reasons"])} for _, r in sorted(rows.items())]
    if per_video_metrics:
        for r in out:
            m = per_video_metrics.get(r["video"]) or {}
            r.update({k: _number(m.get(k)) for k in ("precision", "recall", "f1")})
    return out


def spread(items: Sequence[Box], n: int) -> list[Box]:
    """At most ``n`` of ``items``, evenly spaced over their score order (lowest to highest), so a
    sample shows the whole score range; deterministic."""
    ordered = sorted(items, key=lambda b: (b.score, b.id))
    if n <= 0:
        return []
    if len(ordered) <= n:
        return ordered
    idx = np.unique(np.round(np.linspace(0, len(ordered) - 1, n)).astype(int))
    return [ordered[i] for i in idx]


def groups(boxes: Iterable[Box]) -> dict[str, list[Box]]:
    """Boxes by group: ``"kept"`` first, then reasons by decreasing count (ties by name)."""
    out: dict[str, list[Box]] = {}
    for b in boxes:
        out.setdefault(group_of(b), []).append(b)
    order = sorted(out, key=lambda g: (g != KEPT_GROUP, -len(out[g]), g))
    return {g: out[g] for g in order}


def select_crops(boxes: Iterable[Box], *, per_group: int) -> dict[str, list[Box]]:
    """Up to ``per_group`` boxes of every group (:func:`groups`), spread over the score range."""
    return {g: spread(bs, per_group) for g, bs in groups(boxes).items()}


def allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` slots over groups of the given sizes as evenly as possible (water-filling):
    small groups get all their items, the rest share what is left. Sum = ``min(total, sum(sizes))``."""
    quota = [0] * len(sizes)
    left = max(int(total), 0)
    open_ = [i for i, s in enumerate(sizes) if s > 0]
    while left > 0 and open_:
        share = max(left // len(open_), 1)
        for i in list(open_):
            if left == 0:
                break
            take = min(share, sizes[i] - quota[i], left)
            quota[i] += take
            left -= take
            if quota[i] == sizes[i]:
                open_.remove(i)
    return quota


def select_map_boxes(boxes: Iterable[Box], *, max_points: int) -> list[Box]:
    """At most ``max_points`` boxes for the embedding map, shared between groups by :func:`allocate`
    (so that rare pruning reasons are all shown), each group spread over its score range."""
    by_group = groups(boxes)
    quota = allocate([len(v) for v in by_group.values()], max_points)
    return [b for (g, bs), q in zip(by_group.items(), quota) for b in spread(bs, q)]


def iou(a, b) -> np.ndarray:
    """Pairwise IoU of ``xyxy`` boxes, (N, 4) x (M, 4) -> (N, M) (NumPy; no torch import)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def map_features(ds: Dataset, labels: Dataset, features: Mapping[int, np.ndarray], *,
                 round: int, min_iou: float = 0.5) -> dict[int, np.ndarray]:
    """Attach the detector features of a round (keyed by ``labels.json`` box ids) to the boxes of the
    round's merged dataset (renumbered, and moved where ``merge.geometry=fused`` averaged a confirmed
    pair): within each frame (by key), each box of round ``round`` takes the feature of the unclaimed
    labelled box it overlaps most, if that IoU is at least ``min_iou``.

    Boxes of earlier rounds and boxes a pruner added (interpolated) get none.
    """
    if not features:
        return {}
    lab_key = {f.id: f.key for f in labels.frames}
    by_frame: dict[tuple, list[Box]] = {}
    for b in labels.boxes:
        if b.id in features:
            by_frame.setdefault(lab_key[b.image_id], []).append(b)
    ds_key = {f.id: f.key for f in ds.frames}
    mine: dict[tuple, list[Box]] = {}
    for b in ds.boxes:
        if b.round == round and ds_key[b.image_id] in by_frame:
            mine.setdefault(ds_key[b.image_id], []).append(b)
    out: dict[int, np.ndarray] = {}
    for key, boxes in mine.items():
        cands = by_frame[key]
        m = iou([b.xyxy for b in boxes], [c.xyxy for c in cands])
        while m.size and m.max() >= min_iou:
            i, j = np.unravel_index(int(np.argmax(m)), m.shape)
            out[boxes[i].id] = np.asarray(features[cands[j].id], dtype=np.float32)
            m[i, :] = -1
            m[:, j] = -1
    return out


# ------------------------------------------------------------------------------------------- IO
def ground_truth_matches(ds: Dataset, gt: Dataset, *, max_centre_distance: float) -> set[int]:
    """Ids of the boxes of ``ds`` (kept or pruned) whose centre lies within ``max_centre_distance`` pixels of a
    ground-truth box of the same frame (frames joined by ``(video_id, frame_index)``)."""
    from pseudolabel.evaluate import centre_distance_matrix

    gt_frames = gt.frame_by_key()
    gt_boxes = gt.boxes_by_image(kept_only=True)
    pred_boxes = ds.boxes_by_image()
    out: set[int] = set()
    for f in ds.frames:
        g = gt_frames.get(f.key)
        gts = gt_boxes.get(g.id, []) if g is not None else []
        if not gts:
            continue
        boxes = pred_boxes.get(f.id, [])
        if boxes:
            near = (centre_distance_matrix([b.xyxy for b in boxes], [b.xyxy for b in gts]) <= max_centre_distance)
            out.update(b.id for b, hit in zip(boxes, near.any(axis=1)) if hit)
    return out


def load_round(exp_dir: str | Path, k: int) -> RoundData:
    """Read round ``k``: ``annotations.json`` (or ``pruned.json`` when the merge has not run),
    ``metrics.json`` (counts recomputed where absent) and ``features.npz`` mapped onto the boxes."""
    from pseudolabel import files
    from pseudolabel.coco import load_coco
    from pseudolabel.prune.features import load_features

    rdir = layout.round_dir(exp_dir, k)
    source = layout.dataset_file(rdir) or rdir / layout.PRUNED
    ds = load_coco(source)
    metrics = {**round_counts(ds), "round": k}
    if (rdir / layout.METRICS).is_file():
        metrics.update(files.read_json(rdir / layout.METRICS))
    feats = load_features(rdir / layout.FEATURES)
    mapped = {}
    if feats and (rdir / layout.LABELS).is_file():
        mapped = map_features(ds, load_coco(rdir / layout.LABELS), feats, round=k)
    return RoundData(round=k, ds=ds, metrics=metrics, features=mapped, source_file=source.name)
