"""Experiment tracking with Weights & Biases, never blocking on the network.

``mode: auto`` runs online only when the user is logged in (``WANDB_API_KEY`` or a netrc entry), else
offline (``wandb sync`` uploads later); ``disabled`` turns logging off.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any


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
                 entity: str | None = None, tags: list[str] | None = None):
        self.project, self.entity, self.tags = project, entity, list(tags or [])
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
