"""prune.per_frame: at most N kept boxes per frame, the others pruned by evidence."""
import numpy as np
import pytest

from pseudolabel.prune.per_frame import REASON, apply_per_frame_cap, evidence_keys, over_cap_mask
from pseudolabel.records import Box, Dataset, Frame


def _frames(n):
    return [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=640, height=360, video_id="v", frame_index=i)
            for i in range(n)]


def test_over_cap_mask_ranks_column_by_column_and_breaks_ties_by_order():
    keys = np.array([[0, 1, 3, 0.90], [1, 0, 1, 0.10], [0, 1, 3, 0.95]])
    assert over_cap_mask(keys, max_boxes=1).tolist() == [True, False, True]  # found by two rounds wins
    assert over_cap_mask(keys, max_boxes=2).tolist() == [True, False, False]  # then the higher score
    assert over_cap_mask(np.array([[0, 1, 1, 0.5]] * 2), max_boxes=1).tolist() == [False, True]
    assert over_cap_mask(keys, max_boxes=3).tolist() == [False, False, False]


def test_evidence_prefers_a_seed_then_a_higher_score_then_a_longer_track():
    seed = Box(image_id=1, xyxy=(0, 0, 8, 8), score=0.7, source="student", extra={"track_id": "v:1"})
    hop = Box(image_id=1, xyxy=(50, 0, 58, 8), score=0.99, source="track_confirmed", extra={"track_id": "v:2"})
    long_ = Box(image_id=1, xyxy=(90, 0, 98, 8), score=0.8, source="track_confirmed", extra={"track_id": "v:3"})
    keys = evidence_keys([seed, hop, long_], track_lengths={(0, "v:1"): 2, (0, "v:2"): 1, (0, "v:3"): 9})
    assert over_cap_mask(keys, max_boxes=1).tolist() == [False, True, True]
    assert over_cap_mask(keys[1:], max_boxes=1).tolist() == [False, True]  # of two confirmed: the higher score
    # a player's box on a long track that jumped off the ball, against the ball's own seed on a short track
    ball = Box(image_id=1, xyxy=(0, 0, 8, 8), score=0.89, extra={"track_id": "v:4"})
    player = Box(image_id=1, xyxy=(50, 0, 58, 8), score=0.78, extra={"track_id": "v:5"})
    keys = evidence_keys([player, ball], track_lengths={(0, "v:4"): 2, (0, "v:5"): 12})
    assert over_cap_mask(keys, max_boxes=1).tolist() == [True, False]
    # equal scores: the longer track
    keys = evidence_keys([ball, Box(image_id=1, xyxy=(50, 0, 58, 8), score=0.89, extra={"track_id": "v:5"})],
                         track_lengths={(0, "v:4"): 2, (0, "v:5"): 12})
    assert over_cap_mask(keys, max_boxes=1).tolist() == [True, False]


def test_apply_per_frame_cap_prunes_only_frames_over_the_cap_with_its_reason():
    boxes = [Box(image_id=1, xyxy=(0, 0, 8, 8), score=0.9, id=1, extra={"track_id": "v:1"}),
             Box(image_id=1, xyxy=(40, 0, 48, 8), score=0.95, id=2, source="track_confirmed",
                 extra={"track_id": "v:2"}),
             Box(image_id=2, xyxy=(8, 0, 16, 8), score=0.9, id=3, extra={"track_id": "v:1"}),
             Box(image_id=2, xyxy=(99, 0, 107, 8), score=0.9, id=4, decision="pruned", reason="aspect")]
    ds = Dataset(frames=_frames(2), boxes=boxes)
    assert apply_per_frame_cap(ds, max_boxes=1, round=2) == {REASON: 1}
    assert [b.kept for b in boxes] == [True, False, True, False]
    assert boxes[1].reason == REASON and boxes[1].extra["pruned_round"] == 2 and boxes[3].reason == "aspect"
    assert apply_per_frame_cap(ds, max_boxes=None, round=2) == {REASON: 0}
    with pytest.raises(ValueError):
        apply_per_frame_cap(ds, max_boxes=0, round=2)


def test_the_data_set_declares_the_cap_and_prune_reads_it():
    from tests.test_config import compose_cfg

    assert compose_cfg().prune.per_frame.max_boxes == 1  # the synthetic suite: one ball per video
    assert compose_cfg("data=folder", "data.inputs=[x]").prune.per_frame.max_boxes is None


def test_the_merge_caps_each_frame_keeping_the_ball_both_rounds_found(tmp_path):
    """stage_merge with data.max_per_frame=1: on a frame where round 1 finds round 0's ball again and also a new,
    higher-scoring box, the ball found twice stays; the other is pruned with reason per_frame_cap, not lost."""
    import json

    from pseudolabel import layout, pipeline
    from pseudolabel.coco import load_coco, save_coco
    from pseudolabel.merge import check_merge_invariant
    from tests.test_config import compose_cfg

    cfg = compose_cfg(f"paths.root_dir={tmp_path}", "exp=x")
    exp = tmp_path / "runs" / "x"
    for k in (0, 1):
        (exp / f"round_{k}").mkdir(parents=True)
    ball = Box(image_id=1, xyxy=(100, 100, 110, 110), score=0.8, id=1)
    save_coco(Dataset(frames=_frames(1), boxes=[ball]), exp / "round_0" / "annotations.json")
    again = Box(image_id=1, xyxy=(101, 100, 111, 110), score=0.75, round=1, source="student", id=1)
    other = Box(image_id=1, xyxy=(400, 200, 410, 210), score=0.99, round=1, source="student", id=2)
    save_coco(Dataset(frames=_frames(1), boxes=[again, other]), exp / "round_1" / "pruned.json")
    layout.mark_done(exp / "round_1", "prune")

    pipeline.stage_merge(cfg, 1)
    merged = load_coco(exp / "round_1" / "annotations.json")
    assert check_merge_invariant(load_coco(exp / "round_0" / "annotations.json"), merged) == []
    kept = merged.kept_boxes()
    assert len(kept) == 1 and kept[0].extra.get("merge_status") == "confirmed"
    capped = [b for b in merged.boxes if b.reason == REASON]
    assert len(capped) == 1 and capped[0].xyxy[0] == 400
    assert json.loads((exp / "round_1" / ".done_merge").read_text())["merge"][REASON] == 1
