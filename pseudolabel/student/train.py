"""Fine-tune a student on pseudo-labels and write its best weights to ``out_dir/student.pt``."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from ..layout import STUDENT_CHECKPOINT


def _load_lightning_weights(path: str | Path) -> dict[str, Any]:
    """The detector's state dict from a Lightning checkpoint (``model.`` prefix removed)."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    return {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}


def train_student(*, pseudo_labels_path: str | Path, frames_dir: str | Path, out_dir: str | Path, model,
                  datamodule, module_factory: Callable[..., Any], trainer_kwargs: dict[str, Any] | None = None,
                  callbacks: Sequence[Any] = (), logger: Any = False, seed: int = 0,
                  ema_decay: float | None = None) -> Path:
    """Train, keep the checkpoint with the best ``val/f1``, and save it as a plain weights file.

    Parameters
    ----------
    pseudo_labels_path, frames_dir : the previous round's pseudo-labels (COCO, ours) and their frames.
    out_dir : receives ``student.pt`` (``{"state_dict", "meta"}``, loadable with ``weights_only=True``)
        and Lightning's ``checkpoints/``.
    model : a built detector, or a zero-argument factory (called after seeding, for reproducible heads).
    datamodule : a LightningDataModule, or a factory taking ``pseudo_labels_path=`` and ``frames_dir=``.
    module_factory : ``model -> LightningModule`` (e.g. a Hydra ``_partial_`` DetectionModule).
    trainer_kwargs : ``pytorch_lightning.Trainer`` arguments; CPU, one device, progress bar and
        ``default_root_dir=out_dir`` are defaults they may override.
    callbacks : extra callbacks (BackboneFreeze, EarlyStopping...); an EarlyStopping on ``val/f1``
        (patience 3) is added when none is given.
    seed : for :func:`pytorch_lightning.seed_everything` (workers included).
    ema_decay : when set, an exponential moving average of the weights (mean teacher, Lightning's
        ``EMAWeightAveraging``) is what validation scores and what ``student.pt`` holds; None: the raw weights.

    Returns
    -------
    Path of ``student.pt``. The best checkpoint is used when some validation produced F1 > 0;
    otherwise (no confident detection yet, ``fast_dev_run``, or no validation frames: ``val_fraction`` 0) the
    final weights.
    """
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from .model import save_student_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(seed, workers=True)
    if not isinstance(model, torch.nn.Module):
        model = model()
    if not isinstance(datamodule, pl.LightningDataModule):
        datamodule = datamodule(pseudo_labels_path=str(pseudo_labels_path), frames_dir=str(frames_dir))
    module = module_factory(model=model)

    datamodule.setup("fit")
    validates = len(getattr(datamodule, "val_set", None) or ()) > 0
    # the averaged weights reach a checkpoint only through the EMA callback's on_save_checkpoint, which Lightning
    # skips for weights-only checkpoints
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/f1", mode="max",
                                 save_top_k=1, save_weights_only=ema_decay is None, enable_version_counter=False)
    cbs = [checkpoint, *callbacks]
    if ema_decay is not None:
        from pytorch_lightning.callbacks import EMAWeightAveraging

        cbs.append(EMAWeightAveraging(decay=float(ema_decay)))
    if not any(isinstance(c, EarlyStopping) for c in cbs):
        cbs.append(EarlyStopping(monitor="val/f1", mode="max", patience=3))
    kwargs: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": True,
                              "default_root_dir": str(out), "logger": logger}
    kwargs.update(trainer_kwargs or {})
    if not validates:  # no held-out frame (val_fraction 0): the whole schedule, then the final weights
        cbs = [c for c in cbs if not isinstance(c, (EarlyStopping, ModelCheckpoint))]
        kwargs["limit_val_batches"] = 0
    kwargs["callbacks"] = cbs
    trainer = pl.Trainer(**kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, datamodule=datamodule)

    best_score = checkpoint.best_model_score if validates else None
    used = "last"
    if validates and checkpoint.best_model_path and best_score is not None and float(best_score) > 0:
        model.load_state_dict(_load_lightning_weights(checkpoint.best_model_path), strict=True)
        used = "best"
    dm_info = {k: getattr(datamodule, k) for k in ("train_video_ids", "val_video_ids") if hasattr(datamodule, k)}
    meta = {
        "weights": used,
        "best_val_f1": None if best_score is None else float(best_score),
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "seed": int(seed),
        "ema_decay": None if ema_decay is None else float(ema_decay),
        "pseudo_labels_path": str(pseudo_labels_path),
        "model_class": type(model).__name__,
        **{k: [str(v) for v in vs] for k, vs in dm_info.items()},
    }
    for name in ("train_set", "val_set"):
        ds = getattr(datamodule, name, None)
        if ds is not None:
            meta[f"n_{name}"] = len(ds)
    return save_student_checkpoint(model, out / STUDENT_CHECKPOINT, meta=meta)
