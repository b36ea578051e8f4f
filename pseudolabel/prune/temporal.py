"""Temporal consistency of pseudo-labels: track boxes through a video, drop isolated ones, fill gaps.

A real ball seen in one frame is usually seen in the next ones too, close to where its motion
predicts; a false positive (a head, a sign, a lamp) rarely moves like that. So the kept boxes of each
video are linked into tracks frame by frame, boxes of too-short tracks are pruned (``isolated``) and
short gaps inside a track are filled by linear interpolation (``source="track_interp"``).

Why this tracker: balls are small and fast (a 10 px ball moves 20+ px between frames), so IoU with
the previous box is usually 0 and IoU-only trackers (SORT-style matching on IoU) break every track.
Each track carries a constant-velocity Kalman filter on its centre; a detection may join a track
only when it lies within ``gate`` box diagonals of the *predicted* centre (times the number of
sampled frames since the track was last seen) and has a similar size; among those pairs the
assignment is optimal (:func:`scipy.optimize.linear_sum_assignment`) on a cost mixing
``1 - IoU(predicted box, detection)`` and the predicted-centre distance. ByteTrack
(``supervision``) is not installed and is tuned for people (IoU association, score-split
matching); this is ~100 lines of NumPy/SciPy with no new dependency.

Time is measured in *sampled steps*: the rank of a frame among its video's sampled frames, so
``max_gap`` and ``fill_gaps`` count sampled frames whatever the sampling stride. Still images (a
video with one sampled frame) have no time axis and are left untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pseudolabel.boxes import as_boxes
from pseudolabel.records import Box, Dataset

_INFEASIBLE = 1e6


@dataclass
class TemporalConfig:
    """Options of :func:`apply_temporal`."""

    enabled: bool = True
    max_gap: int = 3               # a track survives this many sampled frames without a detection
    min_track_length: int = 2      # k: boxes of tracks seen in fewer distinct frames are pruned (isolated)
    fill_gaps: int = 2             # g: interpolate gaps of up to this many sampled frames (0: off)
    interp_score_factor: float = 0.9
    gate: float = 3.0              # max predicted-centre distance, in box diagonals per sampled step
    max_size_ratio: float = 2.5    # max ratio of box diagonals between a track and a detection
    iou_weight: float = 0.5        # cost = w * (1 - IoU) + (1 - w) * distance / gate radius
    interp_skip_iou: float = 0.3   # no interpolated box where a kept box already overlaps this much


# ------------------------------------------------------------------------------------- tracking
def _centre_size(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = (b[:, :2] + b[:, 2:]) / 2.0
    wh = np.clip(b[:, 2:] - b[:, :2], 1e-6, None)
    return c, wh, np.hypot(wh[:, 0], wh[:, 1])


class _Track:
    """Constant-velocity Kalman filter on the box centre; size is an exponential average."""

    def __init__(self, tid: int, centre: np.ndarray, wh: np.ndarray, step: int, *, v0: float, meas: float) -> None:
        self.id, self.step = tid, step
        self.x = np.array([centre[0], centre[1], 0.0, 0.0])
        diag = float(np.hypot(*wh))
        # Unknown velocity: a large prior (v0 diagonals per step), so the 2nd detection sets it.
        self.P = np.diag([(meas * diag) ** 2] * 2 + [(v0 * diag) ** 2] * 2)
        self.wh = wh.astype(np.float64)
        self.meas = meas

    @property
    def diag(self) -> float:
        return float(np.hypot(*self.wh))

    def predict_centre(self, step: int) -> np.ndarray:
        return self.x[:2] + self.x[2:] * (step - self.step)

    def update(self, centre: np.ndarray, wh: np.ndarray, step: int, *, accel: float) -> None:
        dt = float(step - self.step)
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt
        q = (accel * self.diag) ** 2  # white-acceleration noise, in diagonals per step^2
        G = np.array([[dt * dt / 2, 0], [0, dt * dt / 2], [dt, 0], [0, dt]])
        x, P = F @ self.x, F @ self.P @ F.T + q * (G @ G.T)
        H = np.eye(2, 4)
        S = H @ P @ H.T + np.eye(2) * (self.meas * self.diag) ** 2
        K = P @ H.T @ np.linalg.inv(S)
        self.x = x + K @ (centre - H @ x)
        self.P = (np.eye(4) - K @ H) @ P
        self.wh = 0.5 * self.wh + 0.5 * wh
        self.step = step


def _pair_cost(track: _Track, step: int, c: np.ndarray, wh: np.ndarray, diag: np.ndarray, *,
               gate: float | None, max_size_ratio: float, iou_weight: float,
               max_displacement: float | None = None) -> np.ndarray:
    """(M,) association cost of one track with the M detections of a frame (``_INFEASIBLE`` if gated out)."""
    p = track.predict_centre(step)
    radius = np.inf if gate is None else gate * track.diag * (step - track.step)
    if max_displacement is not None:
        radius = min(radius, float(max_displacement) * (step - track.step))
    dist = np.hypot(c[:, 0] - p[0], c[:, 1] - p[1])
    # IoU of the predicted box (track size at the predicted centre) with each detection.
    half = track.wh / 2
    inter = (np.clip(np.minimum(p[0] + half[0], c[:, 0] + wh[:, 0] / 2)
                     - np.maximum(p[0] - half[0], c[:, 0] - wh[:, 0] / 2), 0, None)
             * np.clip(np.minimum(p[1] + half[1], c[:, 1] + wh[:, 1] / 2)
                       - np.maximum(p[1] - half[1], c[:, 1] - wh[:, 1] / 2), 0, None))
    iou = inter / (track.wh.prod() + wh.prod(axis=1) - inter)
    ratio = np.maximum(diag / track.diag, track.diag / diag)
    cost = iou_weight * (1.0 - iou) + (1.0 - iou_weight) * dist / radius
    return np.where((dist <= radius) & (ratio <= max_size_ratio), cost, _INFEASIBLE)


def track_boxes(steps, boxes, *, max_gap: int = 3, gate: float | None = 3.0, max_size_ratio: float = 2.5,
                iou_weight: float = 0.5, accel: float = 0.5, meas: float = 0.1, v0: float = 3.0,
                max_displacement: float | None = None) -> np.ndarray:
    """Link the boxes of one video into tracks.

    Parameters
    ----------
    steps : array_like of int, shape (N,)
        Time of each box's frame in sampled steps (rank of the frame among the video's sampled frames).
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    max_gap : int
        A track can be continued after at most this many steps without a detection.
    gate : float or None
        A detection can join a track only within ``gate * track diagonal * steps elapsed`` pixels
        of the track's predicted centre (None: no gate in diagonals; ``max_displacement`` must be set).
    max_size_ratio : float
        ... and only when its diagonal is within this factor of the track's.
    iou_weight : float
        Assignment cost ``iou_weight * (1 - IoU) + (1 - iou_weight) * distance / gate radius``,
        IoU between the predicted box and the detection.
    accel, meas, v0 : float
        Kalman noise, in box diagonals: acceleration per step^2, measurement error, prior velocity.
    max_displacement : float or None
        If set, the gate radius is also capped at this many pixels per step elapsed.

    Returns
    -------
    numpy.ndarray of int, shape (N,)
        Track id of each box, ``0..T-1`` in order of first appearance. Two boxes of one step never
        share a track.
    """
    from scipy.optimize import linear_sum_assignment

    b = as_boxes(boxes)
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)
    if len(steps) != len(b):
        raise ValueError(f"steps has {len(steps)} entries but boxes {len(b)}")
    if gate is None and max_displacement is None:
        raise ValueError("track_boxes needs gate or max_displacement")
    ids = np.full(len(b), -1, dtype=np.int64)
    c_all, wh_all, diag_all = _centre_size(b)
    tracks: list[_Track] = []
    for step in np.unique(steps):
        det = np.flatnonzero(steps == step)
        c, wh, diag = c_all[det], wh_all[det], diag_all[det]
        live = [t for t in tracks if step - t.step <= max_gap + 1]
        matched: dict[int, _Track] = {}
        if live:
            cost = np.stack([_pair_cost(t, int(step), c, wh, diag, gate=gate, max_size_ratio=max_size_ratio,
                                        iou_weight=iou_weight, max_displacement=max_displacement) for t in live])
            for r, j in zip(*linear_sum_assignment(cost)):
                if cost[r, j] < _INFEASIBLE:
                    matched[int(j)] = live[r]
        for j, i in enumerate(det):
            t = matched.get(j)
            if t is None:
                t = _Track(len(tracks), c[j], wh[j], int(step), v0=v0, meas=meas)
                tracks.append(t)
            else:
                t.update(c[j], wh[j], int(step), accel=accel)
            ids[i] = t.id
    return ids


def short_track_mask(track_ids, steps, *, min_length: int) -> np.ndarray:
    """(N,) bool: ``True`` for boxes whose track covers fewer than ``min_length`` distinct steps."""
    track_ids = np.asarray(track_ids)
    steps = np.asarray(steps)
    mask = np.zeros(len(track_ids), dtype=bool)
    for t in np.unique(track_ids):
        idx = track_ids == t
        mask[idx] = len(np.unique(steps[idx])) < min_length
    return mask


def interpolate_gaps(track_ids, steps, boxes, scores, *, max_fill: int,
                     score_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes filling the gaps of each track by linear interpolation.

    Parameters
    ----------
    track_ids, steps : array_like of int, shape (N,)
        Track and sampled step of each box (one box per track and step).
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    scores : array_like, shape (N,)
    max_fill : int
        Fill gaps of 1..``max_fill`` missing steps between consecutive boxes of a track.
    score_factor : float
        A filled box scores ``score_factor * mean(score of its two neighbours)``.

    Returns
    -------
    track, step : numpy.ndarray of int, shape (M,)
    boxes : numpy.ndarray, shape (M, 4)
        ``xyxy``, interpolated coordinate by coordinate between the two neighbours.
    scores : numpy.ndarray, shape (M,)
    gap : numpy.ndarray of int, shape (M,)
        Length (missing steps) of the gap each box fills.
    """
    track_ids = np.asarray(track_ids)
    steps = np.asarray(steps, dtype=np.int64)
    b = as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64)
    out: list[tuple] = []
    for t in np.unique(track_ids):
        idx = np.flatnonzero(track_ids == t)
        idx = idx[np.argsort(steps[idx], kind="stable")]
        for i, j in zip(idx[:-1], idx[1:]):
            gap = int(steps[j] - steps[i] - 1)
            if not 1 <= gap <= max_fill:
                continue
            score = score_factor * (scores[i] + scores[j]) / 2
            for s in range(int(steps[i]) + 1, int(steps[j])):
                a = (s - steps[i]) / (steps[j] - steps[i])
                out.append((t, s, (1 - a) * b[i] + a * b[j], score, gap))
    if not out:
        return (np.zeros(0, track_ids.dtype if track_ids.size else np.int64), np.zeros(0, np.int64),
                np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    t, s, bb, sc, g = zip(*out)
    return np.array(t), np.array(s, np.int64), np.array(bb, np.float64), np.array(sc, np.float64), np.array(g)


# ------------------------------------------------------------------------------------ dataset shell
def _frames_and_kept_by_video(ds: Dataset, frames: dict) -> tuple[dict[str, list], dict[str, list[Box]]]:
    """Frames of each video, and kept boxes of each video (``frames``: frame id -> Frame)."""
    video_frames: dict[str, list] = {}
    for f in ds.frames:
        video_frames.setdefault(f.video_id, []).append(f)
    kept: dict[str, list[Box]] = {}
    for b in ds.kept_boxes():
        kept.setdefault(frames[b.image_id].video_id, []).append(b)
    return video_frames, kept


def apply_temporal(ds: Dataset, cfg: TemporalConfig, *, round: int) -> dict[str, int]:
    """Track the kept boxes of every video of ``ds``; prune isolated ones and fill gaps, in place.

    Every kept box of a multi-frame video gets ``extra["track_id"] = "<video_id>:<n>"``. Boxes of
    tracks seen in fewer than ``cfg.min_track_length`` sampled frames are pruned with reason
    ``isolated`` (``extra["pruned_round"] = round``). Gaps of up to ``cfg.fill_gaps`` sampled frames
    inside the remaining tracks get new kept boxes (``source="track_interp"``, ids after the current
    maximum, ``extra["interp_reason"]``), except where a kept box already overlaps the filled box by
    ``cfg.interp_skip_iou``.

    Returns
    -------
    dict
        ``{"isolated": boxes pruned, "interpolated": boxes added}``.
    """
    from pseudolabel.boxes import iou_matrix

    counts = {"isolated": 0, "interpolated": 0}
    if not cfg.enabled:
        return counts
    frames = {f.id: f for f in ds.frames}
    missing = sorted({b.image_id for b in ds.boxes if b.image_id not in frames})
    if missing:
        raise ValueError(f"boxes refer to unknown image ids {missing[:10]}")
    video_frames, kept_by_video = _frames_and_kept_by_video(ds, frames)
    kept_by_image = ds.boxes_by_image(kept_only=True)
    next_id = max((b.id for b in ds.boxes), default=0) + 1
    new_boxes: list[Box] = []
    for vid, vframes in video_frames.items():
        vframes = sorted(vframes, key=lambda f: (f.frame_index, f.id))
        kept = kept_by_video.get(vid, [])
        if len(vframes) < 2 or not kept:
            continue  # a still image: no time axis
        step_of = {f.id: s for s, f in enumerate(vframes)}
        steps = np.array([step_of[b.image_id] for b in kept], dtype=np.int64)
        xyxy = ds.xyxy(kept)
        tids = track_boxes(steps, xyxy, max_gap=cfg.max_gap, gate=cfg.gate, max_size_ratio=cfg.max_size_ratio,
                           iou_weight=cfg.iou_weight)
        for b, t in zip(kept, tids):
            b.extra["track_id"] = f"{vid}:{int(t)}"
        short = short_track_mask(tids, steps, min_length=cfg.min_track_length)
        for i in np.flatnonzero(short):
            kept[i].prune("isolated", pruned_round=round)
        counts["isolated"] += int(short.sum())
        if cfg.fill_gaps <= 0 or short.all():
            continue
        keep = ~short
        scores = np.array([b.score for b in kept])
        cats = {int(t): b.category_id for b, t in zip(kept, tids)}
        for t, s, box, score, gap in zip(*interpolate_gaps(tids[keep], steps[keep], xyxy[keep], scores[keep],
                                                          max_fill=cfg.fill_gaps,
                                                          score_factor=cfg.interp_score_factor)):
            frame = vframes[int(s)]
            others = [o for o in kept_by_image.get(frame.id, []) if o.kept]
            if others and iou_matrix(box[None], ds.xyxy(others)).max() >= cfg.interp_skip_iou:
                continue
            tid = f"{vid}:{int(t)}"
            nb = Box(image_id=frame.id, xyxy=tuple(float(v) for v in box), score=float(score), round=round,
                     source="track_interp", category_id=cats[int(t)], id=next_id,
                     extra={"track_id": tid, "interp_reason": f"gap of {int(gap)} frames in track {tid}"})
            next_id += 1
            new_boxes.append(nb)
            kept_by_image.setdefault(frame.id, []).append(nb)
    ds.boxes.extend(new_boxes)
    counts["interpolated"] = len(new_boxes)
    return counts


# ------------------------------------------------------------------------ hysteresis in time
DOUBTFUL_REASONS = ("unconfirmed", "below_threshold")  # the hysteresis's prunings: below the threshold, no seeded track


@dataclass
class HysteresisConfig:
    """Options of :func:`apply_hysteresis`: a box below the round's score threshold is kept only when it
    links to a track that holds a box above it (a seed)."""

    enabled: bool = True
    floor: float = 0.2             # labels.json keeps detections down to this score
    max_gap: int = 2               # sampled frames a track may go undetected
    gate: float | None = None      # box diagonals per sampled frame around the predicted centre (None: pixels only)
    max_displacement: float | None = None  # px per sampled frame (None: max_displacement_fraction of the diagonal)
    max_displacement_fraction: float = 0.08  # of the frame diagonal, per sampled frame
    max_size_ratio: float = 1.5
    iou_weight: float = 0.2        # association cost weight of IoU (small balls: distance matters most)
    student_seeds: str = "agreement"  # rounds >= 1: seeds are the student's boxes that agree with round k-1's
                                      # kept boxes ("agreement"), or also with round 0's unconfirmed teacher boxes
                                      # ("agreement_or_doubtful"; "agreement_then_doubtful": only in videos where
                                      # round k-1 kept nothing), or those above the relabel threshold ("score")
    track_seed_length: int | None = None  # also seeds: a track holding this many boxes >= the threshold (None: off)
    doubtful_seed_frames: int = 1  # with "..._doubtful" seeds: a box agreeing only with a doubtful teacher box
                                   # seeds when its track holds such boxes in this many sampled frames
    track_evidence: str = "max"    # a track is seeded when its best box reaches the threshold ("max") or when its
                                   # two best boxes, in two frames, do together ("two_best": 1 - (1-s1)(1-s2))
    student_confirm: str = "track"  # rounds >= 1: a seeded track confirms any student box it links ("track"),
                                    # only one where round 0's teacher pass also has a box ("track_and_teacher"),
                                    # or also one lying between two such boxes of its track ("track_between_teacher")
    student_run: int | None = None  # with student_confirm other than "track": a box the teacher did not see also
                                    # stays when it is one of this many such boxes of its track in consecutive
                                    # sampled frames (gaps up to max_gap): the student following an object (None: off)
    between_seeds: bool = False     # with "track_between_teacher": the track's seeds are anchors too (a box between
                                    # a seed and a teacher-seen box, or two seeds, is confirmable)
    student_reach: int | None = None  # rounds >= 1: a seeded track confirms only boxes at most this many sampled
                                    # frames from one of its seeds; farther ones are pruned, reason out_of_reach
                                    # (None: any distance)
    cold_start_length: int | None = None  # rounds >= 1, in a video round k-1 kept nothing of: the student's boxes
                                    # >= the threshold on the one track of at least this many of them that moves
                                    # across the scene also seed (pseudolabel.prune.cold_start; None: off)
    cold_start_motion: float = 1.0  # ... moving: its centres, less the motion of the background around them, lie a
                                    # median of more than this many box diagonals from their median
    cold_start_window: float = 5.0  # ... background: a window this many box diagonals either side of the box
    cold_start_residual: float | None = None  # ... only boxes whose pixels moved against their background by more
                                    # than this share of their contrast are tracked (cold_start.background_residual)
    cold_start_videos: str = "empty"  # where that rule seeds: videos round k-1 kept nothing of ("empty"), or every
                                    # video ("all": also the stretches round k-1 missed in a video it anchored)
    cold_start_teacher: str = "off"  # ... "all": only its boxes round 0's teacher pass also has a box at seed (its
                                    # other boxes stay only as student_confirm allows); "anchored": so in the videos
                                    # round k-1 kept boxes in, a video it kept nothing of seeds as with "off";
                                    # "teacher_anchored": so in the videos round 0 kept boxes in


def hysteresis_tracks(cfg: HysteresisConfig, steps, boxes, *, width: int, height: int) -> np.ndarray:
    """Track ids of one video's boxes with the hysteresis's tracker settings (:func:`track_boxes`).

    Parameters
    ----------
    cfg : HysteresisConfig
        ``max_gap``, ``gate``, ``max_size_ratio``, ``iou_weight``, ``max_displacement`` (or
        ``max_displacement_fraction`` of the frame diagonal, per sampled frame).
    steps : array_like of int, shape (N,)
        Sampled step of each box's frame.
    boxes : array_like, shape (N, 4)
        ``xyxy`` float pixels.
    width, height : int
        The video's frame size.

    Returns
    -------
    numpy.ndarray of int, shape (N,)
    """
    reach = cfg.max_displacement
    if reach is None:  # a ball crosses a fixed share of the picture per sampled frame, whatever its size
        reach = cfg.max_displacement_fraction * float(np.hypot(width, height))
    return track_boxes(steps, boxes, max_gap=cfg.max_gap, gate=cfg.gate, max_size_ratio=cfg.max_size_ratio,
                       iou_weight=cfg.iou_weight, max_displacement=reach)


def two_best_evidence_mask(track_ids, steps, scores, *, high: float) -> np.ndarray:
    """(N,) bool: boxes on a track whose two best detections, in two different frames, reach ``high`` together.

    Two detections of one object in two frames are two looks at it: the chance that both are wrong is taken as
    ``(1 - s1) * (1 - s2)``, so the track's evidence is ``1 - (1 - s1)(1 - s2)``. Only the two best count:
    a long track of one clutter object repeats one mistake, it does not add independent evidence.

    Parameters
    ----------
    track_ids, steps : array_like of int, shape (N,)
        Each box's track and sampled-frame index.
    scores : array_like of float, shape (N,)
        Detector scores.
    high : float
        The round's score threshold (a single box at ``high`` is a seed).
    """
    track_ids, steps, scores = np.asarray(track_ids), np.asarray(steps), np.asarray(scores, dtype=np.float64)
    out = np.zeros(len(track_ids), dtype=bool)
    for t in np.unique(track_ids):
        m = track_ids == t
        best = {}
        for st, sc in zip(steps[m], scores[m]):
            best[int(st)] = max(best.get(int(st), 0.0), float(sc))
        top = sorted(best.values(), reverse=True)[:2]
        if len(top) == 2 and 1.0 - (1.0 - top[0]) * (1.0 - top[1]) >= high:
            out[m] = True
    return out


def seeded_track_mask(track_ids, is_seed) -> np.ndarray:
    """(N,) bool: ``True`` for boxes whose track holds at least one seed.

    Parameters
    ----------
    track_ids : array_like of int, shape (N,)
    is_seed : array_like of bool, shape (N,)
    """
    track_ids = np.asarray(track_ids)
    return np.isin(track_ids, np.unique(track_ids[np.asarray(is_seed, dtype=bool)]))


def seed_reach_mask(track_ids, steps, is_seed, *, reach: int) -> np.ndarray:
    """(N,) bool: ``True`` for boxes at most ``reach`` sampled frames from a seed of their own track.

    A seed vouches for the boxes its track links near it in time. Far from every seed, a chain of boxes below the
    threshold can have drifted off the object one plausible step at a time (a ball held still at a player's feet
    while the track follows the player's boot).

    Parameters
    ----------
    track_ids, steps : array_like of int, shape (N,)
        Each box's track id and sampled-frame step.
    is_seed : array_like of bool, shape (N,)
    reach : int
        Sampled frames either side of a seed.
    """
    track_ids, steps = np.asarray(track_ids), np.asarray(steps)
    is_seed = np.asarray(is_seed, dtype=bool)
    out = np.zeros(len(steps), dtype=bool)
    for t in np.unique(track_ids[is_seed]):
        on_track = track_ids == t
        seed_steps = steps[on_track & is_seed]
        gap = np.abs(steps[on_track][:, None] - seed_steps[None, :]).min(axis=1)
        out[on_track] = gap <= reach
    return out


def between_anchors_mask(track_ids, steps, is_anchor) -> np.ndarray:
    """(N,) bool: ``True`` for boxes with an anchor box of their own track at an earlier step and one at a later
    step, or that are anchors themselves.

    Parameters
    ----------
    track_ids, steps : array_like of int, shape (N,)
        Each box's track id and sampled-frame step.
    is_anchor : array_like of bool, shape (N,)
    """
    track_ids, steps = np.asarray(track_ids), np.asarray(steps)
    is_anchor = np.asarray(is_anchor, dtype=bool)
    out = is_anchor.copy()
    for t in np.unique(track_ids[is_anchor]):
        on_track = track_ids == t
        anchored = steps[on_track & is_anchor]
        out |= on_track & (steps > anchored.min()) & (steps < anchored.max())
    return out


def run_mask(track_ids, steps, candidates, *, min_run: int, max_gap: int) -> np.ndarray:
    """(N,) bool: ``True`` for candidate boxes in a run of at least ``min_run`` candidates of their own track whose
    consecutive sampled-frame steps are at most ``max_gap + 1`` apart.

    Parameters
    ----------
    track_ids, steps : array_like of int, shape (N,)
        Each box's track id and sampled-frame step.
    candidates : array_like of bool, shape (N,)
    """
    track_ids, steps = np.asarray(track_ids), np.asarray(steps)
    candidates = np.asarray(candidates, dtype=bool)
    out = np.zeros(len(steps), dtype=bool)
    for t in np.unique(track_ids[candidates]):
        idx = np.flatnonzero((track_ids == t) & candidates)
        idx = idx[np.argsort(steps[idx], kind="stable")]
        breaks = np.flatnonzero(np.diff(steps[idx]) > max_gap + 1) + 1
        for run in np.split(idx, breaks):
            if len(np.unique(steps[run])) >= min_run:
                out[run] = True
    return out


def apply_hysteresis(ds: Dataset, cfg: HysteresisConfig, *, round: int, high: float,
                     seeds: set[int] | None = None, doubtful_seeds: set[int] | None = None,
                     confirmable: set[int] | None = None, confirm_between: bool = False) -> dict[str, int]:
    """Keep the kept boxes below ``high`` that a seeded track confirms; prune the others, in place.

    ``seeds`` (box ids), when given, replaces the score test: those boxes are the seeds and every other box
    needs a seeded track, whatever its score (student rounds: the boxes that agree with round k-1).
    ``doubtful_seeds`` (box ids, with ``seeds``): weaker seeds (student boxes that agree only with a teacher box
    round 0 left unconfirmed); they seed their track when it holds them in ``cfg.doubtful_seed_frames``
    sampled frames (:func:`run_mask` with no gap limit): one agreement can be two models fooled by one object,
    agreement frame after frame along a moving track is rarer.
    ``confirmable`` (box ids), when given, limits what a seeded track confirms to those boxes; the other boxes
    below ``high`` are pruned with reason ``unsupported`` (student rounds: a track can hop from the ball to a
    player's foot the student fires on; a box the teacher also saw is two models agreeing). With
    ``confirm_between``, a box between two confirmable boxes of its track (:func:`between_anchors_mask`) is
    confirmable too: a hop to a foot and back to the ball is rarer than a hop that stays on the foot (with
    ``cfg.between_seeds``, the track's seeds are such anchors as well). With
    ``cfg.student_run``, so is a box in a run of that many such boxes of its track (:func:`run_mask`).
    In student rounds (``seeds`` given) with ``cfg.student_reach``, a box the track would keep that lies farther
    than that many sampled frames from every seed of its track is pruned with reason ``out_of_reach``
    (:func:`seed_reach_mask`).

    Per video, every kept box (down to the label floor) is tracked (:func:`track_boxes`). A box scoring
    ``>= high`` is a seed and stays as it is. A box below ``high`` on a track with a seed stays kept with
    ``source="track_confirmed"`` (``extra["detector"]`` = its detector, ``extra["track_id"]``); every other box
    below ``high`` is pruned with reason ``unconfirmed``. A still image (a video of one sampled frame) has no
    time axis: its boxes below ``high`` are pruned with reason ``below_threshold``.

    Returns
    -------
    dict
        ``{"unconfirmed": pruned, "below_threshold": pruned on stills, "track_confirmed": kept by a track}``,
        and with ``confirmable`` ``"unsupported"``: on a seeded track but not confirmable; in student rounds with
        ``cfg.student_reach`` ``"out_of_reach"``: on a seeded track, too far in time from its seeds.
    """
    counts = {"unconfirmed": 0, "below_threshold": 0, "track_confirmed": 0}
    if confirmable is not None:
        counts["unsupported"] = 0
    limit_reach = seeds is not None and cfg.student_reach is not None
    if limit_reach:
        counts["out_of_reach"] = 0
    if not cfg.enabled:
        return counts
    video_frames, by_video = _frames_and_kept_by_video(ds, {f.id: f for f in ds.frames})
    for vid, boxes in by_video.items():
        low = np.array([(b.id not in seeds) if seeds is not None else (b.score < high) for b in boxes])
        if not low.any():
            continue
        if len(video_frames[vid]) < 2:
            for b, is_low in zip(boxes, low):
                if is_low:
                    b.prune("below_threshold", pruned_round=round)
            counts["below_threshold"] += int(low.sum())
            continue
        vframes = sorted(video_frames[vid], key=lambda f: (f.frame_index, f.id))
        step_of = {f.id: s for s, f in enumerate(vframes)}
        steps = np.array([step_of[b.image_id] for b in boxes], dtype=np.int64)
        tids = hysteresis_tracks(cfg, steps, ds.xyxy(boxes), width=vframes[0].width, height=vframes[0].height)
        seed = ~low
        if doubtful_seeds:
            weak = np.array([b.id in doubtful_seeds for b in boxes]) & low
            seed |= run_mask(tids, steps, weak, min_run=cfg.doubtful_seed_frames, max_gap=len(vframes))  # any gap
            low = ~seed
        if cfg.track_seed_length:  # a run of confident detections moving like one object is evidence too
            steps_hi = {}
            for t, st, b in zip(tids, steps, boxes):
                if b.score >= high:
                    steps_hi.setdefault(int(t), set()).add(int(st))
            strong = {t for t, st in steps_hi.items() if len(st) >= cfg.track_seed_length}
            seed |= np.isin(tids, list(strong)) & np.array([b.score >= high for b in boxes])
            low = ~seed
        confirmed = seeded_track_mask(tids, seed)
        between = np.zeros(len(boxes), dtype=bool)
        if confirm_between and confirmable is not None:
            anchors = np.array([b.id in confirmable for b in boxes]) | (seed & cfg.between_seeds)
            between = between_anchors_mask(tids, steps, anchors)
        if cfg.student_run and confirmable is not None:
            unseen = confirmed & low & ~between & np.array([b.id not in confirmable for b in boxes])
            between |= run_mask(tids, steps, unseen, min_run=cfg.student_run, max_gap=cfg.max_gap)
        if cfg.track_evidence == "two_best" and seeds is None:
            confirmed |= two_best_evidence_mask(tids, steps, [b.score for b in boxes], high=high)
        near = (seed_reach_mask(tids, steps, seed, reach=cfg.student_reach) if limit_reach
                else np.ones(len(boxes), dtype=bool))
        for b, t, is_low, ok, inside, close in zip(boxes, tids, low, confirmed, between, near, strict=True):
            if not is_low:
                b.extra["track_id"] = f"{vid}:{int(t)}"
                continue
            if ok and confirmable is not None and b.id not in confirmable and not inside:
                b.prune("unsupported", pruned_round=round)
                counts["unsupported"] += 1
            elif ok and not close:
                b.prune("out_of_reach", pruned_round=round)
                counts["out_of_reach"] += 1
            elif ok:
                b.extra.update(detector=b.source, track_id=f"{vid}:{int(t)}")
                b.source = "track_confirmed"
                counts["track_confirmed"] += 1
            else:
                b.prune("unconfirmed", pruned_round=round)
                counts["unconfirmed"] += 1
    return counts
