"""``stage=export``: the thin IO shell between the config (``conf/export/``) and :func:`export_dataset`."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .. import layout
from ..coco import load_coco
from . import ExportError, check_format, export_dataset

log = logging.getLogger("pseudolabel")


def resolve_round(exp_dir: str | Path, k: Any, *, exp: str) -> int:
    """``k`` checked (its ``annotations.json`` must exist), or the latest finished round when ``k`` is None."""
    exp_dir = Path(exp_dir)
    if k is None:
        rounds = layout.finished_rounds(exp_dir)
        if not rounds:
            raise ExportError(f"experiment {exp!r} has no finished round in {exp_dir}; "
                              f"run one first (make round N=0 EXP={exp}) or give export.round")
        return rounds[-1]
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise ExportError(f"export.round must be a round number or null, got {k!r}") from None
    path = layout.round_dir(exp_dir, k) / layout.ANNOTATIONS
    if k < 0 or not path.is_file():
        raise ExportError(f"round {k} of experiment {exp!r} has no dataset ({path}); "
                          f"run it first: make round N={k} EXP={exp}")
    return k


def stage_export(cfg: DictConfig) -> dict[str, Any]:
    """Export round ``cfg.export.round`` (null: latest finished) of ``cfg.exp`` in ``cfg.export.format``.

    Writes to ``cfg.export.out_dir`` (null: ``<paths.exp_dir>/export/<format>_round_<N>``) and returns
    the manifest.
    """
    ecfg = cfg.export
    fmt = check_format(ecfg.format)
    exp_dir = Path(cfg.paths.exp_dir)
    k = resolve_round(exp_dir, ecfg.get("round"), exp=str(cfg.exp))
    src = layout.round_dir(exp_dir, k) / layout.ANNOTATIONS
    out_dir = Path(ecfg.out_dir) if ecfg.get("out_dir") else layout.export_dir(exp_dir, fmt, k)
    options = ecfg.get(fmt)
    options = OmegaConf.to_container(options, resolve=True) if options is not None else {}
    manifest = export_dataset(load_coco(src), out_dir, format=fmt, frames_dir=cfg.paths.frames_dir,
                              include_pruned=bool(ecfg.include_pruned), images=ecfg.get("images"),
                              overwrite=bool(ecfg.get("overwrite", False)), options=options,
                              about={"experiment": str(cfg.exp), "round": k, "source": str(src)})
    log.info("exported round %d of %s as %s to %s: %d images (%d negative), %d boxes", k, cfg.exp, fmt, out_dir,
             manifest["n_images"], manifest["n_negative_images"], manifest["n_boxes_written"])
    return {**manifest, "out_dir": str(out_dir)}
