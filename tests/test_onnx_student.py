"""The student's ONNX Runtime backbone gives PyTorch's boxes, scores and features within float tolerance."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")


def test_onnxruntime_backend_matches_pytorch():
    from pseudolabel.student.model import StudentDetector, build_efficientnet_lite0_frcnn
    from pseudolabel.synth import _render_frames

    torch.manual_seed(0)
    model = build_efficientnet_lite0_frcnn(pretrained=False, box_detections_per_img=20).eval()
    frames, _ = _render_frames(seed=1, venue="grass", n_frames=3, width=256, height=144, fps=25.0)
    ref = StudentDetector(model, batch_size=2).predict(frames)
    onnx = StudentDetector(model, batch_size=2, backend="onnxruntime")
    got = onnx.predict(frames)  # batches of 2 then 1: the exported graph has a dynamic batch axis
    assert sum(len(d) for d in ref) > 0
    for r, g in zip(ref, got):
        assert len(r) == len(g)
        np.testing.assert_allclose(g.boxes, r.boxes, atol=1e-2)
        np.testing.assert_allclose(g.scores, r.scores, atol=1e-4)
        np.testing.assert_allclose(g.features, r.features, atol=1e-3, rtol=1e-3)
    assert list(onnx._backbone._sessions) == [(160, 256)]  # one export for one frame size


def test_unknown_backend_is_refused():
    from pseudolabel.student.model import StudentDetector

    with pytest.raises(ValueError, match="backend"):
        StudentDetector(torch.nn.Module(), backend="tensorrt")
