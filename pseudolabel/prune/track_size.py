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

In round 0 only by default; ``student_rounds=True`` also runs it in rounds >= 1. There the seeds are the student's
boxes, the videos seeded there differ in zoom, and it removed far more true balls than false boxes (BENCHMARKS.md):
a pruner that does more harm than good stays off.

Size is the shorter side of a box: motion blur lengthens a fast ball along its path but leaves its width
alone (the per-video ``log_size`` pruner, which used the area, removed blurred real balls).

The same evidence also sizes the boxes it keeps (``smooth``): one ball along one track keeps about one size, but a
detector's box around a 10-px ball is off by pixels from frame to frame, which at that size is what decides IoU.
With ``smooth`` = a > 0, each kept box of a track of ``smooth_min_boxes`` or more keeps its centre and takes the
width and height ``own**(1-a) * track_median**a`` (geometric weighting; 1: the track's median); its detector's
size stays in ``extra["raw_wh"]``. Boxes with no track (stills) are left as they are. By default
(``smooth_feeds_loop=False``) the pipeline sizes only the round's labels, after the merge: the next student, the
merge and the agreement with round k read the detectors' sizes (``merged.json``), so no student learns a size the
smoothing made and one round's smoothing never compounds into the next's.

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
    student_rounds: bool = False  # also in rounds >= 1 (True; off: there it removed more balls than false boxes)
    per_video: bool = True   # a video's own kept boxes (min_seeds or more) may raise its reference
    smooth: float = 0.0      # weight of the track's median width / height in each kept box's (0: off, 1: the median)
    smooth_min_boxes: int = 3  # tracks with fewer kept boxes are left as they are
    smooth_feeds_loop: bool = False  # True: smoothed in the prune, so later rounds learn the sizes; False: the round's
    # labels (annotations.json) alone, after the merge, and later rounds read the detectors' sizes (merged.json)
    confirmed_seed_size: bool = False  # boxes a track added take the median width / height of its seeds


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


def _track_members(groups: Sequence) -> dict:
    """Group key -> indices of its members; ``None`` keys (boxes with no track) belong to no group."""
    members: dict = {}
    for i, key in enumerate(groups):
        if key is not None:
            members.setdefault(key, []).append(i)
    return members


def track_smoothed_sizes(wh, groups: Sequence, *, weight: float, min_members: int) -> np.ndarray:
    """(N, 2) width and height of each box pulled toward its group's median: ``own**(1-weight) * median**weight``.

    Parameters
    ----------
    wh : array_like, shape (N, 2)
        Width and height of each box (pixels, > 0).
    groups : sequence of hashable, length N
        Group key of each box (a track id); ``None``: the box is its own group and keeps its size.
    weight : float
        In [0, 1]; 0 returns ``wh`` unchanged.
    min_members : int
        Groups with fewer members keep their sizes.
    """
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    out = wh.copy()
    members = _track_members(groups)
    for idx in members.values():
        if weight <= 0 or len(idx) < max(1, min_members):
            continue
        median = np.median(wh[idx], axis=0)
        out[idx] = wh[idx] ** (1.0 - weight) * median ** weight
    return out


def seed_sized(wh, groups: Sequence, is_seed) -> np.ndarray:
    """(N, 2) width and height: every non-seed box of a group with seeds takes the median of its group's seeds.

    Parameters
    ----------
    wh : array_like, shape (N, 2)
        Width and height of each box (pixels).
    groups : sequence of hashable, length N
        Group key of each box (a track id); ``None``: the box keeps its size.
    is_seed : array_like of bool, shape (N,)
        Boxes whose size is trusted (a track's seeds); they keep theirs.
    """
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    is_seed = np.asarray(is_seed, dtype=bool)
    out = wh.copy()
    members = _track_members(groups)
    for idx in members.values():
        idx = np.asarray(idx)
        seeds = idx[is_seed[idx]]
        if len(seeds):
            out[idx[~is_seed[idx]]] = np.median(wh[seeds], axis=0)
    return out


def apply_track_size_smoothing(ds: Dataset, cfg: TrackSizeConfig) -> dict[str, int]:
    """Resize, in place, the kept boxes of tracks, centres kept: with ``cfg.confirmed_seed_size`` the boxes the
    track added (track_confirmed, track_interp) take the median size of its seeds (:func:`seed_sized`); then,
    with ``cfg.smooth``, every box moves toward its track's median size (:func:`track_smoothed_sizes`).
    Run it after the hysteresis (``extra["track_id"]``) and the ``off_size`` pruning, or on a merged round: a
    track is a track id of one round (``Box.round``) in one video. A reviewer's box (``extra["review"]``) keeps its
    size and counts in no track.

    Returns
    -------
    dict
        ``{"resized_on_track": number of boxes resized}`` (not a pruning: no box changes decision).
    """
    kept = [b for b in ds.boxes if b.kept]
    if not (cfg.smooth or cfg.confirmed_seed_size) or not kept:
        return {"resized_on_track": 0}
    video_of = {f.id: f.video_id for f in ds.frames}
    # a track id names a track of the round that made the box; a reviewer's box keeps the reviewer's size
    groups = [(video_of.get(b.image_id), b.round, b.extra["track_id"])
              if "track_id" in b.extra and "review" not in b.extra else None for b in kept]
    xyxy = ds.xyxy(kept)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    new_wh = wh
    if cfg.confirmed_seed_size:
        new_wh = seed_sized(new_wh, groups, [b.source not in CONFIRMED_SOURCES for b in kept])
    new_wh = track_smoothed_sizes(new_wh, groups, weight=float(cfg.smooth), min_members=cfg.smooth_min_boxes)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    n = 0
    for b, old, new, c in zip(kept, wh, new_wh, centre):
        if np.allclose(old, new):
            continue
        b.extra["raw_wh"] = [round(float(v), 2) for v in old]
        b.xyxy = tuple(float(v) for v in np.concatenate([c - new / 2, c + new / 2]))
        n += 1
    return {"resized_on_track": n}


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

