import numpy as np
import pytest

from pseudolabel.prune.temporal import (
    TemporalConfig,
    apply_temporal,
    interpolate_gaps,
    short_track_mask,
    track_boxes,
)
from pseudolabel.records import Box, Dataset, Frame


def _ball(cx, cy, d=10.0):
    return [cx - d / 2, cy - d / 2, cx + d / 2, cy + d / 2]


def _video(n_frames, video_id="v", start_id=1, width=640, height=360):
    return [Frame(id=start_id + i, file_name=f"{video_id}/{i:06d}.jpg", width=width, height=height,
                  video_id=video_id, frame_index=i) for i in range(n_frames)]


def test_fast_ball_is_one_track():
    # 10 px ball moving 20 px (2 diameters) per frame: IoU between frames is 0.
    steps = np.arange(8)
    boxes = [_ball(50 + 20 * s, 100 + 5 * s) for s in steps]
    ids = track_boxes(steps, boxes)
    assert len(set(ids)) == 1


def test_far_jump_starts_a_new_track():
    steps = np.array([0, 1, 2, 3])
    boxes = [_ball(50, 100), _ball(60, 100), _ball(70, 100), _ball(400, 300)]  # last: 33 diameters away
    ids = track_boxes(steps, boxes)
    assert ids[0] == ids[1] == ids[2] and ids[3] != ids[0]


def test_size_gate_separates_ball_from_big_object():
    steps = np.array([0, 1])
    ids = track_boxes(steps, [_ball(100, 100, 10), _ball(105, 100, 60)])
    assert ids[0] != ids[1]


def test_crossing_balls_keep_separate_tracks():
    # Ball A moves right, ball B moves left on a nearby row; between frames 4 and 5 they pass each other,
    # so each ball's new box is nearer the *other* ball's last box: only the motion model keeps them apart.
    steps, boxes, truth = [], [], []
    for s in range(10):
        steps += [s, s]
        boxes += [_ball(100 + 20 * s, 100), _ball(290 - 20 * s, 104)]
        truth += ["A", "B"]
    ids = track_boxes(np.array(steps), boxes)
    ids_a = {i for i, t in zip(ids, truth, strict=True) if t == "A"}
    ids_b = {i for i, t in zip(ids, truth, strict=True) if t == "B"}
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b


def test_track_survives_gap_up_to_max_gap():
    steps = np.array([0, 1, 2, 3, 6, 7, 8])
    boxes = [_ball(50 + 20 * s, 100) for s in steps]
    assert len(set(track_boxes(steps, boxes, max_gap=2))) == 1
    assert len(set(track_boxes(steps, boxes, max_gap=1))) == 2


def test_short_track_mask_counts_distinct_frames():
    np.testing.assert_array_equal(short_track_mask([0, 0, 1, 2, 2, 2], [0, 1, 5, 0, 1, 2], min_length=2),
                                  [False, False, True, False, False, False])


def test_interpolate_gaps_linear_and_bounded():
    tids = np.array([0, 0, 0, 1, 1])
    steps = np.array([0, 3, 9, 0, 2])
    boxes = np.array([[0, 0, 10, 10], [30, 60, 40, 70], [90, 60, 100, 70], [0, 0, 4, 4], [8, 0, 12, 4]], float)
    t, s, b, sc, gap = interpolate_gaps(tids, steps, boxes, [0.8, 0.6, 0.9, 0.5, 0.5], max_fill=2,
                                        score_factor=0.5)
    # track 0: gap 0->3 (2 missing) filled, gap 3->9 (5 missing) not; track 1: gap 0->2 (1 missing) filled.
    np.testing.assert_array_equal(t, [0, 0, 1])
    np.testing.assert_array_equal(s, [1, 2, 1])
    np.testing.assert_allclose(b, [[10, 20, 20, 30], [20, 40, 30, 50], [4, 0, 8, 4]])
    np.testing.assert_allclose(sc, [0.35, 0.35, 0.25])
    np.testing.assert_array_equal(gap, [2, 2, 1])


