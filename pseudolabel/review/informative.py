"""Which frames a reviewer should see first: frames ordered by how uncertain or disputed their boxes are (pure).

A frame's informativeness is the sum of four signals, each in [0, 1] (:data:`SIGNALS`):

- ``disagreement``: the rounds disagree on a box of the frame (its merge status is ``newly_pruned``, ``revived``,
  ``unconfirmed``, or ``new`` and kept): 1, else 0. Round 0 has no previous round: 0.
- ``mid_confidence``: ``max(1 - |2 s - 1|)`` over the kept boxes and the boxes pruned for their score
  (:data:`pseudolabel.prune.temporal.DOUBTFUL_REASONS`): 1 for a box at score 0.5, 0 at 0 or 1.
- ``pruned_confident``: ``max(2 s - 1, 0)`` over the other pruned boxes: a pruner overruled a confident detector.
- ``track_break``: in a video, the frame has no kept box while both neighbouring sampled frames have one, has one
  while neither has, or its kept boxes' tracks (``extra["track_id"]``) differ from both neighbours': 1, else 0.

Frames already reviewed score nothing and come last. Ties go to frame order, so the order is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..prune.temporal import DOUBTFUL_REASONS
from ..records import Dataset, Frame

SIGNALS = ("disagreement", "mid_confidence", "pruned_confident", "track_break")
DISPUTED_STATUSES = ("newly_pruned", "revived", "unconfirmed")  # plus "new" on a kept box


@dataclass(frozen=True)
class FrameScore:
    """One frame's informativeness: the sum of its :data:`SIGNALS` (``signals``, same order)."""

    frame: Frame
    score: float
    signals: tuple[float, ...]
    reviewed: bool = False

    def why(self) -> dict[str, float]:
        """The non-zero signals, by name."""
        return {name: round(float(v), 4) for name, v in zip(SIGNALS, self.signals) if v > 0}


def _track_breaks(ds: Dataset) -> dict[int, float]:
    """Frame id -> 1.0 for the frames :data:`SIGNALS` calls a track break (video only)."""
    kept = ds.boxes_by_image(kept_only=True)
    videos: dict[str, list[Frame]] = {}
    for f in ds.frames:
        videos.setdefault(f.video_id, []).append(f)
    out: dict[int, float] = {}
    for vframes in videos.values():
        vframes = sorted(vframes, key=lambda f: (f.frame_index, f.id))
        if len(vframes) < 3:
            continue
        has = np.array([bool(kept.get(f.id)) for f in vframes])
        tracks = [frozenset(str(b.extra["track_id"]) for b in kept.get(f.id, []) if "track_id" in b.extra)
                  for f in vframes]
        for t in range(1, len(vframes) - 1):
            vanished = not has[t] and has[t - 1] and has[t + 1]
            alone = has[t] and not has[t - 1] and not has[t + 1]
            switched = (has[t] and has[t - 1] and has[t + 1] and bool(tracks[t])
                        and tracks[t] != tracks[t - 1] and tracks[t] != tracks[t + 1])
            if vanished or alone or switched:
                out[vframes[t].id] = 1.0
    return out


