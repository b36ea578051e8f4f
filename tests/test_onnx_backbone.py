"""ONNX Runtime backbones give PyTorch's boxes, scores and features within float tolerance."""
import logging

import numpy as np
import pytest
import torch

from tests.detection_checks import assert_same_detections

pytest.importorskip("onnxruntime")


def test_student_onnxruntime_backend_matches_pytorch():
    from pseudolabel.student.model import StudentDetector, build_efficientnet_lite0_frcnn
    from pseudolabel.synth import _render_frames

    torch.manual_seed(0)
    model = build_efficientnet_lite0_frcnn(pretrained=False, box_detections_per_img=20).eval()
    frames, _ = _render_frames(seed=1, venue="grass", n_frames=3, width=256, height=144, fps=25.0)
    ref = StudentDetector(model, batch_size=2, workers=1).predict(frames)
    onnx = StudentDetector(model, batch_size=2, backend="onnxruntime", workers=1)
    assert onnx.backend == "onnxruntime"
    got = onnx.predict(frames)  # a batch of 2 then 1: one static graph per (N, H, W)
    assert_same_detections(ref, got, features=True)
    assert onnx._backbone.shapes == [(2, 160, 256), (1, 160, 256)]
    onnx.predict(frames)
    assert onnx._backbone.shapes == [(2, 160, 256), (1, 160, 256)]  # reused, not exported again


def test_torchvision_detector_onnxruntime_backend_matches_pytorch():
    from pseudolabel.detectors.torchvision_detector import TorchvisionDetector

    builder = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    ref = TorchvisionDetector(builder, weights=None, num_classes=2, box_score_thresh=0.0)
    onnx = TorchvisionDetector(builder, model=ref.model, backend="onnxruntime")
    assert (ref.backend, onnx.backend, ref.lean_heads, onnx.lean_heads) == ("torch", "onnxruntime", False, True)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(2)]
    assert_same_detections(ref.predict(images), onnx.predict(images), features=False)
    assert onnx._backbone.shapes == [(2, 320, 448)]  # the transform resizes 240x320 to 320x427, pads to 32s


def test_auto_backend_picks_onnxruntime_on_cpu_and_torch_for_one_stage_models():
    from pseudolabel.detectors.accel.onnx_backbone import resolve_backend
    from pseudolabel.detectors.torchvision_detector import TorchvisionDetector

    assert resolve_backend("auto", "cpu") == "onnxruntime"
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("torch", "cuda") == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("onnxruntime", "cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tensorrt")
    ssd = TorchvisionDetector("ssdlite320_mobilenet_v3_large", weights=None, num_classes=2, backend="auto")
    assert ssd.backend == "torch"  # no RPN/RoI split: the whole model stays in PyTorch
    with pytest.raises(ValueError, match="two-stage"):
        TorchvisionDetector("ssdlite320_mobilenet_v3_large", model=ssd.model, backend="onnxruntime")


def test_shapes_past_max_graphs_run_in_pytorch(caplog):
    from pseudolabel.detectors.accel.onnx_backbone import OnnxBackbone
    from pseudolabel.student.model import build_efficientnet_lite0_frcnn

    torch.manual_seed(0)
    backbone = build_efficientnet_lite0_frcnn(pretrained=False).eval().backbone
    onnx = OnnxBackbone(backbone, max_graphs=1)
    a, b = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 96, 64)
    with torch.inference_mode():
        ref_b = backbone(b)
    onnx(a)
    with caplog.at_level(logging.WARNING, logger="pseudolabel"):
        got_b = onnx(b)
    assert onnx.shapes == [(1, 64, 96)] and onnx.torch_fallbacks == 1
    assert "run in PyTorch" in caplog.text
    for k in ref_b:
        assert torch.equal(got_b[k], ref_b[k])


def test_unknown_backend_is_refused():
    from pseudolabel.student.model import StudentDetector

    with pytest.raises(ValueError, match="backend"):
        StudentDetector(torch.nn.Module(), backend="tensorrt")


def test_relabel_builds_the_student_on_onnxruntime_by_default(tmp_path):
    """The shipped config relabels through ONNX Runtime on CPU; ``runtime.backend=torch`` opts out."""
    from pseudolabel import pipeline
    from pseudolabel.safe_config import instantiate
    from pseudolabel.student.model import save_student_checkpoint
    from tests.test_config import compose_cfg

    cfg = compose_cfg(f"paths.root_dir={tmp_path}")
    assert cfg.runtime.backend == "auto"
    ckpt = save_student_checkpoint(instantiate(cfg.student.model, pretrained=False), tmp_path / "student.pt")
    assert pipeline._build_student(cfg, ckpt).backend == "onnxruntime"
    assert pipeline._build_student(compose_cfg("runtime.backend=torch"), ckpt).backend == "torch"
