"""The labelling stage: run a detector over sampled frames and keep confident target boxes.

Used by round 0 (teacher) and by every relabel (student): same code, same batching and tiling.
Frames with no confident box stay in the output as negatives.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .detectors.base import Detections, Detector
from .records import Box, Dataset, Frame


def read_rgb(path: str | Path) -> np.ndarray:
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def iter_batches(frames: Sequence[Frame], frames_dir: str | Path, *, batch_size: int,
                 prefetch: int = 2) -> Iterator[tuple[list[Frame], list[np.ndarray]]]:
    """Yield (frames, RGB images) batches; JPEG decoding runs in a background thread (cv2 releases
    the GIL), so the detector never waits on disk."""
    frames_dir = Path(frames_dir)
    chunks = iter([list(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)])
    with ThreadPoolExecutor(max_workers=1) as pool:
        def load(chunk):
            return chunk, [read_rgb(frames_dir / f.file_name) for f in chunk]

        pending = deque(pool.submit(load, c) for c in islice(chunks, prefetch))
        while pending:
            fut = pending.popleft()
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append(pool.submit(load, nxt))
            yield fut.result()


def select_targets(det: Detections, *, class_ids: Sequence[int] | None, score_threshold: float) -> Detections:
    """Keep detections whose label is in ``class_ids`` (None: all) with ``score >= score_threshold``."""
    mask = det.scores >= score_threshold
    if class_ids is not None:
        mask &= np.isin(det.labels, np.asarray(list(class_ids), dtype=np.int64))
    return det.select(mask)


def label_frames(detector: Detector, frames: Sequence[Frame], *, frames_dir: str | Path, round: int,
                 class_ids: Sequence[int] | None, score_threshold: float, batch_size: int = 4,
                 category_id: int = 1, progress: bool = True) -> tuple[Dataset, dict[int, np.ndarray]]:
    """Label every frame; returns the dataset (all frames, kept boxes) and box features by box id.

    Returns
    -------
    dataset : Dataset
        One Box per confident detection (``source`` = detector name, ``decision`` kept, ``round``),
        ids 1..N in frame order; every frame present, with or without boxes.
    features : dict[int, ndarray]
        Box id -> feature vector (D,), for detectors that return features (else empty).
    """
    from tqdm.auto import tqdm

    ds = Dataset(frames=list(frames))
    features: dict[int, np.ndarray] = {}
    bar = tqdm(total=len(frames), desc=f"label r{round} [{detector.name}]", unit="frame", disable=not progress)
    for chunk, images in iter_batches(frames, frames_dir, batch_size=batch_size):
        for frame, det in zip(chunk, detector.predict(images)):
            det = select_targets(det, class_ids=class_ids, score_threshold=score_threshold)
            for j in np.argsort(-det.scores, kind="stable"):
                box = Box(image_id=frame.id, xyxy=tuple(float(v) for v in det.boxes[j]), score=float(det.scores[j]),
                          round=round, source=detector.name, category_id=category_id, id=len(ds.boxes) + 1)
                ds.boxes.append(box)
                if det.features is not None:
                    features[box.id] = np.asarray(det.features[j], dtype=np.float32)
        bar.update(len(chunk))
    bar.close()
    return ds, features
