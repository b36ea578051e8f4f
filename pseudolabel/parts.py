"""Resumable, shardable labelling: one part file per video, merged into the round's ``labels.json``.

The labelling stage labels video by video and writes each video's result atomically as soon as its
last frame is done::

    round_<N>/label_parts/<video_id>.json   boxes (xyxy, score) of the video's frames, context detections
                                            (xyxy, score, class) + the settings used
    round_<N>/label_parts/<video_id>.npz    their detector features, when the detector returns any

A video whose part exists is never labelled again, so a killed run loses at most the video it was
on. Shards (``label.shard`` = i of ``label.num_shards`` = n) label only the videos whose index in the
sorted video ids is i modulo n; they can run at once (joblib, Slurm...) because each writes only its
own videos' parts. :func:`merge_parts` then rebuilds exactly what one pass over every frame gives:
frames in ``frames.json`` order, each frame's boxes by decreasing score, box ids 1..N.

Batches never mix videos (``split_by_video``), so a video's boxes do not depend on which shard or
run labelled it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import files
from .detectors.base import Detector
from .records import Box, Dataset, Frame

log = logging.getLogger("pseudolabel")

PART_VERSION = 1


class PartMismatchError(ValueError):
    """A part on disk was made for other frames or other settings than the current run's."""


def select_videos(video_ids: Sequence[str], *, shard: int | None, num_shards: int = 1) -> list[str]:
    """The sorted unique video ids assigned to ``shard`` (all of them when ``shard`` is None).

    Video ``i`` of the sorted ids belongs to shard ``i % num_shards``: stable for a given set of
    videos, whatever the order they were listed in.
    """
    num_shards = int(num_shards)
    if num_shards < 1:
        raise ValueError(f"label.num_shards must be >= 1, got {num_shards}")
    ids = sorted(set(video_ids))
    if shard is None:
        return ids
    shard = int(shard)
    if not 0 <= shard < num_shards:
        raise ValueError(f"label.shard must be in 0..{num_shards - 1} (label.num_shards={num_shards}), got {shard}")
    return [v for i, v in enumerate(ids) if i % num_shards == shard]


def part_paths(parts_dir: str | Path, video_id: str) -> tuple[Path, Path]:
    """(json, npz) paths of a video's part."""
    parts_dir = Path(parts_dir)
    return parts_dir / f"{video_id}.json", parts_dir / f"{video_id}.npz"


def _frames_key(frames: Sequence[Frame]) -> list[list]:
    return [[int(f.id), f.file_name] for f in frames]


def write_part(parts_dir: str | Path, video_id: str, *, frames: Sequence[Frame], boxes: Sequence[Box],
               features: np.ndarray | None, settings: dict[str, Any], source: str,
               context: Sequence[Box] = ()) -> Path:
    """Write one video's part atomically: features first, then the JSON (its presence = part done).

    Coordinates are stored as ``xyxy`` floats (JSON round-trips Python floats exactly), so a merged
    file is identical to one written straight from memory.
    """
    jpath, npath = part_paths(parts_dir, video_id)
    if features is not None and len(boxes):
        files.atomic_write_npz(npath, features=np.asarray(features, dtype=np.float32))
    doc = {
        "version": PART_VERSION, "video_id": video_id, "settings": dict(settings), "source": str(source),
        "frames": _frames_key(frames),
        "n_features": int(len(boxes)) if features is not None and len(boxes) else 0,
        "boxes": [[int(b.image_id), *(float(v) for v in b.xyxy), float(b.score)] for b in boxes],
        "context": [[int(b.image_id), *(float(v) for v in b.xyxy), float(b.score), int(b.category_id)]
                    for b in context],
    }
    return files.atomic_write_bytes(jpath, json.dumps(doc, separators=(",", ":")).encode())


def read_part(parts_dir: str | Path, video_id: str) -> dict[str, Any] | None:
    """The part's JSON document (None when the video has no part yet), with ``features`` loaded."""
    jpath, npath = part_paths(parts_dir, video_id)
    if not jpath.is_file():
        return None
    doc = json.loads(jpath.read_text())
    doc["features"] = None
    if doc.get("n_features"):
        with np.load(npath) as z:
            doc["features"] = z["features"]
        if len(doc["features"]) != doc["n_features"]:
            raise PartMismatchError(f"{npath}: {len(doc['features'])} feature rows for {doc['n_features']} boxes")
    return doc


