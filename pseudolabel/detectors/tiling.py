"""Tiled (sliced) inference: small objects become large enough for a detector's input size.

A 10-px ball in a 1080p frame shrinks to 3 px when the frame is resized to 300x300; cut into 160-px
tiles, the same ball is ~19 px at the detector's input. Tiles overlap so that every object smaller than
the overlap lies whole inside at least one tile; detections are shifted back to frame coordinates and
fused across tiles (class-wise NMS, or weighted box fusion).
"""
from __future__ import annotations

from collections import deque
from contextlib import closing
from typing import Iterable, Iterator, Sequence

import numpy as np

from .base import Detections, Detector, split, stream_predictions


def tile_origins(length: int, *, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering [0, length) with at least ``overlap`` px overlap.

    The last tile is aligned to the far edge so every tile lies inside the image.
    """
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    n = int(np.ceil((length - tile) / step)) + 1
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def tile_grid(width: int, height: int, *, tile_size: int, overlap: float) -> np.ndarray:
    """(K, 4) int xyxy tile rectangles covering a ``width`` x ``height`` image.

    ``overlap`` is a fraction of ``tile_size``.
    """
    ov = int(round(overlap * tile_size))
    xs = tile_origins(width, tile=tile_size, overlap=ov)
    ys = tile_origins(height, tile=tile_size, overlap=ov)
    return np.array([[x, y, min(x + tile_size, width), min(y + tile_size, height)] for y in ys for x in xs],
                    dtype=np.int64).reshape(-1, 4)


def tile_sizes(tile_size: int | Sequence[int] | None) -> tuple[int, ...]:
    """``tile_size`` as a sorted tuple of distinct sides (empty for ``None``: no tiles)."""
    if tile_size is None:
        return ()
    sizes = (tile_size,) if isinstance(tile_size, (int, np.integer)) else tuple(tile_size)
    if not sizes or any(int(s) != s or s < 1 for s in sizes):
        raise ValueError(f"tile_size must be a positive integer, a list of them, or None; got {tile_size!r}")
    return tuple(sorted({int(s) for s in sizes}))


def touches_inner_edge(boxes: np.ndarray, tile: np.ndarray, *, width: int, height: int,
                       margin: float = 2.0) -> np.ndarray:
    """(N,) bool: box (frame coordinates) touches a tile edge that is not also an image edge.

    Such a box is likely an object cut by the tile border; the overlapping neighbour tile sees it whole.
    """
    x1, y1, x2, y2 = tile
    left = (boxes[:, 0] <= x1 + margin) & (x1 > 0)
    top = (boxes[:, 1] <= y1 + margin) & (y1 > 0)
    right = (boxes[:, 2] >= x2 - margin) & (x2 < width)
    bottom = (boxes[:, 3] >= y2 - margin) & (y2 < height)
    return left | top | right | bottom


FUSIONS = ("nms", "wbf")


def fuse(dets: Detections, *, iou_threshold: float, method: str = "nms") -> Detections:
    """Fuse detections of one object seen by several views; output sorted by score.

    ``nms``: class-wise NMS (torchvision ``batched_nms``), the highest-scoring box of each cluster stays as
    it is. ``wbf``: the same survivors, each with the score-weighted mean of the boxes it suppressed and
    its own (weighted box fusion, Solovyev et al. 2021), score unchanged: views that see a small object at
    other scales and offsets disagree by pixels, and their mean averages that noise out of the box.
    A suppressed box joins the survivor of its class it overlaps most (IoU >= ``iou_threshold``).
    """
    if method not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {method!r}")
    if len(dets) == 0:
        return dets
    import torch
    from torchvision.ops import batched_nms, box_iou

    boxes = torch.from_numpy(dets.boxes)
    labels = torch.from_numpy(dets.labels)
    keep = batched_nms(boxes, torch.from_numpy(dets.scores), labels, iou_threshold)
    out = dets.select(keep.numpy())
    if method == "wbf" and len(keep) < len(dets):
        overlap = box_iou(boxes[keep], boxes)  # (K, N) survivors x all
        overlap[labels[keep][:, None] != labels[None, :]] = -1.0
        best, cluster = overlap.max(dim=0)  # a survivor overlaps itself most (IoU 1)
        joins = (best >= iou_threshold).numpy()
        weights = np.zeros((len(keep), len(dets)))
        weights[cluster.numpy()[joins], np.flatnonzero(joins)] = dets.scores[joins]
        weights[np.arange(len(keep)), keep.numpy()] = out.scores  # each survivor in its own cluster
        out.boxes = (weights @ dets.boxes) / weights.sum(axis=1, keepdims=True)
    return out


class TiledDetector:
    """Wrap a :class:`~pseudolabel.detectors.base.Detector` with overlapping tiles (plus the whole frame).

    Parameters
    ----------
    detector : Detector
        The model run on each tile.
    tile_size : int, sequence of int, or None
        Tile side in frame pixels; several sides tile the frame once per side (a ball twice the size of
        another is seen at its own scale by tiles twice as large); ``None`` disables tiling (whole frame only).
    overlap : float
        Fraction of ``tile_size`` shared by neighbouring tiles; keep ``overlap * tile_size`` above the
        largest object that should survive edge dropping.
    full_frame : bool
        Also run the detector on the whole frame (finds objects larger than a tile).
    fusion_iou : float
        IoU above which detections of one class from different tiles are fused.
    fusion : str
        ``"nms"`` keeps the best box of each cluster; ``"wbf"`` its score-weighted mean (:func:`fuse`).
    drop_edge_boxes : bool
        Drop tile detections touching an inner tile edge (cut objects).
    batch_size : int
        Tiles per forward call of the wrapped detector.
    """

    def __init__(self, detector: Detector, *, tile_size: int | Sequence[int] | None = 320, overlap: float = 0.25,
                 full_frame: bool = True, fusion_iou: float = 0.5, drop_edge_boxes: bool = True,
                 batch_size: int = 16, fusion: str = "nms"):
        self.detector = detector
        self.name = detector.name
        self.tile_size = tile_size
        self.tile_sizes = tile_sizes(tile_size)
        self.overlap = overlap
        self.full_frame = full_frame
        self.fusion_iou = fusion_iou
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        self.drop_edge_boxes = drop_edge_boxes
        self.batch_size = batch_size

    def _views(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        views = [tile_grid(w, h, tile_size=size, overlap=self.overlap)
                 for size in self.tile_sizes if w > size or h > size]
        if self.full_frame or not views:
            views.append(np.array([[0, 0, w, h]], dtype=np.int64))
        return np.concatenate(views)

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        jobs, groups = self._plan(images)
        return self._fuse(images, jobs, [d for crops in groups for d in self.detector.predict(crops)])

    def predict_stream(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[list[Detections]]:
        """``predict`` of each batch, in order: the wrapped detector gets the same groups of views as
        ``predict`` gives it, through its own ``predict_stream`` when it has one (no wait between calls)."""
        plans: deque = deque()  # (images, jobs, number of view groups) of each batch, oldest first

        def view_groups():
            for images in batches:
                jobs, groups = self._plan(images)
                plans.append((images, jobs, len(groups)))
                yield from groups

        got: list[list[Detections]] = []  # results of the oldest planned batch's groups so far
        done = False
        # closing: stopped early, the wrapped stream finishes what it started now, not when collected
        with closing(stream_predictions(self.detector, view_groups())) as results:
            while not done:
                try:
                    got.append(next(results))
                except StopIteration:
                    done = True
                while plans and len(got) >= plans[0][2]:  # a batch without views (no images) needs none
                    images, jobs, n_groups = plans.popleft()
                    yield self._fuse(images, jobs, [d for part in got[:n_groups] for d in part])
                    del got[:n_groups]

    def _plan(self, images: Sequence[np.ndarray]) -> tuple[list, list[list[np.ndarray]]]:
        """Every (image index, view) of the batch, and their crops in groups of ``batch_size``."""
        jobs = [(i, view) for i, im in enumerate(images) for view in self._views(im)]
        groups = [[np.ascontiguousarray(images[i][v[1]:v[3], v[0]:v[2]]) for i, v in part]
                  for part in split(jobs, self.batch_size)]
        return jobs, groups

    def _fuse(self, images: Sequence[np.ndarray], jobs: list, dets: list[Detections]) -> list[Detections]:
        """Views' detections (one per job) -> one Detections per image, in frame pixels, fused."""
        if len(dets) != len(jobs):
            raise RuntimeError(f"{self.name}: the detector returned {len(dets)} Detections for {len(jobs)} views")
        per_image: list[list[Detections]] = [[] for _ in images]
        for (i, view), det in zip(jobs, dets):
            if len(det) == 0:
                continue
            det = det.select(slice(None))
            det.boxes = det.boxes + np.array([view[0], view[1], view[0], view[1]], dtype=np.float64)
            h, w = images[i].shape[:2]
            is_tile = not (view[0] == 0 and view[1] == 0 and view[2] == w and view[3] == h)
            if is_tile and self.drop_edge_boxes:
                det = det.select(~touches_inner_edge(det.boxes, view, width=w, height=h))
            per_image[i].append(det)
        return [fuse(Detections.concat(parts), iou_threshold=self.fusion_iou, method=self.fusion)
                for parts in per_image]
