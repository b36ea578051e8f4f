"""Reliability: SIGKILL the real CLI at the most dangerous instants of download, labelling, training and
merge; rerunning the same command must finish with exactly the bytes of an uninterrupted run.

Every run here goes through ``python -m pseudolabel`` in a subprocess (kill points armed by
``tests/killpoint.py``) under the same ``paths.root_dir``: the uninterrupted reference runs first and is
moved aside, so that files holding absolute paths (``student.pt`` meta, markers) compare byte for byte.
Those runs are ``slow`` (``make test-slow``); the stale-temp clean-up and the W&B folder are checked by default.
"""
from __future__ import annotations

import fnmatch
import hashlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
KILLPOINT = Path(__file__).resolve().parent / "killpoint.py"
# one thread: tiny tensors run faster on a busy 2-core machine; every run (reference included) uses the same
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY = ["logger=none", "exp=t", "data.synthetic.n_videos=2", "data.synthetic.n_frames=4",
        "data.synthetic.width=320", "data.synthetic.height=192", "teacher.detector.tile_size=null",
        "teacher.score_threshold=0.1", "collapse_guard.max_factor=null",
        "student.trainer.limit_train_batches=2", "student.trainer.max_epochs=1",
        "student.trainer.limit_val_batches=1", "student.datamodule.batch_size=2", "student.datamodule.crop_size=128"]
DEMO = ["stage=demo", "rounds=1"]
TEMP = re.compile(r"(^|/)\.[^/]+\.tmp$")  # files.atomic_write_bytes: .<name>.<random>.tmp next to its target


# ---------------------------------------------------------------- helpers
def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def cli(args: list[str], *, log: Path, kill_at: str | None = None, nth: int = 1, until=None,
        timeout: float = 900) -> str:
    """Run ``python -m pseudolabel *args``.

    With ``kill_at`` (a tests/killpoint.py spec) or ``until`` (a predicate polled every 20 ms), SIGKILL the
    process as soon as the point is reached and return what was reached; otherwise require exit code 0.
    """
    signal_file = log.with_suffix(".reached")
    signal_file.unlink(missing_ok=True)
    if kill_at:
        cmd = [sys.executable, str(KILLPOINT), "--signal", str(signal_file), "--at", kill_at, "--nth", str(nth),
               "--", *args]
    else:
        cmd = [sys.executable, "-m", "pseudolabel", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=fh, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            if kill_at or until:
                reached = signal_file.exists if kill_at else until
                while not reached():
                    if proc.poll() is not None:
                        pytest.fail(f"{args} exited ({proc.returncode}) before its kill point "
                                    f"{kill_at or until}:\n{_tail(log)}")
                    if time.monotonic() > deadline:
                        pytest.fail(f"{args}: kill point {kill_at or until} not reached in {timeout} s:\n{_tail(log)}")
                    time.sleep(0.02)
                os.kill(proc.pid, signal.SIGKILL)
                assert proc.wait(timeout=60) == -signal.SIGKILL
                return signal_file.read_text().strip() if kill_at else "until"
            rc = proc.wait(timeout=timeout)
            assert rc == 0, f"{args} failed ({rc}):\n{_tail(log)}"
            return ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def compare(got: dict[str, str], want: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(missing, different, extra) relative paths of ``got`` against ``want``."""
    missing = sorted(set(want) - set(got))
    different = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    return missing, different, sorted(set(got) - set(want))


# ---------------------------------------------------------------- pipeline: reference and resumed runs
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of ``stage=demo rounds=1``, moved aside to ``ref/`` once finished."""
    base = tmp_path_factory.mktemp("resume")
    root = base / "root"
    args = [f"paths.root_dir={root}", *TINY]
    cli([*DEMO, *args], log=base / "logs" / "reference.log")
    final = hashes(root)
    root.rename(base / "ref")
    return {"base": base, "root": root, "args": args, "final": final, "dir": base / "ref"}


KILLS = {  # name: (kill point, nth), in the order one command meets them
    "label": ("call:pseudolabel.detectors.tiling:TiledDetector._fuse", 2),  # round 0, second video (of 2)
    "train": ("call:pseudolabel.student.module:DetectionModule.training_step", 2),  # round 1, after one step
    "merge": ("replace:*/runs/t/round_1/annotations.json", 1),  # round 1: merged file complete, not renamed
}


@pytest.fixture(scope="module")
def resumed(reference):
    """``stage=demo rounds=1`` killed at each of KILLS in turn, rerun after each kill, then to the end."""
    root, base = reference["root"], reference["base"]
    assert not root.exists()
    out = {}
    for name, (point, nth) in KILLS.items():
        reached = cli([*DEMO, *reference["args"]], log=base / "logs" / f"kill_{name}.log", kill_at=point, nth=nth)
        out[name] = {"reached": reached, "hashes": hashes(root), "mtimes": mtimes(root),
                     "files": sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))}
    cli([*DEMO, *reference["args"]], log=base / "logs" / "final.log")
    out["final"], out["final_mtimes"] = hashes(root), mtimes(root)
    return out


