"""Exports of a round's dataset for human review and correction, and readers to bring them back.

Formats (one module each; layouts in their docstrings):

- ``yolo``: Ultralytics folder, ``images/`` + ``labels/`` + ``data.yaml`` / ``classes.txt``
  (:mod:`pseudolabel.export.yolo`)
- ``cvat``: zip for CVAT's COCO 1.0 import, provenance as CVAT attributes (:mod:`pseudolabel.export.cvat`)
- ``labelstudio``: tasks JSON with pre-annotations in percent coordinates (:mod:`pseudolabel.export.labelstudio`)
- ``fiftyone``: ``COCODetectionDataset`` directory, ``data/`` + ``labels.json``
  (:mod:`pseudolabel.export.fiftyone_coco`)

Kept boxes only by default; ``include_pruned=True`` adds the pruned ones, marked as the tool shows
best (a ``<name>_pruned`` class in YOLO and Label Studio, a ``decision`` attribute in CVAT and FiftyOne).
Every image is named ``<video_id>__<frame_index:06d>.jpg``, so a reviewed file maps back to frames by
name; every write stays inside ``out_dir``, which also receives ``pseudolabel_export.json`` (what was
exported, from where, counts) and is only ever replaced when it holds that file and ``overwrite=True``.
"""
from __future__ import annotations

import importlib
import inspect
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..files import atomic_write_json
from ..records import Dataset
from .common import ExportError

FORMATS = ("yolo", "cvat", "labelstudio", "fiftyone")
MANIFEST_NAME = "pseudolabel_export.json"
_FUNCTIONS = {
    "yolo": ("yolo", "export_yolo", "read_yolo"),
    "cvat": ("cvat", "export_cvat", "read_cvat"),
    "labelstudio": ("labelstudio", "export_labelstudio", "read_labelstudio"),
    "fiftyone": ("fiftyone_coco", "export_fiftyone", "read_fiftyone"),
}

__all__ = ["FORMATS", "MANIFEST_NAME", "ExportError", "export_dataset", "read_export", "check_format", "guess_format",
           "export_manifest"]


def check_format(fmt: Any) -> str:
    """``fmt`` as a known format name, else one-line :class:`ExportError` listing the formats."""
    name = str(fmt).strip().lower()
    if name not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return name


def _function(fmt: str, which: int) -> Callable[..., Any]:
    module, *names = _FUNCTIONS[check_format(fmt)]
    return getattr(importlib.import_module(f"{__name__}.{module}"), names[which])


