"""The reviewed set: what a reviewer kept, moved, drew and deleted on the frames of one round (pure functions).

An export read back after review (:func:`pseudolabel.export.read_export`) is compared with the round it was made
from. Frames are matched by key ``(video_id, frame_index)``, which every reader rebuilds from the image name. Every
frame of the export counts as reviewed (export only the frames to review: ``export.budget``), except in Label Studio,
where only tasks holding a submitted annotation do (the reader lists them in ``info["annotated_frames"]``; the others
hold only our predictions). On a frame, the reviewer's kept boxes are matched one-to-one to the round's boxes as the
merge matches them (:func:`pseudolabel.merge.assign_pairs`):

- matched, corners within :data:`MOVED_PX`: ``kept`` (a pruned box the reviewer turned back into a ball too);
- matched, further: ``moved``;
- unmatched: ``drawn``;
- a kept box of the round the reviewer did not keep, and a box the reviewer left pruned: ``deleted``.

Every box of the reviewed set has score 1.0, ``round`` = the round reviewed, ``source`` = the tool,
``extra["reviewed"] = True``, ``extra["review"]`` (one of :data:`pseudolabel.review.REVIEW_CLASSES`) and, when it
stands for a box of the round, ``extra["review_of"]`` (that box's source, score, round, decision and reason).
Deleted boxes are pruned with reason :data:`pseudolabel.review.REVIEW_DELETED`. Boxes are ``xyxy`` float pixels.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from ..export.common import ExportError, image_name
from ..merge import assign_pairs
from ..records import KEPT, PRUNED, Box, Dataset, Frame
from . import REVIEW_DELETED

MOVED_PX = 0.5  # corners closer than this are the box as exported: format rounding (YOLO's 6 decimals), not a drag


class ReviewError(ExportError):
    """A reviewed export that cannot be imported; the message names the frame or file at fault."""


def match_frames(round_ds: Dataset, export_ds: Dataset, *, source_name: str, round_name: str
                 ) -> list[tuple[Frame, Frame]]:
    """``(frame of the round, frame of the export)`` for every frame of the export, in export order.

    Raises
    ------
    ReviewError
        The export holds no frame, a frame twice, a frame the round does not have, or a frame whose size differs
        from the round's (a size of 0, which some tools leave out, is not checked).
    """
    if not export_ds.frames:
        raise ReviewError(f"{source_name}: the export holds no frame; nothing imported")
    by_key = round_ds.frame_by_key()
    seen: set[tuple[str, int]] = set()
    pairs = []
    for ef in export_ds.frames:
        name = image_name(ef)
        if ef.key in seen:
            raise ReviewError(f"{source_name}: frame {name} appears twice in the export; nothing imported")
        seen.add(ef.key)
        rf = by_key.get(ef.key)
        if rf is None:
            raise ReviewError(f"{source_name}: frame {name} (video {ef.video_id!r}, frame {ef.frame_index}) is not a "
                              f"frame of {round_name}; nothing imported")
        if ef.width and ef.height and (ef.width, ef.height) != (rf.width, rf.height):
            raise ReviewError(f"{source_name}: frame {name} is {ef.width}x{ef.height} in the export but "
                              f"{rf.width}x{rf.height} in {round_name}; nothing imported")
        pairs.append((rf, ef))
    return pairs


def _provenance(b: Box) -> dict[str, Any]:
    return {"source": b.source, "score": float(b.score), "round": int(b.round), "decision": b.decision,
            "reason": b.reason}


def _reviewed_box(xyxy, *, review: str, of: Box | None, tool: str, round: int, category_id: int) -> Box:
    extra: dict[str, Any] = {"reviewed": True, "review": review}
    if of is not None:
        extra["review_of"] = _provenance(of)
    deleted = review == "deleted"
    return Box(image_id=0, xyxy=tuple(float(v) for v in xyxy), score=1.0, round=round, source=tool,
               decision=PRUNED if deleted else KEPT, reason=REVIEW_DELETED if deleted else "",
               category_id=category_id, extra=extra)


def review_boxes(round_boxes: list[Box], export_boxes: list[Box], *, tool: str, round: int, iou_threshold: float,
                 centre_factor: float | None = None) -> list[Box]:
    """The reviewed set's boxes of one frame (``image_id`` left 0), classified as the module docstring says.

    Parameters
    ----------
    round_boxes
        The round's boxes on the frame (kept and pruned), ``xyxy`` float pixels.
    export_boxes
        The reviewer's boxes on the frame, ``xyxy`` float pixels, ``category_id`` already in the round's numbering.
    tool, round
        ``source`` and ``round`` of the reviewed boxes.
    iou_threshold, centre_factor
        Same object: as :func:`pseudolabel.merge.assign_pairs`.
    """
    kept = [b for b in export_boxes if b.kept]
    left_pruned = [b for b in export_boxes if not b.kept]
    pairs = assign_pairs(round_boxes, kept, iou_threshold=iou_threshold, centre_factor=centre_factor)
    of = {j: round_boxes[i] for i, j in pairs}
    out = []
    for j, e in enumerate(kept):
        r = of.get(j)
        if r is None:
            out.append(_reviewed_box(e.xyxy, review="drawn", of=None, tool=tool, round=round,
                                     category_id=e.category_id))
        elif max(abs(a - b) for a, b in zip(r.xyxy, e.xyxy)) <= MOVED_PX:
            out.append(_reviewed_box(r.xyxy, review="kept", of=r, tool=tool, round=round, category_id=e.category_id))
        else:
            out.append(_reviewed_box(e.xyxy, review="moved", of=r, tool=tool, round=round,
                                     category_id=e.category_id))
    matched = {i for i, _ in pairs}
    unmatched = [r for i, r in enumerate(round_boxes) if i not in matched]
    out += [_reviewed_box(r.xyxy, review="deleted", of=r, tool=tool, round=round, category_id=r.category_id)
            for r in unmatched if r.kept]
    still = [r for r in unmatched if not r.kept]
    of_pruned = {j: still[i] for i, j in assign_pairs(still, left_pruned, iou_threshold=iou_threshold,
                                                      centre_factor=centre_factor)}
    out += [_reviewed_box(e.xyxy, review="deleted", of=of_pruned.get(j), tool=tool, round=round,
                          category_id=e.category_id) for j, e in enumerate(left_pruned)]
    return out


def _category_map(round_ds: Dataset, export_ds: Dataset, *, source_name: str, round_name: str) -> dict[int, int]:
    """Export category id -> the round's, matched by name (``<name>_pruned`` is already ``<name>``)."""
    ours = {str(c["name"]): int(c["id"]) for c in round_ds.categories}
    out = {}
    for c in export_ds.categories:
        name = str(c["name"])
        if name not in ours:
            raise ReviewError(f"{source_name}: label {name!r} is not a category of {round_name} "
                              f"({', '.join(sorted(ours)) or 'none'}); nothing imported")
        out[int(c["id"])] = ours[name]
    return out


