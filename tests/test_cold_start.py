"""Cold-start seeds: in a video round k-1 kept nothing of, the one student track that moves across the scene."""
import cv2
import numpy as np

from pseudolabel.prune.cold_start import (background_residual, background_shift, camera_path, moving_track_seed_ids,
                                         moving_track_seed_mask, track_scene_positions)
from pseudolabel.prune.temporal import HysteresisConfig
from pseudolabel.records import Box, Dataset, Frame

STEPS = 10


def _track(tid, centres, size=8.0):
    steps = np.arange(len(centres))
    c = np.asarray(centres, dtype=float)
    boxes = np.hstack([c - size / 2, c + size / 2])
    return np.full(len(c), tid), steps, boxes


def _stack(*tracks):
    return tuple(np.concatenate(parts) for parts in zip(*tracks))


def _scene(steps, boxes, camera):
    """Each box's scene position under a whole-frame camera path (the background moves as the frame does)."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2 - np.asarray(camera)[steps]


def _line(x0, y0, dx, dy, n=STEPS):
    return [(x0 + dx * i, y0 + dy * i) for i in range(n)]


def test_a_lone_moving_track_seeds_and_a_static_spot_does_not():
    tids, steps, boxes = _stack(_track(0, _line(100, 100, 15, 4)), _track(1, _line(500, 300, 0, 0)))
    mask = moving_track_seed_mask(tids, steps, boxes, _scene(steps, boxes, np.zeros((STEPS, 2))), min_length=5,
                                  min_motion=1.0)
    assert mask[tids == 0].all() and not mask[tids == 1].any()


def test_what_the_camera_carries_is_static_in_the_scene():
    """A spectator crossing the picture because the camera pans does not move in the scene: no seed. The ball,
    moving against the pan, does."""
    pan = np.array([[-12.0 * i, 0.0] for i in range(STEPS)])  # the picture content shifts left by 12 px a frame
    carried = _line(600, 50, -12, 0)
    ball = _line(100, 200, 10, -3)
    tids, steps, boxes = _stack(_track(0, carried), _track(1, ball))
    mask = moving_track_seed_mask(tids, steps, boxes, _scene(steps, boxes, pan), min_length=5, min_motion=1.0)
    assert not mask[tids == 0].any() and mask[tids == 1].all()
    still = moving_track_seed_mask(tids, steps, boxes, _scene(steps, boxes, np.zeros((STEPS, 2))), min_length=5,
                                   min_motion=1.0)
    assert not still.any()  # without the pan both move, at once: neither is alone


def test_two_moving_candidates_at_once_seed_nothing_but_a_short_rival_does_not_veto():
    long_a, long_b = _line(100, 100, 15, 4), _line(400, 300, -12, 2)
    tids, steps, boxes = _stack(_track(0, long_a), _track(1, long_b))
    assert not moving_track_seed_mask(tids, steps, boxes, _scene(steps, boxes, np.zeros((STEPS, 2))), min_length=5,
                                      min_motion=1.0).any()
    short = _track(1, _line(400, 300, -12, 2, n=4))  # 4 frames against 10: at most half
    tids, steps, boxes = _stack(_track(0, long_a), short)
    mask = moving_track_seed_mask(tids, steps, boxes, _scene(steps, boxes, np.zeros((STEPS, 2))), min_length=5,
                                  min_motion=1.0)
    assert mask[tids == 0].all() and not mask[tids == 1].any()  # and the short one is below min_length


def test_too_short_a_track_does_not_seed():
    tids, steps, boxes = _track(0, _line(100, 100, 15, 4, n=4))
    assert not moving_track_seed_mask(tids, steps, boxes, _scene(steps, boxes, np.zeros((4, 2))), min_length=5,
                                      min_motion=1.0).any()


def test_camera_path_recovers_a_pan():
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur((rng.random((400, 700)) * 255).astype(np.uint8), (0, 0), 2)
    views = [scene[50:330, 100 + 6 * i:100 + 6 * i + 480] for i in range(5)]  # the camera moves right 6 px a frame
    path = camera_path(views)
    np.testing.assert_allclose(path[:, 0], [0, -6, -12, -18, -24], atol=1.0)
    np.testing.assert_allclose(path[:, 1], 0, atol=1.0)


def _textured(shape, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random(shape) * 255).astype(np.float32), (0, 0), 2)


def test_background_shift_ignores_the_object_and_scene_positions_remove_a_zoom_like_local_motion():
    """The background moves up 6 px a frame near the object (a tilt the whole frame's shift would not show); the
    object moves with it: in the scene it stands still. A ball crossing the same background moves."""
    scene = _textured((500, 500))
    frames = [scene[100 - 6 * i:400 - 6 * i, 100:400].copy() for i in range(6)]  # content moves down... by +6 px
    truth = np.array([0.0, 6.0])
    ball = []
    for i, im in enumerate(frames):
        x, y = 150 + 12 * i, 150 + 6 * i
        im[y - 4:y + 4, x - 4:x + 4] = 255.0  # a bright ball moving right against the background
        ball.append((x - 4, y - 4, x + 4, y + 4))
    shift, peak = background_shift(frames[0], frames[1], [ball[0], ball[1]], window=5.0)
    np.testing.assert_allclose(shift, truth, atol=1.0)
    assert peak > 0.2
    carried = [(60 - 4, 60 + 6 * i - 4, 60 + 4, 60 + 6 * i + 4) for i in range(6)]  # a spot of the background
    tids = np.array([0] * 6 + [1] * 6)
    steps = np.array(list(range(6)) * 2)
    boxes = np.array(ball + carried, dtype=float)
    pos = track_scene_positions(tids, steps, boxes, frames, window=5.0, camera=np.zeros((6, 2)))
    assert np.ptp(pos[tids == 1], axis=0).max() < 3  # still in the scene
    assert np.ptp(pos[tids == 0][:, 0]) > 50  # the ball's 12 px a frame to the right remain
    mask = moving_track_seed_mask(tids, steps, boxes, pos, min_length=5, min_motion=1.0)
    assert mask[tids == 0].all() and not mask[tids == 1].any()


def test_a_textureless_window_falls_back_on_the_whole_frame():
    """Sand: nothing but the ball in the window; the weak peak gives way to the camera path."""
    flat = [np.full((200, 300), 120.0, dtype=np.float32) for _ in range(6)]
    boxes = []
    for i, im in enumerate(flat):
        x, y = 50 + 15 * i, 100
        im[y - 4:y + 4, x - 4:x + 4] = 250.0
        boxes.append((x - 4, y - 4, x + 4, y + 4))
    pos = track_scene_positions(np.zeros(6, int), np.arange(6), np.array(boxes, float), flat, window=5.0,
                                camera=np.zeros((6, 2)))
    np.testing.assert_allclose(pos[:, 0], [50 + 15 * i for i in range(6)], atol=1e-6)


def test_seed_ids_only_in_the_videos_asked_and_only_confident_kept_boxes():
    frames, boxes = [], []
    for v, vid in enumerate(("cold", "warm")):
        for i in range(STEPS):
            fid = 100 * v + i
            frames.append(Frame(id=fid, file_name=f"{vid}/{i:06d}.jpg", width=640, height=360, video_id=vid,
                                frame_index=i))
            x, y = 100 + 15 * i, 100 + 4 * i
            boxes.append(Box(image_id=fid, xyxy=(x - 4, y - 4, x + 4, y + 4), score=0.9 if i != 3 else 0.5,
                             id=1000 * v + i))
    ds = Dataset(frames=frames, boxes=boxes)
    seen = []
    rng = np.random.default_rng(1)
    still = cv2.GaussianBlur((rng.random((360, 640)) * 255).astype(np.float32), (0, 0), 2)

    def images(vframes):
        seen.append([f.video_id for f in vframes])
        return [still] * len(vframes)

    ids = moving_track_seed_ids(ds, {"cold"}, hysteresis=HysteresisConfig(), high=0.7, min_length=5,
                                min_motion=1.0, window=5.0, images=images)
    assert ids == {i for i in range(STEPS) if i != 3}  # the 0.5 box is the hysteresis's to confirm, not a seed
    assert seen == [["cold"] * STEPS]


def _prune_cold_round(tmp_path, *overrides, anchored_in=(), k=1, teacher_steps=()):
    """Round ``k``'s prune stage over one video: the student's ten confident boxes on one ball moving across a
    slowly panned pitch. The annotations of the rounds before ``k`` hold nothing, but those of the rounds in
    ``anchored_in`` one box far from the track. Round 0's teacher pass (``labels.json``) also holds a low-score box
    on the ball at ``teacher_steps``. Returns round k's pruned.json."""
    from pseudolabel import layout
    from pseudolabel.coco import load_coco, save_coco
    from pseudolabel.pipeline import exp_dir, frames_dir, round_dir, stage_prune
    from tests.test_config import compose_cfg

    cfg = compose_cfg(f"paths.root_dir={tmp_path}", f"exp=x{abs(hash((overrides, anchored_in, k, teacher_steps)))}",
                      "prune.per_frame.max_boxes=null", *overrides)
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur((rng.random((400, 800)) * 255).astype(np.uint8), (0, 0), 2)
    frames, student, teacher = [], [], []
    for i in range(STEPS):
        frames.append(Frame(id=i + 1, file_name=f"cold/{i:06d}.jpg", width=640, height=360, video_id="cold",
                            frame_index=i))
        path = frames_dir(cfg) / "cold" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(scene[:360, 5 * i:5 * i + 640], cv2.COLOR_GRAY2BGR))  # a slow pan
        x, y = 100 + 20 * i, 100 + 5 * i
        student.append(Box(image_id=i + 1, xyxy=(x - 5, y - 5, x + 5, y + 5), score=0.9, id=10 + i,
                           source="student"))
        if i in teacher_steps:
            teacher.append(Box(image_id=i + 1, xyxy=(x - 4, y - 4, x + 4, y + 4), score=0.4, id=100 + i))
    for r in range(k + 1):
        round_dir(cfg, r).mkdir(parents=True, exist_ok=True)
    for r in range(k):
        kept = [Box(image_id=1, xyxy=(600, 300, 610, 310), score=0.9, id=1)] if r in anchored_in else []
        save_coco(Dataset(frames=frames, boxes=kept), round_dir(cfg, r) / layout.ANNOTATIONS)
        if r == 0:
            save_coco(Dataset(frames=frames, boxes=kept + teacher), round_dir(cfg, 0) / layout.LABELS)
    save_coco(Dataset(frames=frames, boxes=student, info={"score_threshold": 0.7}), round_dir(cfg, k) / layout.LABELS)
    stage_prune(cfg, k)
    assert exp_dir(cfg).is_dir()
    return load_coco(round_dir(cfg, k) / layout.PRUNED)


