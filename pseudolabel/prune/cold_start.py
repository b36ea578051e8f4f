"""Seeds for a video the loop has nothing in yet: the one track that moves across the scene.

A student round seeds its tracks with boxes that agree with the previous round's kept boxes. In a video where the
teacher never reached its threshold, the previous round kept nothing, so no track is ever seeded there, however
well the student has learnt the ball from the other videos. In such a video the student's confident boxes still
hold a useful signal: a ball in play moves across the scene, while the student's false positives there are
mostly things the camera carries (spectators, lamps in the stands, advertising), or players, several at once.

So, in a video with no kept box in round k-1, the student's boxes at or above the round's threshold are tracked
on their own (:func:`pseudolabel.prune.temporal.hysteresis_tracks`); a track seeds when

- it holds at least ``min_length`` of them (sampled frames);
- it moves in the scene (:func:`track_scene_positions`): its positions, with the motion of the background around
  each box removed, lie a median of more than ``min_motion`` box diagonals from their median;
- no other moving track longer than half its length shares a frame with it: one ball, so two candidates at
  once are at least one mistake, and the rule does not guess which.

The background's motion is measured around each box (phase correlation, edges tapered by a Hanning window, of a
window of ``window`` box diagonals either side, with both boxes faded out) rather than once per frame: a broadcast camera pans, tilts and zooms,
and one shift per frame leaves the far stands moving under a zoom. Where the window has no texture to lock on
(sand, a clear sky: a weak correlation peak) the whole frame's shift stands in (:func:`camera_path`).

Stills have no time axis and never seed here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pseudolabel.records import Dataset

RIVAL_FRACTION = 0.5  # a co-occurring moving track longer than this share of a candidate's length vetoes it
WEAK_PEAK = 0.2       # a phase-correlation peak below this is no clear shift (as guided tiling's cut test)
MIN_WINDOW = 24.0     # px: the smallest half-width of the background window


def camera_path(images: Sequence[np.ndarray], *, downscale: int = 2) -> np.ndarray:
    """(N, 2) float: the whole frame's cumulative shift at each frame, in frame pixels (0 at the first frame).

    Parameters
    ----------
    images : N float32 grey images (H, W) of one video, in time order.
    downscale : the phase correlation runs on images shrunk by this factor (area), for speed.
    """
    import cv2

    from pseudolabel.detectors.guided_tiling import phase_shift

    out = np.zeros((len(images), 2))
    prev = None
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        small = cv2.resize(np.asarray(im, dtype=np.float32), (max(1, w // downscale), max(1, h // downscale)),
                           interpolation=cv2.INTER_AREA)
        if prev is not None:
            (dx, dy), _ = phase_shift(prev, small)
            out[i] = out[i - 1] + np.array([dx, dy]) * downscale
        prev = small
    return out


def read_grey_frames(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """The frames stored at ``paths`` as float32 grey images."""
    import cv2

    out = []
    for p in paths:
        im = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if im is None:
            raise FileNotFoundError(f"cannot read frame {p}")
        out.append(im.astype(np.float32))
    return out


def background_shift(prev: np.ndarray, cur: np.ndarray, boxes, *, window: float) -> tuple[np.ndarray, float]:
    """((dx, dy), peak): how the background around ``boxes[0]`` moved from ``prev`` to ``cur`` (grey images).

    The window is ``window`` diagonals of ``boxes[0]`` either side of its centre (at least :data:`MIN_WINDOW` px);
    every box of ``boxes`` ((K, 4) xyxy: the object in both frames) is faded to the window's mean first (out to
    one box diagonal, feathered over another), so the object's own motion does not pull the peak.
    """
    from pseudolabel.detectors.guided_tiling import phase_shift

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = (boxes[0, :2] + boxes[0, 2:]) / 2
    half = max(MIN_WINDOW, window * float(np.hypot(*(boxes[0, 2:] - boxes[0, :2]))))
    h, w = prev.shape[:2]
    x0, x1, y0, y1 = (int(max(0, cx - half)), int(min(w, cx + half)), int(max(0, cy - half)), int(min(h, cy + half)))
    a, b = prev[y0:y1, x0:x1].astype(np.float32), cur[y0:y1, x0:x1].astype(np.float32)
    if min(a.shape) < 2:
        return np.zeros(2), 0.0
    yy, xx = np.mgrid[y0:y1, x0:x1]
    keep = np.ones(a.shape, dtype=np.float32)
    for bx in boxes:  # a hole of one box diagonal, its edge feathered over another: a hard edge peaks on its own
        mx, my = (bx[:2] + bx[2:]) / 2
        diag = max(1.0, float(np.hypot(*(bx[2:] - bx[:2]))))
        beyond = np.clip(np.hypot(xx - mx, yy - my) - diag, 0.0, None)
        keep *= (1.0 - np.exp(-beyond ** 2 / (2.0 * diag ** 2))).astype(np.float32)
    a = a.mean() + (a - a.mean()) * keep
    b = b.mean() + (b - b.mean()) * keep
    shift, peak = phase_shift(a, b, hanning=True)
    return np.asarray(shift, dtype=np.float64), peak


def background_residual(prev: np.ndarray, cur: np.ndarray, box, *, window: float,
                        frame_shift: Sequence[float] | None = None) -> float:
    """How much the pixels of ``box`` (xyxy) in ``cur`` differ from the same place of the scene in ``prev`` (the
    background's motion around the box undone, :func:`background_shift`), as a share of the box's contrast with its
    surroundings in ``cur``: near 0 for what the camera carries (a lamp, a logo, a line), near 1 or above for an
    object that moved away from that spot. The best of the nine one-pixel offsets of the aligned patch is taken
    (the shift is rounded). Where the window's correlation peak is weak, ``frame_shift`` (the whole frame's
    (dx, dy) from ``prev`` to ``cur``, as :func:`camera_path` steps) stands in when given. NaN when either patch
    leaves its frame.
    """
    xy = np.asarray(box, dtype=np.float64).reshape(4)
    (dx, dy), peak = background_shift(prev, cur, xy[None], window=window)
    if peak < WEAK_PEAK and frame_shift is not None:
        dx, dy = frame_shift
    x0, y0 = int(np.floor(xy[0])), int(np.floor(xy[1]))
    x1, y1 = max(x0 + 1, int(np.ceil(xy[2]))), max(y0 + 1, int(np.ceil(xy[3])))
    dx, dy = int(round(dx)), int(round(dy))
    h, w = cur.shape[:2]
    if min(x0, y0, x0 - dx, y0 - dy) < 3 or x1 + 3 > w or y1 + 3 > h or x1 - dx + 1 > w or y1 - dy + 1 > h:
        return float("nan")
    patch = cur[y0:y1, x0:x1].astype(np.float32)
    diff = min(float(np.abs(patch - prev[y0 - dy + a:y1 - dy + a, x0 - dx + c:x1 - dx + c]).mean())
               for a in (-1, 0, 1) for c in (-1, 0, 1))
    ring = cur[y0 - 2:y1 + 2, x0 - 2:x1 + 2].astype(np.float32)
    around = np.median(np.concatenate([ring[0], ring[-1], ring[:, 0], ring[:, -1]]))
    return diff / (float(np.abs(patch - around).mean()) + 1.0)


def track_scene_positions(track_ids, steps, boxes, images: Sequence[np.ndarray], *, window: float,
                          camera: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) float: each box's position in the scene along its track: its centre at the track's first box, then
    each step's displacement less the background's (:func:`background_shift`; the whole frame's, from ``camera``,
    where the window's peak is weak).

    Parameters
    ----------
    track_ids, steps : array_like of int, shape (N,)
        Each box's track id and sampled-frame step (one box per track and step).
    boxes : array_like, shape (N, 4)
        ``xyxy`` float pixels.
    images : the video's sampled frames as grey images, indexed by step.
    window : float
        Half-width of the background window, in box diagonals.
    camera : array_like, shape (S, 2), optional
        :func:`camera_path` of ``images`` (computed when None).
    """
    track_ids, steps = np.asarray(track_ids), np.asarray(steps, dtype=np.int64)
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centres = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    if camera is None:
        camera = camera_path(images)
    out = np.zeros((len(xyxy), 2))
    for t in np.unique(track_ids):
        idx = np.where(track_ids == t)[0]
        idx = idx[np.argsort(steps[idx], kind="stable")]
        out[idx[0]] = centres[idx[0]]
        for i, j in zip(idx[:-1], idx[1:]):
            shift, peak = background_shift(images[steps[i]], images[steps[j]], xyxy[[i, j]], window=window)
            if peak < WEAK_PEAK:
                shift = camera[steps[j]] - camera[steps[i]]
            out[j] = out[i] + (centres[j] - centres[i]) - shift
    return out


