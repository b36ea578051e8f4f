"""A round's dataset with the reviewed set applied: reviewed frames are ground truth (pure, in place).

On a reviewed frame the reviewer's kept boxes are the frame's balls and nothing else is. A box of the round matched
(as the merge matches, :func:`pseudolabel.merge.assign_pairs`) to a reviewed kept box becomes it: the reviewer's
geometry and provenance, what it was before in ``extra["before_review"]``. A reviewed kept box that nothing matches
is added. Every other box of the frame is pruned: ``review_deleted`` when it matches a box the reviewer deleted, else
``review_absent``; a deleted box that nothing matches is added, pruned, so that the student learns it as a hard
negative. Whatever the student or the pruners said, the reviewed frames end as the reviewer left them.

On video a correction also fixes its track in the neighbouring frames. The boxes of each video holding a reviewed
frame are tracked together with the corrections (:func:`pseudolabel.prune.temporal.hysteresis_tracks`: the
hysteresis's tracker and settings). A box of another frame on the track of a correction, at most ``track_reach``
sampled frames from it, takes the verdict of the nearest correction on the track (a kept one on a tie): next to a
reviewer's ball, a box pruned for lack of evidence (:data:`REVIVABLE_REASONS`) is kept again; next to a deleted
box, a kept box is pruned with reason ``review_track``. Either way ``extra["review_track"]`` names the correction's
frame.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..merge import NOT_REDETECTED, assign_pairs
from ..prune.temporal import DOUBTFUL_REASONS, HysteresisConfig, hysteresis_tracks
from ..records import KEPT, Box, Dataset
from . import REVIEW_ABSENT, REVIEW_CLASSES, REVIEW_TRACK

# pruned for lack of evidence (score, track length, teacher support), not for what the box looks like
REVIVABLE_REASONS = (*DOUBTFUL_REASONS, "isolated", "unsupported", "out_of_reach", NOT_REDETECTED)
_REVIEW_KEYS = ("reviewed", "review", "review_of")


def _provenance(b: Box) -> dict[str, Any]:
    return {"xyxy": [float(v) for v in b.xyxy], "source": b.source, "score": float(b.score), "round": int(b.round),
            "decision": b.decision, "reason": b.reason}


def _become(box: Box, reviewed: Box, *, round: int) -> None:
    """``box`` takes the geometry, provenance and decision of the reviewed box."""
    before = _provenance(box)
    box.xyxy, box.score, box.round, box.source = tuple(reviewed.xyxy), reviewed.score, reviewed.round, reviewed.source
    box.decision, box.reason, box.category_id = reviewed.decision, reviewed.reason, reviewed.category_id
    box.extra.pop("pruned_round", None)
    box.extra.update({k: v for k, v in reviewed.extra.items() if k in _REVIEW_KEYS})
    box.extra["before_review"] = before
    if not box.kept:
        box.extra["pruned_round"] = round


def _added(reviewed: Box, *, image_id: int, box_id: int, round: int) -> Box:
    extra = {k: v for k, v in reviewed.extra.items() if k in _REVIEW_KEYS}
    if not reviewed.kept:
        extra["pruned_round"] = round
    return Box(image_id=image_id, xyxy=tuple(reviewed.xyxy), score=reviewed.score, round=reviewed.round,
               source=reviewed.source, decision=reviewed.decision, reason=reviewed.reason,
               category_id=reviewed.category_id, id=box_id, extra=extra)


def apply_review(ds: Dataset, reviewed: Dataset, *, round: int, iou_threshold: float,
                 centre_factor: float | None = None, track_reach: int = 0,
                 tracker: HysteresisConfig | None = None) -> dict[str, int]:
    """Apply the reviewed set to ``ds`` in place (see the module docstring).

    Parameters
    ----------
    ds
        A round's dataset (``xyxy`` float pixels). Boxes are changed in place and added with ids after the largest.
    reviewed
        The reviewed set (:func:`pseudolabel.review.reviewed.reviewed_set`); frames matched by key, a reviewed frame
        ``ds`` lacks is skipped (``frames_missing``).
    round
        ``pruned_round`` of the boxes this pruning decides.
    iou_threshold, centre_factor
        Same object: as :func:`pseudolabel.merge.assign_pairs`.
    track_reach
        Sampled frames along a track that a correction also fixes (0: the reviewed frames only).
    tracker
        Tracker settings (default: :class:`~pseudolabel.prune.temporal.HysteresisConfig`'s).

    Returns
    -------
    dict
        ``frames`` (reviewed frames applied), ``frames_missing``, a count per review class (``kept``, ``moved``,
        ``drawn``, ``deleted``), ``absent`` (other boxes of reviewed frames, pruned), ``track_kept`` and
        ``track_pruned`` (neighbouring boxes a correction fixed).
    """
    counts: Counter = Counter()
    by_key = ds.frame_by_key()
    ours = ds.boxes_by_image()
    theirs = reviewed.boxes_by_image()
    next_id = max((b.id for b in ds.boxes), default=0) + 1
    corrections: list[Box] = []
    reviewed_frames: set[int] = set()

    def match(a: list[Box], b: list[Box]) -> list[tuple[int, int]]:
        return assign_pairs(a, b, iou_threshold=iou_threshold, centre_factor=centre_factor)

    for rf in sorted(reviewed.frames, key=lambda f: f.key):
        f = by_key.get(rf.key)
        if f is None:
            counts["frames_missing"] += 1
            continue
        reviewed_frames.add(f.id)
        rest = list(ours.get(f.id, []))
        for wanted in ([b for b in theirs.get(rf.id, []) if b.kept], [b for b in theirs.get(rf.id, []) if not b.kept]):
            pairs = match(rest, wanted)
            for i, j in pairs:
                _become(rest[i], wanted[j], round=round)
                corrections.append(rest[i])
            for j in sorted(set(range(len(wanted))) - {j for _, j in pairs}):
                new = _added(wanted[j], image_id=f.id, box_id=next_id, round=round)
                next_id += 1
                ds.boxes.append(new)
                corrections.append(new)
            matched = {i for i, _ in pairs}
            rest = [b for i, b in enumerate(rest) if i not in matched]
        for b in rest:
            b.prune(REVIEW_ABSENT, pruned_round=round, before_review=_provenance(b), reviewed=True)
        counts["absent"] += len(rest)
    counts["frames"] = len(reviewed_frames)
    for b in corrections:
        counts[b.extra.get("review")] += 1
    if track_reach > 0 and reviewed_frames:
        counts.update(_propagate(ds, corrections, reviewed_frames, round=round, reach=int(track_reach),
                                 tracker=tracker or HysteresisConfig()))
    keys = ("frames", "frames_missing", *REVIEW_CLASSES, "absent", "track_kept", "track_pruned")
    return {k: int(counts.get(k, 0)) for k in keys}


def _propagate(ds: Dataset, corrections: list[Box], reviewed_frames: set[int], *, round: int, reach: int,
               tracker: HysteresisConfig) -> Counter:
    """Fix the boxes that a correction's track links to, at most ``reach`` sampled frames away."""
    counts: Counter = Counter()
    frames = {f.id: f for f in ds.frames}
    is_correction = {id(b) for b in corrections}
    video_frames: dict[str, list] = {}
    for f in ds.frames:
        video_frames.setdefault(f.video_id, []).append(f)
    candidates: dict[str, list[Box]] = {}
    for b in ds.boxes:
        on_reviewed = b.image_id in reviewed_frames
        if (on_reviewed and id(b) in is_correction) or (not on_reviewed and (b.kept or b.reason in REVIVABLE_REASONS)):
            candidates.setdefault(frames[b.image_id].video_id, []).append(b)
    for vid in sorted({frames[i].video_id for i in reviewed_frames}):
        vframes = sorted(video_frames[vid], key=lambda f: (f.frame_index, f.id))
        boxes = candidates.get(vid, [])
        if len(vframes) < 2 or not boxes:
            continue  # a still has no neighbours
        step_of = {f.id: s for s, f in enumerate(vframes)}
        steps = np.array([step_of[b.image_id] for b in boxes], dtype=np.int64)
        tids = hysteresis_tracks(tracker, steps, ds.xyxy(boxes), width=vframes[0].width, height=vframes[0].height)
        for t in np.unique(tids):
            members = np.flatnonzero(tids == t)
            fixes = [i for i in members if id(boxes[i]) in is_correction]
            if not fixes:
                continue
            for i in members:
                b = boxes[i]
                if b.image_id in reviewed_frames:
                    continue
                d, _, c = min((abs(int(steps[i] - steps[j])), not boxes[j].kept, j) for j in fixes)
                fix = boxes[c]
                if d > reach or fix.kept == b.kept:
                    continue
                link = {"video_id": vid, "frame_index": int(frames[fix.image_id].frame_index),
                        "review": fix.extra.get("review")}
                before = _provenance(b)
                if fix.kept:
                    b.decision, b.reason = KEPT, ""
                    b.extra.pop("pruned_round", None)
                    b.extra.update(review_track=link, before_review=before)
                    counts["track_kept"] += 1
                else:
                    b.prune(REVIEW_TRACK, pruned_round=round, review_track=link, before_review=before)
                    counts["track_pruned"] += 1
    return counts