# the boxes mark places of the scene, not an object that moves across it: no residual test here
COLD_RULE = ("prune.hysteresis.cold_start_length=5", "prune.hysteresis.cold_start_residual=null",
             "prune.hysteresis.cold_start_teacher=off")


def test_stage_prune_seeds_a_cold_video_from_its_moving_track_with_provenance(tmp_path):
    """Through the prune stage (prune.hysteresis.cold_start_length): round 1's student boxes on the one moving
    track of a video round 0 kept nothing of stay, marked ``extra["seed"] == "moving_track"``; off, they go."""
    on = _prune_cold_round(tmp_path, *COLD_RULE, "prune.hysteresis.cold_start_videos=empty")
    assert len(on.kept_boxes()) == STEPS and all(b.extra.get("seed") == "moving_track" for b in on.kept_boxes())
    off = _prune_cold_round(tmp_path, "prune.hysteresis.cold_start_length=null")
    assert not off.kept_boxes()
    # a video round 0 anchored elsewhere: seeded only when the rule covers every video
    assert not _prune_cold_round(tmp_path, *COLD_RULE, "prune.hysteresis.cold_start_videos=empty",
                                 anchored_in=(0,)).kept_boxes()
    every = _prune_cold_round(tmp_path, *COLD_RULE, "prune.hysteresis.cold_start_videos=all", anchored_in=(0,))
    assert len(every.kept_boxes()) == STEPS and all(b.extra.get("seed") == "moving_track" for b in every.kept_boxes())


