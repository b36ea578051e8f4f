"""The same command gives the same labels: two fresh demo runs (rounds 0..1), each in its own root (its own
synthetic suite, frames and students) and under its own experiment name, write byte-identical
annotations.json and metrics.json. Slow: CI runs it with `pytest -m slow` when time allows."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def demo(root: Path, exp: str) -> Path:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    subprocess.run([sys.executable, "-m", "pseudolabel", "stage=demo", "rounds=1", f"exp={exp}", "logger=none",
                    f"paths.root_dir={root}"], cwd=REPO, env=env, check=True, timeout=2400)
    return root / "runs" / exp


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_two_fresh_demo_runs_write_identical_rounds(tmp_path):
    a = demo(tmp_path / "a", "alpha_x7q")
    b = demo(tmp_path / "b", "beta_k9z")
    for k in (0, 1):
        for name in ("annotations.json", "metrics.json"):
            fa, fb = a / f"round_{k}" / name, b / f"round_{k}" / name
            print(f"round {k} {name}: {digest(fa)[:16]} {digest(fb)[:16]}")
            assert fa.read_bytes() == fb.read_bytes(), f"round {k} {name} differs"
            assert b"alpha_x7q" not in fa.read_bytes() and b"beta_k9z" not in fb.read_bytes()
    import torch

    wa, wb = (torch.load(r / "round_1" / "student" / "student.pt", weights_only=True)["state_dict"] for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # meta holds paths: not the bytes
    assert (tmp_path / "a" / "data" / "synthetic" / "ground_truth.json").read_bytes() == \
        (tmp_path / "b" / "data" / "synthetic" / "ground_truth.json").read_bytes()
