"""Threshold policies for relabelling with the student.

``fixed``: keep student boxes with ``score >= threshold`` (the reference's 0.7).

``adaptive``: calibrated on agreement with the previous round. On frames where round N-1 kept a box,
the ball is there and (for one-ball sports) once: a student box that matches no kept box of N-1 on such a
frame is most likely a false positive. The adaptive threshold is the *lowest* score at which the
student's precision against round N-1's kept boxes on those frames reaches ``target_precision`` — as
much recall as the precision target allows. If no threshold reaches it, the highest one is used.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .evaluate import greedy_match


def agreement_precision(pred: Sequence[tuple[np.ndarray, np.ndarray]], ref: Sequence[np.ndarray], *,
                        threshold: float, iou_threshold: float) -> tuple[float, int]:
    """Precision of predictions with score >= ``threshold`` against reference boxes, frame by frame.

    Parameters
    ----------
    pred : sequence of (boxes (N, 4) xyxy, scores (N,))
        Student detections of each frame.
    ref : sequence of (M, 4) xyxy
        Round N-1 kept boxes of the same frames.

    Returns
    -------
    (precision, n_predictions); precision is 1.0 when there is no prediction.
    """
    tp = n = 0
    for (boxes, scores), r in zip(pred, ref):
        keep = scores >= threshold
        if not keep.any():
            continue
        hits, _ = greedy_match(boxes[keep], scores[keep], r, iou_threshold=iou_threshold)
        tp += int(hits.sum())
        n += int(keep.sum())
    return (tp / n if n else 1.0), n


def calibrate_threshold(pred: Sequence[tuple[np.ndarray, np.ndarray]], ref: Sequence[np.ndarray], *,
                        target_precision: float = 0.9, grid: Sequence[float] = tuple(np.round(np.arange(0.3, 0.96, 0.05), 2)),
                        iou_threshold: float = 0.3) -> dict:
    """Lowest threshold of ``grid`` whose agreement precision reaches ``target_precision``.

    Only frames with at least one reference box should be passed. Returns ``{"threshold", "precision",
    "n_predictions", "curve": [(t, precision, n), ...]}``.
    """
    curve = []
    for t in sorted(grid):
        p, n = agreement_precision(pred, ref, threshold=float(t), iou_threshold=iou_threshold)
        curve.append((float(t), p, n))
    chosen = next((c for c in curve if c[1] >= target_precision and c[2] > 0), curve[-1])
    return {"threshold": chosen[0], "precision": chosen[1], "n_predictions": chosen[2], "curve": curve}
