"""The off_size pruner: tracks much larger than the round's seeds go, blurred balls stay."""
import numpy as np

from pseudolabel.prune.track_size import (
    TrackSizeConfig,
    apply_track_size,
    apply_track_size_smoothing,
    oversized_group_mask,
    seed_sized,
    short_side,
    track_smoothed_sizes,
)
from pseudolabel.records import Box, Dataset, Frame


def test_short_side_ignores_motion_blur_length():
    assert short_side([[0, 0, 8, 8], [0, 0, 30, 8], [0, 0, 20, 24]]).tolist() == [8, 8, 20]
    assert short_side(np.zeros((0, 4))).shape == (0,)


def test_oversized_group_mask_judges_the_median_of_each_group():
    sizes = [8, 9, 30, 20, 21, 7, 25]
    groups = ["a", "a", "a", "b", "b", "c", "d"]  # a: median 9 (one outlier box), b: 20.5, d: a lone 25
    assert oversized_group_mask(sizes, groups, reference=8, max_ratio=1.5).tolist() == [
        False, False, False, True, True, False, True]
    assert not oversized_group_mask(sizes, groups, reference=8, max_ratio=4.0).any()


def _dataset(n_seed_balls=6):
    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=1280, height=720, video_id="v", frame_index=i)
              for i in range(8)]
    boxes = []

    def add(frame, xyxy, *, source="teacher", track=None, score=0.8):
        extra = {} if track is None else {"track_id": track}
        boxes.append(Box(image_id=frame, xyxy=tuple(map(float, xyxy)), score=score, source=source,
                         id=len(boxes) + 1, extra=extra))

    for i in range(n_seed_balls):  # the ball: 8 px, blurred to 24 x 8 on two frames, seeds and confirmed boxes
        w = 24 if i in (2, 3) else 8
        add(i + 1, (100 + 30 * i, 300, 100 + 30 * i + w, 308), track="v:1",
            source="teacher" if i % 2 == 0 else "track_confirmed")
    for i in range(4):  # a shirt, 20 px, one seed and three confirmed boxes
        add(i + 1, (600, 200 + 10 * i, 620, 222 + 10 * i), track="v:2",
            source="teacher" if i == 0 else "track_confirmed", score=0.75 if i == 0 else 0.3)
    add(7, (900, 100, 908, 108))  # a lone ball seed
    add(8, (50, 50, 72, 70))  # a lone head seed
    add(8, (60, 60, 90, 90), source="teacher")
    boxes[-1].prune("overlap")  # pruned boxes are neither judged nor counted as seeds
    return Dataset(frames=frames, boxes=boxes)


def test_apply_track_size_prunes_the_large_track_and_lone_box_only():
    ds = _dataset()
    counts = apply_track_size(ds, TrackSizeConfig(), round=0)
    pruned = {b.id for b in ds.boxes if not b.kept and b.reason == "off_size"}
    assert pruned == {7, 8, 9, 10, 12} and counts == {"off_size": 5}
    assert all(b.extra["pruned_round"] == 0 and b.extra["reference_size"] == 8.0
               for b in ds.boxes if b.reason == "off_size")


def test_apply_track_size_in_student_rounds_only_when_told_to():
    ds = _dataset()
    assert apply_track_size(ds, TrackSizeConfig(), round=1) == {"off_size": 0}
    assert all(b.kept for b in ds.boxes[:-1])
    assert apply_track_size(ds, TrackSizeConfig(student_rounds=True), round=2) == {"off_size": 5}
    assert {b.extra["pruned_round"] for b in ds.boxes if b.reason == "off_size"} == {2}


def test_apply_track_size_needs_enough_seeds_and_can_be_off():
    ds = _dataset()
    assert apply_track_size(ds, TrackSizeConfig(enabled=False), round=0) == {"off_size": 0}
    assert apply_track_size(ds, TrackSizeConfig(min_seeds=10), round=0) == {"off_size": 0}
    assert all(b.kept for b in ds.boxes[:-1])


