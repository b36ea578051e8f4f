"""Run the real CLI (``python -m pseudolabel …``) with one kill point armed; used by tests/test_resume.py.

    python tests/killpoint.py --signal FILE --at SPEC [--nth N] -- <hydra overrides>

SPEC is one of

``replace:GLOB``
    the N-th ``os.replace`` whose destination matches GLOB (fnmatch on the full path): the temp file is
    complete and synced, the target not yet renamed (every atomic write in the package, frames and
    yt-dlp's ``.part`` -> final rename go through ``os.replace``);
``call:MODULE:QUALNAME``
    entering the N-th call of a function or method (e.g. a training step);
``after:MODULE:QUALNAME``
    right after the N-th call of it returned.

On reaching the point the process writes FILE (one line: what it reached) and then sleeps, so that the
test can SIGKILL it at exactly that instant. Nothing else changes: the CLI runs unmodified.
"""
from __future__ import annotations

import argparse
import fnmatch
import functools
import importlib
import os
import sys
import time


def _reached(signal_file: str, what: str) -> None:
    tmp = f"{signal_file}.{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()} {what}\n")
    os.rename(tmp, signal_file)  # the test kills as soon as the file exists: it must be complete by then
    while True:  # wait for SIGKILL; never return into the code under test
        time.sleep(60)


def _arm_replace(pattern: str, nth: int, signal_file: str) -> None:
    real = os.replace
    seen = [0]

    def replace(src, dst, *args, **kwargs):
        if fnmatch.fnmatch(os.fsdecode(os.fspath(dst)), pattern):
            seen[0] += 1
            if seen[0] == nth:
                _reached(signal_file, f"replace {os.fspath(src)} -> {os.fspath(dst)}")
        return real(src, dst, *args, **kwargs)

    os.replace = replace


def _arm_call(module: str, qualname: str, nth: int, signal_file: str, *, after: bool) -> None:
    owner = importlib.import_module(module)
    *parents, name = qualname.split(".")
    for p in parents:
        owner = getattr(owner, p)
    real = getattr(owner, name)
    seen = [0]

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        seen[0] += 1
        if not after and seen[0] == nth:
            _reached(signal_file, f"call {module}:{qualname} #{nth}")
        out = real(*args, **kwargs)
        if after and seen[0] == nth:
            _reached(signal_file, f"after {module}:{qualname} #{nth}")
        return out

    setattr(owner, name, wrapper)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="killpoint")
    p.add_argument("--signal", required=True)
    p.add_argument("--at", required=True)
    p.add_argument("--nth", type=int, default=1)
    p.add_argument("overrides", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    sys.path[0] = os.getcwd()  # as `python -m pseudolabel` run from the repository root sees it (before imports)
    kind, _, spec = a.at.partition(":")
    if kind == "replace":
        _arm_replace(spec, a.nth, a.signal)
    elif kind in ("call", "after"):
        module, _, qualname = spec.partition(":")
        _arm_call(module, qualname, a.nth, a.signal, after=kind == "after")
    else:
        raise SystemExit(f"unknown kill point {a.at!r}")
    overrides = a.overrides[1:] if a.overrides[:1] == ["--"] else a.overrides
    sys.argv = ["pseudolabel", *overrides]
    from pseudolabel.__main__ import main as cli

    cli()


if __name__ == "__main__":
    main(sys.argv[1:])
