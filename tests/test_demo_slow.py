"""The full demo (rounds 0..2 on the default synthetic suite), as `make demo` runs it. Slow: CI runs it
after the default suite when time allows (`pytest -m slow`)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pseudolabel.coco import load_coco
from pseudolabel.merge import check_merge_invariant

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the demo subprocess has its own 3000 s limit
def test_demo_three_rounds_end_to_end(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pseudolabel", "stage=demo", "rounds=2", "exp=demo",
                    f"paths.root_dir={tmp_path}"], cwd=REPO, env=env, check=True, timeout=3000)
    print(f"demo rounds 0-2: {time.perf_counter() - t0:.0f} s")
    exp = tmp_path / "runs" / "demo"
    metrics = [json.loads((exp / f"round_{k}" / "metrics.json").read_text()) for k in range(3)]
    for k, m in enumerate(metrics):
        print(f"round {k}: P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} kept={m['n_boxes']}")
        assert m["round"] == k and m["n_images"] == metrics[0]["n_images"]
    for k in (1, 2):
        prev, cur = load_coco(exp / f"round_{k - 1}" / "annotations.json"), load_coco(exp / f"round_{k}" / "annotations.json")
        assert check_merge_invariant(prev, cur) == []
    check_wandb_rounds(exp)
    check_review_notebook(exp)
    check_sweep(tmp_path, env)


def check_wandb_rounds(exp: Path) -> None:
    """One offline W&B run per round (what each run holds is checked through wandb's public API in
    tests/test_wandb_logging.py; wandb's record file layout is not read here)."""
    runs = sorted((exp / "wandb").glob("offline-run-*"))
    assert len(runs) == 3, runs
    for d in runs:
        assert any(d.glob("run-*.wandb")), d
        assert any((d / "files" / "media" / "table").glob("samples_*.table.json")), d


def check_review_notebook(exp: Path) -> None:
    from tests.test_notebook import execute_notebook, outputs

    nb = execute_notebook(exp)
    text = "".join(o.get("text", "") for o in outputs(nb, "text"))
    assert "reviewing round 2" in text
    assert len(outputs(nb, "image/png")) == 4


def check_sweep(root: Path, env: dict) -> None:
    """`make sweep` on the demo's frames: 6 trials, each an F1 against the ground truth."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pseudolabel", "hparams_search=grid", "exp=demo",
                           f"paths.root_dir={root}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"sweep (6 trials): {time.perf_counter() - t0:.0f} s")
    print("\n".join(line for line in proc.stdout.splitlines() if line.startswith(("sweep:", "  ", "best:"))))
    results = json.loads((root / "runs" / "demo" / "sweep" / "hydra" / "results.json").read_text())
    assert len(results["trials"]) == 6 and results["best"]["value"] > 0