def _two_videos():
    """Video "far": the data set's ball (8 px) and a 20-px shirt; video "near": a 24-px ball filmed closer."""
    frames = [Frame(id=8 * j + i + 1, file_name=f"{v}/{i:06d}.jpg", width=1280, height=720, video_id=v,
                    frame_index=i) for j, v in enumerate(("far", "near")) for i in range(8)]
    boxes = []

    def add(frame, xyxy, track, source="teacher"):
        boxes.append(Box(image_id=frame, xyxy=tuple(map(float, xyxy)), score=0.8, source=source,
                         id=len(boxes) + 1, extra={"track_id": track}))

    for i in range(8):
        add(i + 1, (100 + 30 * i, 300, 108 + 30 * i, 308), "far:ball")
    for i in range(3):
        add(i + 1, (600, 200, 620, 220), "far:shirt", source="track_confirmed")
    for i in range(6):
        add(9 + i, (100 + 40 * i, 300, 124 + 40 * i, 324), "near:ball", source="teacher" if i < 2 else "track_confirmed")
    return Dataset(frames=frames, boxes=boxes)


def test_a_video_filmed_closer_keeps_its_ball_and_still_loses_its_shirt():
    ds = _two_videos()  # seeds: 8 + 2 boxes, median 8 px; the near ball is 3x that
    assert apply_track_size(ds, TrackSizeConfig(per_video=False), round=0) == {"off_size": 9}
    ds = _two_videos()
    assert apply_track_size(ds, TrackSizeConfig(), round=0) == {"off_size": 3}
    pruned = {b.extra["track_id"] for b in ds.boxes if b.reason == "off_size"}
    assert pruned == {"far:shirt"}
    assert {b.extra["reference_size"] for b in ds.boxes if b.reason == "off_size"} == {8.0}


def test_a_video_with_too_few_boxes_is_judged_by_the_data_set():
    ds = _two_videos()
    assert apply_track_size(ds, TrackSizeConfig(min_seeds=7), round=0) == {"off_size": 9}


def test_track_smoothed_sizes_pull_each_box_toward_its_tracks_median():
    wh = [[8, 8], [12, 10], [8, 8], [20, 20], [30, 5]]
    groups = ["a", "a", "a", None, "b"]  # a: median 8 x 8; a lone box; a one-box track
    out = track_smoothed_sizes(wh, groups, weight=0.5, min_members=3)
    np.testing.assert_allclose(out[:3], [[8, 8], [np.sqrt(96), np.sqrt(80)], [8, 8]])
    np.testing.assert_allclose(out[3:], [[20, 20], [30, 5]])  # no track, or too short a track: unchanged
    np.testing.assert_allclose(track_smoothed_sizes(wh, groups, weight=1.0, min_members=3)[1], [8, 8])
    np.testing.assert_allclose(track_smoothed_sizes(wh, groups, weight=0.0, min_members=1), wh)
    np.testing.assert_allclose(track_smoothed_sizes(wh, groups, weight=1.0, min_members=1)[4], [30, 5])


def test_apply_track_size_smoothing_keeps_centres_and_records_the_detectors_size():
    ds = _dataset()
    before = {b.id: b.xyxy for b in ds.boxes}
    assert apply_track_size_smoothing(ds, TrackSizeConfig()) == {"resized_on_track": 0}  # off by default
    assert {b.id: b.xyxy for b in ds.boxes} == before
    counts = apply_track_size_smoothing(ds, TrackSizeConfig(smooth=1.0))
    by_id = {b.id: b for b in ds.boxes}
    blurred = by_id[3]  # 24 x 8 on a track of 8 x 8 boxes: now 8 x 8 around the same centre
    assert blurred.extra["raw_wh"] == [24.0, 8.0]
    np.testing.assert_allclose(blurred.xyxy, (168.0, 300.0, 176.0, 308.0))
    assert counts == {"resized_on_track": 2}  # the two blurred balls; the shirt's boxes are all one size
    shirt = [by_id[i] for i in (7, 8, 9, 10)]
    assert all(np.isclose(b.xyxy[2] - b.xyxy[0], 20) for b in shirt)
    for i in (11, 12, 13):  # lone boxes and the pruned one: untouched
        assert by_id[i].xyxy == before[i] and "raw_wh" not in by_id[i].extra


