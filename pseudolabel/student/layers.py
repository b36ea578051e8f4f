"""The student's own ``nn.Module`` classes, at module level so that a built model pickles (a class
defined inside a function does not). Imported lazily by :mod:`pseudolabel.student.model`: importing
this module imports torch and torchvision.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import FeaturePyramidNetwork


class TimmFPNBackbone(nn.Module):
    """``body`` (a timm ``features_only`` model) followed by an FPN; returns OrderedDict '0', '1', ..."""

    def __init__(self, body: nn.Module, in_channels_list: list[int], out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels_list, out_channels)
        self.out_channels = out_channels

    def forward(self, x):
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


class NativeResolutionTransform(GeneralizedRCNNTransform):
    """Normalise and batch, but keep the image's own scale (tiny balls must not shrink).

    Images are fed at ``scale`` times their size (1: native), except that the longest side never exceeds
    ``max_size`` (larger images are shrunk to it).
    """

    def __init__(self, *args, scale: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)

    def shrunk_size(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) that :meth:`resize` turns an (h, w) image into (the floor rule of F.interpolate's
        ``scale_factor``, which this resize used before it took sizes)."""
        scale = min(self.scale, self.max_size / max(h, w))
        return (h, w) if scale == 1.0 else (math.floor(h * scale), math.floor(w * scale))

    def resize(self, image, target=None):
        h, w = image.shape[-2:]
        size = self.shrunk_size(h, w)
        if size == (h, w):
            return image, target
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        if target is not None:
            target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        return image, target
