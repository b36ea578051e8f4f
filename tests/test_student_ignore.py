"""Ignore regions: doubtful pruned boxes are neither targets nor background for the student."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("albumentations")
pytest.importorskip("pytorch_lightning")

from pseudolabel.records import Box, Dataset, Frame  # noqa: E402
from pseudolabel.student.data import CenteredCrop, PseudoLabelDataset, train_transform  # noqa: E402
from pseudolabel.student.ignore import IGNORE_LABEL, IgnoreAwareRPN, honour_ignore_labels  # noqa: E402
from pseudolabel.student.module import DetectionModule  # noqa: E402

BALL = (100.0, 100.0, 112.0, 112.0)
DOUBT = (300.0, 200.0, 312.0, 212.0)
SHAPE = (50.0, 250.0, 90.0, 262.0)


def _frames(tmp_path) -> Dataset:
    """Frame 1: a kept ball, an unconfirmed box and an aspect-pruned box; frame 2: only an unconfirmed box."""
    frames = []
    for i in (1, 2):
        cv2.imwrite(str(tmp_path / f"f{i}.jpg"), np.full((360, 480, 3), 40, np.uint8))
        frames.append(Frame(id=i, file_name=f"f{i}.jpg", width=480, height=360, video_id="v", frame_index=i))
    boxes = [Box(image_id=1, xyxy=BALL, score=0.9),
             Box(image_id=1, xyxy=DOUBT, score=0.4, decision="pruned", reason="unconfirmed"),
             Box(image_id=1, xyxy=SHAPE, score=0.8, decision="pruned", reason="aspect"),
             Box(image_id=2, xyxy=DOUBT, score=0.3, decision="pruned", reason="unconfirmed")]
    ds = Dataset(frames=frames, boxes=boxes)
    ds.renumber()
    return ds


def test_doubtful_boxes_become_ignore_regions_and_others_stay_background(tmp_path):
    ds = _frames(tmp_path)
    data = PseudoLabelDataset(ds, tmp_path, [1, 2], negatives_fraction=None, ignore_reasons=["unconfirmed"])
    _, t1 = data[0]
    assert t1["labels"].tolist() == [1, IGNORE_LABEL]  # the aspect-pruned box is background: not in the target
    assert t1["boxes"].tolist() == [list(BALL), list(DOUBT)]
    _, t2 = data[1]  # still a negative frame, with its doubtful box left out of the loss
    assert data.n_negatives == 1 and t2["labels"].tolist() == [IGNORE_LABEL]
    plain = PseudoLabelDataset(ds, tmp_path, [1, 2], negatives_fraction=None)
    assert plain[0][1]["labels"].tolist() == [1] and len(plain[1][1]["boxes"]) == 0


def test_ignore_from_teacher_leaves_a_students_own_unconfirmed_boxes_as_background(tmp_path):
    ds = _frames(tmp_path)
    for b in ds.boxes:
        b.extra["pruned_round"] = 0 if b.image_id == 1 else 2  # frame 2's doubtful box: a student round's
    every = PseudoLabelDataset(ds, tmp_path, [1, 2], negatives_fraction=None, ignore_reasons=["unconfirmed"])
    teacher = PseudoLabelDataset(ds, tmp_path, [1, 2], negatives_fraction=None, ignore_reasons=["unconfirmed"],
                                 ignore_from="teacher")
    assert every[1][1]["labels"].tolist() == [IGNORE_LABEL]
    assert teacher[0][1]["labels"].tolist() == [1, IGNORE_LABEL] and teacher[1][1]["labels"].tolist() == []
    with pytest.raises(ValueError, match="ignore_from"):
        PseudoLabelDataset(ds, tmp_path, [1], ignore_reasons=["unconfirmed"], ignore_from="student")


def test_kept_boxes_on_probation_are_ignore_regions_for_the_next_student(tmp_path):
    ds = _frames(tmp_path)
    ds.info["round"] = 2
    ball = next(b for b in ds.boxes if b.kept)
    ball.round, ball.source, ball.extra = 2, "student", {"seed": "moving_track", "first_round": 2}
    probation = ["student/moving_track/new"]
    data = PseudoLabelDataset(ds, tmp_path, [1, 2], negatives_fraction=None, ignore_reasons=["unconfirmed"],
                              probation=probation)
    _, t1 = data[0]  # new in round 2 on a moving track only: neither taught as the ball nor as background
    assert t1["labels"].tolist() == [IGNORE_LABEL, IGNORE_LABEL]
    assert sorted(t1["boxes"].tolist()) == sorted([list(BALL), list(DOUBT)])
    assert data.n_positives == 0
    ball.extra["first_round"] = 1  # found in round 1 and found again in round 2: taught
    again = PseudoLabelDataset(ds, tmp_path, [1, 2], negatives_fraction=None, probation=probation)
    assert again[0][1]["labels"].tolist() == [1] and again.n_positives == 1


def test_crops_are_chosen_by_kept_boxes_and_carry_the_ignore_regions(tmp_path):
    ds = _frames(tmp_path)
    data = PseudoLabelDataset(ds, tmp_path, [1], transform=train_transform(128, seed=3), negatives_fraction=None,
                              ignore_reasons=["unconfirmed"])
    for _ in range(10):
        _, t = data[0]
        assert (t["labels"] == 1).sum() == 1  # every crop holds the kept ball, never only the doubtful box
    val = PseudoLabelDataset(ds, tmp_path, [1], transform=CenteredCrop(None), negatives_fraction=None,
                             ignore_reasons=["unconfirmed"])
    assert val[0][1]["labels"].tolist() == [1, IGNORE_LABEL]


def _rpn() -> IgnoreAwareRPN:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RPNHead, RegionProposalNetwork

    rpn = RegionProposalNetwork(AnchorGenerator(((8,),), ((1.0,),)), RPNHead(4, 1), fg_iou_thresh=0.7,
                                bg_iou_thresh=0.3, batch_size_per_image=16, positive_fraction=0.5,
                                pre_nms_top_n={"training": 10, "testing": 10},
                                post_nms_top_n={"training": 10, "testing": 10}, nms_thresh=0.7)
    model = torch.nn.Module()
    model.rpn = rpn
    honour_ignore_labels(model)
    assert isinstance(model.rpn, IgnoreAwareRPN) and model.rpn is rpn
    return rpn


def test_rpn_leaves_anchors_on_an_ignore_box_out_of_the_loss():
    rpn = _rpn()
    anchors = torch.tensor([[0, 0, 8, 8], [40, 40, 48, 48], [80, 80, 88, 88], [200, 0, 208, 8]], dtype=torch.float32)
    target = {"boxes": torch.tensor([[0, 0, 8, 8], [40, 40, 48, 48]], dtype=torch.float32),
              "labels": torch.tensor([1, IGNORE_LABEL])}
    labels, matched = rpn.assign_targets_to_anchors([anchors], [target])
    assert labels[0].tolist() == [1.0, -1.0, 0.0, 0.0]  # ball, ignored, background, background
    assert matched[0][0].tolist() == [0, 0, 8, 8]
    only_ignore = {"boxes": target["boxes"][1:], "labels": target["labels"][1:]}
    assert rpn.assign_targets_to_anchors([anchors], [only_ignore])[0][0].tolist() == [0.0, -1.0, 0.0, 0.0]
    # without the ignore label, the same box is a ball: the assignment of a plain RPN
    as_ball = {"boxes": target["boxes"], "labels": torch.tensor([1, 1])}
    assert rpn.assign_targets_to_anchors([anchors], [as_ball])[0][0].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_roi_heads_never_sample_a_proposal_on_an_ignore_box():
    from torchvision.models.detection.roi_heads import RoIHeads

    heads = RoIHeads(None, None, None, fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=8,
                     positive_fraction=0.5, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
                     detections_per_img=10)
    proposals = [torch.tensor([[0, 0, 8, 8], [40, 40, 48, 48], [80, 80, 88, 88]], dtype=torch.float32)]
    gt = [torch.tensor([[0, 0, 8, 8], [40, 40, 48, 48]], dtype=torch.float32)]
    _, labels = heads.assign_targets_to_proposals(proposals, gt, [torch.tensor([1, IGNORE_LABEL])])
    assert labels[0].tolist() == [1, IGNORE_LABEL, 0]
    pos, neg = heads.fg_bg_sampler(labels)
    assert pos[0].tolist() == [1, 0, 0] and neg[0].tolist() == [0, 0, 1]


def test_validation_does_not_count_a_detection_on_an_ignore_box_as_false():
    class Fixed(torch.nn.Module):
        def forward(self, images, targets=None):
            if self.training:
                return {"loss": torch.zeros(())}
            return [{"boxes": torch.tensor([list(BALL), list(DOUBT)]), "scores": torch.tensor([0.9, 0.9])}]

    module = DetectionModule(Fixed(), optimizer=lambda p: None)
    module.log = module.log_dict = lambda *a, **k: None
    target = {"boxes": torch.tensor([list(BALL), list(DOUBT)]), "labels": torch.tensor([1, IGNORE_LABEL])}
    module.validation_step(([torch.zeros(3, 8, 8)], [target]), 0)
    assert module._counts.tolist() == [1, 0, 0]
    module._counts[:] = 0
    target["labels"] = torch.tensor([1, 0])[:1]
    target["boxes"] = target["boxes"][:1]
    module.validation_step(([torch.zeros(3, 8, 8)], [target]), 0)
    assert module._counts.tolist() == [1, 1, 0]  # without the ignore region the same detection is false
