"""Merge the boxes of a new pseudo-labelling round into the previous round's dataset.

Frames are joined by :attr:`Frame.key` (video id, frame index); within a frame shared by both
rounds, previous boxes are matched one-to-one to new boxes by IoU. The new round's verdict wins
where it speaks, and no previous box is ever lost: each output box lists the previous box ids it
stands for in ``extra["prev_ids"]`` (see :func:`check_merge_invariant`).
"""
from __future__ import annotations

import copy
from collections import Counter

import numpy as np

from pseudolabel.boxes import iou_matrix
from pseudolabel.records import Box, Dataset, Frame

# Value of extra["merge_status"], written afresh on every output box by merge_rounds.
STATUSES = ("confirmed", "revived", "newly_pruned", "still_pruned", "unconfirmed", "carried_over", "new")

# Matching passes, in priority order: (prev kept?, new kept?). Kept previous boxes claim kept new
# boxes first so that a pruned duplicate never steals the confirmation of a kept box.
_PASSES = ((True, True), (True, False), (False, False), (False, True))


def _box_sort_key(b: Box) -> tuple:
    return (*b.xyxy, -b.score, b.decision, b.id)


def assign_pairs(prev: list[Box], new: list[Box], *, iou_threshold: float,
                 centre_factor: float | None = None) -> list[tuple[int, int]]:
    """One-to-one pairs ``(i_prev, i_new)`` chosen by maximum-weight assignment (not greedily, unlike
    :func:`pseudolabel.evaluate.greedy_match`): pairs with IoU >= ``iou_threshold`` or, with ``centre_factor``,
    centres closer than ``centre_factor`` times the smaller box diagonal (two estimates of one tiny ball often
    overlap less than the IoU threshold).

    Each pass of :data:`_PASSES` maximises a summed weight (``scipy.optimize.linear_sum_assignment``) over the
    boxes still unmatched: ``1 + IoU`` for pairs over the IoU threshold, then ``1 - distance / limit`` for
    centre-only pairs.
    """
    if not prev or not new:
        return []
    from scipy.optimize import linear_sum_assignment

    iou = iou_matrix([b.xyxy for b in prev], [b.xyxy for b in new])
    weight = np.where(iou >= iou_threshold, 1.0 + iou, 0.0)
    if centre_factor is not None:
        p, n = np.array([b.xyxy for b in prev], float), np.array([b.xyxy for b in new], float)
        cp, cn = (p[:, :2] + p[:, 2:]) / 2, (n[:, :2] + n[:, 2:]) / 2
        dist = np.linalg.norm(cp[:, None, :] - cn[None, :, :], axis=-1)
        limit = centre_factor * np.minimum(np.hypot(*(p[:, 2:] - p[:, :2]).T)[:, None],
                                           np.hypot(*(n[:, 2:] - n[:, :2]).T)[None, :])
        weight = np.where((weight == 0) & (dist < limit), 1.0 - dist / np.maximum(limit, 1e-9), weight)
    free_p, free_n = set(range(len(prev))), set(range(len(new)))
    pairs: list[tuple[int, int]] = []
    for prev_kept, new_kept in _PASSES:
        pi = [i for i in sorted(free_p) if prev[i].kept == prev_kept]
        ni = [j for j in sorted(free_n) if new[j].kept == new_kept]
        if not pi or not ni:
            continue
        sub = weight[np.ix_(pi, ni)]
        rows, cols = linear_sum_assignment(sub, maximize=True)
        for r, c in zip(rows, cols):
            if sub[r, c] > 0:
                pairs.append((pi[r], ni[c]))
                free_p.discard(pi[r])
                free_n.discard(ni[c])
    return pairs


def _boxes_by_frame(ds: Dataset, name: str) -> dict[int, list[Box]]:
    ids = [f.id for f in ds.frames]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: duplicate frame ids")
    if len({f.key for f in ds.frames}) != len(ds.frames):
        raise ValueError(f"{name}: two frames share a (video_id, frame_index) key")
    by_image = ds.boxes_by_image()
    orphans = sorted(set(by_image) - set(ids))
    if orphans:
        raise ValueError(f"{name}: boxes refer to unknown image ids {orphans[:10]}")
    return {i: sorted(bs, key=_box_sort_key) for i, bs in by_image.items()}


def _from_prev(p: Box, status: str) -> Box:
    out = copy.deepcopy(p)
    out.extra.setdefault("first_round", p.round)
    out.extra["prev_ids"] = [p.id]
    out.extra["merge_status"] = status
    return out


GEOMETRIES = ("new", "prev", "fused")
NOT_REDETECTED = "not_redetected"  # a student's own find that later rounds stopped detecting (max_unconfirmed_rounds)
# Pruning reasons that judge a box's shape, not whether the object is there.
SHAPE_REASONS = ("degenerate", "too_small", "too_large", "aspect")


def _found_by_student(b: Box) -> bool:
    """Whether a student round first detected ``b``, not round 0's teacher (even if a student then confirmed it)."""
    return int(b.extra.get("first_round", b.round)) >= 1


