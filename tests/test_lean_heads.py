"""The lean proposal and RoI stages compute what torchvision's RPN and RoI heads compute (eval mode)."""
import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign, roi_align

from pseudolabel.detectors.accel import lean_heads as lean
from pseudolabel.detectors.rcnn import to_tensors, two_stage_predict
from tests.detection_checks import assert_same_detections


def _boxes(n, width, height, gen, *, max_side=80.0):
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([width, height])
    wh = torch.rand(n, 2, generator=gen) * max_side + 0.2  # some under one feature pixel
    return torch.cat([xy, torch.minimum(xy + wh, torch.tensor([width, height]))], 1)


@pytest.mark.parametrize("scale", [1.0, 0.25, 0.0625])
def test_roi_align_rows_equals_roi_align(scale):
    gen = torch.Generator().manual_seed(0)
    fmap = torch.randn(2, 8, 24, 40, generator=gen)
    height, width = 24 / scale, 40 / scale
    boxes = torch.cat([_boxes(30, width, height, gen, max_side=60 / scale ** 0.5),
                       torch.tensor([[0.0, 0.0, width, height], [width - 1, height - 1, width, height],
                                     [-3.0, -2.0, 5.0, 4.0], [0.0, 0.0, 0.5, 0.5]])])
    image_index = torch.arange(len(boxes)) % 2
    ref = roi_align(fmap, torch.cat([image_index[:, None].float(), boxes], 1), 7, spatial_scale=scale,
                    sampling_ratio=2, aligned=False)
    got = lean.roi_align_rows(lean._as_rows(fmap), height=24, width=40, boxes=boxes, image_index=image_index,
                              output_size=7, sampling_ratio=2, spatial_scale=scale)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_pooler_equals_multiscale_roi_align_across_levels_and_images():
    gen = torch.Generator().manual_seed(1)
    feats = OrderedDict((str(i), torch.randn(2, 16, 64 >> i, 96 >> i, generator=gen)) for i in range(4))
    sizes = [(256, 384), (240, 380)]
    boxes = [_boxes(40, 380, 250, gen, max_side=300.0), _boxes(25, 380, 240, gen, max_side=40.0)]
    ref_pool = MultiScaleRoIAlign(list(feats), 7, 2)
    ref = ref_pool(feats, boxes, sizes)
    assert len(set(ref_pool.map_levels(boxes).tolist())) > 1  # several levels are exercised
    pool = MultiScaleRoIAlign(list(feats), 7, 2)
    pooler = lean.Pooler(pool, feats, sizes)
    torch.testing.assert_close(pooler(boxes), ref, atol=1e-4, rtol=1e-4)
    small = [b[(b[:, 2:] - b[:, :2]).prod(1) < 30 ** 2] for b in boxes]  # all on the finest level
    torch.testing.assert_close(pooler(small), ref_pool(feats, small, sizes), atol=1e-4, rtol=1e-4)
    assert pooler([torch.zeros(0, 4), torch.zeros(0, 4)]).shape == (0, 16, 7, 7)


def _student(**kwargs):
    from pseudolabel.student.model import build_efficientnet_lite0_frcnn

    torch.manual_seed(0)
    return build_efficientnet_lite0_frcnn(pretrained=False, **kwargs).eval()


def _frames(n, width=256, height=144):
    from pseudolabel.synth import _render_frames

    return _render_frames(seed=4, venue="clay", n_frames=n, width=width, height=height, fps=25.0)[0]


def test_propose_equals_the_rpn_in_eval_mode():
    from pseudolabel.detectors.rcnn import propose

    model = _student()
    with torch.inference_mode():
        batch, _ = model.transform(to_tensors(_frames(2)))
        feats = model.backbone(batch.tensors)
        ref = model.rpn(batch, feats)[0]
        got = propose(model.rpn, batch, feats, *model.rpn.head(list(feats.values())))
        again = propose(model.rpn, batch, feats, *model.rpn.head(list(feats.values())))  # cached anchors
    for r, g, a in zip(ref, got, again, strict=True):
        assert len(r) == len(g) > 0
        torch.testing.assert_close(g, r, atol=1e-4, rtol=0)
        assert torch.equal(a, g)


def test_native_batch_equals_the_transform_and_declines_what_it_would_resize():
    model = _student(max_size=256)
    frames = _frames(2) + [_frames(1, width=200, height=120)[0]]  # mixed sizes: padded to the largest
    with torch.inference_mode():
        ref, _ = model.transform(to_tensors(frames))
    got = lean.native_batch(model.transform, frames)
    assert got.image_sizes == ref.image_sizes and got.tensors.shape == ref.tensors.shape == (3, 3, 160, 256)
    torch.testing.assert_close(got.tensors, ref.tensors, atol=1e-6, rtol=0)
    assert lean.native_batch(model.transform, _frames(1, width=320, height=180)) is None  # longer than max_size
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    assert lean.native_batch(GeneralizedRCNNTransform(320, 320, [0.5] * 3, [0.5] * 3), frames) is None


def test_lean_two_stage_predict_equals_torchvision_heads_and_knows_its_limits():
    model = _student(box_detections_per_img=30)
    frames = _frames(3)
    ref, ref_feats = two_stage_predict(model, to_tensors(frames), box_features=True)
    with torch.inference_mode():
        plain = model(to_tensors(frames))  # torchvision's own forward, its RPN included
    for p, r in zip(plain, ref, strict=True):
        assert len(p["boxes"]) == len(r["boxes"]) > 0
        torch.testing.assert_close(r["boxes"], p["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(r["scores"], p["scores"], atol=1e-5, rtol=0)
    batch = lean.native_batch(model.transform, frames)
    got, got_feats = two_stage_predict(model, batch, box_features=True, lean_heads=True)
    from pseudolabel.detectors.base import Detections

    def to_dets(out, feats):
        dets, offset = [], 0
        for o in out:
            n = len(o["scores"])
            dets.append(Detections(o["boxes"].numpy(), o["scores"].numpy(), o["labels"].numpy(),
                                   feats[offset:offset + n]))
            offset += n
        return dets

    assert_same_detections(to_dets(ref, ref_feats), to_dets(got, got_feats), features=True, box_atol=1e-3,
                           score_atol=1e-5, feature_tol=1e-3)
    assert lean.supports(model)
    adaptive = copy.deepcopy(model)
    adaptive.roi_heads.box_roi_pool.sampling_ratio = 0  # roi_align's adaptive sampling: not supported
    assert not lean.supports(adaptive)
    fallback, _ = two_stage_predict(adaptive, to_tensors(frames), lean_heads=True)  # torchvision's own path
    assert [len(o["boxes"]) for o in fallback] == [len(o["boxes"]) for o in ref]


def test_student_lean_heads_default_follows_the_backend():
    from pseudolabel.student.model import StudentDetector

    model = _student()
    assert not StudentDetector(model, backend="torch").lean_heads
    assert StudentDetector(model, backend="torch", lean_heads=True).lean_heads
    from pseudolabel.detectors.accel.onnx_backbone import onnxruntime_available

    if onnxruntime_available():
        assert StudentDetector(model, backend="onnxruntime").lean_heads
        assert not StudentDetector(model, backend="onnxruntime", lean_heads=False).lean_heads
    frames = _frames(2)
    ref = StudentDetector(model, backend="torch", workers=1).predict(frames)
    got = StudentDetector(model, backend="torch", workers=1, lean_heads=True).predict(frames)
    assert_same_detections(ref, got, features=True, box_atol=1e-3, score_atol=1e-5, feature_tol=1e-3)
    np.testing.assert_array_equal([len(d) for d in ref], [len(d) for d in got])