def _dataset_with_ball(frames, ball_frames, *, extra_boxes=()):
    boxes = []
    for i in ball_frames:
        boxes.append(Box(image_id=frames[i].id, xyxy=tuple(_ball(100 + 20 * i, 150 + 4 * i)), score=0.9,
                         id=len(boxes) + 1))
    for fi, xyxy in extra_boxes:
        boxes.append(Box(image_id=frames[fi].id, xyxy=tuple(xyxy), score=0.95, id=len(boxes) + 1))
    return Dataset(frames=frames, boxes=boxes)


def test_apply_temporal_prunes_isolated_and_fills_gap():
    frames = _video(10)
    ball_frames = [0, 1, 2, 3, 6, 7, 8, 9]
    ds = _dataset_with_ball(frames, ball_frames, extra_boxes=[(5, _ball(500, 40))])  # far from any track
    # Shuffle box order: the result must not depend on it.
    ds.boxes = [ds.boxes[i] for i in np.random.default_rng(0).permutation(len(ds.boxes))]
    counts = apply_temporal(ds, TemporalConfig(min_track_length=3, fill_gaps=2, max_gap=2,
                                               interp_score_factor=0.5), round=2)
    assert counts == {"isolated": 1, "interpolated": 2}
    lone = next(b for b in ds.boxes if b.xyxy == tuple(_ball(500, 40)))
    assert not lone.kept and lone.reason == "isolated" and lone.extra["pruned_round"] == 2
    ball = [b for b in ds.boxes if b.source == "teacher" and b.kept]
    assert len(ball) == 8 and len({b.extra["track_id"] for b in ball}) == 1
    assert ball[0].extra["track_id"].startswith("v:")
    new = sorted((b for b in ds.boxes if b.source == "track_interp"), key=lambda b: b.image_id)
    assert [b.image_id for b in new] == [frames[4].id, frames[5].id]
    for b, i in zip(new, (4, 5), strict=True):
        # Lies between its neighbours at frames 3 and 6, exactly where the linear motion puts it.
        np.testing.assert_allclose(b.xyxy, _ball(100 + 20 * i, 150 + 4 * i))
        assert _ball(160, 162)[0] < b.xyxy[0] < _ball(220, 174)[0]
        assert b.kept and b.round == 2 and b.score == pytest.approx(0.45)
        assert b.extra["track_id"] == ball[0].extra["track_id"]
        assert b.extra["interp_reason"] == f"gap of 2 frames in track {ball[0].extra['track_id']}"
    assert sorted(b.id for b in new) == [10, 11]  # continue after the max id (9)


def test_apply_temporal_leaves_gap_longer_than_fill_and_stills_untouched():
    frames = _video(10)
    ds = _dataset_with_ball(frames, [0, 1, 2, 6, 7, 8])  # 3 missing frames, fill_gaps=2
    stills = [Frame(id=100 + i, file_name=f"s{i}/000000.jpg", width=640, height=360, video_id=f"s{i}",
                    frame_index=0) for i in range(3)]
    ds.frames += stills
    ds.boxes += [Box(image_id=f.id, xyxy=(10, 10, 20, 20), id=50 + i) for i, f in enumerate(stills)]
    counts = apply_temporal(ds, TemporalConfig(min_track_length=2, fill_gaps=2, max_gap=3), round=1)
    assert counts == {"isolated": 0, "interpolated": 0}
    for b in ds.boxes[-3:]:
        assert b.kept and "track_id" not in b.extra


def test_apply_temporal_does_not_duplicate_existing_box():
    frames = _video(6)
    ds = _dataset_with_ball(frames, [0, 1, 3, 4])
    # Frame 2 holds a kept detection of the ball that the tracker could not use (too big a size change),
    # overlapping where interpolation would put a box.
    ds.boxes.append(Box(image_id=frames[2].id, xyxy=tuple(_ball(140, 158, 30)), score=0.5, id=99))
    counts = apply_temporal(ds, TemporalConfig(min_track_length=1, fill_gaps=1, interp_skip_iou=0.1), round=1)
    assert counts["interpolated"] == 0


