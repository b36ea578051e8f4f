"""What a round looks like, as plain arrays and rows: the input of the W&B logger and of reviews.

Pure functions over a round's :class:`~pseudolabel.records.Dataset`; no W&B imported here.
Every box gets one *review class* saying what happened to it in the round:

- ``kept: new`` — first kept in this round (for round 0: every kept box);
- ``kept: confirmed`` — kept, and matched to a box of the previous round;
- ``kept: interpolated`` — added by temporal gap filling (``source == "track_interp"``);
- ``pruned: <reason>`` — removed, with the pruner's reason.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .records import Box, Dataset

NEW, CONFIRMED, INTERPOLATED = "kept: new", "kept: confirmed", "kept: interpolated"


def review_class(box: Box, *, round: int) -> str:
    """The review class of ``box`` in round ``round`` (see the module docstring)."""
    if not box.kept:
        return f"pruned: {box.reason or 'unspecified'}"
    if box.source == "track_interp":
        return INTERPOLATED
    status = box.extra.get("merge_status")
    if status is None:  # round 0, or a dataset that was never merged
        return NEW if box.round == round else CONFIRMED
    return NEW if status == "new" else CONFIRMED


def box_statistics(ds: Dataset, *, kept: bool = True) -> dict[str, np.ndarray]:
    """Per-box arrays of the kept (or pruned) boxes.

    Returns
    -------
    dict with keys ``score``, ``width``, ``height``, ``aspect`` (max(w/h, h/w), >= 1), each (N,) float64,
    N = number of selected boxes. Boxes are xyxy pixels.
    """
    bs = [b for b in ds.boxes if b.kept == kept]
    xyxy = ds.xyxy(bs)
    w = np.clip(xyxy[:, 2] - xyxy[:, 0], 0.0, None)
    h = np.clip(xyxy[:, 3] - xyxy[:, 1], 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where((w > 0) & (h > 0), np.maximum(w / h, h / w), np.nan)
    return {"score": np.array([b.score for b in bs], dtype=np.float64), "width": w, "height": h,
            "aspect": aspect}


def class_counts(ds: Dataset, *, round: int) -> dict[str, int]:
    """Number of boxes per review class, sorted by class name."""
    return dict(sorted(Counter(review_class(b, round=round) for b in ds.boxes).items()))


def sample_frames(ds: Dataset, *, round: int, n: int) -> list[int]:
    """Ids of at most ``n`` frames worth looking at, deterministic.

    Frames are ranked by what they show: pruned boxes and boxes new this round first, then kept boxes,
    and, from ``n >= 3``, a few negatives (frames without any box: ``max(1, n // 8)``) at the end. Ties go to the lower frame id.
    """
    by_image = ds.boxes_by_image()
    ranked = []
    for f in ds.frames:
        classes = Counter(review_class(b, round=round) for b in by_image.get(f.id, []))
        pruned = sum(v for k, v in classes.items() if k.startswith("pruned"))
        interesting = pruned + classes[NEW] + classes[INTERPOLATED]
        kept = classes[NEW] + classes[CONFIRMED] + classes[INTERPOLATED]
        ranked.append((-interesting, -kept, f.id))
    ranked.sort()
    positives = [fid for i, k, fid in ranked if i or k]
    negatives = [fid for i, k, fid in ranked if not (i or k)]
    n_neg = min(len(negatives), max(1, n // 8)) if n >= 3 else 0
    chosen = positives[: n - n_neg] + negatives[:n_neg]
    return chosen[:n]


def sample_rows(ds: Dataset, *, round: int, n: int) -> list[dict[str, Any]]:
    """One row per sampled frame: the frame and its boxes with their review classes.

    Returns
    -------
    list of dict with keys ``frame`` (:class:`~pseudolabel.records.Frame`), ``boxes`` (list of
    ``(xyxy, score, review_class)``), ``n_kept``, ``n_pruned``, ``classes`` (comma-joined review classes).
    """
    by_image = ds.boxes_by_image()
    frames = {f.id: f for f in ds.frames}
    rows = []
    for fid in sample_frames(ds, round=round, n=n):
        bs = by_image.get(fid, [])
        boxes = [(tuple(b.xyxy), float(b.score), review_class(b, round=round)) for b in bs]
        rows.append({"frame": frames[fid], "boxes": boxes, "n_kept": sum(b.kept for b in bs),
                     "n_pruned": sum(not b.kept for b in bs),
                     "classes": ", ".join(sorted({c for _, _, c in boxes}))})
    return rows
