"""The Lightning module that fine-tunes a torchvision FasterRCNN on pseudo-labels.

Training minimises the sum of torchvision's four losses (plus ``loss_box_jitter`` with ``jittered_proposals``); the
box head's two weigh each box by its target's ``"weights"`` when the data module gives them
(:mod:`~pseudolabel.student.evidence`).
Validation reports the same losses and F1 at IoU >= 0.5 of the confident predictions (score >= 0.5) against the
held-out pseudo-labels (``val/f1``, what checkpointing and early stopping follow).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import pytorch_lightning as pl
import torch

from ..boxes import as_boxes, iou_matrix
from ..evaluate import greedy_match
from .evidence import weight_losses_by_evidence
from .ignore import IGNORE_LABEL, honour_ignore_labels
from .jitter import add_jittered_proposals


def match_counts(pred_boxes, pred_scores, gt_boxes, *, iou_threshold: float = 0.5,
                 score_threshold: float = 0.5) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one image's predictions against its reference boxes.

    Predictions below ``score_threshold`` are ignored; the rest are matched one to one by
    :func:`~pseudolabel.evaluate.greedy_match` (highest score first, each takes the unmatched reference box of
    highest IoU if it is >= ``iou_threshold``).
    """
    p = as_boxes(pred_boxes)
    s = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    keep = s >= score_threshold
    n_ref = len(as_boxes(gt_boxes))
    tp = int(greedy_match(p[keep], s[keep], gt_boxes, iou_threshold=iou_threshold)[0].sum())
    return tp, int(keep.sum()) - tp, n_ref - tp


def f1_from_counts(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """(precision, recall, F1); an empty reference with no false positive scores 1.0 everywhere (a validation
    split of negatives the student leaves empty is perfect), where :func:`pseudolabel.evaluate.evaluate`
    reports 0.0 for an undefined ratio and leaves reading it to the counts."""
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


class DetectionModule(pl.LightningModule):
    """Wraps a built torchvision detector.

    Parameters
    ----------
    model : torchvision FasterRCNN (2 classes); its RPN is made to honour ignore boxes
        (:func:`~pseudolabel.student.ignore.honour_ignore_labels`), targets labelled ``IGNORE_LABEL``, and its box
        head to read per-box ``"weights"`` from the targets
        (:func:`~pseudolabel.student.evidence.weight_losses_by_evidence`).
    optimizer : callable ``params -> torch.optim.Optimizer``, e.g. Hydra's ``_partial_`` AdamW; it
        receives only the parameters that require gradients when training starts.
    score_threshold, iou_threshold : for ``val/f1``.
    jittered_proposals : jittered copies of each label that the box predictor learns to regress back to it, in a
        loss of their own (:func:`~pseudolabel.student.jitter.add_jittered_proposals`, two-stage models only);
        0: none.
    jitter_scale, jitter_shift : their largest relative change of size and of centre.
    """

    def __init__(self, model: torch.nn.Module,
                 optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
                 *, score_threshold: float = 0.5, iou_threshold: float = 0.5, jittered_proposals: int = 0,
                 jitter_scale: float = 0.25, jitter_shift: float = 0.15) -> None:
        super().__init__()
        self.model = weight_losses_by_evidence(honour_ignore_labels(model)) if hasattr(model, "rpn") else model
        if jittered_proposals:
            add_jittered_proposals(self.model, copies=jittered_proposals, max_scale=jitter_scale,
                                   max_shift=jitter_shift)
        self.optimizer_factory = optimizer
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self._counts = np.zeros(3, dtype=np.int64)

    def forward(self, images, targets=None):
        return self.model(images, targets)

    def training_step(self, batch, batch_idx: int):
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        n = len(images)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=n)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=n)
        return loss

    def _val_losses(self, images, targets) -> dict[str, torch.Tensor]:
        # torchvision detectors return losses only in train mode; BatchNorm stays in eval so that
        # validation does not move running statistics.
        self.model.train()
        for m in self.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        try:
            with torch.no_grad():
                return self.model(images, targets)
        finally:
            self.model.eval()

    def on_validation_epoch_start(self) -> None:
        self._counts[:] = 0

    def validation_step(self, batch, batch_idx: int) -> None:
        images, targets = batch
        n = len(images)
        losses = self._val_losses(images, targets)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=n)
        self.log("val/loss", sum(losses.values()), prog_bar=True, batch_size=n)
        preds = self.model(images)
        for p, t in zip(preds, targets):
            boxes, scores = p["boxes"].cpu().numpy(), p["scores"].cpu().numpy()
            ref, labels = t["boxes"].cpu().numpy(), t["labels"].cpu().numpy()
            ignore = ref[labels == IGNORE_LABEL]
            if len(ignore) and len(boxes):  # a detection on a doubtful box is neither right nor wrong
                judged = iou_matrix(as_boxes(boxes), ignore).max(axis=1) < self.iou_threshold
                boxes, scores = boxes[judged], scores[judged]
            self._counts += match_counts(boxes, scores, ref[labels != IGNORE_LABEL], iou_threshold=self.iou_threshold,
                                         score_threshold=self.score_threshold)

    def on_validation_epoch_end(self) -> None:
        precision, recall, f1 = f1_from_counts(*self._counts.tolist())
        self.log("val/precision", precision)
        self.log("val/recall", recall)
        self.log("val/f1", f1, prog_bar=True)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: everything is frozen")
        return self.optimizer_factory(params)
