"""Pruning tracks whose object is larger than the target: one ball keeps its size, a shirt is bigger.

A COCO teacher run on small tiles also fires, at ball-like scores, on heads, shirts and hands, which in a
wide broadcast shot are two to three times the ball's size; the hysteresis then follows them as tracks.
The reference size is the median of the round's *seeds* (kept boxes the hysteresis did not have to
confirm: the most trusted boxes of the round, over the whole data set, so one video full of confusers
does not move it). A track (``extra["track_id"]``; a box without one is its own group) whose median size
is above ``max_ratio`` times the reference is pruned with reason ``off_size``, every box of it.

The data set's reference alone would prune the ball of a video shot closer than the others (another camera,
another venue, a larger ball): with ``per_video``, a video holding at least ``min_seeds`` kept boxes judges its
tracks against the larger of the data set's reference and the median of its own kept boxes (seeds and the boxes
their tracks confirmed). A video's own boxes only ever raise its reference, so a shirt next to a ball of the
video's size still goes.

In every round by default; ``student_rounds=False`` limits it to round 0 (in the student rounds the seeds are the
student's boxes and the videos seeded there differ in zoom; on broadcast football it removed more true balls than
false boxes there, yet whole runs without it ended lower: BENCHMARKS.md).

Size is the shorter side of a box: motion blur lengthens a fast ball along its path but leaves its width
alone (the per-video ``log_size`` pruner, which used the area, removed blurred real balls).

Boxes are ``xyxy`` float pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pseudolabel.boxes import as_boxes
from pseudolabel.records import Dataset

REASON = "off_size"
CONFIRMED_SOURCES = ("track_confirmed", "track_interp")  # boxes a track added: not seeds


@dataclass
class TrackSizeConfig:
    """Options of :func:`apply_track_size`."""

    enabled: bool = True
    max_ratio: float = 1.5   # a track's median size over this many times the seeds' median is not the target
    min_seeds: int = 5       # fewer seeds than this: no reference, nothing pruned
    student_rounds: bool = True  # also in rounds >= 1 (False: round 0 only; BENCHMARKS.md)
    per_video: bool = True   # a video's own kept boxes (min_seeds or more) may raise its reference


def short_side(boxes) -> np.ndarray:
    """(N,) shorter side of each ``xyxy`` box of ``boxes`` (N, 4)."""
    b = as_boxes(boxes)
    return np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def oversized_group_mask(sizes, groups: Sequence, *, reference: float, max_ratio: float) -> np.ndarray:
    """``True`` for every member of a group whose median size exceeds ``max_ratio * reference``.

    Parameters
    ----------
    sizes : array_like, shape (N,)
        Size of each box (e.g. :func:`short_side`).
    groups : sequence of hashable, length N
        Group key of each box (a track id; a box alone gets a key of its own).
    reference : float
        The target's size.
    max_ratio : float
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    keys = list(groups)
    members: dict = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    medians = {key: float(np.median(sizes[idx])) for key, idx in members.items()}
    return np.array([medians[key] > max_ratio * reference for key in keys], dtype=bool)


def apply_track_size(ds: Dataset, cfg: TrackSizeConfig, *, round: int) -> dict[str, int]:
    """Prune, in place, the kept boxes of tracks (or lone boxes) much larger than the round's seeds;
    reason ``off_size``. Run it after the hysteresis (it reads ``extra["track_id"]`` and the sources it sets).

    Returns
    -------
    dict
        ``{"off_size": number of boxes pruned}``.
    """
    kept = [b for b in ds.boxes if b.kept]
    seeds = [b for b in kept if b.source not in CONFIRMED_SOURCES]
    if not cfg.enabled or (round > 0 and not cfg.student_rounds) or len(seeds) < max(1, cfg.min_seeds):
        return {REASON: 0}
    reference = float(np.median(short_side(ds.xyxy(seeds))))
    sizes = short_side(ds.xyxy(kept))
    video_of = {f.id: f.video_id for f in ds.frames}
    members: dict = {}  # video (None: judged with the data set) -> indices of its kept boxes
    for i, b in enumerate(kept):
        members.setdefault(video_of.get(b.image_id) if cfg.per_video else None, []).append(i)
    prune = np.zeros(len(kept), dtype=bool)
    references = np.full(len(kept), reference)
    for video, idx in members.items():
        idx = np.asarray(idx)
        if video is not None and len(idx) >= cfg.min_seeds:
            references[idx] = max(reference, float(np.median(sizes[idx])))
        groups = [(video, kept[i].extra.get("track_id", ("box", kept[i].id))) for i in idx]
        prune[idx] = oversized_group_mask(sizes[idx], groups, reference=float(references[idx[0]]),
                                          max_ratio=cfg.max_ratio)
    for b, p, ref in zip(kept, prune, references):
        if p:
            b.prune(REASON, pruned_round=round, reference_size=float(np.round(ref, 2)))
    return {REASON: int(prune.sum())}

