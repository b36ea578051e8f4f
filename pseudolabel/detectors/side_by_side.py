"""Whole forwards side by side: replicas of a detector, one thread and one core each, on the
chunks of images of one ``predict`` call.

Why: on a small CPU one forward split over every core spends much of its time waiting at the
barrier after each small operation (depthwise convolutions, proposal filtering, RoIAlign, NMS, the
Python between them). Independent frames on separate cores need no barrier. Measured on 2 cores
(EfficientNet-Lite0 Faster R-CNN at 384x640, ONNX Runtime backbone): 62-72 ms per frame with two
single-threaded replicas against 109-115 ms with one replica on two threads, in the same run.

Every image is forwarded exactly as with one replica, so the detections are the same up to the float
rounding of a different thread count (tests).
"""
from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

LIBRARIES = ("torch", "cv2")


def get_threads(library: str) -> int:
    """The intra-op thread count of ``library`` (``torch`` or ``cv2``) in the calling thread."""
    if library == "torch":
        import torch

        return int(torch.get_num_threads())
    if library == "cv2":
        import cv2

        return int(cv2.getNumThreads())
    raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")


def set_threads(library: str, n: int) -> None:
    """Set ``library``'s intra-op threads (torch: for the calling thread and MKL; cv2: process-wide)."""
    if library == "torch":
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    elif library == "cv2":
        import cv2

        cv2.setNumThreads(n)
    else:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")


class SideBySide:
    """Map chunks of images over replicas of one detector, each replica used by one thread at a time.

    Parameters
    ----------
    primary : object
        The first replica (the detector's own network or model).
    make_replica : callable () -> object
        Makes one more replica; called on first use, once per extra worker, and kept.
    library : {"torch", "cv2"}
        Whose intra-op threads are set to 1 while the workers run (then restored).
    name : str
        Prefix of the worker threads' names.
    """

    def __init__(self, primary: Any, make_replica: Callable[[], Any], *, library: str = "torch",
                 name: str = "detector") -> None:
        if library not in LIBRARIES:
            raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
        self.primary = primary
        self.make_replica = make_replica
        self.library = library
        self.name = name
        self._spares: list = []
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def __getstate__(self) -> dict:  # a thread pool cannot be copied or pickled; a copy makes its own
        state = dict(self.__dict__)
        state["_pool"], state["_pool_size"] = None, 0
        return state

    def map(self, fn: Callable[[Any, T], list[R]], chunks: Sequence[T], *, workers: int) -> list[R]:
        """``[r for c in chunks for r in fn(replica, c)]``, chunks in order, on at most ``workers`` threads.

        ``workers=1`` runs in the calling thread with the library's threads unchanged. Otherwise every
        chunk runs on one thread, a lone chunk too (in the calling thread): a frame's result then does
        not depend on how many frames shared its call.
        """
        if int(workers) <= 1:
            return [r for c in chunks for r in fn(self.primary, c)]
        workers = min(len(chunks), int(workers))
        previous = get_threads(self.library)
        if workers <= 1:
            set_threads(self.library, 1)
            try:
                return [r for c in chunks for r in fn(self.primary, c)]
            finally:
                set_threads(self.library, previous)
        while len(self._spares) < workers - 1:
            self._spares.append(self.make_replica())
        if self._pool is None or self._pool_size < workers:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=self.name)
            self._pool_size = workers
        free: queue.SimpleQueue = queue.SimpleQueue()
        for replica in [self.primary, *self._spares[:workers - 1]]:
            free.put(replica)

        def run(chunk):
            if self.library == "torch":  # torch's (OpenMP's) count is per thread: set it in the worker too
                set_threads("torch", 1)
            replica = free.get()
            try:
                return fn(replica, chunk)
            finally:
                free.put(replica)

        set_threads(self.library, 1)
        try:
            return [r for part in self._pool.map(run, chunks) for r in part]
        finally:
            set_threads(self.library, previous)