def _from_matched(p: Box, n: Box, geometry: str = "new") -> Box:
    out = copy.deepcopy(n)
    if n.kept and p.kept and geometry != "new":
        if geometry == "prev":
            out.xyxy = tuple(p.xyxy)
        else:  # score-weighted average of both estimates, as weighted boxes fusion does
            w = np.array([p.score, n.score], dtype=np.float64)
            w = w / w.sum() if w.sum() > 0 else np.array([0.5, 0.5])
            out.xyxy = tuple(float(v) for v in w[0] * np.asarray(p.xyxy) + w[1] * np.asarray(n.xyxy))
    out.extra["prev_ids"] = [p.id]
    out.extra["first_round"] = p.extra.get("first_round", p.round)
    out.extra["prev_xyxy"] = list(p.xyxy)
    if n.kept:
        out.extra["confirmed_from"] = p.id
        out.extra["merge_status"] = "confirmed" if p.kept else "revived"
    else:
        out.extra["merge_status"] = "newly_pruned" if p.kept else "still_pruned"
    return out


def _from_new(n: Box, round: int) -> Box:
    out = copy.deepcopy(n)
    out.extra["first_round"] = round
    out.extra["prev_ids"] = []
    out.extra["merge_status"] = "new"
    return out


def merge_rounds(prev: Dataset, new: Dataset, *, round: int, iou_threshold: float = 0.5,
                 geometry: str = "new", centre_factor: float | None = None,
                 max_unconfirmed_rounds: int | None = None) -> Dataset:
    """Dataset of round ``round``: ``prev`` updated with the boxes of ``new``. Inputs are not mutated.

    Parameters
    ----------
    prev : Dataset
        Result of the previous round; its box ids must be unique (``Dataset.renumber``).
    new : Dataset
        Boxes of this round (kept or already pruned by this round's heuristics).
    round : int
        Round number written to ``info["round"]`` and to the ``first_round`` of new boxes.
    iou_threshold : float
        Minimum IoU (``xyxy`` boxes) for a previous and a new box to be the same object.
    centre_factor : float or None
        Also the same object: centres closer than this times the smaller box diagonal (:func:`assign_pairs`).
    max_unconfirmed_rounds : int or None
        A kept box a student round first found (``extra["first_round"] >= 1``) that this many rounds in a row
        did not detect again, kept or pruned, is pruned with reason :data:`NOT_REDETECTED`
        (``extra["pruned_round"] = round``); a better student that sees nothing there is evidence against a
        student's own find. None: kept however long it goes unseen. Boxes round 0's teacher detected are never
        pruned this way, even once a student confirmed or revived them: two detectors found them, and later students
        trained on their own finds forgetting one says more about the students than about the ball.
    geometry : {"new", "prev", "fused"}
        Box of a confirmed pair (both kept): the new round's, the previous one's, or their
        score-weighted average (two noisy estimates of one ball; the student localises tiny balls
        less precisely than the teacher that taught it).

    Returns
    -------
    Dataset
        Frames: the union by key; previous frames keep their ids, new frames get ids after the
        largest. On a frame seen by both rounds, a matched pair becomes one box with the new
        geometry, score, source, round and decision (``confirmed_from``, ``first_round`` of the
        previous box); an unmatched previous kept box stays kept with ``unconfirmed_rounds``
        incremented (pruned once it reaches ``max_unconfirmed_rounds``); an unmatched previous pruned box
        stays pruned; unmatched new boxes are added.
        Frames only in ``prev`` keep their boxes unchanged. Box ids are 1..N sorted by frame key,
        then x1, y1. Each box has ``extra["prev_ids"]`` and ``extra["merge_status"]`` (:data:`STATUSES`).
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    prev_ids = [b.id for b in prev.boxes]
    if len(set(prev_ids)) != len(prev_ids):
        raise ValueError("prev box ids must be unique (call Dataset.renumber())")
    prev_boxes = _boxes_by_frame(prev, "prev")
    new_boxes = _boxes_by_frame(new, "new")
    new_frame_by_key = new.frame_by_key()

    frames: list[Frame] = [copy.deepcopy(f) for f in prev.frames]
    known = {f.key for f in prev.frames}
    next_id = max((f.id for f in prev.frames), default=0) + 1
    only_new: list[tuple[Frame, Frame]] = []  # (new frame, output frame)
    for f in sorted(new.frames, key=lambda f: f.key):
        if f.key not in known:
            out = copy.deepcopy(f)
            out.id = next_id
            next_id += 1
            frames.append(out)
            only_new.append((f, out))

    boxes: list[Box] = []
    for pf in prev.frames:
        pboxes = prev_boxes[pf.id]
        nf = new_frame_by_key.get(pf.key)
        if nf is None:
            boxes += [_from_prev(p, "carried_over") for p in pboxes]
            continue
        nboxes = new_boxes[nf.id]
        pairs = assign_pairs(pboxes, nboxes, iou_threshold=iou_threshold, centre_factor=centre_factor)
        # a kept ball whose new box was pruned for its shape (the new box is bad, not the ball) is not judged by
        # it: the pair is undone, the ball stays kept (unconfirmed) and the new box is recorded as new, pruned
        pairs = [(i, j) for i, j in pairs if not (pboxes[i].kept and not nboxes[j].kept
                                                  and nboxes[j].reason in SHAPE_REASONS)]
        frame_out = [_from_matched(pboxes[i], nboxes[j], geometry) for i, j in pairs]
        matched_p = {i for i, _ in pairs}
        matched_n = {j for _, j in pairs}
        for i, p in enumerate(pboxes):
            if i in matched_p:
                continue
            if p.kept:
                out = _from_prev(p, "unconfirmed")
                unseen = int(p.extra.get("unconfirmed_rounds", 0)) + 1
                out.extra["unconfirmed_rounds"] = unseen
                if (max_unconfirmed_rounds is not None and unseen >= max_unconfirmed_rounds
                        and _found_by_student(p)):
                    out.prune(NOT_REDETECTED, pruned_round=round)
            else:
                out = _from_prev(p, "still_pruned")
            frame_out.append(out)
        frame_out += [_from_new(n, round) for j, n in enumerate(nboxes) if j not in matched_n]
        for b in frame_out:
            b.image_id = pf.id
        boxes += frame_out
    for nf, out_frame in only_new:
        for n in new_boxes[nf.id]:
            b = _from_new(n, round)
            b.image_id = out_frame.id
            boxes.append(b)

    key_of = {f.id: f.key for f in frames}
    boxes.sort(key=lambda b: (key_of[b.image_id], *_box_sort_key(b)))
    frames.sort(key=lambda f: f.key)
    categories = copy.deepcopy(prev.categories)
    cat_ids = {c["id"] for c in categories}
    categories += [copy.deepcopy(c) for c in new.categories if c["id"] not in cat_ids]
    merged = Dataset(frames=frames, boxes=boxes, categories=categories,
                     info={**copy.deepcopy(prev.info), **copy.deepcopy(new.info), "round": round})
    merged.renumber()
    return merged


def check_merge_invariant(prev: Dataset, merged: Dataset) -> list[str]:
    """Problems with the representation of ``prev``'s boxes in ``merged``; empty when fine.

    Every previous box id must appear exactly once across the ``extra["prev_ids"]`` of the merged
    boxes, on a merged frame with the same (video_id, frame_index) key as its previous frame.
    """
    problems: list[str] = []
    prev_ids = [b.id for b in prev.boxes]
    dup = sorted(i for i, c in Counter(prev_ids).items() if c > 1)
    if dup:
        problems.append(f"prev has duplicate box ids {dup[:10]}")
    merged_ids = [b.id for b in merged.boxes]
    dup = sorted(i for i, c in Counter(merged_ids).items() if c > 1)
    if dup:
        problems.append(f"merged has duplicate box ids {dup[:10]}")
    prev_key = {f.id: f.key for f in prev.frames}
    merged_key = {f.id: f.key for f in merged.frames}
    prev_box = {b.id: b for b in prev.boxes}
    seen: Counter = Counter()
    for b in merged.boxes:
        if b.image_id not in merged_key:
            problems.append(f"merged box {b.id} refers to unknown frame {b.image_id}")
        ids = b.extra.get("prev_ids")
        if not isinstance(ids, list):
            problems.append(f"merged box {b.id} has no prev_ids list")
            continue
        for pid in ids:
            seen[pid] += 1
            p = prev_box.get(pid)
            if p is None:
                problems.append(f"merged box {b.id} names unknown prev box {pid}")
            elif prev_key.get(p.image_id) != merged_key.get(b.image_id):
                problems.append(f"prev box {pid} on frame {prev_key.get(p.image_id)} is represented "
                                f"by merged box {b.id} on frame {merged_key.get(b.image_id)}")
    for pid in sorted(prev_box):
        if seen[pid] == 0:
            problems.append(f"prev box {pid} (frame {prev_key.get(prev_box[pid].image_id)}) is missing")
        elif seen[pid] > 1:
            problems.append(f"prev box {pid} is represented {seen[pid]} times")
    return problems


def merge_stats(prev: Dataset, merged: Dataset) -> dict[str, int]:
    """Counts of :data:`STATUSES` in ``merged``, plus ``kept``, ``pruned`` and ``missing``.

    ``confirmed``: previously kept boxes matched by a kept new box; ``newly_pruned``: previously kept,
    matched by a pruned new box; ``new``: new boxes unmatched; ``unconfirmed``: previously kept boxes
    on a frame the new round saw but did not detect; ``carried_over``: boxes of frames only in
    ``prev``; ``revived`` / ``still_pruned``: previously pruned boxes matched by a kept box / still
    pruned. ``missing``: previous box ids not represented (0 when :func:`check_merge_invariant` holds).
    """
    status = Counter(b.extra.get("merge_status") for b in merged.boxes)
    stats = {s: status.get(s, 0) for s in STATUSES}
    stats["kept"] = sum(b.kept for b in merged.boxes)
    stats["pruned"] = len(merged.boxes) - stats["kept"]
    represented = {pid for b in merged.boxes for pid in b.extra.get("prev_ids", [])}
    stats["missing"] = sum(b.id not in represented for b in prev.boxes)
    return stats
