"""The detector contract shared by teachers and students.

A detector takes a batch of RGB uint8 images (H, W, 3) and returns one :class:`Detections` per image:
``boxes`` (N, 4) xyxy float pixels of that image, ``scores`` (N,), ``labels`` (N,) int64 in the
detector's own label space, and optionally ``features`` (N, D) float32 (e.g. RoI box-head features).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass
class Detections:
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.labels)):
            raise ValueError("boxes, scores and labels must have the same length")

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, mask_or_index) -> "Detections":
        feats = None if self.features is None else self.features[mask_or_index]
        return Detections(self.boxes[mask_or_index], self.scores[mask_or_index],
                          self.labels[mask_or_index], feats)

    @staticmethod
    def concat(parts: Sequence["Detections"]) -> "Detections":
        if not parts:
            return Detections()
        feats = None
        if all(p.features is not None for p in parts) and parts:
            feats = np.concatenate([p.features for p in parts], axis=0)
        return Detections(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                          np.concatenate([p.labels for p in parts]), feats)


@runtime_checkable
class Detector(Protocol):
    """Anything with ``name`` (stored as box provenance ``source``) and a batched ``predict``."""

    name: str

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        ...
