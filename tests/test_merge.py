import copy

import numpy as np
import pytest

from pseudolabel.merge import NOT_REDETECTED, check_merge_invariant, merge_rounds, merge_stats
from pseudolabel.records import Box, Dataset, Frame


def _frame(id, video, index):
    return Frame(id=id, file_name=f"{video}/{index}.jpg", width=100, height=100, video_id=video, frame_index=index)


def _prev():
    frames = [_frame(1, "v", 0), _frame(2, "v", 1), _frame(5, "v", 2)]
    boxes = [
        Box(image_id=1, xyxy=(10, 10, 20, 20), score=0.8, round=1, id=1),  # confirmed
        Box(image_id=1, xyxy=(60, 60, 70, 70), score=0.7, round=1, id=2),  # pruned by round 2
        Box(image_id=1, xyxy=(80, 10, 90, 20), score=0.6, round=1, id=3),  # unconfirmed
        Box(image_id=1, xyxy=(30, 80, 40, 90), score=0.5, round=1, id=4, decision="pruned", reason="aspect"),
        Box(image_id=2, xyxy=(5, 5, 15, 15), score=0.9, round=1, id=5),  # frame not seen by round 2
        Box(image_id=2, xyxy=(50, 5, 60, 15), score=0.9, round=1, id=6, decision="pruned", reason="overlap"),
    ]
    return Dataset(frames=frames, boxes=boxes, info={"round": 1})


def _new():
    frames = [_frame(1, "v", 0), _frame(2, "v", 2), _frame(3, "w", 0)]
    boxes = [
        Box(image_id=1, xyxy=(11, 10, 21, 20), score=0.95, round=2, source="student", id=1),
        Box(image_id=1, xyxy=(60, 61, 70, 71), score=0.4, round=2, source="student", id=2,
            decision="pruned", reason="static", extra={"pruned_round": 2}),
        Box(image_id=1, xyxy=(40, 40, 50, 50), score=0.9, round=2, source="student", id=3),  # new on old frame
        Box(image_id=3, xyxy=(1, 1, 9, 9), score=0.9, round=2, source="student", id=4),  # new frame
    ]
    return Dataset(frames=frames, boxes=boxes)


def _by_prev(merged):
    return {b.extra["prev_ids"][0]: b for b in merged.boxes if b.extra["prev_ids"]}


def test_merge_cases():
    merged = merge_rounds(_prev(), _new(), round=2)
    assert merged.info["round"] == 2
    assert [(f.id, f.key) for f in merged.frames] == [(1, ("v", 0)), (2, ("v", 1)), (5, ("v", 2)), (6, ("w", 0))]
    by_prev = _by_prev(merged)

    confirmed = by_prev[1]
    assert confirmed.kept and confirmed.xyxy == (11, 10, 21, 20) and confirmed.score == 0.95
    assert confirmed.source == "student" and confirmed.round == 2
    assert confirmed.extra["confirmed_from"] == 1 and confirmed.extra["first_round"] == 1

    pruned = by_prev[2]
    assert not pruned.kept and pruned.reason == "static" and pruned.extra["first_round"] == 1

    unconfirmed = by_prev[3]
    assert unconfirmed.kept and unconfirmed.xyxy == (80, 10, 90, 20) and unconfirmed.round == 1
    assert unconfirmed.extra["unconfirmed_rounds"] == 1

    assert not by_prev[4].kept and by_prev[4].reason == "aspect"

    only_prev = [b for b in merged.boxes if b.image_id == 2]
    assert [(b.xyxy, b.decision, b.reason) for b in only_prev] == [
        ((5, 5, 15, 15), "kept", ""), ((50, 5, 60, 15), "pruned", "overlap")]

    new = [b for b in merged.boxes if not b.extra["prev_ids"]]
    assert [(b.image_id, b.xyxy, b.extra["first_round"]) for b in new] == [
        (1, (40, 40, 50, 50), 2), (6, (1, 1, 9, 9), 2)]

    assert [b.id for b in merged.boxes] == list(range(1, 9))
    frame_key = {f.id: f.key for f in merged.frames}
    keys = [(frame_key[b.image_id], b.xyxy[0], b.xyxy[1]) for b in merged.boxes]
    assert keys == sorted(keys)

    assert merge_stats(_prev(), merged) == {
        "confirmed": 1, "revived": 0, "newly_pruned": 1, "still_pruned": 1, "unconfirmed": 1,
        "carried_over": 2, "new": 2, "kept": 5, "pruned": 3, "missing": 0}
    assert check_merge_invariant(_prev(), merged) == []


