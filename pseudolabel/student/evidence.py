"""Losses that trust a pseudo-label as much as its evidence: per-box weights in the box head's losses.

A target may carry ``"weights"``: float (N,), one per box, in [0, 1] (the data module writes them from each kept
box's score, :class:`~pseudolabel.student.data.PseudoLabelDataset` ``box_weights="score"``). A sampled proposal that
matches a box counts in the classification and regression losses with that box's weight; a background proposal
counts 1. Both losses keep torchvision's normalisation (``fastrcnn_loss``: the mean over the sampled proposals), so a
weight below 1 makes a doubtful ball teach less without making the background teach more, as Soft Teacher weights
each pseudo-box by the teacher's reliability. Targets without ``"weights"`` train exactly as torchvision's heads do.
The RPN is not weighted: it only proposes, and a doubtful ball is still worth a proposal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads


def weighted_fastrcnn_loss(class_logits: torch.Tensor, box_regression: torch.Tensor, labels: list[torch.Tensor],
                           regression_targets: list[torch.Tensor],
                           weights: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Torchvision's ``fastrcnn_loss`` with a weight per sampled proposal.

    Parameters
    ----------
    class_logits : (P, C) float, P sampled proposals over the batch.
    box_regression : (P, 4 C) float.
    labels, regression_targets, weights : per image, (P_i,) int64 class, (P_i, 4) encoded box deltas and (P_i,)
        float weight of each sampled proposal.

    Returns
    -------
    (classification loss, box loss): cross-entropy and smooth L1 (beta 1/9, summed over the four deltas of each
    positive), each proposal's term times its weight, summed and divided by P.
    """
    labels = torch.cat(labels, dim=0)
    regression_targets = torch.cat(regression_targets, dim=0)
    w = torch.cat(weights, dim=0).to(class_logits.dtype)
    n = max(labels.numel(), 1)
    classification_loss = (F.cross_entropy(class_logits, labels, reduction="none") * w).sum() / n
    pos = torch.where(labels > 0)[0]
    box_regression = box_regression.reshape(len(box_regression), box_regression.size(-1) // 4, 4)
    per_box = F.smooth_l1_loss(box_regression[pos, labels[pos]], regression_targets[pos], beta=1 / 9,
                               reduction="none").sum(dim=1)
    return classification_loss, (per_box * w[pos]).sum() / n


class EvidenceWeightedRoIHeads(RoIHeads):
    """:class:`RoIHeads` whose training losses weight each sampled proposal by its target box's ``"weights"``
    entry (:func:`weighted_fastrcnn_loss`). Box-only heads; with no ``"weights"`` in the targets, or with mask or
    keypoint heads, it is torchvision's forward."""

    def forward(self, features, proposals, image_shapes, targets=None):
        if not (self.training and targets and all("weights" in t for t in targets)) or self.has_mask() \
                or self.has_keypoint():
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        weights = []
        for t, idx, lab in zip(targets, matched_idxs, labels, strict=True):
            w = t["weights"].to(lab.device, torch.float32)
            on_box = w[idx] if len(w) else torch.zeros(len(idx), device=lab.device)
            weights.append(torch.where(lab > 0, on_box, torch.ones_like(on_box)))
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = weighted_fastrcnn_loss(class_logits, box_regression, labels,
                                                               regression_targets, weights)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


def weight_losses_by_evidence(model: torch.nn.Module) -> torch.nn.Module:
    """Make a torchvision two-stage detector's box head read per-box ``"weights"`` from its targets in training
    (:class:`EvidenceWeightedRoIHeads`). Only the class of ``model.roi_heads`` changes (no new state); inference is
    untouched. Returns ``model``."""
    heads = getattr(model, "roi_heads", None)
    if not isinstance(heads, RoIHeads):
        raise TypeError(f"expected a torchvision detector with RoI heads, got {type(model)!r}")
    if not isinstance(heads, EvidenceWeightedRoIHeads):
        heads.__class__ = EvidenceWeightedRoIHeads
    return model
