"""Ground-truth readers: COCO JSON, YOLO txt directories and TrackNet CSVs -> :class:`Dataset`.

Every reader returns boxes in ``xyxy`` float pixels with ``source="ground_truth"``, ``score=1.0``,
``category_id=1`` and decision ``kept``, and one :class:`Frame` per labelled image *including images
without any box*: those are the negatives that make precision meaningful.

Frames are later matched to predictions by :attr:`Frame.key` ``(video_id, frame_index)``, so each
reader documents the key it produces.
"""
from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .boxes import cxcywh_to_xyxy
from .coco import CocoFormatError, load_coco
from .records import KEPT, Box, Dataset, Frame
from .frames import safe_video_id

GT_SOURCE = "ground_truth"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class GroundTruthError(ValueError):
    """Ground truth that cannot be read; the message names the file (and line where there is one)."""


def _gt_box(image_id: int, xyxy, box_id: int, **extra: Any) -> Box:
    return Box(image_id=image_id, xyxy=tuple(float(v) for v in xyxy), score=1.0, round=0,
               source=GT_SOURCE, decision=KEPT, category_id=1, id=box_id, extra=dict(extra))


def read_coco_gt(path: str | Path, *, category_ids: Iterable[int] | None = None) -> Dataset:
    """Read COCO ground truth.

    Parameters
    ----------
    path
        COCO JSON (plain or written by :func:`pseudolabel.coco.save_coco`).
    category_ids
        Categories that count as the target class (e.g. ``(37,)`` for COCO's sports ball);
        ``None`` keeps every category. All kept boxes get ``category_id=1``.

    Returns
    -------
    Dataset
        One frame per COCO image, key ``(video_id, frame_index)`` as stored in the file (for plain
        COCO: ``(file stem, 0)``). Boxes marked ``pruned`` in the file are not ground truth and are
        dropped.
    """
    try:
        src = load_coco(path)
    except CocoFormatError as e:
        raise GroundTruthError(str(e)) from None
    wanted = None if category_ids is None else {int(c) for c in category_ids}
    boxes = [
        _gt_box(b.image_id, b.xyxy, i)
        for i, b in enumerate((b for b in src.boxes if b.kept and (wanted is None or b.category_id in wanted)),
                              start=1)
    ]
    info = dict(src.info)
    info.update({"gt_format": "coco", "gt_path": str(path)})
    return Dataset(frames=src.frames, boxes=boxes, info=info)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header (PIL) or by decoding it (cv2)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with torchvision
        Image = None
    if Image is not None:
        try:
            with Image.open(path) as im:
                return int(im.width), int(im.height)
        except OSError:
            pass
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise GroundTruthError(f"{path}: cannot read image")
    return int(img.shape[1]), int(img.shape[0])


def _parse_yolo_row(fields: list[str], where: str) -> tuple[int, list[float]]:
    if len(fields) != 5:
        raise GroundTruthError(f"{where}: expected 5 fields 'class cx cy w h', got {len(fields)}")
    try:
        cls_f = float(fields[0])
        vals = [float(v) for v in fields[1:]]
    except ValueError:
        raise GroundTruthError(f"{where}: non-numeric field in {' '.join(fields)!r}") from None
    if not math.isfinite(cls_f) or cls_f != int(cls_f) or cls_f < 0:
        raise GroundTruthError(f"{where}: class {fields[0]!r} is not a non-negative integer")
    for name, v in zip(("cx", "cy", "w", "h"), vals):
        if not math.isfinite(v):
            raise GroundTruthError(f"{where}: {name}={v} is not finite")
        if v < 0:
            raise GroundTruthError(f"{where}: {name}={v} is negative")
        if v > 1:
            raise GroundTruthError(f"{where}: {name}={v} is outside [0, 1] (labels must be normalised)")
    return int(cls_f), vals