def test_cold_start_teacher_seeds_only_where_round_0s_teacher_saw_the_track(tmp_path):
    """cold_start_teacher=all: of the moving track, the boxes round 0's teacher pass also has (steps 2 and 7) seed;
    the boxes between them stay as the track confirms them (student_confirm: track_between_teacher), those outside
    go as unsupported; a track the teacher never saw seeds nothing."""
    rule = (*COLD_RULE[:-1], "prune.hysteresis.cold_start_teacher=all",
            "prune.hysteresis.student_confirm=track_between_teacher")
    out = _prune_cold_round(tmp_path, *rule, teacher_steps=(2, 7))
    kept = {b.id: b for b in out.kept_boxes()}
    assert set(kept) == {10 + i for i in range(2, 8)}
    assert {i for i, b in kept.items() if b.extra.get("seed") == "moving_track"} == {12, 17}
    assert {kept[i].source for i in range(13, 17)} == {"track_confirmed"}
    assert {b.reason for b in out.boxes if not b.kept} == {"unsupported"}
    assert not _prune_cold_round(tmp_path, *rule).kept_boxes()
    # the same track without the rule: every confident box seeds
    assert len(_prune_cold_round(tmp_path, *COLD_RULE, teacher_steps=(2, 7)).kept_boxes()) == STEPS


