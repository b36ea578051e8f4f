"""The labelling stage: run a detector over sampled frames and keep confident target boxes.

Used by round 0 (teacher) and by every relabel (student): same code, same batching and tiling.
Frames with no confident box stay in the output as negatives.

Hot path: JPEG decoding runs in a background thread ahead of the detector (:func:`iter_batches`),
frames go to the detector in batches (and a :class:`~pseudolabel.detectors.tiling.TiledDetector`
batches the tiles of all frames of a batch), torch runs under ``inference_mode``, and
:func:`configure_threads` sizes the torch / OpenCV thread pools to the CPUs this process may use.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .detectors.base import Detections, Detector, stream_predictions
from .frames import read_rgb
from .records import Box, Dataset, Frame


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: Slurm / taskset / cgroup cpusets), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure_threads(num_threads: int | None = None) -> int:
    """Size torch's intra-op pool and OpenCV's pool for labelling; returns the thread count used.

    Parameters
    ----------
    num_threads : int or None
        None: ``$OMP_NUM_THREADS`` when set (joblib's loky workers set it to their share of the
        CPUs, so parallel shards do not oversubscribe), else :func:`available_cpus`.
    """
    import cv2
    import torch

    if num_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        num_threads = int(env) if env.isdigit() and int(env) > 0 else available_cpus()
    n = max(1, int(num_threads))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    cv2.setNumThreads(n)
    return n


def frame_chunks(frames: Sequence[Frame], *, batch_size: int, split_by_video: bool = False) -> list[list[Frame]]:
    """Consecutive batches of at most ``batch_size`` frames.

    ``split_by_video``: a batch never holds frames of two videos, so what a video's frames are
    batched with does not depend on which other videos are labelled in the same run (shards).
    """
    batch_size = max(1, int(batch_size))
    if not split_by_video:
        return [list(frames[i:i + batch_size]) for i in range(0, len(frames), batch_size)]
    chunks: list[list[Frame]] = []
    for f in frames:
        if chunks and len(chunks[-1]) < batch_size and chunks[-1][-1].video_id == f.video_id:
            chunks[-1].append(f)
        else:
            chunks.append([f])
    return chunks


def iter_batches(frames: Sequence[Frame], frames_dir: str | Path, *, batch_size: int, prefetch: int = 2,
                 split_by_video: bool = False) -> Iterator[tuple[list[Frame], list[np.ndarray]]]:
    """Yield (frames, RGB images) batches; JPEG decoding runs in a background thread (cv2 releases
    the GIL), so the detector never waits on disk. At most ``prefetch`` decoded batches wait ahead."""
    frames_dir = Path(frames_dir)
    chunks = iter(frame_chunks(frames, batch_size=batch_size, split_by_video=split_by_video))
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


def iter_detections(detector: Detector, frames: Sequence[Frame], *, frames_dir: str | Path,
                    class_ids: Sequence[int] | None, score_threshold: float, batch_size: int = 4,
                    split_by_video: bool = False, progress: bool = True, desc: str = "label",
                    context_class_ids: Sequence[int] | None = None,
                    context_score_threshold: float = 0.5) -> Iterator[tuple[Frame, Detections, Detections]]:
    """Yield ``(frame, targets, context)`` for every frame in order: the target detections above
    ``score_threshold`` and the detections of ``context_class_ids`` (e.g. COCO person, evidence for
    :mod:`pseudolabel.prune.context`; empty when None) above ``context_score_threshold``, each sorted by
    decreasing score (stable). See :func:`iter_batches` for batching;
    the batches go through :func:`~pseudolabel.detectors.base.stream_predictions`, so a detector with
    ``predict_stream`` works on the next batches while this generator hands out a batch's frames."""
    from tqdm.auto import tqdm

    chunks: deque = deque()  # frames of the batches handed to the detector, oldest first
    start_video = getattr(detector, "start_video", None)  # a detector that follows a video (guided tiling)
    if start_video is not None:
        split_by_video = True

    def images():
        video = object()
        for chunk, imgs in iter_batches(frames, frames_dir, batch_size=batch_size, split_by_video=split_by_video):
            chunks.append(chunk)
            if start_video is not None and chunk[0].video_id != video:
                video = chunk[0].video_id
                start_video(video)  # the detector has finished the batches before this one (a lazy stream)
            yield imgs

    # closing: stopped early, the detector's stream finishes what it started now, not when collected
    with tqdm(total=len(frames), desc=desc, unit="frame", disable=not progress) as bar, \
            closing(stream_predictions(detector, images())) as results:
        for dets in results:
            chunk = chunks.popleft()
            for frame, det in zip(chunk, dets):
                target = select_targets(det, class_ids=class_ids, score_threshold=score_threshold)
                context = (det.select(np.zeros(len(det), dtype=bool)) if context_class_ids is None else
                           select_targets(det, class_ids=context_class_ids, score_threshold=context_score_threshold))
                yield (frame, target.select(np.argsort(-target.scores, kind="stable")),
                       context.select(np.argsort(-context.scores, kind="stable")))
            bar.update(len(chunk))


def label_frames(detector: Detector, frames: Sequence[Frame], *, frames_dir: str | Path, round: int,
                 class_ids: Sequence[int] | None, score_threshold: float, batch_size: int = 4,
                 category_id: int = 1, progress: bool = True,
                 split_by_video: bool = False) -> tuple[Dataset, dict[int, np.ndarray]]:
    """Label every frame; returns the dataset (all frames, kept boxes) and box features by box id.

    Returns
    -------
    dataset : Dataset
        One Box per confident detection (``source`` = detector name, ``decision`` kept, ``round``),
        ids 1..N in frame order; every frame present, with or without boxes.
    features : dict[int, ndarray]
        Box id -> feature vector (D,), for detectors that return features (else empty).
    """
    ds = Dataset(frames=list(frames))
    features: dict[int, np.ndarray] = {}
    for frame, det, _ in iter_detections(detector, frames, frames_dir=frames_dir, class_ids=class_ids,
                                         score_threshold=score_threshold, batch_size=batch_size,
                                         split_by_video=split_by_video, progress=progress,
                                         desc=f"label r{round} [{detector.name}]"):
        for j in range(len(det)):
            box = Box(image_id=frame.id, xyxy=tuple(float(v) for v in det.boxes[j]), score=float(det.scores[j]),
                      round=round, source=detector.name, category_id=category_id, id=len(ds.boxes) + 1)
            ds.boxes.append(box)
            if det.features is not None:
                features[box.id] = np.asarray(det.features[j], dtype=np.float32)
    return ds, features