def moving_track_seed_mask(track_ids, steps, boxes, scene, *, min_length: int, min_motion: float) -> np.ndarray:
    """(N,) bool: the boxes of the tracks that seed a video with no kept box (module docstring).

    Parameters
    ----------
    track_ids, steps : array_like of int, shape (N,)
        Each box's track id and sampled-frame step.
    boxes : array_like, shape (N, 4)
        ``xyxy`` float pixels.
    scene : array_like, shape (N, 2)
        Each box's position in the scene (:func:`track_scene_positions`).
    min_length : int
        Sampled frames a track must hold.
    min_motion : float
        Median distance, in box diagonals, of the track's scene positions from their median that it must exceed.
    """
    track_ids, steps = np.asarray(track_ids), np.asarray(steps, dtype=np.int64)
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scene = np.asarray(scene, dtype=np.float64).reshape(-1, 2)
    diag = np.hypot(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    moving: dict[int, set[int]] = {}
    for t in np.unique(track_ids):
        m = track_ids == t
        spread = np.median(np.linalg.norm(scene[m] - np.median(scene[m], axis=0), axis=1))
        if spread > min_motion * np.median(diag[m]):
            moving[int(t)] = set(steps[m].tolist())
    out = np.zeros(len(track_ids), dtype=bool)
    for t, frames in moving.items():
        if len(frames) < min_length:
            continue
        rivals = [len(other) for u, other in moving.items() if u != t and frames & other]
        if not rivals or max(rivals) <= RIVAL_FRACTION * len(frames):
            out[track_ids == t] = True
    return out


def moving_track_seed_ids(ds: Dataset, videos: set[str], *, hysteresis, high: float, min_length: int,
                          min_motion: float, window: float, images: Callable[[list], list],
                          min_residual: float | None = None) -> set[int]:
    """Ids of the kept boxes of ``ds`` (a student round's labels) that seed their track in ``videos`` (the videos
    round k-1 kept nothing of): :func:`moving_track_seed_mask` over each video's kept boxes scoring ``>= high``,
    tracked with the hysteresis's tracker (``hysteresis``: a :class:`~pseudolabel.prune.temporal.HysteresisConfig`).
    ``images(frames)`` gives a video's sampled frames (time order) as grey images, read only for a video with
    enough such boxes. ``min_residual``: only boxes whose :func:`background_residual` against the sampled frame
    before (the one after, for the first) is above it are tracked: a row of stand lamps the camera pans past
    otherwise chains into a track that hops from lamp to lamp and seems to move in the scene (None: all)."""
    from pseudolabel.prune.temporal import hysteresis_tracks

    frames_of: dict[str, list] = {}
    for f in ds.frames:
        if f.video_id in videos:
            frames_of.setdefault(f.video_id, []).append(f)
    confident = [b for b in ds.kept_boxes() if b.score >= high]
    out: set[int] = set()
    for vframes in frames_of.values():
        if len(vframes) < 2:
            continue
        vframes.sort(key=lambda f: (f.frame_index, f.id))
        step_of = {f.id: s for s, f in enumerate(vframes)}
        boxes = [b for b in confident if b.image_id in step_of]
        if len(boxes) < min_length:
            continue
        steps = np.array([step_of[b.image_id] for b in boxes], dtype=np.int64)
        xyxy = ds.xyxy(boxes)
        grey = images(vframes)
        camera = camera_path(grey)
        if min_residual is not None:
            before = np.where(steps > 0, steps - 1, steps + 1)
            residual = np.array([background_residual(grey[p], grey[s], xy, window=window,
                                                     frame_shift=camera[s] - camera[p])
                                 for p, s, xy in zip(before, steps, xyxy)])
            moved = ~(residual <= min_residual)  # NaN (at the frame's edge): no evidence against it
            boxes, steps, xyxy = [b for b, m in zip(boxes, moved) if m], steps[moved], xyxy[moved]
            if len(boxes) < min_length:
                continue
        tids = hysteresis_tracks(hysteresis, steps, xyxy, width=vframes[0].width, height=vframes[0].height)
        scene = track_scene_positions(tids, steps, xyxy, grey, window=window, camera=camera)
        mask = moving_track_seed_mask(tids, steps, xyxy, scene, min_length=min_length, min_motion=min_motion)
        out.update(b.id for b, m in zip(boxes, mask) if m)
    return out
