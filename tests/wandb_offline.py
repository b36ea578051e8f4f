"""Read what an offline W&B run recorded, from its ``run-<id>.wandb`` file (tests only).

The file is a LevelDB-style log (after a 7-byte ``:W&B`` header: 32 KiB blocks of records with a 7-byte
header: crc32, length, type) of ``wandb_internal_pb2.Record`` protobufs; wandb 0.31 ships no reader.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_payloads(path: str | Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B datastore"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            buf = chunk
        elif kind == MIDDLE:
            buf += chunk
        elif kind == LAST:
            yield buf + chunk
            buf = b""


def read_run(run_dir: str | Path) -> dict:
    """``{"run": {group, job_type, name}, "history": [{key: value}], "summary": {...}, "artifacts": [...]}``."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = Path(run_dir).glob("run-*.wandb")
    out: dict = {"run": {}, "history": [], "summary": {}, "artifacts": [], "use_artifacts": []}
    for payload in iter_payloads(path):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = {"group": rec.run.run_group, "job_type": rec.run.job_type, "name": rec.run.display_name}
        elif kind == "history":
            out["history"].append(_nest(rec.history.item))
        elif kind == "summary":
            out["summary"].update(_nest(rec.summary.update))
        elif kind == "artifact":
            a = rec.artifact
            out["artifacts"].append({"name": a.name, "type": a.type, "aliases": list(a.aliases),
                                     "metadata": json.loads(a.metadata or "{}"),
                                     "files": sorted(m.path for m in a.manifest.contents)})
        elif kind == "use_artifact":
            out["use_artifacts"].append(rec.use_artifact.name)
    return out


def _nest(items) -> dict:
    """Items whose value was a dict arrive flattened (``nested_key`` = [key, field, ...]): rebuild it."""
    out: dict = {}
    for i in items:
        path = [i.key] if i.key else list(i.nested_key)
        d = out
        for p in path[:-1]:
            d = d.setdefault(p, {})
        d[path[-1]] = json.loads(i.value_json)
    return out