def test_cold_start_teacher_anchored_asks_the_teacher_only_where_round_k_minus_1_kept_boxes(tmp_path):
    """cold_start_teacher=anchored: in a video round 0 kept nothing of, the moving track seeds on its own (nothing
    else to go on); in a video round 0 anchored elsewhere, only the boxes the teacher also saw seed."""
    rule = (*COLD_RULE[:-1], "prune.hysteresis.cold_start_teacher=anchored", "prune.hysteresis.cold_start_videos=all",
            "prune.hysteresis.student_confirm=track_between_teacher")
    cold = _prune_cold_round(tmp_path, *rule, teacher_steps=(2, 7))
    assert len(cold.kept_boxes()) == STEPS and all(b.extra.get("seed") == "moving_track" for b in cold.kept_boxes())
    anchored = _prune_cold_round(tmp_path, *rule, teacher_steps=(2, 7), anchored_in=(0,))
    assert {b.id for b in anchored.kept_boxes()} == {10 + i for i in range(2, 8)}
    assert {b.id for b in anchored.kept_boxes() if b.extra.get("seed") == "moving_track"} == {12, 17}


def _panned_frames(n=3, pan=6):
    """Grey frames of a textured pitch the camera pans across (content shifts left by ``pan`` px a frame) with a
    bright lamp fixed in the scene (it moves with the pan) and a ball moving against it (right, 20 px a frame)."""
    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur((rng.random((200, 400)) * 120).astype(np.float32), (0, 0), 1.5) + 60
    cv2.circle(scene, (150, 60), 4, 250, -1)  # the lamp, in scene coordinates
    frames, lamp, ball = [], [], []
    for i in range(n):
        f = scene[:, pan * i:pan * i + 300].copy()
        bx, by = 60 + 20 * i, 120
        cv2.circle(f, (bx, by), 4, 250, -1)
        frames.append(f)
        lamp.append((150 - pan * i - 5, 55, 150 - pan * i + 5, 65))
        ball.append((bx - 5, by - 5, bx + 5, by + 5))
    return frames, lamp, ball


