"""SSD detection output: prior boxes + box encodings + class scores -> detections, as Caffe's and
OpenCV's ``DetectionOutput`` layer computes them (``code_type CENTER_SIZE``, shared locations,
per-class NMS, then the ``keep_top_k`` best over all classes).

Pure functions over arrays. Boxes are ``xyxy`` in the priors' units (normalised [0, 1] for TF
object-detection graphs), not clipped.
"""
from __future__ import annotations

import numpy as np


def decode_center_size(loc: np.ndarray, priors: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Decode box encodings against their priors.

    Parameters
    ----------
    loc : (A, 4) float
        Encodings ``(tx, ty, tw, th)`` (x before y: OpenCV's order; TF graphs emit ``(ty, tx, th, tw)``).
    priors : (A, 4) float
        Prior boxes ``xyxy``.
    variances : (A, 4) float
        Per-prior variances (``0.1, 0.1, 0.2, 0.2`` for TF SSDs).

    Returns
    -------
    (A, 4) float64 xyxy boxes.
    """
    loc, priors, variances = (np.asarray(a, dtype=np.float64) for a in (loc, priors, variances))
    pw, ph = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    cx = variances[:, 0] * loc[:, 0] * pw + (priors[:, 0] + priors[:, 2]) / 2
    cy = variances[:, 1] * loc[:, 1] * ph + (priors[:, 1] + priors[:, 3]) / 2
    w = np.exp(variances[:, 2] * loc[:, 2]) * pw
    h = np.exp(variances[:, 3] * loc[:, 3]) * ph
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def detection_output(boxes: np.ndarray, scores: np.ndarray, *, confidence_threshold: float = 0.01,
                     nms_threshold: float = 0.6, top_k: int = 100, keep_top_k: int = 100,
                     background_label_id: int = 0, min_score: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class NMS of one image's decoded boxes, as ``DetectionOutput`` does it.

    For every class but the background: the scores above ``confidence_threshold``, their ``top_k``
    best, greedy NMS at ``nms_threshold``; then the ``keep_top_k`` best of all classes together.
    ``min_score`` drops the results below it; applied before the NMS it changes none of the others
    (a box only suppresses lower-scored ones, and ranks below every box that scores more).

    Parameters
    ----------
    boxes : (A, 4) float xyxy, one per prior (shared across classes).
    scores : (A, C) float class probabilities.

    Returns
    -------
    boxes : (K, 4) float64 xyxy
    scores : (K,) float64, descending
    labels : (K,) int64 class ids
    """
    import torch
    from torchvision.ops import batched_nms

    scores = np.asarray(scores)
    mask = (scores > confidence_threshold) & (scores >= min_score)  # strictly above, as the layer
    mask[:, background_label_id] = False
    anchor, label = np.nonzero(mask)
    if not len(anchor):
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    s = scores[anchor, label].astype(np.float64)
    # top_k per class: rank within each class by descending score (stable: ties keep anchor order)
    order = np.lexsort((-s, label))
    label_sorted = label[order]
    first = np.searchsorted(label_sorted, label_sorted, side="left")
    order = order[np.arange(len(order)) - first < int(top_k)]
    anchor, label, s = anchor[order], label[order], s[order]
    cand = np.asarray(boxes, dtype=np.float64)[anchor]
    keep = batched_nms(torch.from_numpy(cand).float(), torch.from_numpy(s).float(),
                       torch.from_numpy(label), float(nms_threshold)).numpy()
    keep = keep[np.argsort(-s[keep], kind="stable")[:int(keep_top_k)]]
    return cand[keep], s[keep], label[keep].astype(np.int64)
