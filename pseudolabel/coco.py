"""The COCO file boundary: the only place where ``xyxy`` becomes COCO's ``xywh`` and back.

Our files are plain COCO (readable by pycocotools) with extra keys:
per image ``video_id``, ``frame_index``, ``timestamp``; per annotation ``score``, ``round``,
``source``, ``decision``, ``reason`` and any provenance extras (``track_id``, ``outlier_score``…).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .boxes import xywh_to_xyxy, xyxy_to_xywh
from .files import atomic_write_json, read_json_or_raise
from .records import KEPT, PRUNED, Box, Dataset, Frame

_BOX_KEYS = {"id", "image_id", "bbox", "area", "iscrowd", "category_id", "score", "round", "source",
             "decision", "reason"}


class CocoFormatError(ValueError):
    """A COCO file that cannot be read; the message names the file and the offending entry."""


def to_coco(ds: Dataset, *, kept_only: bool = False) -> dict[str, Any]:
    """Serialise a :class:`Dataset` to a COCO dict. Box ids are written as stored (must be unique)."""
    images = [
        {"id": f.id, "file_name": f.file_name, "width": f.width, "height": f.height,
         "video_id": f.video_id, "frame_index": f.frame_index, "timestamp": f.timestamp}
        for f in ds.frames
    ]
    boxes = [b for b in ds.boxes if b.kept or not kept_only]
    xywh = xyxy_to_xywh([b.xyxy for b in boxes])
    annotations = []
    for b, (x, y, w, h) in zip(boxes, xywh):
        ann = {"id": b.id, "image_id": b.image_id, "category_id": b.category_id,
               "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": 0,
               "score": float(b.score), "round": int(b.round), "source": b.source,
               "decision": b.decision, "reason": b.reason}
        ann.update(b.extra)
        annotations.append(ann)
    return {"info": dict(ds.info), "images": images, "annotations": annotations,
            "categories": list(ds.categories)}


def from_coco(data: dict[str, Any], *, source_name: str = "<dict>") -> Dataset:
    """Parse a COCO dict (ours or a plain one) into a :class:`Dataset`, validating as it goes."""
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise CocoFormatError(f"{source_name}: not a COCO file (needs 'images' and 'annotations')")
    frames: list[Frame] = []
    seen: set[int] = set()
    for i, im in enumerate(data["images"]):
        try:
            fid = int(im["id"])
            f = Frame(id=fid, file_name=str(im.get("file_name", "")), width=int(im.get("width", 0)),
                      height=int(im.get("height", 0)),
                      video_id=str(im.get("video_id", Path(str(im.get("file_name", fid))).stem)),
                      frame_index=int(im.get("frame_index", 0)),
                      timestamp=float(im.get("timestamp", 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise CocoFormatError(f"{source_name}: images[{i}] is malformed ({e!r})") from None
        if fid in seen:
            raise CocoFormatError(f"{source_name}: images[{i}] repeats image id {fid}")
        seen.add(fid)
        frames.append(f)
    boxes: list[Box] = []
    for i, ann in enumerate(data["annotations"]):
        try:
            bbox = [float(v) for v in ann["bbox"]]
            image_id = int(ann["image_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise CocoFormatError(f"{source_name}: annotations[{i}] is malformed ({e!r})") from None
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise CocoFormatError(f"{source_name}: annotations[{i}] has an invalid bbox {ann['bbox']!r} "
                                  "(needs 4 finite numbers, width and height >= 0)")
        if image_id not in seen:
            raise CocoFormatError(f"{source_name}: annotations[{i}] points to unknown image_id {image_id}")
        decision = ann.get("decision", KEPT)
        if decision not in (KEPT, PRUNED):
            raise CocoFormatError(f"{source_name}: annotations[{i}] has decision {decision!r}")
        xyxy = tuple(float(v) for v in xywh_to_xyxy([bbox])[0])
        boxes.append(Box(
            id=int(ann.get("id", i + 1)), image_id=image_id, xyxy=xyxy,
            score=float(ann.get("score", 1.0)), round=int(ann.get("round", 0)),
            source=str(ann.get("source", "annotation")), decision=decision,
            reason=str(ann.get("reason", "")), category_id=int(ann.get("category_id", 1)),
            extra={k: v for k, v in ann.items() if k not in _BOX_KEYS},
        ))
    return Dataset(frames=frames, boxes=boxes, categories=list(data.get("categories") or []),
                   info=dict(data.get("info") or {}))


def save_coco(ds: Dataset, path: str | Path, *, kept_only: bool = False) -> Path:
    """Write ``ds`` atomically as COCO JSON."""
    return atomic_write_json(path, to_coco(ds, kept_only=kept_only))


def load_coco(path: str | Path) -> Dataset:
    """Read a COCO JSON file; malformed content raises :class:`CocoFormatError` naming the file."""
    path = Path(path)
    data = read_json_or_raise(path, CocoFormatError)
    return from_coco(data, source_name=str(path))
