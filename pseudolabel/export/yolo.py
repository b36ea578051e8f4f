"""YOLO txt export (Ultralytics layout) and its reader.

Layout::

    <out_dir>/images/<video_id>__<index:06d>.jpg   copy (default) or symlink of the frame
    <out_dir>/labels/<video_id>__<index:06d>.txt   one "cls cx cy w h" row per box, normalised to [0, 1];
                                                   an empty file for a negative frame
    <out_dir>/classes.txt                          class names, one per line (class index = line number)
    <out_dir>/data.yaml                            Ultralytics dataset file (absolute ``path``)

YOLO has no field for provenance: with ``include_pruned`` a pruned box is written with the class
``<name>_pruned`` (class index ``n_categories + i``), so a reviewer sees and can flip the decision;
its reason, score, round and source are not representable (use CVAT or Label Studio for those).
Boxes are clipped to the image first (YOLO rows must lie in [0, 1]); boxes left empty are dropped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..boxes import clip_to_image
from ..records import Box, Dataset, Frame
from .common import (ExportError, check_image_mode, export_items, frame_file_name, label_lookup,
                     categories_from, categories_of, inside, labels_for, parse_image_name, place_image)

DEFAULT_SOURCE = "yolo"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def yolo_rows(xyxy, class_ids, *, width: int, height: int) -> tuple[list[str], int, int]:
    """YOLO label rows of boxes on one image.

    Parameters
    ----------
    xyxy
        (N, 4) boxes, ``xyxy`` float pixels.
    class_ids
        (N,) YOLO class index of each box.
    width, height
        Image size in pixels.

    Returns
    -------
    rows, n_clipped, n_dropped
        ``"cls cx cy w h"`` strings (6 decimals, normalised to [0, 1]) for boxes that keep a positive
        area after clipping to the image; how many boxes were clipped and how many dropped.
    """
    if width <= 0 or height <= 0:
        raise ExportError(f"YOLO export needs the image size, got {width}x{height}")
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    c = clip_to_image(b, width=width, height=height)
    clipped = int(np.any(np.abs(c - b) > 1e-9, axis=1).sum())
    rows, dropped = [], 0
    for (x1, y1, x2, y2), cls in zip(c, class_ids):
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            dropped += 1
            continue
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        rows.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return rows, clipped, dropped


def export_yolo(ds: Dataset, out_dir: str | Path, *, frames_dir: str | Path, include_pruned: bool = False,
                images: str | None = None) -> dict[str, Any]:
    """Write ``ds`` as a YOLO folder (see the module docstring); returns counts for the manifest.

    Parameters
    ----------
    images
        ``copy`` (default) or ``symlink`` (absolute links to the frames).
    """
    mode = check_image_mode(images, allowed=("copy", "symlink"), default="copy", fmt="yolo")
    out = Path(out_dir)
    cats = categories_of(ds)
    labels = labels_for(cats, include_pruned=include_pruned)
    cls_of = {(lb.category_id, lb.decision): i for i, lb in enumerate(labels)}
    n_clipped = n_dropped = n_boxes = 0
    for it in export_items(ds, include_pruned=include_pruned, frames_dir=frames_dir):
        place_image(it.source, out / "images" / it.name, mode=mode, root=out)
        rows, c, d = yolo_rows([b.xyxy for b in it.boxes], [cls_of[(b.category_id, b.decision)] for b in it.boxes],
                               width=it.frame.width, height=it.frame.height)
        n_clipped, n_dropped, n_boxes = n_clipped + c, n_dropped + d, n_boxes + len(rows)
        label_path = inside(out / "labels" / (Path(it.name).stem + ".txt"), out)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.write_text("".join(r + "\n" for r in rows))
    names = [lb.name for lb in labels]
    (out / "classes.txt").write_text("".join(n + "\n" for n in names))
    import yaml

    data = {"path": str(out.resolve()), "train": "images", "val": "images", "nc": len(names),
            "names": dict(enumerate(names))}
    (out / "data.yaml").write_text("# written by pseudolabel export; 'path' is absolute: edit it if you move "
                                   "this folder\n" + yaml.safe_dump(data, sort_keys=False))
    return {"labels": names, "images": mode, "n_boxes_written": n_boxes, "n_clipped": n_clipped,
            "n_dropped_empty": n_dropped}


def _class_names(root: Path) -> list[str]:
    classes = root / "classes.txt"
    if classes.is_file():
        return [line.strip() for line in classes.read_text().splitlines() if line.strip()]
    data_yaml = root / "data.yaml"
    if data_yaml.is_file():
        import yaml

        names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names")
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names, key=int)]
        if isinstance(names, list):
            return [str(n) for n in names]
    raise ExportError(f"{root}: no classes.txt or data.yaml with 'names' (cannot tell what the classes are)")


def read_yolo(path: str | Path) -> Dataset:
    """Read a YOLO folder written by :func:`export_yolo` (possibly corrected by a reviewer).

    Returns
    -------
    Dataset
        One frame per image (key parsed from the image name, size read from the image), boxes
        ``xyxy`` float pixels; class ``<name>_pruned`` -> decision ``pruned``; every box has score
        1.0, round 0 and source ``"yolo"`` (YOLO carries no provenance). Categories are numbered 1..
        in class order.

    Raises
    ------
    ExportError
        Missing folders or class names, a malformed row (``<file>:<line>: ...``, validated as in
        :func:`pseudolabel.gt_readers.read_yolo_dir`), a class index without a name, or an image name
        that is not ``<video_id>__<index>.<ext>``.
    """
    from ..gt_readers import GroundTruthError, _image_size, iter_yolo_boxes

    root = Path(path)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise ExportError(f"{images_dir}: images folder not found")
    names = _class_names(root)
    lookup = label_lookup(names)
    frames: list[Frame] = []
    boxes: list[Box] = []
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    for fid, img in enumerate(images, start=1):
        video_id, index, ext = parse_image_name(img.name)
        try:
            width, height = _image_size(img)
        except GroundTruthError as e:
            raise ExportError(str(e)) from None
        frames.append(Frame(id=fid, file_name=frame_file_name(video_id, index, ext), width=width, height=height,
                            video_id=video_id, frame_index=index))
        try:
            rows = list(iter_yolo_boxes(labels_dir / (img.stem + ".txt"), width=width, height=height))
        except GroundTruthError as e:
            raise ExportError(str(e)) from None
        for cls, xyxy, where in rows:
            if cls >= len(names):
                raise ExportError(f"{where}: class {cls} has no name ({len(names)} classes in {root})")
            lb = lookup[names[cls]]
            boxes.append(Box(image_id=fid, xyxy=tuple(float(v) for v in xyxy), score=1.0, round=0,
                             source=DEFAULT_SOURCE, decision=lb.decision, category_id=lb.category_id,
                             id=len(boxes) + 1))
    return Dataset(frames=frames, boxes=boxes, categories=categories_from(lookup),
                   info={"imported_from": "yolo", "path": str(root)})