def frame_scores(ds: Dataset, *, reviewed_keys=()) -> list[FrameScore]:
    """Every frame of ``ds`` with its informativeness, most informative first.

    Parameters
    ----------
    ds
        A round's dataset (``annotations.json``); scores in [0, 1], merge statuses in ``extra["merge_status"]``.
    reviewed_keys
        Keys ``(video_id, frame_index)`` of frames already reviewed: score 0, listed last. Frames holding a box with
        ``extra["reviewed"]`` count as reviewed too.

    Returns
    -------
    list of FrameScore
        Sorted by score (descending), then frame key.
    """
    done = set(map(tuple, reviewed_keys))
    breaks = _track_breaks(ds)
    by_image = ds.boxes_by_image()
    out = []
    for f in ds.frames:
        boxes = by_image.get(f.id, [])
        reviewed = f.key in done or any(b.extra.get("reviewed") for b in boxes)
        if reviewed:
            out.append(FrameScore(frame=f, score=0.0, signals=(0.0,) * len(SIGNALS), reviewed=True))
            continue
        status = [b.extra.get("merge_status") for b in boxes]
        disputed = any(s in DISPUTED_STATUSES or (s == "new" and b.kept) for s, b in zip(status, boxes))
        doubtful = np.array([b.score for b in boxes if b.kept or b.reason in DOUBTFUL_REASONS], dtype=np.float64)
        overruled = np.array([b.score for b in boxes if not b.kept and b.reason not in DOUBTFUL_REASONS],
                             dtype=np.float64)
        signals = (float(disputed),
                   float(np.max(1.0 - np.abs(2.0 * doubtful - 1.0), initial=0.0)),
                   float(np.max(np.clip(2.0 * overruled - 1.0, 0.0, None), initial=0.0)),
                   breaks.get(f.id, 0.0))
        out.append(FrameScore(frame=f, score=float(sum(signals)), signals=signals))
    out.sort(key=lambda s: (s.reviewed, -s.score, s.frame.key))
    return out


def review_order(ds: Dataset, *, budget: int | None = None, reviewed_keys=()) -> list[FrameScore]:
    """The frames to review: :func:`frame_scores` taken in turns across videos (each video's most informative
    frame, then each one's second, ...; by score within a turn), reviewed frames last; the ``budget`` first (None:
    all), never a frame already reviewed when a budget is given.

    Turns across videos: a budget spent on the most disputed frames of one or two videos teaches the student
    nothing about the others (a simulated review of 20 frames left one of three clips out and did worse than 20
    random frames, BENCHMARKS.md). With a budget, a video's share is also spread over its time: the video's
    (time-ordered) unreviewed frames are cut into as many consecutive stretches as it gets frames, and the most
    informative frame of each stretch is taken. Neighbouring frames hold the same balls (and a correction already
    reaches a track's neighbours), so a budget spread like a random draw, but informed within each stretch,
    teaches more than a run of adjacent frames.
    """
    scores = frame_scores(ds, reviewed_keys=reviewed_keys)
    turn: dict[int, int] = {}
    seen: dict[str, int] = {}
    for s in scores:
        if not s.reviewed:
            turn[s.frame.id] = seen.get(s.frame.video_id, 0)
            seen[s.frame.video_id] = turn[s.frame.id] + 1
    scores.sort(key=lambda s: (s.reviewed, turn.get(s.frame.id, 0), -s.score, s.frame.key))
    if budget is None:
        return scores
    share: dict[str, int] = {}
    for s in [s for s in scores if not s.reviewed][:int(budget)]:
        share[s.frame.video_id] = share.get(s.frame.video_id, 0) + 1
    picked = []
    for video, n in share.items():
        in_time = sorted((s for s in scores if not s.reviewed and s.frame.video_id == video),
                         key=lambda s: (s.frame.frame_index, s.frame.id))
        best = [min((in_time[i] for i in stretch), key=lambda s: (-s.score, s.frame.key))
                for stretch in np.array_split(np.arange(len(in_time)), n)]
        picked += [(rank, s) for rank, s in enumerate(sorted(best, key=lambda s: (-s.score, s.frame.key)))]
    return [s for _, s in sorted(picked, key=lambda p: (p[0], -p[1].score, p[1].frame.key))]


def subset(ds: Dataset, scores: list[FrameScore]) -> Dataset:
    """The frames of ``scores`` (in that order) with their boxes: what an export of them holds."""
    ids = [s.frame.id for s in scores]
    wanted = set(ids)
    return Dataset(frames=[s.frame for s in scores], boxes=[b for b in ds.boxes if b.image_id in wanted],
                   categories=ds.categories, info=dict(ds.info))
