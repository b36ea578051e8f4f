"""Small file helpers: atomic writes and stage-completion markers.

Every stage writes through these so that a killed process never leaves a half-written output, and a
rerun can tell finished stages from interrupted ones.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def done_marker(stage_dir: str | Path, stage: str) -> Path:
    return Path(stage_dir) / f".done_{stage}"


def is_done(stage_dir: str | Path, stage: str) -> bool:
    return done_marker(stage_dir, stage).exists()


def mark_done(stage_dir: str | Path, stage: str, info: dict | None = None) -> None:
    atomic_write_json(done_marker(stage_dir, stage), info or {})


def atomic_write_npz(path: str | Path, **arrays) -> Path:
    import io as _stdio

    import numpy as np

    buf = _stdio.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())
