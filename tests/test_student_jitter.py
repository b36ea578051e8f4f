"""Jittered copies of the labels as extra regression samples for the box head (pseudolabel.student.jitter)."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("pytorch_lightning")

from pseudolabel.student.jitter import JitteredProposalRoIHeads, add_jittered_proposals, jitter_boxes  # noqa: E402
from pseudolabel.student.module import DetectionModule  # noqa: E402


def _heads():
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    return RoIHeads(MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2), TwoMLPHead(4 * 7 * 7, 16),
                    FastRCNNPredictor(16, 2), fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=32,
                    positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
                    detections_per_img=10)


def _training_inputs():
    features = {"0": torch.randn(1, 4, 16, 16)}  # stride 4 over a 64 x 64 image
    proposals = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [30.0, 30.0, 44.0, 44.0], [8.0, 40.0, 30.0, 60.0]])]
    targets = [{"boxes": torch.tensor([[30.0, 30.0, 42.0, 42.0], [2.0, 2.0, 10.0, 10.0]]),
                "labels": torch.tensor([1, -1])}]  # a ball and an ignore region
    return features, proposals, [(64, 64)], targets


def test_jittered_boxes_stay_within_bounds_and_are_symmetric_in_scale():
    torch.manual_seed(0)
    boxes = torch.tensor([[10.0, 20.0, 20.0, 40.0], [100.0, 100.0, 108.0, 108.0]])
    out = jitter_boxes(boxes, copies=2000, max_scale=0.25, max_shift=0.15)
    assert out.shape == (4000, 4)
    src = boxes.repeat_interleave(2000, dim=0)
    w0, h0 = src[:, 2] - src[:, 0], src[:, 3] - src[:, 1]
    w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
    log_w, log_h = torch.log(w / w0), torch.log(h / h0)
    bound = math.log(1.25) + 1e-6
    assert log_w.abs().max() <= bound and log_h.abs().max() <= bound
    assert log_w.abs().max() > 0.9 * bound  # the whole range is used, not a sliver of it
    assert abs(float(log_w.mean())) < 0.02 and abs(float(log_h.mean())) < 0.02  # as many shrink as grow
    dx = ((out[:, 0] + out[:, 2]) - (src[:, 0] + src[:, 2])) / 2 / w0
    dy = ((out[:, 1] + out[:, 3]) - (src[:, 1] + src[:, 3])) / 2 / h0
    assert dx.abs().max() <= 0.15 + 1e-6 and dy.abs().max() <= 0.15 + 1e-6
    assert abs(float(dx.mean())) < 0.02
    assert jitter_boxes(boxes, copies=0, max_scale=0.25, max_shift=0.15).shape == (0, 4)
    assert jitter_boxes(boxes[:0], copies=3, max_scale=0.25, max_shift=0.15).shape == (0, 4)


def test_copies_add_a_regression_loss_and_leave_classification_as_it_was():
    heads = _heads()
    features, proposals, shapes, targets = _training_inputs()
    heads.train()
    torch.manual_seed(3)
    _, plain = heads(features, [p.clone() for p in proposals], shapes, targets)
    next_draw = torch.rand(1)
    model = torch.nn.Module()
    model.roi_heads = heads
    add_jittered_proposals(model, copies=6)
    assert isinstance(model.roi_heads, JitteredProposalRoIHeads) and model.roi_heads is heads
    torch.manual_seed(3)
    _, jittered = heads(features, [p.clone() for p in proposals], shapes, targets)
    assert torch.equal(torch.rand(1), next_draw)  # the global random stream training goes on with is untouched
    assert set(jittered) == set(plain) | {"loss_box_jitter"}
    for name in plain:  # torchvision's sampling and losses are untouched
        assert torch.equal(jittered[name], plain[name])
    assert jittered["loss_box_jitter"] > 0
    jittered["loss_box_jitter"].backward()
    assert heads.box_predictor.bbox_pred.weight.grad.abs().sum() > 0
    assert heads.box_predictor.cls_score.weight.grad is None  # no gradient to the classifier
    assert all(p.grad is None for p in heads.box_head.parameters())  # nor to the features it shares


def test_the_jitter_loss_measures_the_distance_from_copy_to_label():
    heads = _heads()
    with torch.no_grad():  # a head that never moves a box
        heads.box_predictor.bbox_pred.weight.zero_()
        heads.box_predictor.bbox_pred.bias.zero_()
    model = torch.nn.Module()
    model.roi_heads = heads
    heads.train()
    features, proposals, shapes, targets = _training_inputs()
    add_jittered_proposals(model, copies=4, max_scale=0.0, max_shift=0.0)  # copies = the labels
    assert heads(features, proposals, shapes, targets)[1]["loss_box_jitter"] == 0
    add_jittered_proposals(model, copies=4, max_scale=0.3, max_shift=0.2)
    assert heads(features, proposals, shapes, targets)[1]["loss_box_jitter"] > 0
    no_ball = [{"boxes": targets[0]["boxes"][1:], "labels": targets[0]["labels"][1:]}]  # only an ignore region
    assert heads(features, proposals, shapes, no_ball)[1]["loss_box_jitter"] == 0
    heads.eval()
    with torch.no_grad():
        result, losses = heads(features, proposals, shapes)
    assert losses == {} and len(result) == 1  # inference: untouched
    with pytest.raises(ValueError):
        add_jittered_proposals(model, copies=-1)
    with pytest.raises(TypeError):
        add_jittered_proposals(torch.nn.Module(), copies=2)


def test_detection_module_adds_copies_only_when_asked():
    def model():
        m = torch.nn.Module()
        m.roi_heads = _heads()
        return m

    plain = DetectionModule(model(), optimizer=lambda p: None)
    assert type(plain.model.roi_heads) is not JitteredProposalRoIHeads
    jittered = DetectionModule(model(), optimizer=lambda p: None, jittered_proposals=4, jitter_scale=0.1,
                               jitter_shift=0.05)
    heads = jittered.model.roi_heads
    assert isinstance(heads, JitteredProposalRoIHeads)
    assert (heads.jitter_copies, heads.jitter_scale, heads.jitter_shift) == (4, 0.1, 0.05)
