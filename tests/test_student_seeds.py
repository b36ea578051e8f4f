"""Seeds of a student round: the student's boxes that agree with what round k-1 kept (or doubted)."""
from omegaconf import OmegaConf

from pseudolabel.coco import save_coco
from pseudolabel.pipeline import _agreeing_box_ids, _teacher_seen_box_ids
from pseudolabel.records import Box, Dataset, Frame

KEPT, DOUBT, SHAPE, STUDENT_DOUBT, NEW = ((10, 10, 20, 20), (100, 10, 110, 20), (200, 10, 240, 20),
                                          (300, 10, 310, 20), (400, 10, 410, 20))


def test_agreement_with_kept_boxes_and_optionally_with_the_teachers_unconfirmed_ones(tmp_path):
    frame = Frame(id=1, file_name="v/000000.jpg", width=640, height=360, video_id="v", frame_index=0)
    prev = Dataset(frames=[frame], boxes=[
        Box(image_id=1, xyxy=KEPT, score=0.9, id=1),
        Box(image_id=1, xyxy=DOUBT, score=0.4, id=2, decision="pruned", reason="unconfirmed",
            extra={"pruned_round": 0}),
        Box(image_id=1, xyxy=SHAPE, score=0.8, id=3, decision="pruned", reason="aspect", extra={"pruned_round": 0}),
        # a student's own unconfirmed box of an earlier round is not a second opinion
        Box(image_id=1, xyxy=STUDENT_DOUBT, score=0.8, id=4, decision="pruned", reason="unconfirmed",
            extra={"pruned_round": 1})])
    (tmp_path / "round_1").mkdir()
    save_coco(prev, tmp_path / "round_1" / "annotations.json")
    new = Dataset(frames=[frame], boxes=[Box(image_id=1, xyxy=(x1 + 1, y1, x2 + 1, y2), score=0.9, id=10 + i)
                                         for i, (x1, y1, x2, y2) in enumerate((KEPT, DOUBT, SHAPE, STUDENT_DOUBT,
                                                                               NEW))])
    cfg = OmegaConf.create({"paths": {"exp_dir": str(tmp_path)}, "merge": {"iou_threshold": 0.3, "centre_factor": 1.0}})
    assert _agreeing_box_ids(cfg, 2, new) == {10}
    assert _agreeing_box_ids(cfg, 2, new, with_doubtful=True) == {10, 11}


def test_teacher_seen_boxes_match_any_teacher_detection_of_round_0(tmp_path):
    """student_confirm=track_and_teacher: a student box is confirmable where round 0's labels.json (every teacher
    detection down to the floor, whatever was pruned later) has a box on the same frame."""
    frame = Frame(id=1, file_name="v/000000.jpg", width=640, height=360, video_id="v", frame_index=0)
    teacher = Dataset(frames=[frame], boxes=[Box(image_id=1, xyxy=KEPT, score=0.9, id=1),
                                             Box(image_id=1, xyxy=DOUBT, score=0.25, id=2)])
    (tmp_path / "round_0").mkdir()
    save_coco(teacher, tmp_path / "round_0" / "labels.json")
    other = Frame(id=2, file_name="w/000000.jpg", width=640, height=360, video_id="w", frame_index=0)
    new = Dataset(frames=[frame, other], boxes=[
        Box(image_id=1, xyxy=(11, 10, 21, 20), score=0.9, id=10),
        Box(image_id=1, xyxy=(101, 10, 111, 20), score=0.9, id=11),
        Box(image_id=1, xyxy=NEW, score=0.9, id=12),
        Box(image_id=2, xyxy=KEPT, score=0.9, id=13)])  # same place, another video: not seen
    cfg = OmegaConf.create({"paths": {"exp_dir": str(tmp_path)}, "merge": {"iou_threshold": 0.3, "centre_factor": 1.0}})
    assert _teacher_seen_box_ids(cfg, new) == {10, 11}


def test_doubtful_agreement_counts_only_in_videos_the_previous_round_kept_nothing_of():
    """student_seeds=agreement_then_doubtful: where round k-1 kept a box of a video, its tracks have anchors and
    the teacher's doubtful boxes seed nothing there; a video with no kept box falls back on them."""
    from pseudolabel.pipeline import _in_videos_without_kept_boxes

    frames = [Frame(id=1, file_name="v/000000.jpg", width=640, height=360, video_id="v", frame_index=0),
              Frame(id=2, file_name="w/000000.jpg", width=640, height=360, video_id="w", frame_index=0)]
    prev = Dataset(frames=frames, boxes=[
        Box(image_id=1, xyxy=KEPT, score=0.9, id=1),
        Box(image_id=2, xyxy=DOUBT, score=0.4, id=2, decision="pruned", reason="unconfirmed",
            extra={"pruned_round": 0})])
    new = Dataset(frames=frames, boxes=[Box(image_id=1, xyxy=DOUBT, score=0.9, id=10),
                                        Box(image_id=2, xyxy=DOUBT, score=0.9, id=11)])
    assert _in_videos_without_kept_boxes({10, 11}, new, prev) == {11}