def reviewed_set(round_ds: Dataset, export_ds: Dataset, *, tool: str, round: int, round_name: str, source_name: str,
                 iou_threshold: float, centre_factor: float | None = None) -> Dataset:
    """The reviewed set of one import: the export's frames (with the round's frame records) and their boxes.

    Parameters
    ----------
    round_ds
        The round the export was made from (``annotations.json``).
    export_ds
        The reviewed export, as :func:`pseudolabel.export.read_export` returns it.
    tool, round
        ``source`` and ``round`` of the reviewed boxes.
    round_name, source_name
        How messages name the round and the export.
    iou_threshold, centre_factor
        Matching, as the merge's.

    Returns
    -------
    Dataset
        Frames: the reviewed frames (ids as in ``round_ds``); boxes as :func:`review_boxes`, ids 1..N;
        ``info["imports"]``: one record of this import (source, tool, round, frames, count per review class).

    Raises
    ------
    ReviewError
        See :func:`match_frames`; also Label Studio tasks none of which holds an annotation, and a box whose label
        is not one of the round's categories.
    """
    annotated = export_ds.info.get("annotated_frames")
    if annotated is not None:  # Label Studio: a task with only our predictions was not reviewed
        if export_ds.frames and not annotated:
            raise ReviewError(f"{source_name}: no task holds an annotation, so no frame was reviewed; nothing imported")
        wanted = set(annotated)
        export_ds = Dataset(frames=[f for f in export_ds.frames if f.id in wanted],
                            boxes=[b for b in export_ds.boxes if b.image_id in wanted],
                            categories=export_ds.categories, info=export_ds.info)
    pairs = match_frames(round_ds, export_ds, source_name=source_name, round_name=round_name)
    categories = _category_map(round_ds, export_ds, source_name=source_name, round_name=round_name)
    ours = round_ds.boxes_by_image()
    theirs = export_ds.boxes_by_image()
    boxes: list[Box] = []
    for rf, ef in pairs:
        mine = [replace(b, category_id=categories.get(b.category_id, b.category_id)) for b in theirs.get(ef.id, [])]
        for b in review_boxes(ours.get(rf.id, []), mine, tool=tool, round=round, iou_threshold=iou_threshold,
                              centre_factor=centre_factor):
            b.image_id = rf.id
            boxes.append(b)
    counts = review_counts(boxes)
    record = {"source": source_name, "tool": tool, "round": int(round), "n_frames": len(pairs), **counts}
    out = Dataset(frames=[replace(rf) for rf, _ in pairs], boxes=boxes,
                  categories=[dict(c) for c in round_ds.categories], info={"imports": [record]})
    out.renumber()
    return out


def review_counts(boxes: list[Box]) -> dict[str, int]:
    """``{"kept": n, "moved": n, "drawn": n, "deleted": n}`` of reviewed boxes (``extra["review"]``)."""
    from . import REVIEW_CLASSES

    c = Counter(b.extra.get("review") for b in boxes)
    return {k: int(c.get(k, 0)) for k in REVIEW_CLASSES}


def combine(old: Dataset | None, new: Dataset) -> Dataset:
    """The reviewed set after a new import: ``new``'s frames replace ``old``'s frames of the same key.

    Frames are renumbered 1..N in key order, boxes 1..N in frame order; ``info["imports"]`` lists every import.
    """
    keep = [] if old is None else [f for f in old.frames if f.key not in {g.key for g in new.frames}]
    sources = [(old, f) for f in keep] + [(new, f) for f in new.frames]
    sources.sort(key=lambda sf: sf[1].key)
    frames, boxes = [], []
    for fid, (ds, f) in enumerate(sources, start=1):
        frames.append(replace(f, id=fid))
        boxes += [replace(b, image_id=fid, extra=dict(b.extra)) for b in ds.boxes_by_image().get(f.id, [])]
    imports = ([] if old is None else list(old.info.get("imports", []))) + list(new.info.get("imports", []))
    out = Dataset(frames=frames, boxes=boxes, categories=[dict(c) for c in new.categories], info={"imports": imports})
    out.renumber()
    return out
