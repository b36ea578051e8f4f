"""Ignore regions: boxes the pseudo-labels doubt, which the student's loss neither rewards nor punishes.

Targets follow torchvision's detection contract with one convention: a box labelled :data:`IGNORE_LABEL` marks a
region that is neither a ball nor background (Efficient Teacher's ignore band: a mid-confidence detection that no
track confirmed). Taught as background, such a box teaches the student to miss the balls the teacher was unsure of.

Torchvision's RoI heads already leave it out: a proposal takes the label of the box it matches, and their sampler
draws positives from labels >= 1 and negatives from label 0 only. The RPN does not read labels, so
:func:`honour_ignore_labels` gives it an anchor assignment in which an anchor that would be background but
overlaps an ignore box (IoU >= the RPN's background threshold) is left out of the objectness loss.
"""
from __future__ import annotations

import torch
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import box_iou

IGNORE_LABEL = -1


class IgnoreAwareRPN(RegionProposalNetwork):
    """:class:`RegionProposalNetwork` whose training targets honour :data:`IGNORE_LABEL` boxes."""

    def assign_targets_to_anchors(self, anchors, targets):
        real = [{k: v[t["labels"] != IGNORE_LABEL] for k, v in t.items() if k in ("boxes", "labels")}
                for t in targets]
        labels, matched_gt_boxes = super().assign_targets_to_anchors(anchors, real)
        for lab, anchors_per_image, t in zip(labels, anchors, targets):
            ignore = t["boxes"][t["labels"] == IGNORE_LABEL]
            if len(ignore):
                near = box_iou(ignore, anchors_per_image).amax(dim=0) >= self.proposal_matcher.low_threshold
                lab[near & (lab == 0)] = -1.0  # the sampler draws negatives from label 0 only
        return labels, matched_gt_boxes


def honour_ignore_labels(model: torch.nn.Module) -> torch.nn.Module:
    """Make a torchvision two-stage detector (``model.rpn``, ``model.roi_heads``) honour ignore boxes in training.

    The RPN module keeps its parameters and state; only its anchor assignment changes. Returns ``model``.
    """
    rpn = getattr(model, "rpn", None)
    if not isinstance(rpn, RegionProposalNetwork):
        raise TypeError(f"expected a torchvision detector with an RPN, got {type(model)!r}")
    if not isinstance(rpn, IgnoreAwareRPN):
        rpn.__class__ = IgnoreAwareRPN  # a subclass that adds no state: swapping the class is enough
    return model
