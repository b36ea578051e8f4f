"""At most N objects per frame (one ball in play): the kept boxes of a frame beyond the N with the most evidence
are pruned with reason ``per_frame_cap``.

A property of the footage, declared by the data set (``data.max_per_frame``); null (the default for your own
folder) leaves every frame alone.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..records import Box, Dataset

REASON = "per_frame_cap"
BOTH_ROUNDS = ("confirmed", "revived")  # merge statuses: the box of round k-1 found again in round k


def track_key(b: Box) -> tuple[int, str] | None:
    """A box's track: ``(round, extra["track_id"])`` (each round numbers its own tracks), None without one."""
    tid = b.extra.get("track_id")
    return None if tid is None else (int(b.round), str(tid))


def evidence_keys(boxes: list[Box], *, track_lengths: dict[tuple[int, str], int] | None = None) -> np.ndarray:
    """(N, 4) float sort keys, larger is more evidence, compared left to right: found by two rounds (the merge's
    ``confirmed``/``revived``), kept on its own evidence (a seed, not ``track_confirmed``), its score, then the
    number of kept boxes on its track (:func:`track_key` looked up in ``track_lengths``).

    The score comes before the track's length: a track that jumped from the ball to a player it passed is long,
    and in the frames after the jump its boxes would otherwise outrank the ball's own, higher-scoring box."""
    lengths = track_lengths or {}
    return np.array([[float(b.extra.get("merge_status") in BOTH_ROUNDS),
                      float(b.source != "track_confirmed"),
                      float(b.score),
                      float(lengths.get(track_key(b), 1))] for b in boxes], dtype=np.float64).reshape(-1, 4)


def over_cap_mask(keys: np.ndarray, *, max_boxes: int) -> np.ndarray:
    """(N,) bool: ``True`` for the boxes of one frame ranked below the first ``max_boxes`` by ``keys`` ((N, K),
    compared column by column, ties to the earlier box)."""
    keys = np.asarray(keys, dtype=np.float64)
    out = np.zeros(len(keys), dtype=bool)
    if len(keys) > max_boxes:
        # np.lexsort sorts by its last key first: the first column, descending, then the next...; ties: index
        order = np.lexsort((np.arange(len(keys)), *(-keys[:, j] for j in reversed(range(keys.shape[1])))))
        out[order[max_boxes:]] = True
    return out


def apply_per_frame_cap(ds: Dataset, *, max_boxes: int | None, round: int) -> dict[str, Any]:
    """Prune, in place, the kept boxes of each frame beyond the ``max_boxes`` with the most evidence
    (:func:`evidence_keys`); None does nothing. Returns ``{"per_frame_cap": pruned}``."""
    if max_boxes is None:
        return {REASON: 0}
    if int(max_boxes) < 1:
        raise ValueError(f"max_per_frame must be >= 1 or null, got {max_boxes}")
    kept = ds.boxes_by_image(kept_only=True)
    lengths = Counter(track_key(b) for boxes in kept.values() for b in boxes if track_key(b) is not None)
    n = 0
    for boxes in kept.values():
        if len(boxes) <= max_boxes:
            continue
        for b, over in zip(boxes, over_cap_mask(evidence_keys(boxes, track_lengths=lengths), max_boxes=int(max_boxes)),
                           strict=True):
            if over:
                b.prune(REASON, pruned_round=round)
                n += 1
    return {REASON: n}
