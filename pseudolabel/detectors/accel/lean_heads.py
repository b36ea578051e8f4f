"""The RoI stage of a torchvision Faster R-CNN at inference, in fewer and larger operations, and its
input batch built in NumPy.

Same boxes, scores and pooled features as torchvision's ``RoIHeads`` in eval mode, up to float rounding
(``tests/test_lean_heads.py``). Why it exists: on one CPU core the torchvision heads of the
EfficientNet-Lite0 student took a large share of a frame's time next to its whole backbone, FPN and RPN head
in ONNX Runtime (timings in BENCHMARKS.md, "Lean heads"). The proposal stage's share of that work (anchors
kept per input shape, only the top boxes decoded) is no longer here: every two-stage forward proposes with
:func:`pseudolabel.detectors.rcnn.propose`.

- ``torchvision.ops.roi_align`` for the proposals and the final boxes: a scalar loop per
  channel. Here the same bilinear samples are one ``F.embedding_bag`` per level over the feature map
  laid out position x channel: each output bin is a weighted sum of 4 x ``sampling_ratio``\\ :sup:`2`
  rows, vectorised across channels.

Where a model has anything else (mask or keypoint heads, another pooler), the caller uses
torchvision's own modules (:func:`supports`).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def supports(model: Any) -> bool:
    """True when the lean RoI stage computes exactly what ``model``'s eval-mode RoI heads compute."""
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.ops import MultiScaleRoIAlign

    heads = getattr(model, "roi_heads", None)
    return (type(heads) is RoIHeads and not heads.has_mask() and not heads.has_keypoint()
            and type(heads.box_roi_pool) is MultiScaleRoIAlign and heads.box_roi_pool.sampling_ratio > 0)


def native_batch(transform, images):
    """``transform(to_tensors(images))[0]`` for uint8 RGB images (H, W, 3) that a native-resolution
    transform (one with ``shrunk_size``) leaves at their size, in one NumPy pass per image (faster than the
    same steps on tensors: BENCHMARKS.md); None when any image would
    be resized, or the transform is another kind, so the caller uses the transform itself.

    Returns
    -------
    torchvision ``ImageList``: (N, 3, H', W') float32 normalised, zero-padded at the bottom and right to
    multiples of ``size_divisible``, and the (h, w) of every image.
    """
    import math

    import torch
    from torchvision.models.detection.image_list import ImageList

    shrunk_size = getattr(transform, "shrunk_size", None)
    if shrunk_size is None or getattr(transform, "fixed_size", None) is not None or not images:
        return None
    sizes = [tuple(int(v) for v in im.shape[:2]) for im in images]
    if any(shrunk_size(h, w) != (h, w) for h, w in sizes) or any(im.ndim != 3 or im.shape[2] != 3 for im in images):
        return None
    div = int(transform.size_divisible)
    height = int(math.ceil(max(h for h, _ in sizes) / div) * div)
    width = int(math.ceil(max(w for _, w in sizes) / div) * div)
    mean = np.asarray(transform.image_mean, np.float32).reshape(3, 1, 1) * 255.0
    scale = 1.0 / (255.0 * np.asarray(transform.image_std, np.float32).reshape(3, 1, 1))
    out = np.zeros((len(images), 3, height, width), np.float32)
    for i, (im, (h, w)) in enumerate(zip(images, sizes)):
        dst = out[i, :, :h, :w]
        np.subtract(np.asarray(im).transpose(2, 0, 1), mean, out=dst, casting="unsafe")
        dst *= scale
    return ImageList(torch.from_numpy(out), sizes)


def _samples(start, length, *, bins: int, ratio: int, size: int):
    """Bilinear taps along one axis, as ``torchvision.ops.roi_align`` (aligned=False) places them.

    start, length : (R,) region start and extent in feature pixels. Returns ``index`` (R, bins, ratio, 2)
    int64 (the low and high pixel of each sample) and ``weight`` (R, bins, ratio, 2): zero for samples
    more than one pixel outside the map, which roi_align skips.
    """
    import torch

    step = length.clamp(min=1.0) / bins
    offsets = (torch.arange(bins, dtype=start.dtype, device=start.device)[:, None]
               + (torch.arange(ratio, dtype=start.dtype, device=start.device)[None, :] + 0.5) / ratio)
    at = start[:, None, None] + step[:, None, None] * offsets
    inside = (at >= -1.0) & (at <= size)
    at = at.clamp(min=0.0)
    low = at.floor().long()
    last = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(at), at - low.to(at.dtype))
    return torch.stack([low, high], -1), torch.stack([1.0 - frac, frac], -1) * inside[..., None]