def test_disabled_does_nothing():
    frames = _video(3)
    ds = _dataset_with_ball(frames, [0])
    assert apply_temporal(ds, TemporalConfig(enabled=False), round=1) == {"isolated": 0, "interpolated": 0}
    assert ds.boxes[0].kept and "track_id" not in ds.boxes[0].extra


def test_hysteresis_keeps_low_boxes_a_seeded_track_confirms_and_prunes_the_rest():
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis, seeded_track_mask
    from pseudolabel.records import Box, Dataset, Frame

    assert seeded_track_mask([0, 0, 1, 2], np.array([0.9, 0.3, 0.4, 0.8]) >= 0.7).tolist() == [True, True, False, True]
    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=640, height=360, video_id="v", frame_index=i)
              for i in range(6)]
    frames.append(Frame(id=99, file_name="still.jpg", width=640, height=360, video_id="still", frame_index=0))
    boxes = []
    for i in range(6):  # a ball moving 20 px a frame: seed in frame 2 only, low scores elsewhere
        x = 100 + 20 * i
        boxes.append(Box(image_id=i + 1, xyxy=(x, 100, x + 10, 110), score=0.9 if i == 2 else 0.3, id=len(boxes) + 1))
    for i in range(6):  # a low-score blob wandering far away, never above the threshold
        boxes.append(Box(image_id=i + 1, xyxy=(500, 300 - 3 * i, 510, 310 - 3 * i), score=0.4, id=len(boxes) + 1))
    boxes.append(Box(image_id=99, xyxy=(10, 10, 20, 20), score=0.5, id=len(boxes) + 1))
    boxes.append(Box(image_id=99, xyxy=(50, 10, 60, 20), score=0.95, id=len(boxes) + 1))
    ds = Dataset(frames=frames, boxes=boxes)
    counts = apply_hysteresis(ds, HysteresisConfig(), round=0, high=0.7)
    assert counts == {"track_confirmed": 5, "unconfirmed": 6, "below_threshold": 1}
    ball, blob, still = boxes[:6], boxes[6:12], boxes[12:]
    assert all(b.kept for b in ball) and ball[2].source == "teacher"
    assert {b.source for b in ball[:2] + ball[3:]} == {"track_confirmed"}
    assert ball[0].extra["detector"] == "teacher" and ball[0].extra["track_id"] == ball[5].extra["track_id"]
    assert all(not b.kept and b.reason == "unconfirmed" for b in blob)
    assert not still[0].kept and still[0].reason == "below_threshold" and still[1].kept
    # off: nothing changes
    ds2 = Dataset(frames=frames, boxes=[Box(image_id=1, xyxy=(0, 0, 9, 9), score=0.1, id=1)])
    assert sum(apply_hysteresis(ds2, HysteresisConfig(enabled=False), round=0, high=0.7).values()) == 0
    assert ds2.boxes[0].kept


def test_hysteresis_with_given_seeds_ignores_scores():
    """Student rounds: only boxes agreeing with the previous round seed tracks, whatever the student's score."""
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis
    from pseudolabel.records import Box, Dataset, Frame

    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=640, height=360, video_id="v", frame_index=i)
              for i in range(4)]
    ball = [Box(image_id=i + 1, xyxy=(100 + 20 * i, 100, 110 + 20 * i, 110), score=0.3, id=i + 1) for i in range(4)]
    junk = [Box(image_id=i + 1, xyxy=(500, 50 + 5 * i, 510, 60 + 5 * i), score=0.95, id=10 + i) for i in range(4)]
    ds = Dataset(frames=frames, boxes=ball + junk)
    counts = apply_hysteresis(ds, HysteresisConfig(), round=1, high=0.7, seeds={2})
    assert counts["track_confirmed"] == 3 and counts["unconfirmed"] == 4
    assert all(b.kept for b in ball) and not any(b.kept for b in junk)


