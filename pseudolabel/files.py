"""Small file helpers: atomic writes, JSON reads, stale temp clean-up and a file lock.

Every stage writes through these so that a killed process never leaves a half-written output (stage-completion
markers are :mod:`pseudolabel.layout`'s).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once at import (single-threaded): os.umask is process-wide, so reading it next to a writer
# thread would briefly give that thread's files the wrong permissions
_UMASK = _read_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def read_json_or_raise(path: str | Path, error: type[Exception]) -> Any:
    """Parse a JSON file; an unreadable file or invalid JSON raises ``error`` with one line naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_stale_temps(directory: str | Path, *, older_than: float) -> list[Path]:
    """Delete temp files of interrupted atomic writes under ``directory`` (any depth).

    A process killed inside :func:`atomic_write_bytes` (or a frame write) leaves its hidden
    ``.<name>.<random>.tmp`` behind; nothing reads it. Only temps last modified before ``older_than``
    (a ``time.time()`` value) are removed, so a write still in progress elsewhere is left alone.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    for p in Path(directory).rglob(".*.tmp"):
        try:
            if p.is_file() and p.stat().st_mtime < older_than:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:  # renamed or removed meanwhile
            continue
    return removed


def atomic_write_npz(path: str | Path, **arrays) -> Path:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


class file_lock:
    """Exclusive advisory lock on ``path`` (``fcntl.flock``; created if absent) for a ``with`` block.

    Lets concurrent runs of one experiment (e.g. label shards started together) take turns at a
    stage that must run once: the first runs it, the others wait and then find it done.
    A no-op where ``fcntl`` is unavailable.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def __enter__(self) -> "file_lock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