def test_seed_sized_gives_a_tracks_added_boxes_the_median_size_of_its_seeds():
    wh = [[10, 10], [12, 8], [6, 5], [5, 6], [7, 7], [4, 4]]
    groups = ["a", "a", "a", "b", None, "a"]
    is_seed = [True, True, False, False, False, False]  # b has no seed; the lone box has no track
    out = seed_sized(wh, groups, is_seed)
    np.testing.assert_allclose(out[[2, 5]], [[11, 9], [11, 9]])
    np.testing.assert_allclose(out[[0, 1, 3, 4]], [[10, 10], [12, 8], [5, 6], [7, 7]])


def test_confirmed_seed_size_resizes_only_the_boxes_a_track_added():
    ds = _dataset()
    before = {b.id: b.xyxy for b in ds.boxes}
    counts = apply_track_size_smoothing(ds, TrackSizeConfig(confirmed_seed_size=True))
    by_id = {b.id: b for b in ds.boxes}
    # the ball's seeds are 8, 24 and 8 px wide: its blurred confirmed box (24 x 8) takes 8 x 8, centre kept;
    # the blurred seed keeps its box; the shirt's confirmed boxes already have its seed's size
    np.testing.assert_allclose(by_id[4].xyxy, (198.0, 300.0, 206.0, 308.0))
    assert by_id[4].extra["raw_wh"] == [24.0, 8.0]
    assert counts == {"resized_on_track": 1}
    assert all(b.xyxy == before[b.id] for b in ds.boxes if b.id != 4)


def test_smoothing_groups_a_track_id_within_the_round_that_made_it_and_leaves_reviewed_boxes():
    """A merged round holds boxes of several rounds; each round numbers its tracks anew, so "v:1" of round 1 and
    "v:1" of round 2 are different tracks. A reviewer's box keeps the reviewer's size."""
    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=640, height=360, video_id="v", frame_index=i)
              for i in range(7)]
    sizes = [8, 8, 14, 30, 30, 30, 8]
    rounds = [2, 2, 2, 1, 1, 1, 2]
    boxes = [Box(image_id=i + 1, xyxy=(100.0, 100.0, 100.0 + s, 100.0 + s), score=0.9, round=r, id=i + 1,
                 extra={"track_id": "v:1"}) for i, (s, r) in enumerate(zip(sizes, rounds))]
    boxes[6].extra["review"] = "moved"
    ds = Dataset(frames=frames, boxes=boxes)
    assert apply_track_size_smoothing(ds, TrackSizeConfig(smooth=1.0)) == {"resized_on_track": 1}
    wh = [round(b.xyxy[2] - b.xyxy[0], 6) for b in ds.boxes]
    assert wh == [8, 8, 8, 30, 30, 30, 8]  # round 2's track: median of 8, 8, 14; round 1's: one size


def _merge_case(tmp_path, *overrides):
    """Round 0's kept ball on three frames (10 px, one track); round 1 finds it again on all three, 8, 8 and 14 px
    wide (one track of round 1), and stage_merge runs with ``overrides``. Returns the experiment folder."""
    from pseudolabel import layout, pipeline
    from pseudolabel.coco import save_coco
    from tests.test_config import compose_cfg

    cfg = compose_cfg(f"paths.root_dir={tmp_path}", "exp=x", *overrides)
    exp = tmp_path / "runs" / "x"
    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=640, height=360, video_id="v", frame_index=i)
              for i in range(3)]
    for k in (0, 1):
        (exp / f"round_{k}").mkdir(parents=True)
    old = [Box(image_id=i + 1, xyxy=(100.0 + 5 * i, 100.0, 110.0 + 5 * i, 110.0), score=0.9, id=i + 1,
               extra={"track_id": "v:0"}) for i in range(3)]
    save_coco(Dataset(frames=frames, boxes=old), exp / "round_0" / "annotations.json")
    new = [Box(image_id=i + 1, xyxy=(105.0 + 5 * i - s / 2, 105.0 - s / 2, 105.0 + 5 * i + s / 2, 105.0 + s / 2),
               score=0.9, round=1, source="student", id=i + 1, extra={"track_id": "v:0"})
           for i, s in enumerate((8.0, 8.0, 14.0))]
    save_coco(Dataset(frames=frames, boxes=new), exp / "round_1" / "pruned.json")
    layout.mark_done(exp / "round_1", "prune")
    pipeline.stage_merge(cfg, 1)
    return exp