def test_hysteresis_confirms_only_the_confirmable_boxes_of_a_seeded_track():
    """Student rounds with student_confirm=track_and_teacher: a seeded track keeps the boxes the teacher also saw;
    the rest of the track is pruned as unsupported (taught as background next round, not ignored)."""
    from pseudolabel.prune.temporal import DOUBTFUL_REASONS, HysteresisConfig, apply_hysteresis

    frames = _video(4)
    ball = [Box(image_id=i + 1, xyxy=_ball(105 + 20 * i, 105), score=0.3, id=i + 1) for i in range(4)]
    ds = Dataset(frames=frames, boxes=ball)
    counts = apply_hysteresis(ds, HysteresisConfig(), round=1, high=0.7, seeds={2}, confirmable={3})
    assert counts["track_confirmed"] == 1 and counts["unsupported"] == 2 and counts["unconfirmed"] == 0
    assert [b.kept for b in ball] == [False, True, True, False]
    assert ball[2].source == "track_confirmed" and ball[0].reason == "unsupported" not in DOUBTFUL_REASONS
    plain = Dataset(frames=_video(4), boxes=[Box(image_id=i + 1, xyxy=_ball(105 + 20 * i, 105), score=0.3, id=i + 1)
                                             for i in range(4)])
    assert apply_hysteresis(plain, HysteresisConfig(), round=1, high=0.7, seeds={2})["track_confirmed"] == 3


def test_between_anchors_mask_keeps_what_lies_between_two_anchors_of_its_own_track():
    from pseudolabel.prune.temporal import between_anchors_mask

    tids = np.array([1, 1, 1, 1, 1, 2, 2, 2])
    steps = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    anchor = np.array([False, True, False, True, False, False, True, False])
    # track 1: steps 1 and 3 anchor, so step 2 lies between and steps 0 and 4 do not; track 2: one anchor only
    assert between_anchors_mask(tids, steps, anchor).tolist() == [False, True, True, True, False,
                                                                  False, True, False]


def test_hysteresis_confirm_between_keeps_a_student_box_bracketed_by_teacher_seen_boxes():
    """student_confirm=track_between_teacher: a box the teacher did not see is kept when boxes the teacher saw come
    before and after it on its track; the ends of the track beyond them stay unsupported."""
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis

    ball = [Box(image_id=i + 1, xyxy=_ball(105 + 20 * i, 105), score=0.3, id=i + 1) for i in range(5)]
    ds = Dataset(frames=_video(5), boxes=ball)
    counts = apply_hysteresis(ds, HysteresisConfig(), round=1, high=0.7, seeds={2}, confirmable={2, 4},
                              confirm_between=True)
    assert [b.kept for b in ball] == [False, True, True, True, False]
    assert counts["unsupported"] == 2 and counts["track_confirmed"] == 2
    assert ball[2].source == "track_confirmed" and ball[4].reason == "unsupported"


def test_hysteresis_between_seeds_makes_the_seeds_anchors_too():
    """between_seeds: boxes between a seed (agreeing with round k-1) and a box the teacher saw, or between two
    seeds, stay; without it only boxes between two teacher-seen boxes do. Past the last anchor: unsupported."""
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis

    def run(between_seeds):
        ball = [Box(image_id=i + 1, xyxy=_ball(105 + 20 * i, 105), score=0.9, id=i + 1) for i in range(7)]
        ds = Dataset(frames=_video(7), boxes=ball)
        apply_hysteresis(ds, HysteresisConfig(between_seeds=between_seeds), round=1, high=0.7, seeds={1, 4},
                         confirmable={6}, confirm_between=True)
        return [b.kept for b in ball]

    # seeds at steps 0 and 3, the teacher saw step 5: 1-2 lie between two seeds, 4 between a seed and step 5
    assert run(True) == [True, True, True, True, True, True, False]
    assert run(False) == [True, False, False, True, False, True, False]


def test_seed_reach_mask_keeps_boxes_near_a_seed_of_their_own_track():
    from pseudolabel.prune.temporal import seed_reach_mask

    tids = np.array([1, 1, 1, 1, 1, 2, 2])
    steps = np.array([0, 2, 5, 9, 12, 0, 9])
    seed = np.array([False, True, False, False, True, False, False])
    # track 1: seeds at steps 2 and 12; step 5 is 3 from one, step 9 is 3 from the other, step 0 is 2 away;
    # track 2 has no seed, so nothing on it is within reach
    assert seed_reach_mask(tids, steps, seed, reach=3).tolist() == [True, True, True, True, True, False, False]
    assert seed_reach_mask(tids, steps, seed, reach=2).tolist() == [True, True, False, False, True, False, False]


