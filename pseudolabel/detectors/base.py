"""The detector contract shared by teachers and students.

A detector takes a batch of RGB uint8 images (H, W, 3) and returns one :class:`Detections` per image:
``boxes`` (N, 4) xyxy float pixels of that image, ``scores`` (N,), ``labels`` (N,) int64 in the
detector's own label space, and optionally ``features`` (N, D) float32 (e.g. RoI box-head features).

A detector may also have ``predict_stream(batches)``: an iterator of ``predict(batch)`` for each batch
of an iterable, in order, that may start on later batches before an earlier one's results are taken
(:func:`stream_predictions` uses it when it is there). :class:`BatchedDetector` gives both to a
runtime that only implements one forward over a chunk of images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .accel.side_by_side import SideBySide

T = TypeVar("T")


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


def split(items: Sequence[T], size: int | None) -> list[list[T]]:
    """``items`` cut into consecutive lists of ``size`` (the last one shorter); None: one list of all.
    No items give no lists."""
    step = int(size) if size else max(1, len(items))
    return [list(items[i:i + step]) for i in range(0, len(items), step)]


def check_counts(**counts: int | None) -> None:
    """Raise ValueError unless every count given is None or >= 1 (e.g. ``forward_batch``, ``workers``)."""
    if any(v is not None and int(v) < 1 for v in counts.values()):
        raise ValueError(f"{' and '.join(counts)} must be >= 1, got {' and '.join(map(str, counts.values()))}")


class BatchedDetector:
    """A detector whose runtime forwards chunks of images, on replicas side by side.

    ``predict(images)`` cuts the images into chunks of ``forward_batch`` (None: all of them in one
    chunk), runs ``_forward(replica, chunk)`` on each, up to ``_workers()`` at once
    (:class:`~pseudolabel.detectors.accel.side_by_side.SideBySide`), and returns one :class:`Detections` per
    image, in order. ``predict_stream(batches)`` does the same for each batch of an iterable without
    waiting between batches. A forward that returns another number of :class:`Detections` than it was
    given images raises RuntimeError.

    A subclass sets ``name``, ``forward_batch``, ``workers`` and ``_side_by_side`` (the SideBySide over
    its replicas), and implements ``_forward``; it overrides ``_workers`` when ``workers`` is not an int.
    """

    name: str
    forward_batch: int | None = 1
    workers: int | None = 1
    _side_by_side: "SideBySide"

    def _forward(self, replica: Any, images: list[np.ndarray]) -> list[Detections]:
        """One forward of ``replica`` (the subclass's network or model) on RGB uint8 images (H, W, 3):
        one Detections per image, in the images' pixels."""
        raise NotImplementedError

    def _workers(self) -> int:
        """Forwards run at once (replicas side by side)."""
        return int(self.workers or 1)

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """One Detections per image of ``images`` (RGB uint8 (H, W, 3)), in order."""
        return self._side_by_side.map(self._checked_forward, self._chunks(images), workers=self._workers())

    def predict_stream(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[list[Detections]]:
        """``predict`` of each batch, in order, the replicas never waiting between batches
        (:meth:`~pseudolabel.detectors.accel.side_by_side.SideBySide.stream`); same detections as ``predict``."""
        return self._side_by_side.stream(self._checked_forward, map(self._chunks, batches),
                                         workers=self._workers())

    def _chunks(self, images: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        return split(images, self.forward_batch)

    def _checked_forward(self, replica: Any, images: list[np.ndarray]) -> list[Detections]:
        out = self._forward(replica, images)
        if len(out) != len(images):
            raise RuntimeError(f"{self.name}: a forward returned {len(out)} Detections for {len(images)} images")
        return out
