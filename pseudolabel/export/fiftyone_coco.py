"""FiftyOne-loadable COCO directory (``fiftyone.types.COCODetectionDataset``) and its reader.

Layout::

    <out_dir>/data/<video_id>__<index:06d>.jpg   copy (default) or symlink of the frame
    <out_dir>/labels.json                        COCO written by pseudolabel.coco.to_coco: bbox xywh,
                                                 score, and round, source, decision, reason and any
                                                 provenance extras as top-level annotation keys

FiftyOne loads ``score`` as the detection's ``confidence`` and the other keys as detection attributes
(its COCO importer keeps extra annotation keys by default), so pruned boxes (``include_pruned``) keep
their category and are found with ``F("decision") == "pruned"``; ``reason`` is filterable too.
Images also keep ``video_id``, ``frame_index`` and ``timestamp``. Loading needs no fiftyone here; see
the README for the ``fo.Dataset.from_dir`` call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import atomic_write_json, read_json_or_raise
from ..records import Dataset
from .cocolike import export_coco, read_review_coco
from .common import ExportError, categories_of, check_image_mode, export_items, place_image

DATA_DIR = "data"
LABELS_NAME = "labels.json"
DEFAULT_SOURCE = "fiftyone"


def export_fiftyone(ds: Dataset, out_dir: str | Path, *, frames_dir: str | Path, include_pruned: bool = False,
                    images: str | None = None) -> dict[str, Any]:
    """Write ``ds`` as a FiftyOne COCO detection directory (see the module docstring).

    Parameters
    ----------
    images
        ``copy`` (default) or ``symlink`` (absolute links to the frames).
    """
    mode = check_image_mode(images, allowed=("copy", "symlink"), default="copy", fmt="fiftyone")
    out = Path(out_dir)
    cats = categories_of(ds)
    items = export_items(ds, include_pruned=include_pruned, frames_dir=frames_dir)
    for it in items:
        place_image(it.source, out / DATA_DIR / it.name, mode=mode, root=out)
    coco = export_coco(items, categories=cats, info=ds.info)
    atomic_write_json(out / LABELS_NAME, coco)
    return {"labels": [c["name"] for c in cats], "images": mode, "n_boxes_written": len(coco["annotations"])}


def read_fiftyone(path: str | Path) -> Dataset:
    """Read a FiftyOne COCO directory (ours, or one FiftyOne exported after review) or its ``labels.json``.

    Frame keys come from the image names; provenance from the annotation keys (boxes without it:
    decision kept, score 1.0, round 0, source ``"fiftyone"``).
    """
    p = Path(path)
    labels = p / LABELS_NAME if p.is_dir() else p
    data = read_json_or_raise(labels, ExportError)
    ds = read_review_coco(data, source_name=str(labels), default_source=DEFAULT_SOURCE)
    ds.info = {"imported_from": "fiftyone", "path": str(labels)}
    return ds