def test_hysteresis_student_reach_prunes_what_a_track_links_far_from_its_seed():
    """student_reach=2 in a student round: of one track seeded at step 0, the boxes 1-2 sampled frames on stay,
    those farther are pruned as out_of_reach. Round 0 (no seeds given) and student_reach=None keep the whole
    track."""
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis
    from pseudolabel.review.apply import REVIVABLE_REASONS

    def run(reach, student_round=True):
        ball = [Box(image_id=i + 1, xyxy=_ball(105 + 20 * i, 105), score=0.9 if i == 0 else 0.3, id=i + 1)
                for i in range(6)]
        ds = Dataset(frames=_video(6), boxes=ball)
        counts = apply_hysteresis(ds, HysteresisConfig(student_reach=reach), round=1 if student_round else 0,
                                  high=0.7, seeds={1} if student_round else None)
        return [b.kept for b in ball], [b.reason for b in ball], counts

    kept, reasons, counts = run(2)
    assert kept == [True, True, True, False, False, False]
    assert reasons[3:] == ["out_of_reach"] * 3 and counts["out_of_reach"] == 3 and counts["track_confirmed"] == 2
    assert "out_of_reach" in REVIVABLE_REASONS
    assert run(None)[0] == [True] * 6 and "out_of_reach" not in run(None)[2]
    assert run(2, student_round=False)[0] == [True] * 6


def test_run_mask_keeps_runs_of_candidates_long_enough_across_small_gaps():
    from pseudolabel.prune.temporal import run_mask

    tids = np.array([1, 1, 1, 1, 1, 1, 2, 2])
    steps = np.array([0, 1, 3, 7, 8, 9, 0, 1])
    cand = np.array([True, True, True, True, True, False, True, True])
    # track 1: steps 0, 1, 3 form one run (gap 2 <= max_gap 1 + 1); 7, 8 are a run of two (9 is no candidate);
    # track 2: a run of two
    assert run_mask(tids, steps, cand, min_run=3, max_gap=1).tolist() == [True, True, True, False, False,
                                                                          False, False, False]
    assert run_mask(tids, steps, cand, min_run=2, max_gap=0).tolist() == [True, True, False, True, True,
                                                                          False, True, True]


def test_hysteresis_student_run_keeps_a_long_unseen_stretch_of_a_seeded_track():
    """student_run=3: past the box the teacher saw, four unseen boxes in a row on the track stay; a lone unseen
    box before it does not (max_gap=0: the seed between them breaks the run)."""
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis

    ball = [Box(image_id=i + 1, xyxy=_ball(105 + 20 * i, 105), score=0.9, id=i + 1) for i in range(6)]
    ds = Dataset(frames=_video(6), boxes=ball)
    counts = apply_hysteresis(ds, HysteresisConfig(student_run=3, max_gap=0), round=1, high=0.7, seeds={2},
                              confirmable={2}, confirm_between=True)
    assert [b.kept for b in ball] == [False, True, True, True, True, True]
    assert counts["unsupported"] == 1 and ball[0].reason == "unsupported" and ball[4].source == "track_confirmed"


def test_a_track_of_confident_boxes_seeds_itself_when_asked():
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis
    from pseudolabel.records import Box, Dataset, Frame

    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=640, height=360, video_id="v", frame_index=i)
              for i in range(5)]

    def boxes():
        ball = [Box(image_id=i + 1, xyxy=(100 + 20 * i, 100, 110 + 20 * i, 110), score=0.9 if i < 3 else 0.3,
                    id=i + 1) for i in range(5)]
        blip = [Box(image_id=1, xyxy=(500, 300, 510, 310), score=0.95, id=20)]
        return ball + blip

    ds = Dataset(frames=frames, boxes=boxes())
    apply_hysteresis(ds, HysteresisConfig(), round=1, high=0.7, seeds=set())
    assert not any(b.kept for b in ds.boxes)
    ds = Dataset(frames=frames, boxes=boxes())
    counts = apply_hysteresis(ds, HysteresisConfig(track_seed_length=3), round=1, high=0.7, seeds=set())
    assert [b.kept for b in ds.boxes] == [True] * 5 + [False]  # the lone confident blip has no track
    assert counts["track_confirmed"] == 2