def check_part(doc: dict[str, Any], *, frames: Sequence[Frame], settings: dict[str, Any], path: Path) -> None:
    """Raise :class:`PartMismatchError` when ``doc`` was made for other frames or settings."""
    if doc.get("version") != PART_VERSION:
        raise PartMismatchError(f"{path}: part version {doc.get('version')!r}, expected {PART_VERSION}")
    if doc.get("settings") != json.loads(json.dumps(settings)):
        raise PartMismatchError(f"{path}: labelled with {doc.get('settings')}, but this run uses {settings}")
    if doc.get("frames") != _frames_key(frames):
        raise PartMismatchError(f"{path}: labelled for other frames than this experiment's frames.json "
                                "(frames sampled again?)")


def label_parts(detector_factory: Callable[[], Detector], frames: Sequence[Frame], *, parts_dir: str | Path,
                video_ids: Sequence[str], frames_dir: str | Path, round: int, class_ids: Sequence[int] | None,
                score_threshold: float, batch_size: int | None, category_id: int = 1,
                progress: bool = True, context_class_ids: Sequence[int] | None = None,
                context_score_threshold: float = 0.5) -> dict[str, list[str]]:
    """Label the videos of ``video_ids`` that have no part yet, writing each part when its video is done.

    ``context_class_ids``: other classes of the detector kept as context (see :func:`merge_context`).

    The detector is built (``detector_factory()``) only when some video needs labelling. ``batch_size``
    (frames per detector call) None: the detector's ``frames_per_call`` (4 if it has none).

    Returns
    -------
    dict with ``labelled`` and ``reused`` video ids.
    """
    from .label import iter_detections

    parts_dir = Path(parts_dir)
    settings = part_settings(round=round, class_ids=class_ids, score_threshold=score_threshold,
                             category_id=category_id, context_class_ids=context_class_ids,
                             context_score_threshold=context_score_threshold)
    by_video: dict[str, list[Frame]] = {}
    for f in frames:
        by_video.setdefault(f.video_id, []).append(f)
    todo, reused = [], []
    for vid in sorted(set(video_ids)):
        if vid not in by_video:
            continue
        doc = read_part(parts_dir, vid)
        if doc is None:
            todo.append(vid)
        else:
            check_part(doc, frames=by_video[vid], settings=settings, path=part_paths(parts_dir, vid)[0])
            reused.append(vid)
    if not todo:
        return {"labelled": [], "reused": reused}
    # temps left by a killed writer are not removed here: another shard may be writing right now
    # (the merged stage removes stale temps, and the parts with it)
    parts_dir.mkdir(parents=True, exist_ok=True)
    detector = detector_factory()
    if batch_size is None:
        batch_size = int(getattr(detector, "frames_per_call", 4))
    ordered = [f for vid in todo for f in by_video[vid]]
    remaining = {vid: len(by_video[vid]) for vid in todo}
    boxes: list[Box] = []
    context: list[Box] = []
    feats: list[np.ndarray] = []
    has_features = None
    for frame, det, ctx in iter_detections(detector, ordered, frames_dir=frames_dir, class_ids=class_ids,
                                           score_threshold=score_threshold, batch_size=batch_size,
                                           split_by_video=True, progress=progress,
                                           desc=f"label r{round} [{detector.name}]",
                                           context_class_ids=context_class_ids,
                                           context_score_threshold=context_score_threshold):
        for j in range(len(det)):
            boxes.append(Box(image_id=frame.id, xyxy=tuple(float(v) for v in det.boxes[j]),
                             score=float(det.scores[j]), round=round, source=detector.name, category_id=category_id))
        context.extend(Box(image_id=frame.id, xyxy=tuple(float(v) for v in ctx.boxes[j]), score=float(ctx.scores[j]),
                           round=round, source=detector.name, category_id=int(ctx.labels[j]))
                       for j in range(len(ctx)))
        if len(det):
            has_features = det.features is not None
            if has_features:
                feats.append(np.asarray(det.features, dtype=np.float32).reshape(len(det), -1))
        remaining[frame.video_id] -= 1
        if remaining[frame.video_id] == 0:
            vid = frame.video_id
            write_part(parts_dir, vid, frames=by_video[vid], boxes=boxes,
                       features=np.concatenate(feats) if has_features and feats else None, settings=settings,
                       source=detector.name, context=context)
            log.debug("label part %s: %d boxes on %d frames", vid, len(boxes), len(by_video[vid]))
            boxes, context, feats, has_features = [], [], [], None
    return {"labelled": todo, "reused": reused}