def test_unconfirmed_rounds_accumulate_and_reset_on_confirmation():
    prev = _prev()
    r2 = merge_rounds(prev, _new(), round=2)
    # Round 3 sees frame ("v", 0) with nothing at the unconfirmed box.
    r3_new = Dataset(frames=[_frame(1, "v", 0)], boxes=[])
    r3 = merge_rounds(r2, r3_new, round=3)
    box = next(b for b in r3.boxes if b.xyxy == (80, 10, 90, 20))
    assert box.extra["unconfirmed_rounds"] == 2 and box.kept
    assert box.extra["first_round"] == 1
    r4_new = Dataset(frames=[_frame(9, "v", 0)], boxes=[Box(image_id=9, xyxy=(80, 10, 90, 20), round=4)])
    r4 = merge_rounds(r3, r4_new, round=4)
    box = next(b for b in r4.boxes if b.xyxy == (80, 10, 90, 20))
    assert "unconfirmed_rounds" not in box.extra and box.extra["first_round"] == 1
    assert box.extra["confirmed_from"] == next(b.id for b in r3.boxes if b.xyxy == (80, 10, 90, 20))


def test_max_unconfirmed_rounds_prunes_a_students_find_no_later_round_sees_but_not_the_teachers():
    frames = [_frame(1, "v", 0)]
    prev = Dataset(frames=frames, boxes=[
        Box(image_id=1, xyxy=(80, 10, 90, 20), round=1, source="student", id=1, extra={"first_round": 1}),
        Box(image_id=1, xyxy=(10, 60, 20, 70), round=0, source="teacher", id=2),
        # the teacher's find, confirmed by round 1's student
        Box(image_id=1, xyxy=(40, 60, 50, 70), round=1, source="student", id=3, extra={"first_round": 0})])
    blind = Dataset(frames=[_frame(7, "v", 0)], boxes=[])
    r2 = merge_rounds(prev, blind, round=2, max_unconfirmed_rounds=2)
    assert all(b.kept for b in r2.boxes)  # one round unseen: not yet
    r3 = merge_rounds(r2, blind, round=3, max_unconfirmed_rounds=2)
    by_x = {b.xyxy[0]: b for b in r3.boxes}
    student, teacher, confirmed = by_x[80], by_x[10], by_x[40]
    assert not student.kept and student.reason == NOT_REDETECTED and student.extra["pruned_round"] == 3
    assert teacher.kept and teacher.extra["unconfirmed_rounds"] == 2
    assert confirmed.kept and confirmed.extra["unconfirmed_rounds"] == 2
    assert check_merge_invariant(r2, r3) == []
    assert all(b.kept for b in merge_rounds(r2, blind, round=3).boxes)  # default: kept however long unseen


def test_kept_prev_box_claims_kept_new_box_before_pruned_duplicate():
    prev = Dataset(frames=[_frame(1, "v", 0)], boxes=[
        Box(image_id=1, xyxy=(10, 10, 20, 20), id=1),
        Box(image_id=1, xyxy=(10, 10, 20, 21), id=2, decision="pruned", reason="overlap")])
    # The pruned duplicate overlaps the new box better, the kept box must still win it.
    new = Dataset(frames=[_frame(1, "v", 0)], boxes=[Box(image_id=1, xyxy=(10, 10, 20, 21), round=2)])
    merged = merge_rounds(prev, new, round=2)
    by_prev = _by_prev(merged)
    assert by_prev[1].kept and by_prev[1].extra["confirmed_from"] == 1
    assert not by_prev[2].kept and by_prev[2].extra["merge_status"] == "still_pruned"
    assert len(merged.boxes) == 2


