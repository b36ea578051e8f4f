"""The OpenVINO backbone: PyTorch's detections in fp32, and bf16 only where asked for and reported."""
import threading

import numpy as np
import pytest
import torch

from tests.detection_checks import assert_same_detections

pytest.importorskip("openvino")
pytest.importorskip("onnx")


def _student(**kwargs):
    from pseudolabel.student.model import build_efficientnet_lite0_frcnn

    torch.manual_seed(0)
    return build_efficientnet_lite0_frcnn(pretrained=False, **kwargs).eval()


def test_student_openvino_fp32_matches_pytorch_side_by_side():
    """Two replicas run the one compiled graph at once (two streams, a request per thread)."""
    from pseudolabel.student.model import StudentDetector
    from pseudolabel.synth import _render_frames

    model = _student(box_detections_per_img=20)
    frames, _ = _render_frames(seed=1, venue="grass", n_frames=4, width=256, height=144, fps=25.0)
    ref = StudentDetector(model, batch_size=1, workers=1).predict(frames)
    ov = StudentDetector(model, batch_size=1, backend="openvino", workers=2)
    assert (ov.backend, ov.lean_heads, ov._backbone.concurrency) == ("openvino", True, 2)
    assert_same_detections(ref, ov.predict(frames), features=True)
    assert ov.precision == "fp32" and ov._backbone.shapes == [(1, 160, 256)]


def test_torchvision_detector_openvino_fp32_matches_pytorch():
    from pseudolabel.detectors.torchvision_detector import TorchvisionDetector

    builder = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    ref = TorchvisionDetector(builder, weights=None, num_classes=2, box_score_thresh=0.0)
    ov = TorchvisionDetector(builder, model=ref.model, backend="openvino")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(2)]
    assert_same_detections(ref.predict(images), ov.predict(images), features=False)
    assert (ov.backend, ov.lean_heads, ov.precision) == ("openvino", True, "fp32")


def test_bf16_is_reported_and_stays_near_fp32():
    """bf16 changes the features, but only by bf16 rounding; where the CPU has no bf16 kernels,
    OpenVINO runs fp32 and ``precision`` says so (then the features match fp32 exactly enough)."""
    from pseudolabel.detectors.accel.onnx_backbone import OnnxBackbone

    model = _student()
    x = torch.rand(1, 3, 128, 192)
    with torch.inference_mode():
        ref = model.backbone(x)
    backbone = OnnxBackbone(model.backbone, runtime="openvino", precision="bf16", num_threads=1)
    assert backbone.precision is None  # nothing compiled yet
    got = backbone(x)
    assert backbone.precision in ("bf16", "fp32")
    for k in ref:
        err = float((got[k] - ref[k]).abs().mean() / ref[k].abs().mean())
        if backbone.precision == "bf16":
            assert 0 < err < 0.1, (k, err)  # seen 0.026-0.046 here (random weights); garbage would be ~1
        else:
            assert err < 1e-4, (k, err)


def test_openvino_graph_runs_from_two_threads_at_once():
    from pseudolabel.detectors.accel.onnx_backbone import OnnxBackbone

    model = _student()
    backbone = OnnxBackbone(model.backbone, runtime="openvino", num_threads=1, concurrency=2)
    xs = [torch.rand(1, 3, 64, 96) for _ in range(2)]
    alone = [backbone(x) for x in xs]
    together: list = [None, None]
    start = threading.Barrier(2)

    def run(i):
        start.wait()
        for _ in range(3):
            together[i] = backbone(xs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        for k in a:
            assert torch.equal(a[k], b[k])


def test_precision_and_backend_are_checked():
    from pseudolabel.detectors.accel.onnx_backbone import resolve_backend
    from pseudolabel.student.model import StudentDetector

    assert resolve_backend("openvino", "cpu", precision="bf16") == "openvino"
    assert resolve_backend("auto", "cpu") == "onnxruntime"  # bf16 is never picked for the user
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("openvino", "cuda")
    with pytest.raises(ValueError, match="needs backend openvino"):
        resolve_backend("onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="needs backend openvino"):
        StudentDetector(_student(), backend="auto", precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_backend("openvino", precision="int8")


def test_runtime_precision_reaches_the_student(tmp_path):
    from pseudolabel import pipeline
    from pseudolabel.safe_config import instantiate
    from pseudolabel.student.model import save_student_checkpoint
    from tests.test_config import compose_cfg

    cfg = compose_cfg(f"paths.root_dir={tmp_path}")
    assert cfg.runtime.precision == "fp32"
    ckpt = save_student_checkpoint(instantiate(cfg.student.model, pretrained=False), tmp_path / "student.pt")
    det = pipeline._build_student(compose_cfg("runtime.backend=openvino", "runtime.precision=bf16"), ckpt)
    assert (det.backend, det._backbone.requested_precision) == ("openvino", "bf16")
    with pytest.raises(ValueError, match="needs backend openvino"):
        pipeline._build_student(compose_cfg("runtime.precision=bf16"), ckpt)
