"""Jittered copies of the labels as extra regression samples for the box head.

Torchvision's RoI heads train box regression on the positive proposals (IoU >= 0.5 with a label) that the RPN gives
plus the labels themselves. For balls of a few pixels the RPN's positives are few and lopsided (early in training
almost none: the labels alone, whose regression target is zero), so the head learns how to move the boxes it
happens to see, not how to recover a ball's extent from any box around it, and its boxes drift from the labels it
trained on. Copies of each label shifted and rescaled at random, symmetrically in log scale, give the head
boxes to regress on every side of every label (the "jittered ground truth" of IoU-Net and Soft Teacher's box
jitter), in a loss of their own.
"""
from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import RoIHeads

from .evidence import EvidenceWeightedRoIHeads


def jitter_boxes(boxes: torch.Tensor, *, copies: int, max_scale: float, max_shift: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``copies`` random variants of each box.

    Parameters
    ----------
    boxes : (N, 4) float xyxy pixels.
    copies : variants per box.
    max_scale : width and height each multiplied by ``exp(u)``, ``u`` uniform in ``[-log(1+s), log(1+s)]``.
    max_shift : centre moved by up to this fraction of the box's width (x) and height (y), uniform.

    Returns
    -------
    (N * copies, 4) float xyxy, the variants of box 0 first.
    """
    if copies <= 0 or len(boxes) == 0:
        return boxes.new_zeros((0, 4))
    b = boxes.repeat_interleave(copies, dim=0)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = b[:, 0] + w / 2, b[:, 1] + h / 2
    u = torch.rand((len(b), 4), generator=generator, dtype=b.dtype, device=b.device) * 2 - 1
    log_s = torch.log1p(torch.tensor(float(max_scale), dtype=b.dtype))
    cx, cy = cx + u[:, 0] * max_shift * w, cy + u[:, 1] * max_shift * h
    w, h = w * torch.exp(u[:, 2] * log_s), h * torch.exp(u[:, 3] * log_s)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


class JitteredProposalRoIHeads(EvidenceWeightedRoIHeads):
    """:class:`RoIHeads` that, in training, also regresses ``jitter_copies`` jittered copies of each label.

    The copies enter one extra loss, ``loss_box_jitter`` (smooth L1 on the box deltas from each copy to its label,
    torchvision's ``fastrcnn_loss`` weighting: each copy counts as one sampled proposal), which trains the box
    predictor's regression layer only: as classification positives the copies made the student fire on anything
    that loosely holds a ball, and through the box head's shared features they shifted its scores. The copies are
    drawn from a generator of their own (seeded from torch's initial seed), so that everything else trains exactly
    as without them. Ignore regions (labels < 1) get no copies.
    """

    jitter_copies: int = 0
    jitter_scale: float = 0.25
    jitter_shift: float = 0.15

    def forward(self, features, proposals, image_shapes, targets=None):
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if self.training and self.jitter_copies > 0 and targets is not None:
            losses["loss_box_jitter"] = self.jitter_regression_loss(features, image_shapes, targets)
        return result, losses

    def jitter_regression_loss(self, features, image_shapes, targets) -> torch.Tensor:
        import torch.nn.functional as F

        if getattr(self, "_jitter_generator", None) is None:
            # a stream of its own: the global one (proposal sampling, augmentation) goes on as without copies
            self._jitter_generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        labels_boxes = [t["boxes"][t["labels"] >= 1] for t in targets]
        copies = [jitter_boxes(b.cpu(), copies=self.jitter_copies, max_scale=self.jitter_scale,
                               max_shift=self.jitter_shift, generator=self._jitter_generator).to(b.device)
                  for b in labels_boxes]
        n_sampled = self.fg_bg_sampler.batch_size_per_image * len(targets)
        if sum(len(c) for c in copies) == 0:
            return features[next(iter(features))].sum() * 0.0  # keeps the graph (and DDP) happy
        with torch.no_grad():  # features shared with the classifier stay as its own loss shapes them
            pooled = self.box_head(self.box_roi_pool(features, copies, image_shapes)).flatten(start_dim=1)
        box_regression = self.box_predictor.bbox_pred(pooled)
        box_regression = box_regression.reshape(len(box_regression), -1, 4)[:, 1]  # the target class
        matched = [b.repeat_interleave(self.jitter_copies, dim=0) for b in labels_boxes]
        regression_targets = torch.cat(self.box_coder.encode(matched, copies))
        return F.smooth_l1_loss(box_regression, regression_targets, beta=1 / 9, reduction="sum") / n_sampled


def add_jittered_proposals(model: torch.nn.Module, *, copies: int, max_scale: float = 0.25,
                           max_shift: float = 0.15) -> torch.nn.Module:
    """Make a torchvision two-stage detector's box head also learn to regress ``copies`` jittered copies of each
    label to it (a ``loss_box_jitter`` term in training).

    Only the class of ``model.roi_heads`` changes (no new state); inference is untouched. Returns ``model``.
    """
    heads = getattr(model, "roi_heads", None)
    if not isinstance(heads, RoIHeads):
        raise TypeError(f"expected a torchvision detector with RoI heads, got {type(model)!r}")
    if copies < 0 or max_scale < 0 or max_shift < 0:
        raise ValueError(f"copies, max_scale and max_shift must be >= 0, got {copies}, {max_scale}, {max_shift}")
    if not isinstance(heads, JitteredProposalRoIHeads):
        heads.__class__ = JitteredProposalRoIHeads
    heads.jitter_copies, heads.jitter_scale, heads.jitter_shift = int(copies), float(max_scale), float(max_shift)
    return model
