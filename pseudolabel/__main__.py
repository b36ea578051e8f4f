"""Command-line entry point: ``python -m pseudolabel stage=<stage> [round=N] [exp=NAME] [overrides…]``.

Stages: ``demo`` (synthetic data + rounds 0..rounds), ``round`` (one full round), ``download`` (yt-dlp, see
``conf/download/``), or one stage of a round:
``synth``, ``sample``, ``label``, ``train``, ``relabel``, ``prune``, ``merge``, ``evaluate``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def run(cfg: DictConfig) -> object:
    from hydra.utils import instantiate

    from . import pipeline as p

    stage, k = str(cfg.stage), int(cfg.round)
    if stage == "download":
        from omegaconf import OmegaConf

        from .download import run_from_config

        return run_from_config(OmegaConf.to_container(cfg.download, resolve=True))
    logger = instantiate(cfg.logger)
    if stage == "demo":
        return p.run_demo(cfg, logger=logger)
    if stage == "round":
        return p.run_round(cfg, k, logger=logger)
    if stage == "synth":
        return p.stage_synth(cfg)
    if stage == "sample":
        return p.stage_sample(cfg)
    if stage in ("label", "relabel"):
        return p.stage_label_round(cfg, k, p.stage_sample(cfg))
    stages = {"train": p.stage_train, "prune": p.stage_prune, "merge": p.stage_merge, "evaluate": p.stage_evaluate}
    if stage not in stages:
        raise p.PipelineError(f"unknown stage {stage!r}; one of demo, round, synth, sample, label, relabel, "
                              f"{', '.join(stages)}")
    return stages[stage](cfg, k)


def user_errors() -> tuple[type[Exception], ...]:
    """Failures caused by the user's inputs or settings: reported as one message, no traceback."""
    from .coco import CocoFormatError
    from .detectors.opencv_dnn import ModelFileNotFound
    from .download import DownloadInputError
    from .frames import NoUsableInputError
    from .gt_readers import GroundTruthError
    from .pipeline import PipelineError

    return (PipelineError, NoUsableInputError, CocoFormatError, GroundTruthError, ModelFileNotFound,
            DownloadInputError)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    logging.getLogger("pseudolabel").setLevel(logging.INFO)
    try:
        run(cfg)
    except user_errors() as e:
        print(f"pseudolabel: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    hydra_main()


if __name__ == "__main__":
    main()
