"""Command-line entry point: ``python -m pseudolabel stage=<stage> [round=N] [exp=NAME] [overrides…]``.

Stages: ``demo`` (synthetic data + rounds 0..rounds), ``round`` (one full round), ``download`` (yt-dlp, see
``conf/download/``), ``export`` (a round for review, see ``conf/export/``), ``report``
(``runs/<exp>/report.html``, see :mod:`pseudolabel.report`), ``review_import`` (a reviewed export into the
reviewed set, see ``conf/review/``), or one stage of a round:
``synth``, ``sample``, ``label``, ``train``, ``relabel``, ``prune``, ``merge``, ``evaluate``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from . import safe_config  # reads PSEUDOLABEL_EXTRA_TARGETS now, before Hydra's job can set it

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def run(cfg: DictConfig) -> object:
    from .safe_config import instantiate

    from . import pipeline as p

    stage, k = str(cfg.stage), int(cfg.round)
    if stage == "download":
        from omegaconf import OmegaConf

        from .download import run_from_config

        return run_from_config(OmegaConf.to_container(cfg.download, resolve=True))
    if stage == "export":
        from .export.stage import stage_export

        return stage_export(cfg)
    if stage == "review_import":
        from .review.stage import stage_review_import

        return stage_review_import(cfg)
    if stage == "sweep_trial":
        return p.run_sweep_trial(cfg, trial=trial_name())
    if stage == "report":
        from .report.build import report_from_config

        return report_from_config(cfg)
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
    return stages[stage](cfg, k)  # config_schema.validate has refused any other stage


def trial_name() -> str:
    """A sweep trial's directory name: its overrides (``hydra.job.override_dirname``), filesystem-safe."""
    import re

    from hydra.core.hydra_config import HydraConfig

    name = HydraConfig.get().job.override_dirname if HydraConfig.initialized() else ""
    return re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", name).strip("._") or "default"


def user_errors() -> tuple[type[Exception], ...]:
    """Failures caused by the user's inputs or settings: reported as one message, no traceback."""
    from .coco import CocoFormatError
    from .config_schema import ConfigError
    from .detectors.opencv_dnn import ModelFileNotFound, UnreadableModelError
    from .download import DownloadInputError
    from .export import ExportError
    from .frames import NoUsableInputError
    from .gt_readers import GroundTruthError
    from .pipeline import PipelineError
    from .safe_config import UnsafeTargetError

    return (PipelineError, NoUsableInputError, CocoFormatError, GroundTruthError, ModelFileNotFound, UnreadableModelError,
            DownloadInputError, ExportError, UnsafeTargetError, ConfigError)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> object:
    logging.getLogger("pseudolabel").setLevel(logging.INFO)
    from hydra.errors import InstantiationException

    try:
        safe_config.check_targets(cfg)  # every _target_ of the composed config, before anything runs
        from .config_schema import validate
        from .pipeline import check_round_inputs

        validate(cfg)  # types and ranges of the settings (config_schema.SCHEMA)
        check_round_inputs(cfg)  # the round asked for can run: the rounds and stages it reads exist
        return run(cfg)  # a sweep trial returns its objective (Optuna reads it)
    except (InstantiationException, *user_errors()) as e:
        if isinstance(e, InstantiationException):  # Hydra wraps what a constructor raised
            if not isinstance(e.__cause__, user_errors()):
                raise
            e = e.__cause__
        if str(cfg.get("stage")) == "sweep_trial":
            raise  # one failed trial: Hydra records it and the sweep goes on
        print(f"pseudolabel: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    try:
        safe_config.refuse_unsafe_overrides(sys.argv[1:])
    except safe_config.UnsafeTargetError as e:
        print(f"pseudolabel: {e}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


if __name__ == "__main__":
    main()
