"""``stage=export``: the thin IO shell between the config (``conf/export/``) and :func:`export_dataset`.

``export.order=informative`` (the default) writes the frames most informative first and records the order with each
frame's signals in the manifest (``review_order``); ``export.budget=N`` exports only the N first, leaving out frames
the experiment's reviewed set already holds.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .. import layout
from ..coco import load_coco
from . import ExportError, check_format, export_dataset

log = logging.getLogger("pseudolabel")


def resolve_round(exp_dir: str | Path, k: Any, *, exp: str, setting: str = "export.round") -> int:
    """``k`` checked (its ``annotations.json`` must exist), or the latest finished round when ``k`` is None;
    messages name ``setting``, where the round was given."""
    exp_dir = Path(exp_dir)
    if k is None:
        rounds = layout.finished_rounds(exp_dir)
        if not rounds:
            raise ExportError(f"experiment {exp!r} has no finished round in {exp_dir}; "
                              f"run one first (make round N=0 EXP={exp}) or give {setting}")
        return rounds[-1]
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise ExportError(f"{setting} must be a round number or null, got {k!r}") from None
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
    ds, about = load_coco(src), {"experiment": str(cfg.exp), "round": k, "source": str(src)}
    order, budget = str(ecfg.get("order") or "frame"), ecfg.get("budget")
    if order not in ORDERS:
        raise ExportError(f"export.order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "informative" or budget is not None:
        ds, about["review_order"] = _review_subset(ds, exp_dir, budget=budget, keep_frame_order=order == "frame")
        about["budget"] = budget
    manifest = export_dataset(ds, out_dir, format=fmt, frames_dir=cfg.paths.frames_dir,
                              include_pruned=bool(ecfg.include_pruned), images=ecfg.get("images"),
                              overwrite=bool(ecfg.get("overwrite", False)), options=options, about=about)
    log.info("exported round %d of %s as %s to %s: %d images (%d negative), %d boxes", k, cfg.exp, fmt, out_dir,
             manifest["n_images"], manifest["n_negative_images"], manifest["n_boxes_written"])
    return {**manifest, "out_dir": str(out_dir)}


ORDERS = ("informative", "frame")


def _review_subset(ds, exp_dir: Path, *, budget: int | None, keep_frame_order: bool):
    """The frames to export, most informative first (:mod:`pseudolabel.review.informative`; the ``budget`` first
    when given, frames already in the reviewed set left out), and the order recorded in the manifest."""
    from ..review.informative import review_order, subset
    from ..review.stage import load_reviewed
    from .common import image_name

    reviewed = load_reviewed(exp_dir)
    scores = review_order(ds, budget=None if budget is None else int(budget),
                          reviewed_keys=[f.key for f in reviewed.frames] if reviewed is not None else [])
    listed = [{"image": image_name(s.frame), "score": round(s.score, 4), "why": s.why(),
               **({"reviewed": True} if s.reviewed else {})} for s in scores]
    if keep_frame_order:
        scores = sorted(scores, key=lambda s: s.frame.key)
    return subset(ds, scores), listed