def read_yolo_dir(images_dir: str | Path, labels_dir: str | Path | None = None, *,
                  class_ids: Iterable[int] = (0,)) -> Dataset:
    """Read a YOLO detection folder (``class cx cy w h`` per line, normalised to [0, 1]).

    Parameters
    ----------
    images_dir
        Folder of images (searched recursively, sorted by path).
    labels_dir
        Folder of ``.txt`` labels mirroring ``images_dir``; default: the sibling ``labels/`` of
        ``images/`` (``.../valid/images`` -> ``.../valid/labels``).
    class_ids
        YOLO classes that count as the target; other rows are validated but not kept.

    Returns
    -------
    Dataset
        ``(video_id, 0)`` with ``video_id`` = the image stem made safe by
        :func:`pseudolabel.frames.safe_video_id` (as frame sampling names stills). A missing label file
        means an image with no box.

    Raises
    ------
    GroundTruthError
        ``"<label file>:<line>: ..."`` for a row with the wrong number of fields, non-numbers,
        NaN/inf, values outside [0, 1] or negative sizes; also for missing folders.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise GroundTruthError(f"{images_dir}: images folder not found")
    if labels_dir is None:
        labels_dir = images_dir.parent / "labels"
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise GroundTruthError(f"{labels_dir}: labels folder not found (for images in {images_dir})")
    wanted = {int(c) for c in class_ids}
    images = sorted(p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    frames: list[Frame] = []
    boxes: list[Box] = []
    for fid, img_path in enumerate(images, start=1):
        rel = img_path.relative_to(images_dir)
        width, height = _image_size(img_path)
        frames.append(Frame(id=fid, file_name=rel.as_posix(), width=width, height=height,
                            video_id=safe_video_id(rel.with_suffix("").name), frame_index=0))
        for cls, xyxy, _ in iter_yolo_boxes(labels_dir / rel.with_suffix(".txt"), width=width, height=height):
            if cls in wanted:
                boxes.append(_gt_box(fid, xyxy, len(boxes) + 1, yolo_class=cls))
    return Dataset(frames=frames, boxes=boxes,
                   info={"gt_format": "yolo", "images_dir": str(images_dir), "labels_dir": str(labels_dir),
                         "class_ids": sorted(wanted)})


def iter_yolo_boxes(label_path: Path, *, width: int, height: int):
    """Yield ``(class, xyxy pixels (4,) float, "<file>:<line>")`` per row of a YOLO label file (none when the
    file is absent); a bad row raises :class:`GroundTruthError` naming its line."""
    if not label_path.is_file():
        return
    for line_no, line in enumerate(label_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_path}:{line_no}"
        cls, (cx, cy, w, h) = _parse_yolo_row(fields, where)
        yield cls, cxcywh_to_xyxy([[cx * width, cy * height, w * width, h * height]])[0], where


def _norm_header(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# Normalised header aliases seen in TrackNet v1/v2/v3 label files.
_TRACKNET_COLUMNS = {
    "file": ("filename", "file", "frame", "framename", "name"),
    "visibility": ("visibilityclass", "visibility", "vis"),
    "x": ("x", "xcoordinate"),
    "y": ("y", "ycoordinate"),
}


def read_tracknet_csv(path: str | Path, *, video_id: str, box_size: float = 12.0,
                      image_size: tuple[int, int] | None = None) -> Dataset:
    """Read a TrackNet-style label CSV (``File Name, Visibility Class, X, Y, ...``).

    Header names are matched ignoring case, spaces and punctuation; extra columns are ignored.

    Parameters
    ----------
    path
        The CSV file.
    video_id
        Video the rows belong to (becomes :attr:`Frame.video_id`).
    box_size
        Side of the square box, in pixels, centred on (X, Y) for visible balls (not clipped).
    image_size
        ``(width, height)`` stored on every frame; ``None`` stores 0, 0.

    Returns
    -------
    Dataset
        One frame per row (ids 1..N in row order); rows with visibility 0 are negative frames.
        ``frame_index`` is the last run of digits in the file name (``0001.jpg`` -> 1); if any file
        name has no digits, the 0-based row order is used for all rows.

    Raises
    ------
    GroundTruthError
        ``"<file>:<line>: ..."`` for missing columns, non-numeric or non-finite values, a visible ball
        without coordinates, or a repeated frame index.
    """
    path = Path(path)
    if box_size <= 0 or not math.isfinite(box_size):
        raise GroundTruthError(f"{path}: box_size must be a positive number, got {box_size!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise GroundTruthError(f"{path}: cannot read ({e.strerror})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise GroundTruthError(f"{path}:1: empty file, expected a header 'File Name, Visibility Class, X, Y'")
    header = [_norm_header(h) for h in rows[0]]
    col: dict[str, int] = {}
    for key, aliases in _TRACKNET_COLUMNS.items():
        idx = next((header.index(a) for a in aliases if a in header), None)
        if idx is None:
            raise GroundTruthError(f"{path}:1: no '{aliases[0]}' column in header {rows[0]!r}")
        col[key] = idx

    parsed: list[tuple[int, str, int | None, float, float, float]] = []  # line, name, digits, vis, x, y
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{line_no}"
        if len(row) <= max(col.values()):
            raise GroundTruthError(f"{where}: expected at least {max(col.values()) + 1} columns, got {len(row)}")
        name = row[col["file"]].strip()
        if not name:
            raise GroundTruthError(f"{where}: empty file name")
        try:
            vis = float(row[col["visibility"]])
        except ValueError:
            raise GroundTruthError(f"{where}: visibility {row[col['visibility']]!r} is not a number") from None
        if not math.isfinite(vis):
            raise GroundTruthError(f"{where}: visibility {row[col['visibility']]!r} is not finite")
        x = y = math.nan
        if vis != 0:
            try:
                x, y = float(row[col["x"]]), float(row[col["y"]])
            except ValueError:
                raise GroundTruthError(
                    f"{where}: visible ball needs numeric X, Y, got {row[col['x']]!r}, {row[col['y']]!r}") from None
            if not (math.isfinite(x) and math.isfinite(y)):
                raise GroundTruthError(f"{where}: X, Y must be finite, got {x}, {y}")
        digits = re.findall(r"\d+", Path(name).stem)
        parsed.append((line_no, name, int(digits[-1]) if digits else None, vis, x, y))

    use_digits = all(p[2] is not None for p in parsed)
    frames: list[Frame] = []
    boxes: list[Box] = []
    seen: dict[int, int] = {}
    width, height = (int(image_size[0]), int(image_size[1])) if image_size is not None else (0, 0)
    half = box_size / 2.0
    for fid, (line_no, name, digits, vis, x, y) in enumerate(parsed, start=1):
        frame_index = digits if use_digits else fid - 1
        if frame_index in seen:
            raise GroundTruthError(f"{path}:{line_no}: frame index {frame_index} repeats line {seen[frame_index]}")
        seen[frame_index] = line_no
        frames.append(Frame(id=fid, file_name=name, width=width, height=height, video_id=str(video_id),
                            frame_index=frame_index))
        if vis != 0:
            boxes.append(_gt_box(fid, (x - half, y - half, x + half, y + half), len(boxes) + 1,
                                 visibility=int(vis) if vis == int(vis) else vis))
    return Dataset(frames=frames, boxes=boxes,
                   info={"gt_format": "tracknet", "gt_path": str(path), "video_id": str(video_id),
                         "box_size": float(box_size)})


_FORMAT_KEYS = {
    "coco": {"path", "category_ids"},
    "yolo": {"path", "images_dir", "labels_dir", "class_ids"},
    "tracknet": {"path", "video_id", "box_size", "image_size"},
}


def _infer_format(path: Path) -> str:
    if path.is_dir():
        return "yolo"
    if path.suffix.lower() == ".json":
        return "coco"
    if path.suffix.lower() == ".csv":
        return "tracknet"
    raise GroundTruthError(f"{path}: cannot tell the ground-truth format; give format: coco|yolo|tracknet")


def load_ground_truth(spec: Mapping[str, Any] | str | Path, *, base_dir: str | Path | None = None) -> Dataset:
    """Load ground truth from a config entry.

    Parameters
    ----------
    spec
        A path (format inferred: ``.json`` -> coco, folder -> yolo images folder) or a mapping
        (plain dict or OmegaConf ``DictConfig``) with ``format`` (``coco`` | ``yolo`` | ``tracknet``,
        inferred from the path when absent) and the reader's keys:

        - coco: ``path``, optional ``category_ids``
        - yolo: ``images_dir`` (or ``path``), optional ``labels_dir``, ``class_ids`` (default ``[0]``)
        - tracknet: ``path``, ``video_id`` (required), optional ``box_size``, ``image_size`` ``[w, h]``
    base_dir
        Relative paths in ``spec`` are resolved against it (default: the working directory).

    Raises
    ------
    GroundTruthError
        Unknown format or keys, missing required keys, or any reader error.
    """
    base = Path(base_dir) if base_dir is not None else None

    def resolve(p: Any) -> Path:
        p = Path(str(p))
        return base / p if base is not None and not p.is_absolute() else p

    if isinstance(spec, (str, Path)):
        spec = {"path": str(spec)}
    if not isinstance(spec, Mapping):
        raise GroundTruthError(f"ground-truth spec must be a path or a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    fmt = spec.pop("format", None)
    main_path = spec.get("path", spec.get("images_dir"))
    if main_path is None:
        raise GroundTruthError(f"ground-truth spec {spec!r} needs 'path' (or 'images_dir' for yolo)")
    fmt = str(fmt).lower() if fmt is not None else _infer_format(resolve(main_path))
    if fmt not in _FORMAT_KEYS:
        raise GroundTruthError(f"unknown ground-truth format {fmt!r}; expected one of {sorted(_FORMAT_KEYS)}")
    unknown = set(spec) - _FORMAT_KEYS[fmt]
    if unknown:
        raise GroundTruthError(f"unknown keys {sorted(unknown)} for {fmt} ground truth; "
                               f"allowed: {sorted(_FORMAT_KEYS[fmt])}")
    if fmt == "coco":
        cats = spec.get("category_ids")
        return read_coco_gt(resolve(spec["path"]), category_ids=None if cats is None else [int(c) for c in cats])
    if fmt == "yolo":
        if "path" in spec and "images_dir" in spec:
            raise GroundTruthError("yolo ground truth: give 'images_dir' or 'path', not both")
        labels = spec.get("labels_dir")
        return read_yolo_dir(resolve(main_path), None if labels is None else resolve(labels),
                             class_ids=[int(c) for c in spec.get("class_ids", (0,))])
    if "video_id" not in spec:
        raise GroundTruthError(f"{main_path}: tracknet ground truth needs 'video_id' (the video the CSV labels)")
    size = spec.get("image_size")
    return read_tracknet_csv(resolve(spec["path"]), video_id=str(spec["video_id"]),
                             box_size=float(spec.get("box_size", 12.0)),
                             image_size=None if size is None else (int(size[0]), int(size[1])))
