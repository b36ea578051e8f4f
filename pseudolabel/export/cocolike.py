"""COCO dicts for the COCO-based exports (CVAT, FiftyOne) and the tolerant reader of reviewed files.

Both directions go through :mod:`pseudolabel.coco` (``to_coco`` / ``from_coco``), which stays the only
place where ``xyxy`` becomes COCO's ``xywh`` and back.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..coco import CocoFormatError, from_coco, to_coco
from ..records import Dataset
from .common import PROVENANCE, ExportError, ExportItem, frame_file_name, parse_image_name, parse_provenance, \
    unique_box_ids

# CVAT writes these on every shape; they are CVAT's, not provenance, and are not kept on re-import.
CVAT_INTERNAL = ("occluded", "rotation", "keyframe", "outside", "z_order")


def export_coco(items: list[ExportItem], *, categories: list[dict[str, Any]],
                info: dict[str, Any] | None = None) -> dict[str, Any]:
    """COCO dict of the export items: ``file_name`` = the flat export name, box ids unique and > 0.

    Annotations carry our provenance (``score``, ``round``, ``source``, ``decision``, ``reason``) and
    extras as top-level keys, exactly as :func:`pseudolabel.coco.to_coco` writes them.
    """
    ids = unique_box_ids(items)
    view = Dataset(frames=[replace(it.frame, file_name=it.name) for it in items],
                   boxes=[replace(b, id=ids[id(b)]) for it in items for b in it.boxes],
                   categories=list(categories), info=dict(info or {}))
    return to_coco(view)


def read_review_coco(data: Any, *, source_name: str, default_source: str) -> Dataset:
    """Parse a COCO dict exported by us and possibly round-tripped through a review tool.

    Provenance is read from CVAT-style ``attributes`` first, then from top-level keys; blanks (boxes a
    reviewer drew) get defaults (see :func:`pseudolabel.export.common.parse_provenance`). Frame keys
    come from the image names (tools drop our extra image fields); ``file_name`` becomes the pipeline's
    ``<video_id>/<index:06d><ext>``. Other attributes (except CVAT's own ``occluded``, ``rotation``…)
    are kept as box extras.

    Raises
    ------
    ExportError
        Not a COCO dict, an image name without a frame key, a bad provenance value or any
        :class:`pseudolabel.coco.CocoFormatError`.
    """
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ExportError(f"{source_name}: not a COCO file (needs 'images' and 'annotations' lists)")
    images = []
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "file_name" not in im:
            raise ExportError(f"{source_name}: images[{i}] has no file_name")
        video_id, index, ext = parse_image_name(str(im["file_name"]))
        images.append({**im, "file_name": frame_file_name(video_id, index, ext), "video_id": video_id,
                       "frame_index": index})
    annotations = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise ExportError(f"{source_name}: annotations[{i}] is not an object")
        attrs = ann.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise ExportError(f"{source_name}: annotations[{i}].attributes is not an object")
        values = {k: ann[k] for k in PROVENANCE if k in ann}
        values.update({k: attrs[k] for k in PROVENANCE if k in attrs})
        prov = parse_provenance(values, default_source=default_source, where=f"{source_name}: annotations[{i}]")
        out = {k: v for k, v in ann.items() if k not in ("attributes", "segmentation")}
        out.update({k: v for k, v in attrs.items() if k not in PROVENANCE and k not in CVAT_INTERNAL})
        out.update(prov)
        annotations.append(out)
    try:
        return from_coco({**data, "images": images, "annotations": annotations}, source_name=source_name)
    except CocoFormatError as e:
        raise ExportError(str(e)) from None