def test_inputs_unchanged():
    prev, new = _prev(), _new()
    prev_copy, new_copy = copy.deepcopy(prev), copy.deepcopy(new)
    merged = merge_rounds(prev, new, round=2)
    assert prev == prev_copy and new == new_copy
    merged.boxes[0].extra["x"] = 1
    assert prev == prev_copy and new == new_copy


def _random_dataset(rng, n_frames, video_ids, round):
    keys = sorted({(str(rng.choice(video_ids)), int(rng.integers(0, 30))) for _ in range(n_frames)})
    frames = [Frame(id=i + 1, file_name=f"{v}/{k}.jpg", width=100, height=100, video_id=v, frame_index=k)
              for i, (v, k) in enumerate(keys)]
    boxes = []
    for f in frames:
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, 80, size=2)
            s = rng.uniform(5, 20)
            boxes.append(Box(image_id=f.id, xyxy=(x, y, x + s, y + s), score=float(rng.uniform()), round=round,
                             decision="pruned" if rng.uniform() < 0.3 else "kept"))
    ds = Dataset(frames=frames, boxes=boxes)
    ds.renumber()
    return ds


def test_invariant_on_random_rounds_and_detects_dropped_box():
    rng = np.random.default_rng(42)
    prev = _random_dataset(rng, 40, ["a", "b"], 1)
    total = dict.fromkeys(("confirmed", "revived", "newly_pruned", "still_pruned", "unconfirmed", "carried_over",
                           "new"), 0)
    for r in (2, 3):
        new = _random_dataset(rng, 40, ["a", "b", "c"], r)
        # Re-detect every other previous box with jitter so that matches happen.
        by_key = new.frame_by_key()
        prev_keys = {f.id: f.key for f in prev.frames}
        for b in prev.boxes[::2]:
            f = by_key.get(prev_keys[b.image_id])
            if f is not None:
                new.boxes.append(Box(image_id=f.id, xyxy=tuple(np.add(b.xyxy, 0.5)), round=r,
                                     decision="pruned" if rng.uniform() < 0.3 else "kept"))
        new.renumber()
        merged = merge_rounds(prev, new, round=r)
        assert check_merge_invariant(prev, merged) == []
        stats = merge_stats(prev, merged)
        assert stats["missing"] == 0
        for k in total:
            total[k] += stats[k]
        n_prev_rep = sum(stats[k] for k in ("confirmed", "revived", "newly_pruned", "still_pruned",
                                            "unconfirmed", "carried_over"))
        assert n_prev_rep == len(prev.boxes)
        assert len(merged.boxes) == len(prev.boxes) + stats["new"]
        assert merge_rounds(prev, new, round=r) == merged  # deterministic
        last_prev, prev = prev, merged
    assert all(v > 0 for v in total.values()), total  # the example exercises every case

    broken = copy.deepcopy(merged)
    dropped = next(b for b in broken.boxes if b.extra["prev_ids"])
    broken.boxes.remove(dropped)
    pid = dropped.extra["prev_ids"][0]
    key = {f.id: f.key for f in last_prev.frames}[next(b.image_id for b in last_prev.boxes if b.id == pid)]
    assert check_merge_invariant(last_prev, broken) == [f"prev box {pid} (frame {key}) is missing"]
    assert merge_stats(last_prev, broken)["missing"] == 1

    moved = copy.deepcopy(merged)
    box = next(b for b in moved.boxes if b.extra["prev_ids"])
    box.image_id = next(f.id for f in moved.frames if f.id != box.image_id)
    assert len(check_merge_invariant(last_prev, moved)) == 1
    assert "is represented by merged box" in check_merge_invariant(last_prev, moved)[0]


