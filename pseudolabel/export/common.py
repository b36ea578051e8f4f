"""Shared pieces of the review exports: box selection, label names, image names, safe file placement.

Every export names an image after its frame key, ``<video_id>__<frame_index:06d><ext>`` (the video id
made safe by :func:`pseudolabel.frames.safe_video_id`, which never leaves ``__`` in an id), so a
reviewed file can be matched back to the pipeline's frames by name alone, whatever the tool keeps
of our extra fields. Readers rebuild :attr:`Frame.file_name` as the pipeline's own
``<video_id>/<frame_index:06d><ext>``.

Boxes stay ``xyxy`` float pixels here; each format module converts at its own file boundary.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..frames import safe_video_id
from ..records import KEPT, PRUNED, Box, Dataset, Frame

PRUNED_SUFFIX = "_pruned"
PROVENANCE = ("decision", "reason", "score", "round", "source")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_FLAT_NAME = re.compile(r"^(?P<video>.+)__(?P<index>\d+)\.[A-Za-z0-9]+$")
_NESTED_INDEX = re.compile(r"^(?P<index>\d+)\.[A-Za-z0-9]+$")


class ExportError(ValueError):
    """An export or re-import that cannot be done; the message names the file or setting at fault."""


@dataclass
class ExportItem:
    """One frame to export: its exported image name, its source image and the boxes to write."""

    frame: Frame
    name: str                 # flat image name, "<video_id>__<index:06d><ext>"
    source: Path | None       # the frame's JPEG (None when no frames_dir was given)
    boxes: list[Box] = field(default_factory=list)


@dataclass(frozen=True)
class Label:
    """A label name shown in a review tool and what it stands for."""

    name: str
    category_id: int
    decision: str


# ---------------------------------------------------------------- labels
def categories_of(ds: Dataset) -> list[dict[str, Any]]:
    """The dataset's categories sorted by id, plus ``class_<id>`` for ids used by boxes but not listed.

    Raises
    ------
    ExportError
        Two categories share a name or an id.
    """
    cats = [{"id": int(c["id"]), "name": str(c["name"])} for c in ds.categories]
    known = {c["id"] for c in cats}
    for cid in sorted({int(b.category_id) for b in ds.boxes} - known):
        cats.append({"id": cid, "name": f"class_{cid}"})
    cats.sort(key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    ids = [c["id"] for c in cats]
    if len(set(names)) != len(names) or len(set(ids)) != len(ids):
        raise ExportError(f"categories must have unique ids and names, got {cats!r}")
    return cats


def labels_for(categories: list[dict[str, Any]], *, include_pruned: bool) -> list[Label]:
    """Label names in class order: every category, then (``include_pruned``) ``<name>_pruned`` for each.

    Used by the formats that show a decision as a class (YOLO, Label Studio).
    """
    labels = [Label(c["name"], c["id"], KEPT) for c in categories]
    if include_pruned:
        labels += [Label(c["name"] + PRUNED_SUFFIX, c["id"], PRUNED) for c in categories]
    names = [lb.name for lb in labels]
    if len(set(names)) != len(names):
        raise ExportError(f"label names collide once '{PRUNED_SUFFIX}' is added: {names}")
    return labels


def label_lookup(names: list[str], categories: list[dict[str, Any]] | None = None) -> dict[str, Label]:
    """Map label names read back from a tool to (category, decision).

    ``<name>_pruned`` means category ``<name>``, decision ``pruned``. Category ids are taken from
    ``categories`` when given (matched by name), else numbered 1.. in order of first appearance.
    """
    by_name = {str(c["name"]): int(c["id"]) for c in (categories or [])}
    out: dict[str, Label] = {}
    for name in names:
        base, decision = name, KEPT
        if name.endswith(PRUNED_SUFFIX) and len(name) > len(PRUNED_SUFFIX):
            base, decision = name[: -len(PRUNED_SUFFIX)], PRUNED
        if base not in by_name:
            by_name[base] = max(by_name.values(), default=0) + 1
        out[name] = Label(base, by_name[base], decision)
    return out


def categories_from(lookup: dict[str, Label]) -> list[dict[str, Any]]:
    """COCO categories (sorted by id) of a :func:`label_lookup` result."""
    cats = {lb.category_id: lb.name for lb in lookup.values()}
    return [{"id": cid, "name": cats[cid]} for cid in sorted(cats)]


# ---------------------------------------------------------------- image names
def image_name(frame: Frame) -> str:
    """Flat export name of a frame: ``<safe video_id>__<frame_index:06d><ext>`` (ext from its file)."""
    if int(frame.frame_index) < 0:
        raise ExportError(f"frame {frame.file_name!r} has a negative frame_index {frame.frame_index}")
    suffix = Path(frame.file_name).suffix.lower()
    if suffix not in _IMAGE_SUFFIXES:
        suffix = ".jpg"
    return f"{safe_video_id(str(frame.video_id))}__{int(frame.frame_index):06d}{suffix}"


def parse_image_name(name: str) -> tuple[str, int, str]:
    """``(video_id, frame_index, ext)`` of an exported image name or a frames-dir path.

    Accepts the flat export name (``vid__000012.jpg``, in any folder) and the pipeline's own layout
    (``.../vid/000012.jpg``).
    """
    p = Path(str(name).replace("\\", "/"))
    m = _FLAT_NAME.match(p.name)
    if m:
        return m["video"], int(m["index"]), p.suffix.lower()
    m = _NESTED_INDEX.match(p.name)
    if m and p.parent.name not in ("", ".", ".."):
        return p.parent.name, int(m["index"]), p.suffix.lower()
    raise ExportError(f"cannot tell video and frame from image name {name!r}; expected "
                      "'<video_id>__<frame_index>.<ext>' or '<video_id>/<frame_index>.<ext>'")


def frame_file_name(video_id: str, frame_index: int, suffix: str = ".jpg") -> str:
    """The pipeline's frames-dir path of a frame: ``<video_id>/<frame_index:06d><ext>``."""
    return f"{video_id}/{int(frame_index):06d}{suffix or '.jpg'}"


