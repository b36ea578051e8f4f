"""A reviewer's corrections in the loop: the reviewed set, how a round applies it, and which frames to review.

- :mod:`.reviewed`: a reviewed export (read by :func:`pseudolabel.export.read_export`) compared with the round it
  came from -> the experiment's *reviewed set* (``runs/<exp>/review/reviewed.json``): per reviewed frame, the
  boxes the reviewer kept, moved or drew (kept) and the ones they deleted (pruned, reason ``review_deleted``),
  each with ``source=<tool>`` and ``extra["reviewed"] = True``.
- :mod:`.apply`: a round's dataset with the reviewed set applied: reviewed frames are ground truth, and a
  correction also fixes the boxes its track links to in the neighbouring frames.
- :mod:`.informative`: frames ordered by how uncertain or disputed they are, for the export and the dashboard.
- :mod:`.stage`: ``stage=review_import`` (``make review-import``), the thin IO shell.

The student trains on boxes pruned with a reason of :data:`HARD_NEGATIVE_REASONS` as hard negatives: background,
never ignored, and crops are chosen around them (:class:`pseudolabel.student.data.PseudoLabelDataset`).
"""
from __future__ import annotations

REVIEW_DELETED = "review_deleted"  # the reviewer deleted the box (or left it pruned)
REVIEW_ABSENT = "review_absent"    # on a reviewed frame but not among the reviewer's boxes
REVIEW_TRACK = "review_track"      # linked by a track to a box the reviewer deleted, a few frames away
HARD_NEGATIVE_REASONS = (REVIEW_DELETED, REVIEW_ABSENT, REVIEW_TRACK)
REVIEW_CLASSES = ("kept", "moved", "drawn", "deleted")  # extra["review"] of a box of the reviewed set

__all__ = ["HARD_NEGATIVE_REASONS", "REVIEW_ABSENT", "REVIEW_CLASSES", "REVIEW_DELETED", "REVIEW_TRACK"]