def test_rejects_non_unique_prev_ids():
    prev = _prev()
    prev.boxes[1].id = 1
    with pytest.raises(ValueError, match="unique"):
        merge_rounds(prev, _new(), round=2)


@pytest.mark.parametrize("geometry, expected", [
    ("new", (12.0, 10.0, 22.0, 20.0)),
    ("prev", (10.0, 10.0, 20.0, 20.0)),
    ("fused", (10.0 + 2.0 * 0.6 / (0.9 + 0.6), 10.0, 20.0 + 2.0 * 0.6 / (0.9 + 0.6), 20.0)),
])
def test_confirmed_box_geometry_policy(geometry, expected):
    prev = Dataset(frames=[_frame(1, "v", 0)], boxes=[Box(image_id=1, xyxy=(10.0, 10.0, 20.0, 20.0), score=0.9, id=1)])
    new = Dataset(frames=[_frame(1, "v", 0)],
                  boxes=[Box(image_id=1, xyxy=(12.0, 10.0, 22.0, 20.0), score=0.6, round=1, source="student", id=1)])
    merged = merge_rounds(prev, new, round=1, iou_threshold=0.5, geometry=geometry)
    (box,) = merged.boxes
    assert box.extra["merge_status"] == "confirmed" and box.source == "student" and box.score == 0.6
    np.testing.assert_allclose(box.xyxy, expected)
    with pytest.raises(ValueError, match="geometry"):
        merge_rounds(prev, new, round=1, geometry="mean")


def test_centre_factor_matches_two_estimates_of_one_tiny_ball():
    from pseudolabel.merge import assign_pairs
    from pseudolabel.records import Box

    prev = [Box(image_id=1, xyxy=(100, 100, 108, 108), id=1), Box(image_id=1, xyxy=(300, 300, 308, 308), id=2)]
    new = [Box(image_id=1, xyxy=(304, 303, 312, 311), id=1), Box(image_id=1, xyxy=(100, 100, 108, 108), id=2),
           Box(image_id=1, xyxy=(400, 400, 408, 408), id=3)]
    assert assign_pairs(prev, new, iou_threshold=0.3) == [(0, 1)]
    assert sorted(assign_pairs(prev, new, iou_threshold=0.3, centre_factor=1.0)) == [(0, 1), (1, 0)]


def test_a_kept_ball_whose_new_box_is_pruned_for_its_shape_stays_kept():
    from pseudolabel.merge import check_merge_invariant, merge_rounds
    from pseudolabel.records import Box, Dataset, Frame

    frames = [Frame(id=1, file_name="a.jpg", width=100, height=100, video_id="v", frame_index=0)]
    prev = Dataset(frames=frames, boxes=[Box(image_id=1, xyxy=(10, 10, 20, 20), id=1),
                                         Box(image_id=1, xyxy=(60, 60, 70, 70), id=2)])
    new = Dataset(frames=frames, boxes=[
        Box(image_id=1, xyxy=(10, 12, 20, 17), id=1, decision="pruned", reason="aspect", round=1),  # bad shape
        Box(image_id=1, xyxy=(60, 60, 70, 70), id=2, decision="pruned", reason="unconfirmed", round=1)])  # verdict
    merged = merge_rounds(prev, new, round=1, iou_threshold=0.3)
    assert check_merge_invariant(prev, merged) == []
    by_status = {(b.extra["merge_status"], b.kept, b.reason) for b in merged.boxes}
    assert ("unconfirmed", True, "") in by_status  # the ball of box 1 stays
    assert ("new", False, "aspect") in by_status  # the badly shaped new box is kept on record, pruned
    assert ("newly_pruned", False, "unconfirmed") in by_status  # a judgement on the object still wins