# ---------------------------------------------------------------- selection
def export_items(ds: Dataset, *, include_pruned: bool = False,
                 frames_dir: str | Path | None = None) -> list[ExportItem]:
    """Every frame of ``ds`` (negatives included) with the boxes to export, in frame order.

    Parameters
    ----------
    ds
        The round's dataset; boxes ``xyxy`` float pixels.
    include_pruned
        Also export boxes whose decision is ``pruned`` (default: kept boxes only, so a frame whose
        boxes were all pruned is exported as a negative).
    frames_dir
        Folder the frames' ``file_name`` is relative to; ``None`` leaves :attr:`ExportItem.source` unset.

    Raises
    ------
    ExportError
        Two frames share a key ``(video_id, frame_index)`` (they would get one image name), or a
        frame's ``file_name`` leaves ``frames_dir``.
    """
    by_image = ds.boxes_by_image(kept_only=not include_pruned)
    seen: dict[str, Frame] = {}
    items = []
    for f in ds.frames:
        name = image_name(f)
        if name in seen:
            raise ExportError(f"frames {seen[name].file_name!r} and {f.file_name!r} share the key "
                              f"({f.video_id!r}, {f.frame_index}) and would overwrite each other as {name!r}")
        seen[name] = f
        src = None if frames_dir is None else source_path(frames_dir, f.file_name)
        boxes = sorted(by_image.get(f.id, []), key=lambda b: (b.id, b.xyxy))
        items.append(ExportItem(frame=f, name=name, source=src, boxes=boxes))
    return items


def unique_box_ids(items: list[ExportItem]) -> dict[int, int]:
    """Map ``id(box)`` -> id to write: the box's own id when all are unique and positive, else 1..N."""
    boxes = [b for it in items for b in it.boxes]
    ids = [int(b.id) for b in boxes]
    if len(set(ids)) == len(ids) and all(i > 0 for i in ids):
        return {id(b): int(b.id) for b in boxes}
    return {id(b): i for i, b in enumerate(boxes, start=1)}


# ---------------------------------------------------------------- paths
def source_path(frames_dir: str | Path, file_name: str) -> Path:
    """``frames_dir / file_name``, refusing absolute names and names that climb out of ``frames_dir``."""
    rel = Path(str(file_name))
    if not str(file_name) or rel.is_absolute() or ".." in rel.parts:
        raise ExportError(f"frame file name {file_name!r} is not a path inside the frames folder {frames_dir}")
    return Path(frames_dir) / rel


def inside(path: str | Path, root: str | Path) -> Path:
    """``path`` if it lies under ``root`` (lexically, without following links), else ExportError."""
    p = Path(os.path.normpath(os.path.abspath(path)))
    r = Path(os.path.normpath(os.path.abspath(root)))
    if p != r and r not in p.parents:
        raise ExportError(f"refusing to write {p}: outside the export folder {r}")
    return p


def place_image(src: Path, dst: Path, *, mode: str, root: Path) -> None:
    """Copy or symlink ``src`` to ``dst`` (which must lie inside ``root``)."""
    dst = inside(dst, root)
    if not src.is_file():
        raise ExportError(f"{src}: frame image not found (needed to {mode} it into {root})")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "copy":
        shutil.copyfile(src, dst)
    elif mode == "symlink":
        os.symlink(src.resolve(), dst)
    else:
        raise ExportError(f"image mode must be copy or symlink here, got {mode!r}")


def check_image_mode(mode: str | None, *, allowed: tuple[str, ...], default: str, fmt: str) -> str:
    """The image mode to use: ``mode`` (or the format's ``default``) if ``fmt`` supports it."""
    mode = default if mode is None else str(mode)
    if mode not in allowed:
        raise ExportError(f"{fmt} export: images={mode!r} is not supported; use one of {', '.join(allowed)}")
    return mode


def parse_provenance(values: dict[str, Any], *, default_source: str, where: str) -> dict[str, Any]:
    """Coerce provenance read back from a tool (strings, numbers or blanks) to Box fields.

    Blank or missing values (boxes drawn by a reviewer) become decision ``kept``, reason ``""``,
    score 1.0, round 0 and source ``default_source``.
    """
    def blank(v: Any) -> bool:
        return v is None or (isinstance(v, str) and not v.strip())

    out: dict[str, Any] = {}
    decision = values.get("decision")
    out["decision"] = KEPT if blank(decision) else str(decision).strip()
    if out["decision"] not in (KEPT, PRUNED):
        raise ExportError(f"{where}: decision {decision!r} is neither {KEPT!r} nor {PRUNED!r}")
    out["reason"] = "" if blank(values.get("reason")) else str(values["reason"])
    out["source"] = default_source if blank(values.get("source")) else str(values["source"])
    try:
        out["score"] = 1.0 if blank(values.get("score")) else float(values["score"])
        out["round"] = 0 if blank(values.get("round")) else int(float(values["round"]))
    except (TypeError, ValueError):
        raise ExportError(f"{where}: score {values.get('score')!r} / round {values.get('round')!r} "
                          "are not numbers") from None
    return out
