"""Whole forwards side by side: replicas of a detector, one thread and one core each, on the
chunks of images of one ``predict`` call.

Why: on a small CPU one forward split over every core spends much of its time waiting at the
barrier after each small operation (depthwise convolutions, proposal filtering, RoIAlign, NMS, the
Python between them). Independent frames on separate cores need no barrier (measured on 2 cores:
BENCHMARKS.md, "Replicas side by side").

Every image is forwarded exactly as with one replica, so the detections are the same up to the float
rounding of a different thread count (tests). :meth:`SideBySide.stream` does the same over a stream of
calls without waiting at the end of each one (the label stage's path).
"""
from __future__ import annotations

import queue
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

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
        run = self._runner(fn, workers)
        set_threads(self.library, 1)
        try:
            return [r for part in self._pool.map(run, chunks) for r in part]
        finally:
            set_threads(self.library, previous)

    def stream(self, fn: Callable[[Any, T], list[R]], batches: Iterable[Sequence[T]], *,
               workers: int) -> Iterator[list[R]]:
        """Per batch of chunks, what :meth:`map` returns for it, in batch order; with ``workers > 1`` the
        chunks of later batches run while an earlier batch's results are consumed.

        Why: :meth:`map` returns when its last chunk is done, so a worker that finishes early waits
        for the others, and for the caller's own work between calls (BENCHMARKS.md, "Streamed calls").
        Here every worker always has a chunk
        queued: at most the oldest unfinished batch plus ``workers`` chunks are in flight, so memory
        stays bounded. Each chunk runs on one thread, so the results equal :meth:`map`'s.
        """
        workers = int(workers)
        if workers <= 1:
            for batch in batches:
                yield self.map(fn, batch, workers=1)
            return
        run = self._runner(fn, workers)
        pending: deque = deque()  # futures of each submitted batch, oldest first
        queued = 0  # chunks submitted and not yet handed back
        previous = get_threads(self.library)
        set_threads(self.library, 1)
        try:
            for batch in batches:
                futures = [self._pool.submit(run, chunk) for chunk in batch]
                pending.append(futures)
                queued += len(futures)
                while pending and queued - len(pending[0]) >= workers:
                    futures = pending.popleft()
                    queued -= len(futures)
                    yield [r for f in futures for r in f.result()]
            while pending:
                yield [r for f in pending.popleft() for r in f.result()]
        finally:  # a consumer that stops early: no chunk may still hold a replica when this returns
            left = [f for futures in pending for f in futures]
            for f in left:
                f.cancel()
            wait_all(left)
            set_threads(self.library, previous)

    def _runner(self, fn: Callable[[Any, T], list[R]], workers: int) -> Callable[[T], list[R]]:
        """The pool (at least ``workers`` threads, replicas made) and a task that runs ``fn`` on a free replica."""
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

        return run
