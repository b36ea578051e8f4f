"""notebooks/review_round.ipynb runs top to bottom on a small hand-built experiment: in process by default, in a
real kernel (nbclient) in the slow run."""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "review_round.ipynb"


def execute_notebook(exp_dir: Path, round: int = -1):
    """Execute the review notebook on ``exp_dir``; returns the executed notebook."""
    import os

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {"PSEUDOLABEL_EXP_DIR": str(exp_dir), "PSEUDOLABEL_ROUND": str(round)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    finally:
        for key, v in old.items():
            if v is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = v
    return nb


def outputs(nb, kind: str):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if kind in o.get("data", {}) or (kind == "text" and o.get("output_type") == "stream")]


def build_experiment(root: Path) -> Path:
    """Two rounds of a tiny experiment: frames, annotations with kept/pruned/interpolated boxes, metrics."""
    import cv2
    import numpy as np

    from pseudolabel import layout
    from pseudolabel.coco import save_coco
    from pseudolabel.records import Box, Dataset, Frame

    exp = root / "runs" / "nb"
    frames = []
    for i in range(4):
        path = exp / "frames" / "v" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        im = np.full((90, 120, 3), 90, np.uint8)
        cv2.circle(im, (20 + 20 * i, 40), 6, (255, 255, 255), -1)
        cv2.imwrite(str(path), im)
        frames.append(Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=120, height=90, video_id="v", frame_index=i))
    r0 = [Box(image_id=i + 1, xyxy=(14 + 20 * i, 34, 26 + 20 * i, 46), score=0.9, round=0, id=i + 1) for i in range(3)]
    r1 = [*r0, Box(image_id=4, xyxy=(74, 34, 86, 46), score=0.8, round=1, source="student", id=4,
                   extra={"merge_status": "new"}),
          Box(image_id=2, xyxy=(80, 60, 100, 64), score=0.75, round=1, source="student", id=5, decision="pruned",
              reason="aspect", extra={"merge_status": "new"}),
          Box(image_id=3, xyxy=(0, 0, 3, 3), score=0.7, round=1, source="student", id=6, decision="pruned",
              reason="too_small", extra={"merge_status": "new"})]
    for k, boxes in ((0, r0), (1, r1)):
        rdir = exp / f"round_{k}"
        save_coco(Dataset(frames=frames, boxes=boxes), rdir / "annotations.json")
        kept = [b for b in boxes if b.kept]
        reasons = {}
        for b in boxes:
            if not b.kept:
                reasons[b.reason] = reasons.get(b.reason, 0) + 1
        (rdir / "metrics.json").write_text(json.dumps({
            "round": k, "n_images": 4, "n_boxes": len(kept), "n_pruned": len(boxes) - len(kept),
            "pruned_by_reason": reasons, "precision": 1.0, "recall": len(kept) / 4, "f1": 2 * len(kept) / (4 + len(kept))}))
        layout.mark_done(rdir, layout.FINISHED)
    return exp


def run_in_process(exp_dir: Path, monkeypatch, round: int = -1) -> tuple[str, int]:
    """The notebook's code cells executed in this process (Agg backend): (printed text, figures shown)."""
    import contextlib
    import io

    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: (shown.append(plt.gcf()), plt.close("all")))
    monkeypatch.setenv("PSEUDOLABEL_EXP_DIR", str(exp_dir))
    monkeypatch.setenv("PSEUDOLABEL_ROUND", str(round))
    monkeypatch.chdir(NOTEBOOK.parent)
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    out, namespace = io.StringIO(), {"__name__": "__main__"}
    with contextlib.redirect_stdout(out):
        for i, cell in enumerate(cells):
            exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[{i}]", "exec"), namespace)
    return out.getvalue(), len(shown)


def test_review_notebook_cells_run_in_process(tmp_path, monkeypatch):
    exp = build_experiment(tmp_path)
    text, figures = run_in_process(exp, monkeypatch)
    assert "rounds [0, 1]; reviewing round 1: 4 frames, 4 kept boxes, 2 pruned" in text
    assert "1  pruned: aspect" in text and "3  kept: confirmed" in text and "1  kept: new" in text
    assert figures == 4  # curves, crops, histograms, worst frames
    text0, _ = run_in_process(exp, monkeypatch, round=0)
    assert "reviewing round 0: 4 frames, 3 kept boxes, 0 pruned" in text0


@pytest.mark.slow  # starts a notebook kernel
def test_review_notebook_runs_on_a_small_experiment(tmp_path):
    pytest.importorskip("nbclient")
    exp = build_experiment(tmp_path)
    nb = execute_notebook(exp)
    text = "".join(o.get("text", "") for o in outputs(nb, "text"))
    assert "rounds [0, 1]; reviewing round 1: 4 frames, 4 kept boxes, 2 pruned" in text
    assert "1  pruned: aspect" in text and "3  kept: confirmed" in text and "1  kept: new" in text
    assert len(outputs(nb, "image/png")) == 4  # curves, crops, histograms, worst frames
    nb0 = execute_notebook(exp, round=0)
    assert "reviewing round 0: 4 frames, 3 kept boxes, 0 pruned" in "".join(
        o.get("text", "") for o in outputs(nb0, "text"))
