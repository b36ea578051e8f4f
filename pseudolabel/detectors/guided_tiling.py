"""Guided tiling for video: look at the tiles where the ball can be, and scan the whole grid now and then.

Tiled inference spends nearly all its compute on tiles with no ball. Between two sampled frames of a
video the ball is where it was plus its motion, and where pixels changed. :class:`GuidedTiledDetector`
runs, on each frame of a video:

- every tile of the grid (a *full scan*) on the first frame, every ``scan_every``-th frame after it, and
  after a cut (scene change);
- otherwise, the whole-frame view, the tiles around the predicted position of each recent target
  detection (constant velocity, camera pan compensated; a guide the detector missed coasts on for a few
  frames), and the ``motion_tiles`` tiles whose pixels changed
  most since the previous frame (after compensating the camera's pan). With tiles of several sizes each
  size's grid is chosen from on its own (``motion_tiles`` per size).

Motion and cuts are measured on grey frames shrunk ``motion_scale`` times (a few thousand pixels), with the
camera's translation estimated by phase correlation (``cv2.phaseCorrelate``). A frame whose mean absolute
difference to the previous one, after that alignment, is above ``cut_threshold`` (grey levels) is a cut, and,
with ``cut_max_response``, only when the phase-correlation peak is also weak (a pan or zoom keeps one clear shift).

With ``look_back``, the frames between two full scans are held until the later scan (or the video's end) and
then searched again backwards in time: from the later frames' detections, moved back at their velocity, to the
tiles around where the ball was that the forward pass did not run. The teacher often first sees a ball after the
frames where it could have: forward guides only follow a ball once it has been seen, these find it before.

Frames must come in time order, one video after another: call :meth:`start_video` between videos (the label
stage does, see :func:`pseudolabel.label.iter_detections`); a frame of another size or a cut also starts over.
Where it loses balls: a ball that appears far from every recent detection, between two scans, in a tile
that did not change much (a long pass from a still player; a ball faster than ``max_speed``), unless, with
``look_back``, a later frame before the next scan, or that scan, sees it near its path; and the frames right
after a cut the detector does not flag.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from .base import Detections, Detector, split
from .tiling import TiledDetector


def phase_shift(prev: np.ndarray, cur: np.ndarray, *, hanning: bool = False) -> tuple[tuple[float, float], float]:
    """((dx, dy), response): translation of ``cur`` relative to ``prev`` (float32 grey images of one size), in
    their pixels, and the height of the phase-correlation peak (near 1: one clear shift; near 0: none).
    ``hanning``: taper the images' edges first (a small patch's borders otherwise pull the peak to no shift)."""
    import cv2

    window = cv2.createHanningWindow((prev.shape[1], prev.shape[0]), cv2.CV_32F) if hanning else None
    (dx, dy), response = cv2.phaseCorrelate(prev, cur, window)
    return (float(dx), float(dy)), float(response)


def aligned_difference(prev: np.ndarray, cur: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """|cur - prev moved by shift|, with the border the shift uncovers set to 0 (float32, cur's shape)."""
    dx, dy = int(round(shift[0])), int(round(shift[1]))
    h, w = cur.shape
    diff = np.zeros_like(cur)
    ys, xs = slice(max(0, dy), min(h, h + dy)), slice(max(0, dx), min(w, w + dx))
    ps, px = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    diff[ys, xs] = np.abs(cur[ys, xs] - prev[ps, px])
    return diff


def tiles_near_points(tiles: np.ndarray, points: np.ndarray, *, radius: float, margin: float = 0.0) -> np.ndarray:
    """(K,) bool: few tiles that between them hold, for each point, the disc of ``radius`` around it, every
    point of the disc at least ``margin`` inside one chosen tile (so a ball there does not touch that tile's
    edge). Greedy set cover over the disc sampled every ``max(margin, radius / 4, 1)`` px; parts of a disc no
    tile holds (beyond the frame) are left out.

    Parameters
    ----------
    tiles : (K, 4) xyxy tile rectangles.
    points : (P, 2) x, y in frame pixels.
    """
    t = np.asarray(tiles, dtype=np.float64).reshape(-1, 4)
    chosen = np.zeros(len(t), dtype=bool)
    step = max(float(margin), radius / 4, 1.0)
    ticks = np.arange(-radius, radius + 1e-9, step)
    offsets = np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)
    offsets = offsets[np.hypot(offsets[:, 0], offsets[:, 1]) <= radius + 1e-9]
    for p in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        q = p + offsets
        room = np.minimum.reduce([q[:, None, 0] - t[None, :, 0], q[:, None, 1] - t[None, :, 1],
                                  t[None, :, 2] - q[:, None, 0], t[None, :, 3] - q[:, None, 1]])
        inside = room >= margin                       # (Q, K): sample q lies deep enough in tile k
        covered = ~inside.any(axis=1) | (inside & chosen).any(axis=1)
        while not covered.all():
            k = int(np.argmax((inside & ~covered[:, None]).sum(axis=0)))
            chosen[k] = True
            covered |= inside[:, k]
    return chosen