def _under(d: dict[str, str], prefix: str) -> dict[str, str]:
    return {k: v for k, v in d.items() if k.startswith(prefix) and not TEMP.search(k)}


@pytest.mark.slow  # kill/resume runs of the whole CLI
def test_round_1_leaves_round_0_frames_and_data_byte_identical(resumed):
    """Round 0 was finished by the run killed in round 1's training; the two runs that then finished
    round 1 (both re-entering round 0 first, as ``stage=demo`` does) changed no file of it, frames and
    data included, did not even rewrite one (mtimes), and added files only under round_1/."""
    before, final = resumed["train"], resumed["final"]
    old = {k: h for k, h in before["hashes"].items() if not k.startswith("runs/t/round_1/")}
    assert {k.split("/")[0] for k in old} == {"data", "runs"}
    assert any(k.startswith("runs/t/round_0/") for k in old) and any(k.startswith("runs/t/frames/") for k in old)
    assert sorted(k for k, h in old.items() if final.get(k) != h) == []
    assert sorted(k for k in old if resumed["final_mtimes"][k] != before["mtimes"][k]) == []
    new = sorted(k for k in set(final) - set(old) if not k.startswith("runs/t/round_1/"))
    assert new == []
    assert "runs/t/round_1/student/student.pt" in final


@pytest.mark.slow  # kill/resume runs of the whole CLI
@pytest.mark.parametrize("name", list(KILLS))
def test_kill_point_was_reached_and_nothing_claimed_done(resumed, reference, name):
    state, ref = resumed[name], reference["final"]
    kind, _, spec = KILLS[name][0].partition(":")
    what = state["reached"].split(" ", 1)[1]  # "<pid> <what>" written by tests/killpoint.py
    if kind == "replace":
        assert what.startswith("replace ") and fnmatch.fnmatch(what.split(" -> ")[-1], spec), what
    else:
        assert what == f"{kind} {spec} #{KILLS[name][1]}"
    files = set(state["files"])
    if name == "label":  # mid-labelling of round 0: nothing of the label stage is claimed
        assert "runs/t/round_0/.done_label" not in files and "runs/t/round_0/labels.json" not in files
    elif name == "train":  # round 0 (resumed from the labelling kill) is complete and exact
        missing, different, _ = compare(_under(state["hashes"], "runs/t/round_0/"), _under(ref, "runs/t/round_0/"))
        assert (missing, different) == ([], [])
        assert "runs/t/round_1/.done_train" not in files and "runs/t/round_1/student/student.pt" not in files
    else:  # the student (resumed from the training kill) is exact; the merge is not claimed
        assert state["hashes"]["runs/t/round_1/student/student.pt"] == ref["runs/t/round_1/student/student.pt"]
        for f in ("labels.json", "pruned.json", ".done_label", ".done_prune"):
            assert state["hashes"][f"runs/t/round_1/{f}"] == ref[f"runs/t/round_1/{f}"]
        assert "runs/t/round_1/annotations.json" not in files and "runs/t/round_1/.done_merge" not in files
        temps = [f for f in files if re.search(r"round_1/\.annotations\.json\..*\.tmp$", f)]
        assert len(temps) == 1  # killed between the complete temp file and its rename
        assert state["hashes"][temps[0]] == ref["runs/t/round_1/annotations.json"]


@pytest.mark.slow  # kill/resume runs of the whole CLI
def test_resumed_run_equals_uninterrupted_run(resumed, reference):
    final, ref = resumed["final"], reference["final"]
    missing, different, extra = compare(final, ref)
    # nothing extra either: the merge kill's temp file (checked above) was removed once the stage was redone
    assert (missing, different, extra) == ([], [], [])
    assert not [k for k in final if TEMP.search(k) or "label_parts/" in k or k.endswith((".part", ".ytdl"))]
    for k in ("runs/t/round_0/annotations.json", "runs/t/round_1/annotations.json"):
        assert json.loads((reference["root"] / k).read_text()) == json.loads((reference["dir"] / k).read_text())
    assert final["runs/t/round_1/student/student.pt"] == ref["runs/t/round_1/student/student.pt"]
    assert {k for k in ref if "/.done_" in k} >= {f"runs/t/round_{r}/.done_{s}" for r in (0, 1)
                                                  for s in ("label", "prune", "merge", "evaluate")}


