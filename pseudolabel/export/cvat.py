"""CVAT "COCO 1.0" export (a zip for Upload annotations / Import dataset) and its reader.

Layout::

    <out_dir>/cvat_coco.zip
        annotations/instances_default.json     COCO; each annotation carries CVAT-style
                                               "attributes": {decision, reason, score, round, source}
        images/default/<video_id>__<index:06d>.jpg   (images=copy, the default; images=none leaves them out)
    <out_dir>/cvat_labels.json                 labels for CVAT's "Raw" label editor, declaring those
                                               attributes (CVAT drops attributes a label does not declare)

Images are in the zip by default so that one archive serves both ways in: *Project -> Import dataset*
(needs the images) and *Task -> Upload annotations* (matches frames by file name, images ignored);
``images=none`` writes annotations only (upload the frames when creating the task, with the export
names, e.g. from a YOLO export's ``images/``).

Pruned boxes (``include_pruned``) keep their category and carry ``decision=pruned`` and their reason as
attributes: filter them in CVAT with ``attr.decision == "pruned"`` and flip the decision in the sidebar.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from ..records import KEPT, PRUNED, Dataset
from .cocolike import export_coco, read_review_coco
from .common import ExportError, categories_of, check_image_mode, export_items, inside

ZIP_NAME = "cvat_coco.zip"
LABELS_NAME = "cvat_labels.json"
ANNOTATIONS_MEMBER = "annotations/instances_default.json"
IMAGES_MEMBER_DIR = "images/default"
DEFAULT_SOURCE = "cvat"


def cvat_coco(coco: dict[str, Any]) -> dict[str, Any]:
    """Reshape our COCO dict (:func:`pseudolabel.export.cocolike.export_coco`) the way CVAT writes COCO.

    Images keep ``id``, ``file_name``, ``width``, ``height``; annotations get an empty ``segmentation``
    and move provenance into ``attributes`` as strings (what CVAT text attributes hold), next to
    CVAT's own ``occluded`` and ``rotation``.
    """
    images = [{"id": im["id"], "file_name": im["file_name"], "width": im["width"], "height": im["height"],
               "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0} for im in coco["images"]]
    annotations = []
    for a in coco["annotations"]:
        attrs = {"occluded": False, "rotation": 0.0, "decision": str(a["decision"]), "reason": str(a["reason"]),
                 "score": repr(float(a["score"])), "round": str(int(a["round"])), "source": str(a["source"])}
        annotations.append({"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"],
                            "segmentation": [], "area": a["area"], "bbox": a["bbox"], "iscrowd": 0,
                            "attributes": attrs})
    return {"licenses": [{"name": "", "id": 0, "url": ""}],
            "info": {"contributor": "pseudolabel", "date_created": "", "description": "", "url": "",
                     "version": "", "year": ""},
            "categories": [{"id": c["id"], "name": c["name"], "supercategory": ""} for c in coco["categories"]],
            "images": images, "annotations": annotations}


def cvat_labels(categories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CVAT label spec (Raw editor JSON): one rectangle label per category with the provenance attributes."""
    def text(name: str) -> dict[str, Any]:
        return {"name": name, "input_type": "text", "mutable": False, "values": [""], "default_value": ""}

    attributes = [{"name": "decision", "input_type": "select", "mutable": False, "values": [KEPT, PRUNED],
                   "default_value": KEPT},
                  text("reason"), text("score"), text("round"), text("source")]
    return [{"name": c["name"], "type": "rectangle", "attributes": attributes} for c in categories]


def export_cvat(ds: Dataset, out_dir: str | Path, *, frames_dir: str | Path, include_pruned: bool = False,
                images: str | None = None) -> dict[str, Any]:
    """Write ``ds`` as a CVAT COCO 1.0 zip (see the module docstring); returns counts for the manifest.

    Parameters
    ----------
    images
        ``copy`` (default: frames inside the zip) or ``none`` (annotations only).
    """
    mode = check_image_mode(images, allowed=("copy", "none"), default="copy", fmt="cvat")
    out = Path(out_dir)
    cats = categories_of(ds)
    items = export_items(ds, include_pruned=include_pruned, frames_dir=frames_dir)
    coco = cvat_coco(export_coco(items, categories=cats, info=ds.info))
    zip_path = inside(out / ZIP_NAME, out)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(ANNOTATIONS_MEMBER, json.dumps(coco, indent=1))
        if mode == "copy":
            for it in items:
                if not it.source.is_file():
                    raise ExportError(f"{it.source}: frame image not found (needed inside {zip_path})")
                zf.write(it.source, f"{IMAGES_MEMBER_DIR}/{it.name}", compress_type=zipfile.ZIP_STORED)
    (out / LABELS_NAME).write_text(json.dumps(cvat_labels(cats), indent=1) + "\n")
    return {"labels": [c["name"] for c in cats], "images": mode, "n_boxes_written": len(coco["annotations"]),
            "zip": ZIP_NAME, "zip_members": ANNOTATIONS_MEMBER}


def _annotation_jsons(path: Path) -> list[tuple[str, Any]]:
    """(name, parsed JSON) of every ``annotations/instances_*.json`` in a zip, a folder or one JSON file."""
    def parse(text: bytes | str, name: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ExportError(f"{name}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None

    if path.is_dir() and (path / ZIP_NAME).is_file():
        path = path / ZIP_NAME
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = sorted(n for n in zf.namelist()
                             if PurePosixPath(n).parent.name == "annotations" and n.endswith(".json"))
            return [(f"{path}!{n}", parse(zf.read(n), f"{path}!{n}")) for n in members]
    if path.is_dir():
        return [(str(p), parse(p.read_text(), str(p))) for p in sorted((path / "annotations").glob("*.json"))]
    if path.is_file():
        return [(str(path), parse(path.read_text(), str(path)))]
    raise ExportError(f"{path}: not found")


def read_cvat(path: str | Path) -> Dataset:
    """Read a CVAT COCO 1.0 export: our zip, a zip CVAT exported after review, its folder or its JSON.

    Returns
    -------
    Dataset
        Frames keyed by image name; provenance from the annotation ``attributes`` (boxes drawn in CVAT
        without them: decision kept, score 1.0, round 0, source ``"cvat"``). Several subsets
        (``instances_<subset>.json``) are concatenated with fresh ids.
    """
    docs = _annotation_jsons(Path(path))
    if not docs:
        raise ExportError(f"{path}: no annotations/instances_*.json found")
    parts = [read_review_coco(data, source_name=name, default_source=DEFAULT_SOURCE) for name, data in docs]
    if len(parts) == 1:
        return parts[0]
    out = Dataset(frames=[], boxes=[], categories=parts[0].categories, info={})
    for part in parts:
        offset = len(out.frames)
        new_id = {f.id: offset + i for i, f in enumerate(part.frames, start=1)}
        for f in part.frames:
            f.id = new_id[f.id]
            out.frames.append(f)
        for b in part.boxes:
            b.image_id = new_id[b.image_id]
            out.boxes.append(b)
    out.renumber()
    return out
