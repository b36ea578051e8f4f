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
    assert list((exp / "wandb").glob("offline-run-*"))