def test_background_residual_tells_a_carried_lamp_from_a_moving_ball():
    frames, lamp, ball = _panned_frames()
    pan = (-6.0, 0.0)
    for i in (1, 2):  # at i=2 the ball crosses the lamp's window: its weak peak falls back on the frame's shift
        assert background_residual(frames[i - 1], frames[i], lamp[i], window=5.0, frame_shift=pan) < 0.2
        assert background_residual(frames[i - 1], frames[i], ball[i], window=5.0, frame_shift=pan) > 0.5
    assert np.isnan(background_residual(frames[0], frames[1], (0, 0, 6, 6), window=5.0))  # at the frame's edge


def test_min_residual_keeps_a_lamp_out_of_the_tracks():
    """Only the lamp's boxes (carried by the pan, so static in the scene) and the ball's: with min_residual the
    lamp's are never tracked, the ball still seeds."""
    frames, lamp, ball = _panned_frames(n=6)
    vframes = [Frame(id=i + 1, file_name=f"v/{i}.jpg", width=300, height=200, video_id="v", frame_index=i)
               for i in range(6)]
    boxes = [Box(image_id=i + 1, xyxy=tuple(map(float, b)), score=0.9, id=10 * k + i)
             for k, track in enumerate((lamp, ball)) for i, b in enumerate(track)]
    ds = Dataset(frames=vframes, boxes=boxes)
    kwargs = dict(hysteresis=HysteresisConfig(), high=0.7, min_length=5, min_motion=1.0, window=5.0,
                  images=lambda fr: frames)
    assert moving_track_seed_ids(ds, {"v"}, min_residual=0.5, **kwargs) == {10 + i for i in range(6)}
    assert moving_track_seed_ids(ds, {"v"}, min_residual=10.0, **kwargs) == set()  # nothing moved that much


def test_cold_start_teacher_anchored_by_the_teacher_asks_it_only_where_round_0_kept_boxes(tmp_path):
    """cold_start_teacher=teacher_anchored, round 2: a video round 1 anchored but round 0 (the teacher) kept nothing
    of seeds from its moving track alone, as "off" would (the teacher hardly fires on that ball, so asking for it
    would stop the video's growth); "anchored" asks for the teacher there. A video round 0 anchored: only the
    boxes the teacher also saw seed."""
    rule = (*COLD_RULE[:-1], "prune.hysteresis.cold_start_videos=all",
            "prune.hysteresis.student_confirm=track_between_teacher")
    only_student = _prune_cold_round(tmp_path, *rule, "prune.hysteresis.cold_start_teacher=teacher_anchored",
                                     anchored_in=(1,), k=2, teacher_steps=(2, 7))
    assert len(only_student.kept_boxes()) == STEPS
    assert all(b.extra.get("seed") == "moving_track" for b in only_student.kept_boxes())
    by_previous = _prune_cold_round(tmp_path, *rule, "prune.hysteresis.cold_start_teacher=anchored",
                                    anchored_in=(1,), k=2, teacher_steps=(2, 7))
    assert {b.id for b in by_previous.kept_boxes() if b.extra.get("seed") == "moving_track"} == {12, 17}
    teacher = _prune_cold_round(tmp_path, *rule, "prune.hysteresis.cold_start_teacher=teacher_anchored",
                                anchored_in=(0, 1), k=2, teacher_steps=(2, 7))
    assert {b.id for b in teacher.kept_boxes() if b.extra.get("seed") == "moving_track"} == {12, 17}
    assert {b.id for b in teacher.kept_boxes()} == {10 + i for i in range(2, 8)}