def _check_options(fn: Callable[..., Any], options: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    allowed = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = set(options) - allowed
    if unknown:
        raise ExportError(f"{fmt}: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return dict(options)


def prepare_out_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Create ``out_dir`` empty; an existing non-empty one is replaced only if it is an export and
    ``overwrite`` is set."""
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(f"export folder {out} exists and is not a plain folder; choose another out_dir")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST_NAME).is_file():
            raise ExportError(f"export folder {out} is not empty and holds no {MANIFEST_NAME}; "
                              "refusing to write into it, choose another out_dir")
        if not overwrite:
            raise ExportError(f"export folder {out} already holds an export; set overwrite "
                              "(export.overwrite=true) to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def export_dataset(ds: Dataset, out_dir: str | Path, *, format: str, frames_dir: str | Path,
                   include_pruned: bool = False, images: str | None = None, overwrite: bool = False,
                   options: Mapping[str, Any] | None = None, about: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Export ``ds`` (boxes ``xyxy`` float pixels) for review in ``format``.

    Parameters
    ----------
    ds
        The round's dataset (every frame, negatives included).
    out_dir
        Folder to create (see :func:`prepare_out_dir`); nothing is written outside it.
    format
        One of :data:`FORMATS`.
    frames_dir
        Folder the frames' ``file_name`` is relative to (the experiment's ``paths.frames_dir``).
    include_pruned
        Also export pruned boxes, marked as described in the module docstring.
    images
        ``copy`` | ``symlink`` | ``none``; ``None`` takes the format's default (``copy``, but ``none``
        for Label Studio, which references the frames). Not every format takes every mode.
    overwrite
        Replace an earlier export in ``out_dir``.
    options
        Format-specific keyword options (Label Studio: ``url_prefix``, ``as_annotations``).
    about
        Extra facts recorded in the manifest (experiment, round, source file).

    Returns
    -------
    dict
        The manifest written to ``out_dir/pseudolabel_export.json``.
    """
    fmt = check_format(format)
    fn = _function(fmt, 0)
    opts = _check_options(fn, options or {}, fmt)
    out = prepare_out_dir(out_dir, overwrite=overwrite)
    manifest: dict[str, Any] = {"format": fmt, "complete": False, **dict(about or {}),
                                "include_pruned": bool(include_pruned), "images": images,
                                "frames_dir": str(Path(frames_dir).resolve())}
    atomic_write_json(out / MANIFEST_NAME, manifest)
    stats = fn(ds, out, frames_dir=frames_dir, include_pruned=bool(include_pruned), images=images, **opts)
    by_image = ds.boxes_by_image(kept_only=not include_pruned)
    manifest.update({
        "complete": True, "n_images": len(ds.frames),
        "n_negative_images": sum(1 for f in ds.frames if not by_image.get(f.id)),
        "n_kept_boxes": len(ds.kept_boxes()),
        "n_pruned_boxes": (len(ds.boxes) - len(ds.kept_boxes())) if include_pruned else 0,
        **stats,
    })
    atomic_write_json(out / MANIFEST_NAME, manifest)
    return manifest


def read_export(path: str | Path, *, format: str, **options: Any) -> Dataset:
    """Read an export (ours, or the tool's own export after review) back into a :class:`Dataset`.

    ``options`` go to the format's reader (Label Studio: ``url_prefix``, ``prefer``).
    """
    fmt = check_format(format)
    fn = _function(fmt, 1)
    return fn(path, **_check_options(fn, options, fmt))


def export_manifest(path: str | Path) -> dict[str, Any] | None:
    """The ``pseudolabel_export.json`` of the export at ``path`` (its folder, or a file in it), or None."""
    import json

    p = Path(path)
    for folder in (p, p.parent) if p.is_dir() else (p.parent,):
        if (folder / MANIFEST_NAME).is_file():
            try:
                data = json.loads((folder / MANIFEST_NAME).read_text())
            except (OSError, json.JSONDecodeError):
                return None
            return data if isinstance(data, dict) else None
    return None


def guess_format(path: str | Path) -> str:
    """The format of the export at ``path``: its manifest's, else told by its layout (a YOLO folder, a CVAT zip or
    folder, Label Studio tasks, a FiftyOne folder or ``labels.json``); else one-line :class:`ExportError`."""
    import json

    p = Path(path)
    manifest = export_manifest(p)
    if manifest and manifest.get("format") in FORMATS:
        return str(manifest["format"])
    if p.is_dir():
        layouts = (("cvat", p / "cvat_coco.zip"), ("cvat", p / "annotations"),
                   ("labelstudio", p / "tasks.json"), ("fiftyone", p / "labels.json"), ("yolo", p / "labels"))
        for fmt, marker in layouts:
            if marker.exists():
                return fmt
    elif p.suffix.lower() == ".zip":
        return "cvat"
    elif p.suffix.lower() == ".json" and p.is_file():
        if p.name == "labels.json":
            return "fiftyone"
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            data = None
        if isinstance(data, list):
            return "labelstudio"
        if isinstance(data, dict) and "images" in data:
            return "cvat"
    raise ExportError(f"{p}: cannot tell which tool's export this is; give the format "
                      f"(FORMAT= or review.format=, one of {', '.join(FORMATS)})")
