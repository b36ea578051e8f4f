"""Rule-based pruning of pseudo-label boxes.

Every ``*_mask`` function is pure: it takes arrays and returns a boolean mask of shape (N,) where
``True`` means *prune*, so rules compose with ``|``. Boxes are ``xyxy`` float pixels, shape (N, 4).
:func:`apply_heuristics` is the thin shell that runs the rules over a :class:`~pseudolabel.records.Dataset`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pseudolabel.boxes import as_boxes, iou_matrix, nms_keep
from pseudolabel.records import Box, Dataset

REASONS = ("degenerate", "too_small", "too_large", "aspect", "log_size_outlier", "static", "overlap")

# Rows of the pairwise IoU matrix computed at once in static_mask (bounds memory to ~32 MB).
_IOU_BLOCK_ELEMENTS = 4_000_000


def _sides(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]


def overlap_mask(boxes, scores, *, iou_threshold: float = 0.5, centre_factor: float | None = None) -> np.ndarray:
    """Boxes suppressed by non-maximum suppression within one image.

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes of a single image.
    scores : array_like, shape (N,)
        Confidence of each box; the higher one survives an overlap.
    iou_threshold : float
        A box is suppressed when its IoU with a higher-scoring kept box is above this.
    centre_factor : float or None
        Also suppressed: a box whose centre lies within ``centre_factor`` times the smaller diagonal of
        a higher-scoring kept box's centre. Two detections of one 8-px ball shifted by 3 px have an IoU
        near 0.3 but nearly the same centre; IoU alone keeps both.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
        ``True`` for suppressed boxes. Transitive and independent of input order (ties of equal
        score are broken by index, see :func:`pseudolabel.boxes.nms_keep`).
    """
    # Contiguous copies: torch.from_numpy (inside nms_keep) rejects negative strides.
    b = np.ascontiguousarray(as_boxes(boxes))
    scores = np.ascontiguousarray(scores, dtype=np.float64)
    mask = np.ones(len(b), dtype=bool)
    keep = nms_keep(b, scores, iou_threshold=iou_threshold)
    if centre_factor is not None and len(keep) > 1:
        centres = (b[keep, :2] + b[keep, 2:]) / 2
        diags = np.hypot(b[keep, 2] - b[keep, 0], b[keep, 3] - b[keep, 1])
        survivors: list[int] = []
        for i in range(len(keep)):  # keep is ordered by decreasing score
            near = [j for j in survivors if np.hypot(*(centres[i] - centres[j]))
                    < centre_factor * min(diags[i], diags[j])]
            if not near:
                survivors.append(i)
        keep = keep[survivors]
    mask[keep] = False
    return mask


def aspect_mask(boxes, *, max_aspect: float = 2.0) -> np.ndarray:
    """Boxes too elongated to be a ball.

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    max_aspect : float
        Prune when ``max(w / h, h / w) >= max_aspect``.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
        ``True`` to prune; boxes with a zero or non-finite side are pruned too.
    """
    w, h = _sides(as_boxes(boxes))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(w, h) / np.minimum(w, h)
    return ~((ratio < max_aspect) & (np.minimum(w, h) > 0))


def size_mask(boxes, *, min_size: float | None = 4.0, max_size: float | None = None) -> np.ndarray:
    """Boxes too small or too large.

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    min_size : float or None
        Prune when the shorter side is below this (pixels); ``None`` disables.
    max_size : float or None
        Prune when the longer side is above this (pixels); ``None`` disables.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
    """
    w, h = _sides(as_boxes(boxes))
    mask = np.zeros(len(w), dtype=bool)
    if min_size is not None:
        mask |= np.minimum(w, h) < min_size
    if max_size is not None:
        mask |= np.maximum(w, h) > max_size
    return mask


def degenerate_mask(boxes, *, width, height, min_visible: float = 0.5) -> np.ndarray:
    """Broken boxes: non-finite, empty, or mostly outside the image.

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    width, height : float or array_like of shape (N,)
        Image size, one for all boxes or one per box.
    min_visible : float
        Prune when less than this fraction of the box area lies inside the image.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
    """
    b = as_boxes(boxes)
    n = len(b)
    width = np.broadcast_to(np.asarray(width, dtype=np.float64), (n,))
    height = np.broadcast_to(np.asarray(height, dtype=np.float64), (n,))
    finite = np.isfinite(b).all(axis=1)
    bad = ~finite
    b = np.where(finite[:, None], b, 0.0)
    w, h = _sides(b)
    bad |= (w <= 0) | (h <= 0)
    vw = np.clip(np.minimum(b[:, 2], width) - np.maximum(b[:, 0], 0.0), 0, None)
    vh = np.clip(np.minimum(b[:, 3], height) - np.maximum(b[:, 1], 0.0), 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        visible = (vw * vh) / (w * h)
    bad |= ~(visible >= min_visible)
    return bad


def _robust_sigma(x: np.ndarray, med: float) -> float:
    mad = float(np.median(np.abs(x - med)))
    # MAD is 0 when more than half the values are equal; std still sees the spread of the rest.
    return 1.4826 * mad if mad > 0 else float(np.std(x))


def log_size_outlier_mask(boxes, groups, *, k: float = 3.0, min_group: int = 8) -> np.ndarray:
    """Boxes whose width or height is an outlier among the boxes of their group (video).

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    groups : array_like, shape (N,)
        Group label of each box (e.g. video id).
    k : float
        Prune when ``|log(w) - median| > k * sigma`` (same for ``h``), with
        ``sigma = 1.4826 * MAD`` or the standard deviation where the MAD is 0.
    min_group : int
        Groups with fewer boxes (with positive sides) are left untouched.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
        Boxes with a non-positive side are never flagged here (see :func:`degenerate_mask`).
    """
    b = as_boxes(boxes)
    groups = np.asarray(groups)
    w, h = _sides(b)
    valid = (w > 0) & (h > 0) & np.isfinite(w) & np.isfinite(h)
    mask = np.zeros(len(b), dtype=bool)
    for g in np.unique(groups):
        idx = np.flatnonzero((groups == g) & valid)
        if len(idx) < min_group:
            continue
        for side in (w, h):
            x = np.log(side[idx])
            med = float(np.median(x))
            mask[idx] |= np.abs(x - med) > k * _robust_sigma(x, med)
    return mask


def _distinct_frame_hits(b: np.ndarray, codes: np.ndarray, n_codes: int, iou_threshold: float) -> np.ndarray:
    """(M,) number of distinct frame codes holding a box with IoU >= threshold with each box."""
    m = len(b)
    counts = np.zeros(m, dtype=np.int64)
    block = max(1, _IOU_BLOCK_ELEMENTS // max(m, 1))
    for start in range(0, m, block):
        rows, cols = np.nonzero(iou_matrix(b[start:start + block], b) >= iou_threshold)
        pairs = np.unique(rows.astype(np.int64) * n_codes + codes[cols])
        counts[start:start + block] = np.bincount(pairs // n_codes, minlength=min(block, m - start))
    return counts


def static_mask(
    boxes,
    groups,
    frame_indices,
    *,
    iou_threshold: float = 0.7,
    min_fraction: float = 0.3,
    min_frames: int = 5,
    n_frames_per_group: dict | None = None,
) -> np.ndarray:
    """Detections at (nearly) the same place in many frames of one video (lens dirt, logos).

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    groups : array_like, shape (N,)
        Video of each box.
    frame_indices : array_like, shape (N,)
        Frame of each box within its video.
    iou_threshold : float
        Two boxes are "at the same place" when their IoU is at least this.
    min_fraction, min_frames : float, int
        A box is pruned when the number of distinct frames of its video holding a box at the same
        place (its own frame included) is ``>= max(min_frames, min_fraction * n_frames)``.
    n_frames_per_group : dict, optional
        Sampled frames per video, negatives included. Default: frames holding at least one box.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
    """
    b = np.ascontiguousarray(as_boxes(boxes))
    groups = np.asarray(groups)
    frame_indices = np.asarray(frame_indices)
    mask = np.zeros(len(b), dtype=bool)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        uniq, codes = np.unique(frame_indices[idx], return_inverse=True)
        n_frames = len(uniq)
        if n_frames_per_group is not None and g in n_frames_per_group:
            n_frames = n_frames_per_group[g]
        needed = max(min_frames, min_fraction * n_frames)
        if len(uniq) < needed:
            continue  # cannot reach the threshold: skip the pairwise IoU
        counts = _distinct_frame_hits(b[idx], codes.astype(np.int64), len(uniq), iou_threshold)
        mask[idx] = counts >= needed
    return mask


@dataclass
class HeuristicsConfig:
    """Options of :func:`apply_heuristics`; ``None`` thresholds or ``False`` flags disable a rule."""

    degenerate: bool = True
    min_visible: float = 0.5
    min_size: float | None = 4.0
    max_size: float | None = None
    max_aspect: float | None = 2.0
    log_size: bool = False  # off by default: removed more true balls than false boxes (synthetic suite)
    log_size_k: float = 3.0
    log_size_min_group: int = 8
    static: bool = True
    static_iou: float = 0.7
    static_min_fraction: float = 0.3
    static_min_frames: int = 5
    overlap_iou: float | None = 0.5
    overlap_centre: float | None = None


def apply_heuristics(ds: Dataset, cfg: HeuristicsConfig, *, round: int) -> dict[str, int]:
    """Prune the kept boxes of ``ds`` in place, rule by rule.

    Rules run in a fixed order (degenerate, size, aspect, log-size, static, overlap), each on the
    boxes still kept after the previous ones. A pruned box gets ``Box.prune(reason)`` with
    ``extra["pruned_round"] = round``.

    Returns
    -------
    dict
        Number of boxes pruned per reason (every reason in :data:`REASONS` is present).
    """
    frames = {f.id: f for f in ds.frames}
    missing = sorted({b.image_id for b in ds.boxes if b.image_id not in frames})
    if missing:
        raise ValueError(f"boxes refer to unknown image ids {missing[:10]}")
    counts = {r: 0 for r in REASONS}

    def prune(kept: list[Box], mask: np.ndarray, reasons) -> list[Box]:
        out = []
        for i, (box, hit) in enumerate(zip(kept, mask)):
            if hit:
                reason = str(reasons if isinstance(reasons, str) else reasons[i])
                box.prune(reason, pruned_round=round)
                counts[reason] += 1
            else:
                out.append(box)
        return out

    kept = ds.kept_boxes()
    if cfg.degenerate and kept:
        fr = [frames[b.image_id] for b in kept]
        mask = degenerate_mask(ds.xyxy(kept), width=[f.width for f in fr], height=[f.height for f in fr],
                               min_visible=cfg.min_visible)
        kept = prune(kept, mask, "degenerate")
    if (cfg.min_size is not None or cfg.max_size is not None) and kept:
        xyxy = ds.xyxy(kept)
        small = size_mask(xyxy, min_size=cfg.min_size, max_size=None)
        mask = size_mask(xyxy, min_size=cfg.min_size, max_size=cfg.max_size)
        kept = prune(kept, mask, np.where(small, "too_small", "too_large"))
    if cfg.max_aspect is not None and kept:
        kept = prune(kept, aspect_mask(ds.xyxy(kept), max_aspect=cfg.max_aspect), "aspect")
    videos = lambda bs: np.array([frames[b.image_id].video_id for b in bs], dtype=object)  # noqa: E731
    if cfg.log_size and kept:
        mask = log_size_outlier_mask(ds.xyxy(kept), videos(kept), k=cfg.log_size_k,
                                     min_group=cfg.log_size_min_group)
        kept = prune(kept, mask, "log_size_outlier")
    if cfg.static and kept:
        n_frames: dict[str, int] = {}
        for f in ds.frames:
            n_frames[f.video_id] = n_frames.get(f.video_id, 0) + 1
        mask = static_mask(ds.xyxy(kept), videos(kept), [frames[b.image_id].frame_index for b in kept],
                           iou_threshold=cfg.static_iou, min_fraction=cfg.static_min_fraction,
                           min_frames=cfg.static_min_frames, n_frames_per_group=n_frames)
        kept = prune(kept, mask, "static")
    if cfg.overlap_iou is not None and kept:
        by_image: dict[int, list[int]] = {}
        for i, b in enumerate(kept):
            by_image.setdefault(b.image_id, []).append(i)
        mask = np.zeros(len(kept), dtype=bool)
        for idx in by_image.values():
            if len(idx) > 1:
                sub = [kept[i] for i in idx]
                mask[idx] = overlap_mask(ds.xyxy(sub), [b.score for b in sub], iou_threshold=cfg.overlap_iou,
                                         centre_factor=cfg.overlap_centre)
        prune(kept, mask, "overlap")
    return counts