def test_stale_temps_are_removed_fresh_ones_kept(tmp_path):
    from pseudolabel.files import remove_stale_temps

    (tmp_path / "student").mkdir()
    old = [tmp_path / ".annotations.json.ab12.tmp", tmp_path / "student" / ".student.pt.cd34.tmp"]
    fresh, output = tmp_path / ".labels.json.ef56.tmp", tmp_path / "annotations.json"
    for f in [*old, fresh, output]:
        f.write_text("x")
    for f in old:
        os.utime(f, (time.time() - 60, time.time() - 60))
    assert sorted(remove_stale_temps(tmp_path, older_than=time.time() - 30)) == sorted(old)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [".labels.json.ef56.tmp", "annotations.json"]


def test_wandb_writes_outside_every_round_dir():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["logger=wandb", "paths.root_dir=/r", "exp=e"])
    assert Path(cfg.logger.dir) == Path(cfg.paths.exp_dir) == Path("/r/runs/e")  # wandb adds <dir>/wandb/


# ---------------------------------------------------------------- download
CHUNK = 48 * 1024  # served at once, then the throttled response stalls until released


class _Server:
    """Loopback HTTP server with byte ranges; paths in ``throttled`` stall after CHUNK bytes until released."""

    def __init__(self, root: Path) -> None:
        self.root, self.requests, self.throttled = root, [], set()
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.root_file()
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if path is None:
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and int(m.group(1)) < len(data):
                    start = int(m.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                body = data[start:]
                try:
                    if self.path in server.throttled and not server.release.is_set():
                        self.wfile.write(body[:CHUNK])
                        self.wfile.flush()
                        server.release.wait(timeout=120)
                        body = body[CHUNK:]
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def root_file(self):
                p = server.root / self.path.lstrip("/")
                return p if p.parent == server.root and p.is_file() else None

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _noisy_mp4(path: Path, n: int = 12) -> None:
    import cv2

    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    assert w.isOpened()
    for _ in range(n):
        w.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    w.release()


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    _noisy_mp4(root / "real.mp4")
    (root / "fake.mp4").write_text("<html><body>an error page served as video/mp4</body></html>")
    assert (root / "real.mp4").stat().st_size > 3 * CHUNK
    server = _Server(root)
    yield server
    server.release.set()
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.mark.slow  # kill/resume runs of the whole CLI
def test_download_killed_after_archiving_and_mid_transfer_resumes(www, tmp_path):
    """Kill 1: right after yt-dlp archived the (non-video) first entry, before our check removed it.
    Kill 2: mid-transfer of the second, a partial ``.part`` on disk. The rerun resumes the ``.part``
    with a byte range and ends exactly as an uninterrupted run (manifest, archive, video bytes)."""
    csv_path = tmp_path / "urls.csv"
    csv_path.write_text(f"url,id\n{www.base}/fake.mp4,fake\n{www.base}/real.mp4,real\n")
    out = tmp_path / "videos"
    args = ["stage=download", "download.source.kind=csv", f"download.source.path={csv_path}",
            f"download.out_dir={out}", "download.retries=0", "download.socket_timeout=60", f"paths.root_dir={tmp_path}"]
    cli(args, log=tmp_path / "ref.log", timeout=300)
    ref = hashes(out)
    assert sorted(ref) == ["download_archive.txt", "manifest.json", "real.mp4"]
    assert ref["real.mp4"] == hashlib.sha256((www.root / "real.mp4").read_bytes()).hexdigest()
    out.rename(tmp_path / "ref")

    reached = cli(args, log=tmp_path / "kill1.log", timeout=300,
                  kill_at="after:yt_dlp.YoutubeDL:YoutubeDL.record_download_archive")
    assert "record_download_archive" in reached
    assert (out / "fake.mp4").is_file() and (out / "download_archive.txt").read_text() == "generic fake\n"

    www.throttled.add("/real.mp4")
    part = out / "real.mp4.part"
    cli(args, log=tmp_path / "kill2.log", timeout=300,
        until=lambda: _size(part) >= CHUNK // 2)
    n_part = part.stat().st_size
    assert 0 < n_part < (www.root / "real.mp4").stat().st_size
    assert not (out / "fake.mp4").exists()  # the archived non-video was checked again and removed
    www.release.set()

    n_requests = len(www.requests)
    cli(args, log=tmp_path / "final.log", timeout=300)
    assert ("/real.mp4", f"bytes={n_part}-") in www.requests[n_requests:]  # resumed, not restarted
    missing, different, extra = compare(hashes(out), ref)
    assert (missing, different, extra) == ([], [], [])
    records = {r["video_id"]: r for r in json.loads((out / "manifest.json").read_text())["videos"]}
    assert records["real"]["status"] == "ok" and records["fake"]["status"] == "error"
