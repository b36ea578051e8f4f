"""Logging rounds to Weights & Biases (W&B), never blocking on the network.

``mode: auto`` runs online only when the user is logged in (``WANDB_API_KEY`` or a netrc entry), else
offline (``wandb sync`` uploads later); ``disabled`` turns logging off.

Per round (:meth:`WandbLogger.log_round`): one run named ``<exp>/round_<N>`` in group ``<exp>``, with the
round's scalars, histograms of box score/size/aspect, a table of sample frames whose boxes are coloured
by review class (:mod:`pseudolabel.round_log`), and two artifacts: ``<exp>-dataset`` (annotations and
metrics, alias ``round_<N>``) and ``<exp>-student`` (the round's checkpoint). Online, round N declares
``<exp>-dataset:round_<N-1>`` as its input (``use_artifact``) so W&B draws the lineage; W&B refuses
``use_artifact`` offline ("Cannot use artifact when in offline mode"), so offline runs record the parent
in the artifact metadata (``parent``) instead.
"""
from __future__ import annotations

import netrc
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def is_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(os.environ.get("NETRC") or Path.home() / ".netrc")
    except (OSError, netrc.NetrcParseError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    return auth.authenticators(host) is not None


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        return "online" if is_logged_in() else "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"logger mode must be auto|online|offline|disabled, got {mode!r}")
    return mode


class WandbLogger:
    """One W&B run per round invocation: grouped by experiment, named ``round_<N>``.

    Stages log namespaced metrics (``label/n_kept``…) into it.
    """

    def __init__(self, *, project: str = "pseudolabel", mode: str = "auto", dir: str | Path = "runs",
                 entity: str | None = None, tags: list[str] | None = None, table_frames: int = 16,
                 log_artifacts: bool = True, log_checkpoint: bool = True):
        self.project, self.entity, self.tags = project, entity, list(tags or [])
        self.table_frames, self.log_artifacts, self.log_checkpoint = int(table_frames), log_artifacts, log_checkpoint
        self.mode = resolve_mode(mode)
        self.dir = Path(dir)
        self.run = None

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def start(self, *, experiment: str, round: int, job_type: str = "round", config: dict | None = None) -> None:
        if not self.enabled:
            return
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=self.project, entity=self.entity, group=experiment, job_type=job_type,
                              name=f"{experiment}/round_{round}", dir=str(self.dir), mode=self.mode,
                              config=config or {}, tags=self.tags, reinit="finish_previous",
                              settings=wandb.Settings(silent=True, console="off", init_timeout=60))

    def log(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(metrics)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    # ------------------------------------------------------------ one round
    def log_round(self, *, experiment: str, round: int, metrics: Mapping[str, Any], dataset,
                  frames_dir: str | Path, dataset_files: Mapping[str, str | Path],
                  checkpoint: str | Path | None = None, config: dict | None = None,
                  job_type: str = "round") -> None:
        """Log everything a reviewer needs about round ``round`` as one run (see the module docstring).

        Parameters
        ----------
        metrics : the round's ``metrics.json`` content.
        dataset : the round's :class:`~pseudolabel.records.Dataset` (``annotations.json``).
        frames_dir : directory the frames' ``file_name`` are relative to.
        dataset_files : artifact name -> file, e.g. ``{"annotations.json": path, "metrics.json": path}``.
        checkpoint : the round's student checkpoint (None for the teacher round).
        """
        if not self.enabled:
            return
        self.start(experiment=experiment, round=round, job_type=job_type, config=config)
        try:
            parent = _artifact_name(experiment, "dataset") + f":round_{round - 1}" if round > 0 else None
            if parent and self.log_artifacts and self.mode == "online":
                self.run.use_artifact(parent)
            self.log({**round_scalars(metrics, dataset, round=round), **self._histograms(dataset),
                      "samples": self._sample_table(dataset, round=round, frames_dir=Path(frames_dir))})
            self.summary({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})
            if self.log_artifacts:
                meta = {"round": round, "experiment": experiment, "parent": parent,
                        **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
                self._log_files(_artifact_name(experiment, "dataset"), "dataset", dataset_files, round, meta)
                if checkpoint is not None and self.log_checkpoint and Path(checkpoint).is_file():
                    self._log_files(_artifact_name(experiment, "student"), "model",
                                    {"student.pt": checkpoint}, round, {"round": round, "experiment": experiment})
        finally:
            self.finish()

    def _log_files(self, name: str, type: str, files: Mapping[str, str | Path], round: int, meta: dict) -> None:
        import wandb

        art = wandb.Artifact(name, type=type, metadata=meta)
        for arcname, path in files.items():
            art.add_file(str(path), name=arcname)
        self.run.log_artifact(art, aliases=[f"round_{round}", "latest"])

    @staticmethod
    def _histograms(dataset) -> dict[str, Any]:
        import wandb

        from .round_log import box_statistics

        out = {}
        for kept, tag in ((True, "kept"), (False, "pruned")):
            for key, values in box_statistics(dataset, kept=kept).items():
                values = values[np.isfinite(values)] if len(values) else values
                if len(values):
                    out[f"hist/{tag}_{key}"] = wandb.Histogram(values.tolist())
        return out

    def _sample_table(self, dataset, *, round: int, frames_dir: Path):
        import wandb

        from .round_log import sample_rows

        rows = sample_rows(dataset, round=round, n=self.table_frames)
        names = sorted({c for r in rows for _, _, c in r["boxes"]})
        class_ids = {c: i for i, c in enumerate(names, start=1)}
        table = wandb.Table(columns=["video_id", "frame_index", "image", "n_kept", "n_pruned", "classes"])
        for r in rows:
            f = r["frame"]
            box_data = [{"position": {"minX": x1, "minY": y1, "maxX": x2, "maxY": y2}, "domain": "pixel",
                         "class_id": class_ids[c], "box_caption": f"{c} {s:.2f}", "scores": {"score": s}}
                        for (x1, y1, x2, y2), s, c in r["boxes"]]
            image = wandb.Image(str(frames_dir / f.file_name), boxes={
                "boxes": {"box_data": box_data, "class_labels": {i: c for c, i in class_ids.items()}}})
            table.add_data(f.video_id, f.frame_index, image, r["n_kept"], r["n_pruned"], r["classes"])
        return table


def _artifact_name(experiment: str, kind: str) -> str:
    """W&B artifact names allow letters, digits, ``-``, ``_`` and ``.``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", experiment).strip("-") + f"-{kind}"


def round_scalars(metrics: Mapping[str, Any], dataset, *, round: int) -> dict[str, float]:
    """Flat scalars of a round: ``round/<metric>``, ``pruned/<reason>`` and ``boxes/<review class>``."""
    from .round_log import class_counts

    out: dict[str, float] = {f"round/{k}": v for k, v in metrics.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for reason, n in (metrics.get("pruned_by_reason") or {}).items():
        out[f"pruned/{reason}"] = n
    for name, n in class_counts(dataset, round=round).items():
        out[f"boxes/{name}"] = n
    loose: Mapping = metrics.get("at_iou_0.3") or {}
    for k in ("precision", "recall", "f1"):
        if k in loose:
            out[f"round/{k}@iou0.3"] = loose[k]
    return out