def test_the_merge_smooths_the_labels_alone_and_later_rounds_read_the_detectors_sizes(tmp_path):
    from pseudolabel import layout
    from pseudolabel.coco import load_coco

    exp = _merge_case(tmp_path)  # the defaults: smooth 0.5, not fed to the loop
    labels = {b.id: b for b in load_coco(exp / "round_1" / "annotations.json").kept_boxes()}
    loop = {b.id: b for b in load_coco(exp / "round_1" / "merged.json").kept_boxes()}
    assert layout.loop_labels(exp, 1) == exp / "round_1" / "merged.json"
    assert layout.loop_labels(exp, 0) == exp / "round_0" / "annotations.json"  # nothing else written there
    assert labels.keys() == loop.keys() and len(labels) == 3
    # merged.json: the merge's fused geometry (score-weighted mean of rounds 0 and 1, equal scores): 9, 9, 12 px
    assert [round(b.xyxy[2] - b.xyxy[0], 6) for b in loop.values()] == [9, 9, 12]
    # the labels: own**0.5 * median**0.5 (median 9), centres kept
    widths = [b.xyxy[2] - b.xyxy[0] for b in labels.values()]
    np.testing.assert_allclose(widths, [9, 9, np.sqrt(12 * 9)])
    for i in labels:
        np.testing.assert_allclose(np.add(labels[i].xyxy[:2], labels[i].xyxy[2:]),
                                   np.add(loop[i].xyxy[:2], loop[i].xyxy[2:]))
    assert labels[3].extra["raw_wh"] == [12.0, 12.0] and "raw_wh" not in loop[3].extra

    # round 2's merge reads round 1's merged.json: the box it confirms remembers the unsmoothed 12-px box
    from pseudolabel import pipeline
    from pseudolabel.coco import save_coco
    from tests.test_config import compose_cfg

    (exp / "round_2").mkdir()
    ds1 = load_coco(exp / "round_1" / "merged.json")
    again = Box(image_id=3, xyxy=tuple(loop[3].xyxy), score=0.9, round=2, source="student", id=1,
                extra={"track_id": "v:0"})
    save_coco(Dataset(frames=ds1.frames, boxes=[again]), exp / "round_2" / "pruned.json")
    layout.mark_done(exp / "round_2", "prune")
    pipeline.stage_merge(compose_cfg(f"paths.root_dir={tmp_path}", "exp=x"), 2)
    confirmed = [b for b in load_coco(exp / "round_2" / "merged.json").kept_boxes() if b.round == 2]
    assert len(confirmed) == 1 and confirmed[0].extra["prev_xyxy"] == list(loop[3].xyxy)


def test_smoothing_fed_to_the_loop_or_off_writes_no_second_file(tmp_path):
    from pseudolabel.coco import load_coco

    for name, override in (("fed", "prune.track_size.smooth_feeds_loop=true"), ("off", "prune.track_size.smooth=0")):
        exp = _merge_case(tmp_path / name, override)
        assert not (exp / "round_1" / "merged.json").exists()
        widths = [round(b.xyxy[2] - b.xyxy[0], 6) for b in load_coco(exp / "round_1" / "annotations.json").kept_boxes()]
        assert widths == [9, 9, 12]  # the merge's geometry (fed to the loop, the prune stage would have sized it)