def part_settings(*, round: int, class_ids: Sequence[int] | None, score_threshold: float,
                  category_id: int = 1, context_class_ids: Sequence[int] | None = None,
                  context_score_threshold: float = 0.5) -> dict[str, Any]:
    """What a part depends on besides the detector: checked when the part is reused or merged."""
    out = {"round": int(round), "class_ids": None if class_ids is None else [int(c) for c in class_ids],
           "score_threshold": float(score_threshold), "category_id": int(category_id)}
    if context_class_ids is not None:
        out.update(context_class_ids=[int(c) for c in context_class_ids],
                   context_score_threshold=float(context_score_threshold))
    return out


def merge_parts(parts_dir: str | Path, frames: Sequence[Frame], *, round: int, class_ids: Sequence[int] | None,
                score_threshold: float, category_id: int = 1, context_class_ids: Sequence[int] | None = None,
                context_score_threshold: float = 0.5) -> tuple[Dataset, dict[int, np.ndarray], str]:
    """Every video's part -> the dataset one pass over ``frames`` gives (see :func:`label_frames`).

    Returns
    -------
    dataset : Dataset
        All ``frames`` (in their order) and their boxes, ids 1..N in frame order.
    features : dict[int, ndarray]
        Box id -> feature vector (empty when the detector returns none).
    source : str
        The detector name recorded in the parts.

    Raises
    ------
    PartMismatchError
        A video has no part, or a part was made for other frames or settings.
    """
    settings = part_settings(round=round, class_ids=class_ids, score_threshold=score_threshold,
                             category_id=category_id, context_class_ids=context_class_ids,
                             context_score_threshold=context_score_threshold)
    by_video: dict[str, list[Frame]] = {}
    for f in frames:
        by_video.setdefault(f.video_id, []).append(f)
    boxes_of: dict[int, list[tuple[Box, np.ndarray | None]]] = {}
    sources: set[str] = set()
    for vid in sorted(by_video):
        doc = read_part(parts_dir, vid)
        path = part_paths(parts_dir, vid)[0]
        if doc is None:
            raise PartMismatchError(f"{path}: missing; label video {vid!r} first")
        check_part(doc, frames=by_video[vid], settings=settings, path=path)
        src = str(doc["source"])
        sources.add(src)
        fe = doc["features"]
        for j, (image_id, x1, y1, x2, y2, score) in enumerate(doc["boxes"]):
            box = Box(image_id=int(image_id), xyxy=(float(x1), float(y1), float(x2), float(y2)), score=float(score),
                      round=int(round), source=src, category_id=int(category_id))
            boxes_of.setdefault(box.image_id, []).append((box, None if fe is None else fe[j]))
    if len(sources) > 1:
        raise PartMismatchError(f"{parts_dir}: parts come from different detectors {sorted(sources)}")
    ds = Dataset(frames=list(frames))
    features: dict[int, np.ndarray] = {}
    for f in frames:
        for box, vec in boxes_of.get(f.id, ()):
            box.id = len(ds.boxes) + 1
            ds.boxes.append(box)
            if vec is not None:
                features[box.id] = vec
    return ds, features, next(iter(sources), "")


def merge_context(parts_dir: str | Path, frames: Sequence[Frame]) -> Dataset:
    """The context detections of every video's part (call after :func:`merge_parts` checked the parts).

    Returns
    -------
    Dataset
        All ``frames``; one Box per context detection (``category_id`` = the detector's class, ``source``
        = the detector), ids 1..N in frame order. A category per class seen, named ``class_<id>``.
    """
    video_ids = sorted({f.video_id for f in frames})
    rows: dict[int, list[Box]] = {}
    for vid in video_ids:
        doc = read_part(parts_dir, vid)
        if doc is None:
            raise PartMismatchError(f"{part_paths(parts_dir, vid)[0]}: missing; label video {vid!r} first")
        for image_id, x1, y1, x2, y2, score, label in doc.get("context", ()):
            rows.setdefault(int(image_id), []).append(
                Box(image_id=int(image_id), xyxy=(float(x1), float(y1), float(x2), float(y2)), score=float(score),
                    round=int(doc["settings"]["round"]), source=str(doc["source"]), category_id=int(label)))
    ds = Dataset(frames=list(frames), categories=[])
    for f in frames:
        for box in rows.get(f.id, ()):
            box.id = len(ds.boxes) + 1
            ds.boxes.append(box)
    ds.categories = [{"id": c, "name": f"class_{c}"} for c in sorted({b.category_id for b in ds.boxes})]
    return ds