def roi_align_rows(rows, *, height: int, width: int, boxes, image_index, output_size: int, sampling_ratio: int,
                   spatial_scale: float):
    """``torchvision.ops.roi_align(..., aligned=False)`` over a feature map laid out as rows.

    Parameters
    ----------
    rows : (N x H x W, C) float tensor: the (N, C, H, W) map permuted to (N, H, W, C), flattened.
    boxes : (R, 4) xyxy in input pixels; ``image_index`` (R,) int64 the image of each box.

    Returns
    -------
    (R, C, output_size, output_size) tensor.
    """
    import torch.nn.functional as F

    b = boxes * spatial_scale
    ratio, bins = int(sampling_ratio), int(output_size)
    y_idx, y_w = _samples(b[:, 1], b[:, 3] - b[:, 1], bins=bins, ratio=ratio, size=height)
    x_idx, x_w = _samples(b[:, 0], b[:, 2] - b[:, 0], bins=bins, ratio=ratio, size=width)
    y_row = y_idx * width + (image_index * (height * width))[:, None, None, None]  # first row of each tap's line
    # (R, bin_y, bin_x, sample_y, tap_y, sample_x, tap_x): every bin sums ratio^2 samples x 4 taps
    index = y_row[:, :, None, :, :, None, None] + x_idx[:, None, :, None, None, :, :]
    weight = (y_w / (ratio * ratio))[:, :, None, :, :, None, None] * x_w[:, None, :, None, None, :, :]
    taps = 4 * ratio * ratio
    out = F.embedding_bag(index.reshape(-1, taps), rows, mode="sum", per_sample_weights=weight.reshape(-1, taps))
    return out.view(len(boxes), bins, bins, -1).permute(0, 3, 1, 2)


def _as_rows(fmap):
    """(N, C, H, W) float32 -> (N x H x W, C) contiguous: one row per position (OpenCV's transpose, faster
    than ``permute(...).contiguous()`` on one core: BENCHMARKS.md)."""
    import cv2
    import torch

    n, c, h, w = fmap.shape
    if fmap.dtype != torch.float32 or fmap.device.type != "cpu":
        return fmap.permute(0, 2, 3, 1).reshape(-1, c).contiguous()
    planes = fmap.detach().contiguous().reshape(n, c, h * w).numpy()
    return torch.from_numpy(np.concatenate([cv2.transpose(p) for p in planes]) if n > 1 else cv2.transpose(planes[0]))


class Pooler:
    """A ``MultiScaleRoIAlign``'s output for one forward's feature maps: ``pooler(boxes)`` is
    ``roi_pool(feats, boxes, image_sizes)``; each level is laid out as rows once, when first needed."""

    def __init__(self, roi_pool, feats, image_sizes) -> None:
        from torchvision.ops.poolers import _filter_input, _setup_scales

        self.roi_pool = roi_pool
        self.maps = _filter_input(feats, roi_pool.featmap_names)
        if roi_pool.scales is None or roi_pool.map_levels is None:  # as the module does on its first call
            roi_pool.scales, roi_pool.map_levels = _setup_scales(self.maps, image_sizes, roi_pool.canonical_scale,
                                                                 roi_pool.canonical_level)
        self._rows: dict[int, Any] = {}

    def _level_rows(self, level: int):
        if level not in self._rows:
            self._rows[level] = _as_rows(self.maps[level])
        return self._rows[level]

    def __call__(self, boxes: list):
        import torch

        pool = self.roi_pool
        flat = torch.cat(boxes)
        image_index = torch.cat([torch.full((len(b),), i, dtype=torch.int64, device=flat.device)
                                 for i, b in enumerate(boxes)])
        channels = self.maps[0].shape[1]
        size = pool.output_size
        if size[0] != size[1]:
            raise ValueError(f"square RoI output expected, got {size}")
        levels = (pool.map_levels(boxes) if len(self.maps) > 1
                  else torch.zeros(len(flat), dtype=torch.int64, device=flat.device))
        out = None
        for level, scale in enumerate(pool.scales):
            where = torch.where(levels == level)[0]
            if len(where) == 0:
                continue
            fmap = self.maps[level]
            every = len(where) == len(flat)  # all boxes on one level (small objects): no scatter
            pooled = roi_align_rows(self._level_rows(level), height=fmap.shape[-2], width=fmap.shape[-1],
                                    boxes=flat if every else flat[where],
                                    image_index=image_index if every else image_index[where],
                                    output_size=size[0], sampling_ratio=pool.sampling_ratio, spatial_scale=scale)
            if every:
                return pooled
            if out is None:
                out = torch.zeros((len(flat), channels, size[0], size[1]), dtype=fmap.dtype, device=fmap.device)
            out[where] = pooled
        return out if out is not None else self.maps[0].new_zeros((0, channels, size[0], size[1]))


def detect(roi_heads, pooler: Pooler, proposals: list, image_sizes) -> list[dict]:
    """``roi_heads(feats, proposals, image_sizes)[0]`` in eval mode (box heads only), pooling with ``pooler``."""
    logits, regression = roi_heads.box_predictor(roi_heads.box_head(pooler(proposals)))
    boxes, scores, labels = roi_heads.postprocess_detections(logits, regression, proposals, image_sizes)
    return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(boxes, scores, labels)]
