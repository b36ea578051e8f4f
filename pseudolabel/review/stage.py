"""``stage=review_import`` (``make review-import``): the thin IO shell around :mod:`.reviewed`.

Reads ``review.path`` (a tool's export after review, or our export folder) with
:func:`pseudolabel.export.read_export`, compares it with the round it was made from and adds its frames to the
experiment's reviewed set, ``runs/<exp>/review/reviewed.json`` (a frame reviewed again replaces the earlier review).
Every check runs before the one write: on any error nothing is written.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .. import layout
from ..coco import load_coco, save_coco
from ..records import Dataset
from .reviewed import ReviewError, combine, review_counts, reviewed_set

log = logging.getLogger("pseudolabel")


def load_reviewed(exp_dir: str | Path) -> Dataset | None:
    """The experiment's reviewed set (:func:`pseudolabel.layout.reviewed_path`), or None when nothing was imported."""
    path = layout.reviewed_path(exp_dir)
    return load_coco(path) if path.is_file() else None


def stage_review_import(cfg: DictConfig) -> dict[str, Any]:
    """Import ``cfg.review.path`` into the reviewed set of ``cfg.exp``; returns what was recorded.

    ``review.format`` null: the export's ``pseudolabel_export.json``, else its layout
    (:func:`pseudolabel.export.guess_format`). ``review.round`` null: the round that manifest names (same
    experiment), else the latest finished round.
    """
    from ..export import check_format, export_manifest, guess_format, read_export
    from ..export.stage import resolve_round

    rcfg = cfg.review
    if not rcfg.get("path"):
        raise ReviewError("review.path is not set; run make review-import EXP=<exp> FROM=<export file or folder>")
    path = Path(str(rcfg.path))
    if not path.exists():
        raise ReviewError(f"{path}: no such file or folder; nothing imported")
    exp_dir = Path(cfg.paths.exp_dir)
    manifest = export_manifest(path) or {}
    fmt = check_format(rcfg.format) if rcfg.get("format") else guess_format(path)
    k = rcfg.get("round")
    if k is None and manifest.get("experiment") == str(cfg.exp):
        k = manifest.get("round")
    k = resolve_round(exp_dir, k, exp=str(cfg.exp), setting="review.round")
    round_ds = load_coco(layout.round_dir(exp_dir, k) / layout.ANNOTATIONS)
    new = reviewed_set(round_ds, read_export(path, format=fmt), tool=fmt, round=k,
                       round_name=f"round {k} of experiment {cfg.exp!r}", source_name=str(path),
                       iou_threshold=float(cfg.merge.iou_threshold),
                       centre_factor=OmegaConf.select(cfg, "merge.centre_factor"))
    out = layout.reviewed_path(exp_dir)
    combined = combine(load_reviewed(exp_dir), new)
    save_coco(combined, out)
    counts = review_counts(new.boxes)
    log.info("review-import: %d frame(s) of round %d from %s (%s): %s; the reviewed set %s holds %d frame(s)",
             len(new.frames), k, path, fmt, ", ".join(f"{n} {c}" for c, n in counts.items()), out,
             len(combined.frames))
    return {"reviewed_set": str(out), "round": k, "format": fmt, "n_frames": len(new.frames),
            "n_frames_total": len(combined.frames), **counts}
