"""Pruning by what else the teacher saw: a ball-sized box on a person is a head, a hand or a shirt.

A COCO teacher that fires on white shirts and heads at the tiles' scale also detects the players
themselves. A candidate whose centre lies in the upper part of a confident person box (above the feet,
where a ball at a player's foot sits) and that is much smaller than the person is a body part.
In video, the verdict is taken per track (``extra["track_id"]``, set by the hysteresis): a track is
pruned when enough of its boxes sit on persons, so a real ball that passes in front of a player keeps
its track, and a shirt tracked across frames where the teacher missed the person goes with its track.

Boxes are ``xyxy`` float pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pseudolabel.boxes import as_boxes
from pseudolabel.records import Dataset

REASON = "on_person"


@dataclass
class OnPersonConfig:
    """Options of :func:`apply_on_person`."""

    enabled: bool = False          # opt-in: on football_broadcast it removed more real balls than false boxes
    min_score: float = 0.5         # context (person) boxes at or above this score count
    foot_fraction: float = 0.75    # a centre below this share of the person's height (from its top) is at its feet
    max_area_ratio: float = 0.5    # only boxes smaller than this share of the person's area are body parts
    track_fraction: float = 0.5    # a track goes when at least this share of its boxes sit on a person
    max_frame_fraction: float = 0.1  # a context box over this share of the frame's area is not one person


def on_object_mask(boxes, context_boxes, *, foot_fraction: float = 0.75, max_area_ratio: float = 0.5) -> np.ndarray:
    """Boxes of one image that sit on a context object (a person) above its feet.

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        Candidate ``xyxy`` boxes.
    context_boxes : array_like, shape (M, 4)
        ``xyxy`` boxes of the context class in the same image.
    foot_fraction : float
        A candidate counts when its centre is inside a context box and above ``y1 + foot_fraction * h``.
    max_area_ratio : float
        ... and its area is below ``max_area_ratio`` of that context box (a box as large as the person is
        not a part of it).

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
    """
    b, c = as_boxes(boxes), as_boxes(context_boxes)
    if len(b) == 0 or len(c) == 0:
        return np.zeros(len(b), dtype=bool)
    cx, cy = ((b[:, 0] + b[:, 2]) / 2)[:, None], ((b[:, 1] + b[:, 3]) / 2)[:, None]
    area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[:, None]
    carea = ((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]))[None, :]
    inside = ((cx >= c[None, :, 0]) & (cx <= c[None, :, 2]) & (cy >= c[None, :, 1])
              & (cy <= c[None, :, 1] + foot_fraction * (c[None, :, 3] - c[None, :, 1])))
    return (inside & (area < max_area_ratio * carea)).any(axis=1)


def group_vote_mask(groups: Sequence, flags, *, min_fraction: float = 0.5) -> np.ndarray:
    """``True`` for every member of a group in which at least ``min_fraction`` of the members (and at least
    one) are flagged.

    Parameters
    ----------
    groups : sequence of hashable, length N
        Group key of each box (a track id; a box alone gets a key of its own).
    flags : array_like of bool, shape (N,)
    """
    flags = np.asarray(flags, dtype=bool)
    keys = list(groups)
    share: dict = {}
    for key, flag in zip(keys, flags):
        n, k = share.get(key, (0, 0))
        share[key] = (n + 1, k + int(flag))
    return np.array([0 < share[key][1] >= min_fraction * share[key][0] for key in keys], dtype=bool)


def apply_on_person(ds: Dataset, context: Dataset, cfg: OnPersonConfig, *, round: int) -> dict[str, int]:
    """Prune, in place, the kept boxes (and their tracks) that sit on a person; reason ``on_person``.

    ``context`` holds the person boxes of the same frames (matched by video and frame index, so a round's
    frames may be other objects than round 0's).

    Returns
    -------
    dict
        ``{"on_person": number of boxes pruned}``.
    """
    if not cfg.enabled:
        return {REASON: 0}
    persons: dict[tuple, list] = {}
    cframes = {f.id: f for f in context.frames}
    for c in context.boxes:
        f = cframes[c.image_id]
        x1, y1, x2, y2 = c.xyxy
        # the whole-frame view reports crowds of small players as one frame-sized "person"
        if c.score >= cfg.min_score and (x2 - x1) * (y2 - y1) <= cfg.max_frame_fraction * f.width * f.height:
            persons.setdefault(f.key, []).append(c.xyxy)
    keys = {f.id: f.key for f in ds.frames}
    kept = [b for b in ds.boxes if b.kept]
    flags = np.zeros(len(kept), dtype=bool)
    by_image: dict[int, list[int]] = {}
    for i, b in enumerate(kept):
        by_image.setdefault(b.image_id, []).append(i)
    for image_id, idx in by_image.items():
        people = persons.get(keys[image_id])
        if people:
            flags[idx] = on_object_mask(ds.xyxy([kept[i] for i in idx]), people, foot_fraction=cfg.foot_fraction,
                                        max_area_ratio=cfg.max_area_ratio)
    groups = [b.extra.get("track_id", ("box", b.id)) for b in kept]
    prune = group_vote_mask(groups, flags, min_fraction=cfg.track_fraction)
    for b, p in zip(kept, prune):
        if p:
            b.prune(REASON, pruned_round=round)
    return {REASON: int(prune.sum())}