@dataclass
class _Guides:
    """Where targets were and how they moved: centres (G, 2) and velocities (G, 2) in px per frame of the
    direction the frames come in, and frames since each was last detected (coasting)."""

    centres: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    velocity: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    age: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def predicted(self, shift_px) -> np.ndarray:
        """(G, 2): where the guides should be in the next frame, the camera having moved ``shift_px``."""
        return self.centres + self.velocity + np.asarray(shift_px)


@dataclass
class _Held:
    """A frame that the backward pass of ``look_back`` may still search: its image, the views run and their
    detections, the fused result, the camera's shift into it from the frame before, its ``views_run`` slot."""

    image: np.ndarray
    jobs: list
    view_dets: list
    det: Detections
    shift_px: tuple[float, float]
    slot: int


class GuidedTiledDetector(TiledDetector):
    """A :class:`~pseudolabel.detectors.tiling.TiledDetector` that, on video, runs only the tiles where a
    target can be between periodic full scans (see the module docstring).

    Parameters
    ----------
    detector, tile_size, overlap, full_frame, fusion_iou, drop_edge_boxes, batch_size, fusion
        As :class:`~pseudolabel.detectors.tiling.TiledDetector`.
    scan_every : int
        A full scan every this many frames of a video (1: every frame, plain tiling).
    target_class_ids : sequence of int or None
        Detections of these classes (None: all) at or above ``track_score`` guide the next frames.
    track_score : float
        Lowest score of a guiding detection (the label floor: a track may confirm low boxes).
    max_guides : int
        At most this many guiding detections per frame (highest scores first).
    max_speed : float
        Pixels per frame a guided ball may stray from its constant-velocity prediction: the farthest a
        detection may be from a guide's prediction to continue it, and the search radius around it unless
        ``search_radius`` is given.
    search_radius : float or None
        Radius, in pixels, of the disc around a guide's predicted centre that the tiles run for it hold
        between them (None: ``max_speed``); as few tiles of each size as a greedy cover needs
        (:func:`tiles_near_points`).
    tile_margin : float
        Pixels every point of that disc lies inside one of those tiles, so that a ball there does not touch
        the tile's edge (``drop_edge_boxes`` drops such boxes).
    new_guide_score : float or None
        Lowest score of a detection that starts a new guide; one that continues a guide needs only
        ``track_score`` (None: ``track_score``). Hysteresis, as the label stage's: low-score clutter does
        not pull tiles, a followed ball keeps them.
    max_coast : int
        A guide no detection continued is still searched, at its velocity, for this many frames (the
        teacher misses a blurred ball in some frames).
    motion_tiles : int
        Tiles added for motion per guided frame, those whose pixels changed most.
    motion_threshold : float
        Grey levels of change for a shrunk pixel to count as moving.
    motion_scale : int
        Frames are shrunk this many times for motion and cuts.
    cut_threshold : float
        Mean absolute grey difference after alignment above which a frame is a cut (full scan).
    cut_max_response : float or None
        ... and only when the phase-correlation peak is below this: a pan, a zoom or motion blur still
        shows one clear shift, a cut shows none (None: the difference alone decides).
    look_back : bool
        Also search the frames between two full scans backwards from the later one (module docstring). Their
        results then wait for it: :meth:`predict_stream` holds up to ``scan_every`` frames;
        :meth:`predict` finishes the frames it is given before it returns (the look back stays within them).
    """

    def __init__(self, detector: Detector, *, tile_size: int | None = 320, overlap: float = 0.25,
                 full_frame: bool = True, fusion_iou: float = 0.5, drop_edge_boxes: bool = True,
                 batch_size: int = 16, scan_every: int = 8, target_class_ids: Sequence[int] | None = None,
                 track_score: float = 0.2, max_guides: int = 8, max_speed: float = 60.0, max_coast: int = 2,
                 search_radius: float | None = None, tile_margin: float = 16.0,
                 new_guide_score: float | None = None, motion_tiles: int = 4,
                 motion_threshold: float = 25.0, motion_scale: int = 8, cut_threshold: float = 30.0,
                 cut_max_response: float | None = None, fusion: str = "nms", look_back: bool = False) -> None:
        super().__init__(detector, tile_size=tile_size, overlap=overlap, full_frame=full_frame,
                         fusion_iou=fusion_iou, drop_edge_boxes=drop_edge_boxes, batch_size=batch_size,
                         fusion=fusion)
        if scan_every < 1:
            raise ValueError(f"scan_every must be >= 1, got {scan_every}")
        self.scan_every = int(scan_every)
        self.target_class_ids = None if target_class_ids is None else [int(c) for c in target_class_ids]
        self.track_score = float(track_score)
        self.max_guides = int(max_guides)
        self.max_speed = float(max_speed)
        self.max_coast = int(max_coast)
        self.search_radius = self.max_speed if search_radius is None else float(search_radius)
        self.tile_margin = float(tile_margin)
        self.new_guide_score = self.track_score if new_guide_score is None else float(new_guide_score)
        self.motion_tiles = int(motion_tiles)
        self.motion_threshold = float(motion_threshold)
        self.motion_scale = int(motion_scale)
        self.cut_threshold = float(cut_threshold)
        self.cut_max_response = None if cut_max_response is None else float(cut_max_response)
        self.look_back = bool(look_back)
        self.views_run: list[int] = []  # views per frame, in order (for benchmarks)
        self._held: list[_Held] = []     # frames since the last full scan, for the look back
        self._done: deque = deque()      # finished results, oldest first, not yet returned
        self.start_video()

    def start_video(self, video_id: object = None) -> None:
        """Finish the frames held for the look back, then forget the previous frames: the next frame is a full
        scan."""
        self._look_back()
        self._prev_small: np.ndarray | None = None
        self._since_scan = 0
        self._forward = _Guides()  # the last frame's guiding detections

    # ---------------------------------------------------------------- per-frame planning
    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        s = self.motion_scale
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        return cv2.resize(grey, (max(1, w // s), max(1, h // s)), interpolation=cv2.INTER_AREA).astype(np.float32)

    def _n_tiles(self, views: np.ndarray) -> int:
        """How many of ``views`` (:meth:`_views`, the whole-frame view last when there is one) are tiles."""
        return len(views) - (1 if self.full_frame or len(views) == 1 else 0)

    def _plan_frame(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float], str]:
        """(views to run, camera shift in frame px, kind) for the next frame, and update motion state. Kind:
        ``"start"`` (a full scan with no link to the frame before: first frame, new size, cut), ``"scan"``
        (a periodic full scan) or ``"guided"``."""
        views = self._views(image)
        small = self._small_grey(image)
        prev, self._prev_small = self._prev_small, small
        n_tiles = self._n_tiles(views)
        if prev is None or prev.shape != small.shape or n_tiles <= 1:
            self._since_scan = 0
            return views, (0.0, 0.0), "start"
        shift, response = phase_shift(prev, small)
        diff = aligned_difference(prev, small, shift)
        shift_px = (shift[0] * self.motion_scale, shift[1] * self.motion_scale)
        self._since_scan += 1
        cut = float(diff.mean()) > self.cut_threshold and (self.cut_max_response is None
                                                            or response < self.cut_max_response)
        if cut or self._since_scan >= self.scan_every:
            self._since_scan = 0
            return views, shift_px, "start" if cut else "scan"
        tiles = views[:n_tiles]
        chosen = self._near_guides(tiles, self._forward.predicted(shift_px))
        moving = (diff > self.motion_threshold).astype(np.float32) if self.motion_tiles > 0 else None
        side = np.maximum(tiles[:, 2] - tiles[:, 0], tiles[:, 3] - tiles[:, 1])
        for size in np.unique(side):  # with tiles of several sizes, each size's grid is chosen from on its own
            grid = np.flatnonzero(side == size)
            if moving is not None:
                s = self.motion_scale
                energy = np.array([moving[t[1] // s:(t[3] + s - 1) // s, t[0] // s:(t[2] + s - 1) // s].sum()
                                   for t in tiles[grid]])
                order = np.argsort(-energy, kind="stable")[:self.motion_tiles]
                chosen[grid[order[energy[order] > 0]]] = True
        return np.concatenate([tiles[chosen], views[n_tiles:]]), shift_px, "guided"

    def _near_guides(self, tiles: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """(K,) bool: the tiles that hold the search disc around each predicted centre, each tile size's grid
        on its own (:func:`tiles_near_points`)."""
        chosen = np.zeros(len(tiles), dtype=bool)
        if not len(predicted):
            return chosen
        side = np.maximum(tiles[:, 2] - tiles[:, 0], tiles[:, 3] - tiles[:, 1])
        for size in np.unique(side):
            grid = np.flatnonzero(side == size)
            chosen[grid] = tiles_near_points(tiles[grid], predicted, radius=self.search_radius,
                                             margin=self.tile_margin)
        return chosen

    def _update_guides(self, guides: _Guides, det: Detections, shift_px: tuple[float, float]) -> None:
        """This frame's guiding detections become the guides (with a velocity when they continue one);
        a guide no detection continued coasts on at its velocity for up to ``max_coast`` frames."""
        mask = det.scores >= self.track_score
        if self.target_class_ids is not None:
            mask &= np.isin(det.labels, self.target_class_ids)
        g = det.select(mask)
        centres = (g.boxes[:, :2] + g.boxes[:, 2:]) / 2 if len(g) else np.zeros((0, 2))
        predicted = guides.predicted(shift_px)  # where the old guides should be now
        near = np.zeros(len(centres), dtype=bool)
        nearest = np.zeros(len(centres), dtype=np.int64)
        if len(centres) and len(predicted):
            dist = np.linalg.norm(centres[:, None, :] - predicted[None, :, :], axis=2)
            nearest = dist.argmin(axis=1)
            near = dist[np.arange(len(centres)), nearest] <= self.max_speed
        # a continuing detection guides at track_score, a new one only from new_guide_score
        keep = near | (g.scores >= self.new_guide_score)
        keep[np.flatnonzero(keep)[np.argsort(-g.scores[keep], kind="stable")[self.max_guides:]]] = False
        centres, near, nearest = centres[keep], near[keep], nearest[keep]
        velocity = np.zeros_like(centres)
        continued = np.zeros(len(predicted), dtype=bool)
        if near.any():
            # a coasting guide's position already holds its motion over the frames it was missed
            velocity[near] = centres[near] - (guides.centres[nearest[near]] + np.asarray(shift_px))
            continued[nearest[near]] = True
        coast = ~continued & (guides.age < self.max_coast)
        guides.centres = np.concatenate([centres, predicted[coast]])
        guides.velocity = np.concatenate([velocity, guides.velocity[coast]])
        guides.age = np.concatenate([np.zeros(len(centres), dtype=np.int64), guides.age[coast] + 1])

    # ---------------------------------------------------------------- look back
    def _run(self, image: np.ndarray, views) -> tuple[list, list[Detections]]:
        jobs = [(0, v) for v in views]
        crops = [np.ascontiguousarray(image[v[1]:v[3], v[0]:v[2]]) for v in views]
        return jobs, [d for part in split(crops, self.batch_size) for d in self.detector.predict(part)]

    def _look_back(self, start: Detections | None = None, start_shift=(0.0, 0.0)) -> None:
        """Search the held frames backwards in time, then move them to the finished results. ``start``: the
        detections of the full scan that follows them (None: the last held frame starts the backward pass).
        Each frame runs the tiles around where the guides put the ball that its forward pass did not run."""
        held, self._held = self._held, []
        if start is None and held:
            start, start_shift = held[-1].det, held[-1].shift_px
            back = held[:-1]
        else:
            back = held
        guides = _Guides()
        if start is not None:
            self._update_guides(guides, start, (0.0, 0.0))
        shift = tuple(-v for v in start_shift)  # the camera's motion from the later frame to the earlier one
        for h in reversed(back):
            views = self._views(h.image)
            tiles = views[:self._n_tiles(views)]
            ran = {tuple(int(x) for x in v) for _, v in h.jobs}
            new = [t for t, near in zip(tiles, self._near_guides(tiles, guides.predicted(shift)))
                   if near and tuple(int(x) for x in t) not in ran]
            if new:
                jobs, dets = self._run(h.image, new)
                h.jobs, h.view_dets = h.jobs + jobs, h.view_dets + dets
                h.det = self._fuse([h.image], h.jobs, h.view_dets)[0]
                self.views_run[h.slot] += len(new)
            self._update_guides(guides, h.det, shift)
            shift = tuple(-v for v in h.shift_px)
        self._done.extend(h.det for h in held)

    def _label(self, image: np.ndarray) -> None:
        """The forward pass on one frame; its result goes to the finished ones, or is held for the look back."""
        views, shift_px, kind = self._plan_frame(image)
        jobs, view_dets = self._run(image, views)
        det = self._fuse([image], jobs, view_dets)[0]
        self.views_run.append(len(views))
        self._update_guides(self._forward, det, shift_px)
        if self.look_back and kind == "guided":
            self._held.append(_Held(image, jobs, view_dets, det, shift_px, len(self.views_run) - 1))
            return
        if self.look_back and kind == "scan":
            self._look_back(det, shift_px)  # a periodic scan sees all: the frames before it look back from it
        elif self.look_back:
            self._look_back()  # a cut or a new size: the frames before it belong to another shot
        self._done.append(det)

    # ---------------------------------------------------------------- Detector API
    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Frames in time order, of the current video; with ``look_back`` the look back stays within them."""
        for image in images:
            self._label(image)
        self._look_back()
        return [self._done.popleft() for _ in images]

    def predict_stream(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[list[Detections]]:
        """``predict`` of each batch in order (a frame's views depend on the frame before, so no look-ahead);
        with ``look_back`` a batch's results come once its frames' next full scan (or video end) has come."""
        sizes: deque = deque()

        def finished():
            while sizes and len(self._done) >= sizes[0]:
                yield [self._done.popleft() for _ in range(sizes.popleft())]

        try:
            for images in batches:  # fetching the next video's first batch calls start_video: held frames finish
                yield from finished()
                sizes.append(len(images))
                for image in images:
                    self._label(image)
                yield from finished()
            self._look_back()
            yield from finished()
        finally:  # stopped early: what was not handed out is dropped, not left for the next call
            self._held.clear()
            self._done.clear()
