"""The detector contract shared by teachers and students.

A detector takes a batch of RGB uint8 images (H, W, 3) and returns one :class:`Detections` per image:
``boxes`` (N, 4) xyxy float pixels of that image, ``scores`` (N,), ``labels`` (N,) int64 in the
detector's own label space, and optionally ``features`` (N, D) float32 (e.g. RoI box-head features).

A detector may also have ``predict_stream(batches)``: an iterator of ``predict(batch)`` for each batch
of an iterable, in order, that may start on later batches before an earlier one's results are taken
(:func:`stream_predictions` uses it when it is there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol, Sequence, runtime_checkable

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


def stream_predictions(detector: Detector, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[list[Detections]]:
    """``detector.predict(batch)`` for each batch, in order: through ``detector.predict_stream`` when the
    detector has one (its workers then never wait between batches), else one call per batch.

    A generator: closing it (``contextlib.closing``) closes the detector's stream too, which then finishes
    the work it started before returning."""
    stream = getattr(detector, "predict_stream", None)
    if stream is not None:
        yield from stream(batches)
    else:
        for batch in batches:
            yield detector.predict(batch)
