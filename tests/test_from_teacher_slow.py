"""The reference setup end to end: a student initialised from a torchvision COCO Faster R-CNN read from a weights
file (student=from_teacher), trained on round 0's labels and relabelling round 1 through the CLI. Slow."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.synthetic.n_videos=2", "data.synthetic.n_frames=8", "teacher.detector.tile_size=320"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_from_teacher_student_runs_a_round_with_weights_from_a_file(tmp_path):
    import torchvision

    builder = "fasterrcnn_mobilenet_v3_large_320_fpn"  # the small torchvision Faster R-CNN: CPU-sized
    torch.manual_seed(0)
    coco = torchvision.models.get_model(builder, weights=None, weights_backbone=None)  # 91 COCO classes
    weights = tmp_path / "coco_frcnn.pth"
    torch.save(coco.state_dict(), weights)
    common = ["logger=none", f"paths.root_dir={tmp_path}", "exp=ref", *TINY]
    student = ["student=from_teacher", f"student.model.builder={builder}", f"student.model.weights_path={weights}",
               "student.model.min_size=320", "student.model.max_size=640", "student.datamodule.crop_size=256",
               "+student.trainer.max_steps=4", "student.trainer.max_epochs=1", "student.trainer.limit_val_batches=2",
               "runtime.backend=torch"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for k in (0, 1):
        proc = subprocess.run([sys.executable, "-m", "pseudolabel", "stage=round", f"round={k}", *common, *student],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stderr[-3000:]
    r1 = tmp_path / "runs" / "ref" / "round_1"
    ckpt = torch.load(r1 / "student" / "student.pt", weights_only=True)
    state = ckpt["state_dict"]
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 2  # background vs ball
    # the frozen COCO backbone came from the file
    key = next(k for k in coco.state_dict() if k.startswith("backbone.body."))
    assert torch.equal(state[key], coco.state_dict()[key])
    assert json.loads((r1 / "metrics.json").read_text())["round"] == 1