def test_two_best_evidence_counts_two_frames_of_one_track_and_no_more():
    from pseudolabel.prune.temporal import two_best_evidence_mask

    tids = np.array([1, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 4])
    steps = np.array([0, 1, 2, 0, 0, 0, 1, 0, 1, 2, 3, 4])
    # track 1: 0.5 and 0.45 in two frames -> 1 - 0.5 * 0.55 = 0.725; track 2: both in one frame (one look);
    # track 3: 1 - 0.6 * 0.6 = 0.64; track 4: five looks at 0.3 -> only the two best count: 0.51
    scores = np.array([0.5, 0.45, 0.2, 0.6, 0.6, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3])
    mask = two_best_evidence_mask(tids, steps, scores, high=0.7)
    assert mask.tolist() == [True] * 3 + [False] * 9
    assert two_best_evidence_mask(tids, steps, scores, high=0.6).tolist() == [True] * 3 + [False] * 2 + [True] * 2 + [False] * 5


def test_hysteresis_two_best_evidence_confirms_a_track_without_a_seed_in_round_0_only():
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis

    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=640, height=360, video_id="v", frame_index=i)
              for i in range(4)]

    def boxes():
        return [Box(image_id=i + 1, xyxy=(100 + 20 * i, 100, 110 + 20 * i, 110), score=s, id=i + 1)
                for i, s in enumerate([0.5, 0.5, 0.25, 0.3])]

    ds = Dataset(frames=frames, boxes=boxes())
    apply_hysteresis(ds, HysteresisConfig(), round=0, high=0.7)
    assert not any(b.kept for b in ds.boxes)  # no box reaches 0.7
    ds = Dataset(frames=frames, boxes=boxes())
    counts = apply_hysteresis(ds, HysteresisConfig(track_evidence="two_best"), round=0, high=0.7)
    assert all(b.kept and b.source == "track_confirmed" for b in ds.boxes) and counts["track_confirmed"] == 4
    ds = Dataset(frames=frames, boxes=boxes())  # a student round with agreement seeds: scores are not evidence
    apply_hysteresis(ds, HysteresisConfig(track_evidence="two_best"), round=1, high=0.7, seeds=set())
    assert not any(b.kept for b in ds.boxes)


def test_doubtful_seeds_seed_a_track_only_once_it_holds_them_in_enough_frames():
    """A student box that agrees only with a teacher box round 0 left unconfirmed is weak evidence: it seeds its
    track once the track holds such boxes in doubtful_seed_frames sampled frames."""
    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis, run_mask

    assert run_mask([1, 1, 1, 2, 2], [0, 0, 1, 0, 9], [True, True, False, True, True], min_run=2,
                    max_gap=9).tolist() == [False, False, False, True, True]  # distinct frames, any gap

    def run(doubtful, frames_needed):
        ball = [Box(image_id=i + 1, xyxy=_ball(105 + 20 * i, 105), score=0.9, id=i + 1) for i in range(5)]
        ds = Dataset(frames=_video(5), boxes=ball)
        counts = apply_hysteresis(ds, HysteresisConfig(doubtful_seed_frames=frames_needed), round=1, high=0.7,
                                  seeds=set(), doubtful_seeds=doubtful)
        return [b.kept for b in ball], counts

    assert run({2}, 1)[0] == [True] * 5
    kept, counts = run({2}, 2)
    assert kept == [False] * 5 and counts["unconfirmed"] == 5
    kept, counts = run({2, 4}, 2)
    assert kept == [True] * 5 and counts["track_confirmed"] == 3
    assert run(None, 2)[0] == [False] * 5
