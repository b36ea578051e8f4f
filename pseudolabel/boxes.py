"""Box geometry. Inside pseudolabel every box is ``xyxy`` float (x1, y1, x2, y2) in pixels.

COCO's ``xywh`` appears only at the file boundary (:mod:`pseudolabel.coco`).
"""
from __future__ import annotations

import numpy as np


def as_boxes(boxes) -> np.ndarray:
    """Return ``boxes`` as a float64 array of shape (N, 4); an empty input gives (0, 4)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    return np.ascontiguousarray(arr.reshape(-1, 4))


def xyxy_to_xywh(boxes) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) xywh (top-left corner, width, height)."""
    b = as_boxes(boxes).copy()
    b[:, 2] -= b[:, 0]
    b[:, 3] -= b[:, 1]
    return b


def xywh_to_xyxy(boxes) -> np.ndarray:
    """(N, 4) xywh -> (N, 4) xyxy."""
    b = as_boxes(boxes).copy()
    b[:, 2] += b[:, 0]
    b[:, 3] += b[:, 1]
    return b


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    """(N, 4) centre-x, centre-y, width, height -> (N, 4) xyxy."""
    b = as_boxes(boxes)
    half = b[:, 2:] / 2.0
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def areas(boxes) -> np.ndarray:
    """(N,) areas of xyxy boxes; degenerate boxes have area 0."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou_matrix(a, b) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N, 4), (M, 4) -> (N, M)."""
    a, b = as_boxes(a), as_boxes(b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    import torch
    from torchvision.ops import box_iou

    return box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def nms_keep(boxes, scores, *, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first.

    Transitive and independent of input order when scores are distinct.
    """
    b = as_boxes(boxes)
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    import torch
    from torchvision.ops import nms

    s = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float64))
    return nms(torch.from_numpy(b), s, iou_threshold).numpy()


def clip_to_image(boxes, *, width: int, height: int) -> np.ndarray:
    """Clip xyxy boxes to the image rectangle [0, width] x [0, height]."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return b
