"""Per-box loss weights: a pseudo-label teaches the box head as much as its evidence (its score)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("albumentations")
pytest.importorskip("pytorch_lightning")

from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss  # noqa: E402

from pseudolabel.records import Box, Dataset, Frame  # noqa: E402
from pseudolabel.student.data import CenteredCrop, PseudoLabelDataset, train_transform  # noqa: E402
from pseudolabel.student.evidence import (EvidenceWeightedRoIHeads, weight_losses_by_evidence,  # noqa: E402
                                          weighted_fastrcnn_loss)
from pseudolabel.student.ignore import IGNORE_LABEL  # noqa: E402
from pseudolabel.student.jitter import JitteredProposalRoIHeads, add_jittered_proposals  # noqa: E402

SURE = (100.0, 100.0, 112.0, 112.0)
WEAK = (200.0, 150.0, 210.0, 160.0)
DOUBT = (300.0, 200.0, 312.0, 212.0)


def _losses(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits, reg = torch.randn(n, 2, generator=g), torch.randn(n, 8, generator=g)
    labels = [torch.tensor([1, 1, 1, 0, 0, 0]), torch.tensor([1, 0, 0, 0, 0, 0])]
    targets = [torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)]
    return logits, reg, labels, targets


def test_weighted_loss_is_torchvisions_with_unit_weights_and_scales_each_ball_by_its_weight():
    logits, reg, labels, targets = _losses()
    ones = [torch.ones(6), torch.ones(6)]
    ref_cls, ref_box = fastrcnn_loss(logits, reg, labels, targets)
    cls, box = weighted_fastrcnn_loss(logits, reg, labels, targets, ones)
    assert torch.allclose(cls, ref_cls) and torch.allclose(box, ref_box)
    # every ball at weight 0.5: the regression loss (balls only) halves; background keeps its full weight
    half = [torch.where(lab > 0, 0.5, 1.0) for lab in labels]
    cls_h, box_h = weighted_fastrcnn_loss(logits, reg, labels, targets, half)
    assert torch.allclose(box_h, ref_box / 2)
    ce = torch.nn.functional.cross_entropy(logits, torch.cat(labels), reduction="none")
    pos = torch.cat(labels) > 0
    assert torch.allclose(cls_h, (ce[~pos].sum() + 0.5 * ce[pos].sum()) / len(ce))
    # a ball at weight 0 teaches nothing: its logits and deltas get no gradient
    logits.requires_grad_(True)
    zero = [torch.tensor([0.0, 1, 1, 1, 1, 1]), torch.ones(6)]
    sum(weighted_fastrcnn_loss(logits, reg, labels, targets, zero)).backward()
    assert logits.grad[0].abs().sum() == 0 and logits.grad[1].abs().sum() > 0


def _heads(cls=RoIHeads):
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    heads = RoIHeads(MultiScaleRoIAlign(["0"], 7, 2), TwoMLPHead(4 * 49, 16), FastRCNNPredictor(16, 2),
                     fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=16, positive_fraction=0.25,
                     bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5, detections_per_img=10)
    model = torch.nn.Module()
    model.roi_heads = heads
    return model


def test_heads_weigh_each_proposal_by_the_box_it_matches_and_without_weights_are_torchvisions():
    model = _heads()
    weight_losses_by_evidence(model)
    assert isinstance(model.roi_heads, EvidenceWeightedRoIHeads)
    heads = model.roi_heads.train()
    feats = {"0": torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(1))}
    proposals = [torch.tensor([[10, 10, 30, 30], [11, 11, 31, 31], [60, 60, 80, 80], [90, 90, 120, 120]],
                              dtype=torch.float32)]
    boxes = torch.tensor([[10, 10, 30, 30], [60, 60, 80, 80]], dtype=torch.float32)
    target = {"boxes": boxes, "labels": torch.tensor([1, 1])}

    def losses(t):
        torch.manual_seed(5)  # the sampler draws from torch's generator
        with torch.no_grad():
            return heads(feats, [p.clone() for p in proposals], [(128, 128)], [t])[1]

    plain = losses(target)
    torch.manual_seed(5)
    with torch.no_grad():
        reference = RoIHeads.forward(heads, feats, [p.clone() for p in proposals], [(128, 128)], [target])[1]
    assert {k: float(v) for k, v in plain.items()} == pytest.approx({k: float(v) for k, v in reference.items()})
    ones = losses({**target, "weights": torch.tensor([1.0, 1.0])})
    assert {k: float(v) for k, v in ones.items()} == pytest.approx({k: float(v) for k, v in plain.items()})
    # the second ball weighs nothing: the losses are those of a head that saw only the first one's proposals
    only_first = losses({**target, "weights": torch.tensor([1.0, 0.0])})
    assert float(only_first["loss_box_reg"]) < float(plain["loss_box_reg"])
    assert float(only_first["loss_classifier"]) < float(plain["loss_classifier"])
    # in eval mode the weights change nothing
    heads.eval()
    with torch.no_grad():
        a = heads(feats, proposals, [(128, 128)])[0]
    assert len(a) == 1


def test_jittered_heads_keep_the_weighting():
    model = _heads()
    weight_losses_by_evidence(model)
    add_jittered_proposals(model, copies=2)
    assert isinstance(model.roi_heads, JitteredProposalRoIHeads)
    assert isinstance(model.roi_heads, EvidenceWeightedRoIHeads)


def _frames(tmp_path) -> Dataset:
    cv2.imwrite(str(tmp_path / "f1.jpg"), np.full((360, 480, 3), 40, np.uint8))
    frames = [Frame(id=1, file_name="f1.jpg", width=480, height=360, video_id="v", frame_index=0)]
    boxes = [Box(image_id=1, xyxy=SURE, score=0.9),
             Box(image_id=1, xyxy=WEAK, score=0.3, source="track_confirmed"),
             Box(image_id=1, xyxy=DOUBT, score=0.4, decision="pruned", reason="unconfirmed")]
    ds = Dataset(frames=frames, boxes=boxes)
    ds.renumber()
    return ds


def test_dataset_weighs_each_kept_box_by_its_score_through_the_crop(tmp_path):
    ds = _frames(tmp_path)
    uniform = PseudoLabelDataset(ds, tmp_path, [1], negatives_fraction=None, ignore_reasons=["unconfirmed"])
    assert "weights" not in uniform[0][1]
    scored = PseudoLabelDataset(ds, tmp_path, [1], negatives_fraction=None, ignore_reasons=["unconfirmed"],
                                box_weights="score")
    _, t = scored[0]
    assert t["labels"].tolist() == [1, 1, IGNORE_LABEL]
    assert t["weights"].tolist() == pytest.approx([0.9, 0.3, 0.0])  # the ignore region weighs nothing
    crops = PseudoLabelDataset(ds, tmp_path, [1], transform=train_transform(128, seed=3), negatives_fraction=None,
                               box_weights="score")
    seen = set()
    for _ in range(20):  # a crop holds one ball or both, flipped or not: each keeps its own weight
        _, t = crops[0]
        sizes = (t["boxes"][:, 2] - t["boxes"][:, 0]).round().tolist()
        assert len(t["weights"]) == len(t["boxes"]) >= 1
        for size, w in zip(sizes, t["weights"].tolist()):
            assert w == pytest.approx({12.0: 0.9, 10.0: 0.3}[size])
            seen.add(size)
    assert seen == {12.0, 10.0}
    val = PseudoLabelDataset(ds, tmp_path, [1], transform=CenteredCrop(64), negatives_fraction=None,
                             box_weights="score")
    assert val[0][1]["weights"].tolist() == pytest.approx([0.9])
    with pytest.raises(ValueError, match="box_weights"):
        PseudoLabelDataset(ds, tmp_path, [1], box_weights="provenance")


def test_student_trains_a_step_on_weighted_targets(tmp_path):
    from pseudolabel.student.model import build_efficientnet_lite0_frcnn
    from pseudolabel.student.module import DetectionModule

    torch.manual_seed(0)
    module = DetectionModule(build_efficientnet_lite0_frcnn(pretrained=False), lambda p: torch.optim.SGD(p, lr=0.1))
    assert isinstance(module.model.roi_heads, EvidenceWeightedRoIHeads)
    data = PseudoLabelDataset(_frames(tmp_path), tmp_path, [1], transform=train_transform(160, seed=0),
                              negatives_fraction=None, ignore_reasons=["unconfirmed"], box_weights="score")
    image, target = data[0]
    module.train()
    losses = module([image], [target])
    assert set(losses) >= {"loss_classifier", "loss_box_reg"}
    loss = sum(losses.values())
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
