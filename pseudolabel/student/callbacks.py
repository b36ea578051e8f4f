"""Lightning callbacks for student training."""
from __future__ import annotations

import torch
from pytorch_lightning.callbacks import BaseFinetuning


def _get_attr(obj, dotted: str):
    for part in dotted.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{type(obj).__name__} has no attribute {part!r} (looking up {dotted!r})")
        obj = getattr(obj, part)
    return obj


class BackboneFreeze(BaseFinetuning):
    """Freeze the detector's backbone (and optionally its RPN) from the start of training.

    Parameters
    ----------
    unfreeze_at_epoch : epoch at which the backbone becomes trainable, added to the optimizer with
        the first group's learning rate / ``initial_denom_lr``; None keeps it frozen.
    train_rpn : False freezes the region-proposal network for the whole run (reference behaviour
        for a COCO-trained teacher copy; a fresh RPN must train).
    backbone_attr : dotted path from ``pl_module.model``: ``backbone.body`` (the feature extractor,
        FPN trainable) or ``backbone`` (with the FPN).
    initial_denom_lr : learning-rate divisor of the unfrozen backbone.

    BatchNorm layers of frozen parts are kept in eval mode (running statistics neither used from
    the batch nor updated); they never join the optimizer.
    """

    def __init__(self, unfreeze_at_epoch: int | None = None, *, train_rpn: bool = True,
                 backbone_attr: str = "backbone.body", initial_denom_lr: float = 10.0) -> None:
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.train_rpn = bool(train_rpn)
        self.backbone_attr = backbone_attr
        self.initial_denom_lr = float(initial_denom_lr)
        self._frozen_bn: list[torch.nn.Module] = []

    def _frozen_modules(self, pl_module) -> list[torch.nn.Module]:
        mods = [_get_attr(pl_module.model, self.backbone_attr)]
        if not self.train_rpn:
            mods.append(pl_module.model.rpn)
        return mods

    def freeze_before_training(self, pl_module) -> None:
        mods = self._frozen_modules(pl_module)
        self.freeze(mods, train_bn=False)
        self._frozen_bn = []
        for mod in mods:
            for m in mod.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.track_running_stats = True  # undo BaseFinetuning's batch-statistics mode
                    self._frozen_bn.append(m)
        self._set_bn_eval()

    def _set_bn_eval(self) -> None:
        for m in self._frozen_bn:
            m.eval()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._set_bn_eval()  # Lightning switches the whole model to train mode each epoch / after validation

    def finetune_function(self, pl_module, current_epoch: int, optimizer) -> None:
        if self.unfreeze_at_epoch is None or current_epoch != self.unfreeze_at_epoch:
            return
        backbone = _get_attr(pl_module.model, self.backbone_attr)
        self.unfreeze_and_add_param_group(backbone, optimizer, initial_denom_lr=self.initial_denom_lr,
                                          train_bn=False)
        backbone_bn = {id(m) for m in backbone.modules()}
        for m in self._frozen_bn:
            if id(m) in backbone_bn:
                for p in m.parameters(recurse=False):
                    p.requires_grad_(False)
