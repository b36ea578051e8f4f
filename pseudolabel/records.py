"""The in-memory dataset: frames and boxes with provenance.

A :class:`Frame` is one sampled image (a video frame or a still); a :class:`Box` is one detection
on it, always ``xyxy`` float pixels, carrying where it came from (round, source model, score) and
what the pipeline decided about it (``kept`` or ``pruned`` with a ``reason``).
Frames without boxes are kept: they are the dataset's negatives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

KEPT = "kept"
PRUNED = "pruned"


@dataclass
class Frame:
    id: int
    file_name: str  # relative to the experiment's frames directory
    width: int
    height: int
    video_id: str
    frame_index: int
    timestamp: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        """Identity of a frame across rounds and data sets (ids are local to one file)."""
        return (self.video_id, self.frame_index)


@dataclass
class Box:
    image_id: int
    xyxy: tuple[float, float, float, float]
    score: float = 1.0
    round: int = 0
    source: str = "teacher"
    decision: str = KEPT
    reason: str = ""
    category_id: int = 1
    id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return self.decision == KEPT

    def prune(self, reason: str, **extra: Any) -> None:
        self.decision = PRUNED
        self.reason = reason
        self.extra.update(extra)


def provenance(box: Box, *, round: int | None = None) -> str:
    """What kept a box, in one word: its source, with the rule that seeded it when one did
    (``student/moving_track``), and ``/new`` when ``round`` (default: the box's own) is a student round and the
    box was first found in it (``extra["first_round"]``, written by the merge)."""
    round = box.round if round is None else round
    name = box.source + (f"/{box.extra['seed']}" if box.extra.get("seed") else "")
    return name + ("/new" if round > 0 and box.extra.get("first_round", box.round) == round else "")


@dataclass
class Dataset:
    frames: list[Frame] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=lambda: [{"id": 1, "name": "ball"}])
    info: dict[str, Any] = field(default_factory=dict)

    def boxes_by_image(self, *, kept_only: bool = False) -> dict[int, list[Box]]:
        """Map image id -> its boxes (every frame present, possibly with an empty list)."""
        out: dict[int, list[Box]] = {f.id: [] for f in self.frames}
        for b in self.boxes:
            if kept_only and not b.kept:
                continue
            out.setdefault(b.image_id, []).append(b)
        return out

    def frame_by_key(self) -> dict[tuple[str, int], Frame]:
        return {f.key: f for f in self.frames}

    def kept_boxes(self) -> list[Box]:
        return [b for b in self.boxes if b.kept]

    def subset(self, keep: Callable[[Frame], bool]) -> "Dataset":
        """The frames ``keep`` accepts and their boxes (the same objects, ids unchanged), categories and info."""
        frames = [f for f in self.frames if keep(f)]
        ids = {f.id for f in frames}
        return Dataset(frames=frames, boxes=[b for b in self.boxes if b.image_id in ids],
                       categories=self.categories, info=dict(self.info))

    def renumber(self) -> None:
        """Give boxes consecutive ids 1..N (frames keep theirs)."""
        for i, b in enumerate(self.boxes, start=1):
            b.id = i

    def xyxy(self, boxes: list[Box] | None = None) -> np.ndarray:
        """(N, 4) float array of the given boxes (default: all)."""
        bs = self.boxes if boxes is None else boxes
        return np.array([b.xyxy for b in bs], dtype=np.float64).reshape(-1, 4)
