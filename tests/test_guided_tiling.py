"""Guided tiling: full scans, tiles that follow a moving ball through a panning camera, cuts, video starts."""
from __future__ import annotations

import numpy as np
import pytest

from pseudolabel.detectors.base import Detections
from pseudolabel.detectors.guided_tiling import (GuidedTiledDetector, aligned_difference, phase_shift,
                                                  tiles_near_points)
from pseudolabel.detectors.tiling import TiledDetector, tile_grid

W, H, TILE = 640, 384, 128


class SmallBallDetector:
    """Finds the bright-red square of a crop, but only in crops no larger than a tile (a small ball vanishes
    when the whole frame is shrunk to the detector's input)."""

    name = "small_ball"

    def __init__(self):
        self.views = 0

    def predict(self, images):
        out = []
        for im in images:
            self.views += 1
            ys, xs = np.nonzero((im[..., 0] > 200) & (im[..., 1] < 60))
            if max(im.shape[:2]) > TILE or len(xs) == 0:
                out.append(Detections())
                continue
            out.append(Detections([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], [0.9], [37]))
        return out


def textured_world(seed=0, shape=(H + 200, W + 400)):
    rng = np.random.default_rng(seed)
    import cv2

    noise = rng.integers(0, 255, size=(shape[0] // 8, shape[1] // 8), dtype=np.uint8)
    grey = cv2.resize(noise, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    world = np.stack([grey // 3, grey // 2 + 60, grey // 3], axis=2).astype(np.uint8)  # green-ish, no red
    return world


def frames_with_ball(n, *, pan=(0, 0), velocity=(17, 9), start=(150, 100), seed=0, size=8):
    """(frames, true ball centres): a camera panning ``pan`` px per frame over a texture, a ball moving
    ``velocity`` px per frame in frame coordinates."""
    world = textured_world(seed)
    frames, centres = [], []
    for t in range(n):
        ox, oy = 100 + pan[0] * t, 100 + pan[1] * t
        im = world[oy:oy + H, ox:ox + W].copy()
        cx, cy = start[0] + velocity[0] * t, start[1] + velocity[1] * t
        im[cy - size // 2:cy + size // 2, cx - size // 2:cx + size // 2] = (255, 0, 0)
        frames.append(im)
        centres.append((cx, cy))
    return frames, np.array(centres, dtype=float)


def found(dets, centres):
    hits = []
    for d, (cx, cy) in zip(dets, centres, strict=True):
        c = (d.boxes[:, :2] + d.boxes[:, 2:]) / 2
        hits.append(bool(len(c)) and bool((np.linalg.norm(c - [cx, cy], axis=1) <= 2).any()))
    return np.array(hits)


def guided(inner, **kw):
    opts = dict(tile_size=TILE, overlap=0.25, batch_size=64, scan_every=100, motion_tiles=0, max_speed=24.0)
    opts.update(kw)
    return GuidedTiledDetector(inner, **opts)


def test_full_tiling_finds_the_ball_and_guided_follows_it_with_fewer_views():
    frames, centres = frames_with_ball(12)
    full_inner, inner = SmallBallDetector(), SmallBallDetector()
    full = TiledDetector(full_inner, tile_size=TILE, overlap=0.25, batch_size=64).predict(frames)
    det = guided(inner)
    out = [d for i in range(0, len(frames), 4) for d in det.predict(frames[i:i + 4])]
    assert found(full, centres).all()
    assert found(out, centres).all()
    n_full = len(tile_grid(W, H, tile_size=TILE, overlap=0.25)) + 1
    assert det.views_run[0] == n_full  # the first frame is a full scan
    assert max(det.views_run[1:]) < n_full / 3
    assert inner.views == sum(det.views_run) < full_inner.views / 3


def test_scan_every_one_is_plain_tiling():
    frames, _ = frames_with_ball(5)
    full = TiledDetector(SmallBallDetector(), tile_size=TILE, overlap=0.25, batch_size=64).predict(frames)
    out = guided(SmallBallDetector(), scan_every=1).predict(frames)
    assert len(out) == len(full)
    for a, b in zip(out, full, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_periodic_scans_come_every_k_frames():
    frames, _ = frames_with_ball(9)
    det = guided(SmallBallDetector(), scan_every=4)
    det.predict(frames)
    n_full = len(tile_grid(W, H, tile_size=TILE, overlap=0.25)) + 1
    assert [i for i, v in enumerate(det.views_run) if v == n_full] == [0, 4, 8]


def test_camera_shift_is_the_pan_and_aligned_difference_cancels_it():
    frames, _ = frames_with_ball(2, pan=(16, 8), velocity=(0, 0))
    det = guided(SmallBallDetector())
    a, b = det._small_grey(frames[0]), det._small_grey(frames[1])
    (dx, dy), _ = phase_shift(a, b)
    # the camera moved right and down by (16, 8) px: the picture moves left and up by 2 and 1 shrunk pixels
    assert dx == pytest.approx(-2, abs=0.3) and dy == pytest.approx(-1, abs=0.3)
    assert aligned_difference(a, b, (dx, dy))[4:-4, 4:-4].mean() < 0.25 * np.abs(b - a).mean()


def test_guided_follows_a_ball_while_the_camera_pans():
    frames, centres = frames_with_ball(12, pan=(12, 4), velocity=(20, 6))  # 33 px per frame over the ground
    det = guided(SmallBallDetector(), max_speed=40.0)
    assert found(det.predict(frames), centres).all()


def test_motion_tiles_find_a_ball_that_appears_between_scans():
    frames, centres = frames_with_ball(8, velocity=(14, 0), start=(100, 250))
    frames[0] = frames[1].copy()
    frames[0][centres[1][1].astype(int) - 4:centres[1][1].astype(int) + 4,
              centres[1][0].astype(int) - 4:centres[1][0].astype(int) + 4] = frames[0][:8, :8]  # no ball in frame 0
    no_motion = guided(SmallBallDetector(), motion_tiles=0, motion_threshold=5.0)
    with_motion = guided(SmallBallDetector(), motion_tiles=2, motion_threshold=5.0)
    assert not found(no_motion.predict(frames), centres)[1:].any()  # nothing guides it to the ball
    assert found(with_motion.predict(frames), centres)[1:].all()


def test_a_cut_and_a_new_video_force_a_full_scan():
    frames, _ = frames_with_ball(4)
    other, _ = frames_with_ball(2, seed=5)
    other = [255 - f for f in other]  # a different shot: every pixel changes
    det = guided(SmallBallDetector())
    det.predict(frames[:3] + other[:1])
    n_full = len(tile_grid(W, H, tile_size=TILE, overlap=0.25)) + 1
    assert det.views_run[3] == n_full and max(det.views_run[1:3]) < n_full
    det.start_video("b")
    det.predict(frames[:1])
    assert det.views_run[-1] == n_full


def test_tiles_near_points_runs_the_fewest_tiles_that_hold_the_disc():
    tiles = np.array([[0, 0, 100, 100], [80, 0, 180, 100]])
    assert tiles_near_points(tiles, np.array([[30, 50]]), radius=10).tolist() == [True, False]
    assert tiles_near_points(tiles, np.array([[90, 50]]), radius=30).tolist() == [True, True]
    assert not tiles_near_points(tiles, np.zeros((0, 2)), radius=10).any()
    # four tiles in a row, each overlapping the next by three quarters: no tile holds the disc, two do together
    row = np.array([[x, 0, x + 100, 200] for x in (0, 25, 50, 75)])
    chosen = tiles_near_points(row, np.array([[87.5, 100]]), radius=45)
    assert chosen.sum() == 2
    assert tiles_near_points(row[chosen], np.array([[42.5, 100], [132.5, 100]]), radius=0).all()
    # the margin: a ball 5 px from a tile's edge is run in a tile that holds it 10 px deep
    assert tiles_near_points(row, np.array([[95, 100]]), radius=0, margin=10).tolist() == [False, True, False, False]
    # a disc wholly outside every tile runs nothing
    assert not tiles_near_points(row, np.array([[500, 100]]), radius=10).any()


def test_iter_detections_starts_each_video(tmp_path):
    import cv2

    from pseudolabel.label import iter_detections
    from pseudolabel.records import Frame

    class Recorder(SmallBallDetector):
        def __init__(self):
            super().__init__()
            self.calls = []

        def start_video(self, video_id=None):
            self.calls.append((video_id, self.views))

    frames = []
    for vid in ("a", "b"):
        ims, _ = frames_with_ball(3)
        for i, im in enumerate(ims):
            name = f"{vid}_{i}.jpg"
            cv2.imwrite(str(tmp_path / name), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
            frames.append(Frame(id=len(frames) + 1, file_name=name, width=W, height=H, video_id=vid, frame_index=i))
    det = Recorder()
    out = list(iter_detections(det, frames, frames_dir=tmp_path, class_ids=None, score_threshold=0.0,
                               batch_size=4, progress=False))
    assert len(out) == 6
    assert det.calls == [("a", 0), ("b", 3)]  # b starts after a's three frames, whatever the batch size


def test_a_guide_coasts_through_frames_where_the_detector_misses_the_ball():
    frames, centres = frames_with_ball(10, velocity=(18, 6))
    for t in (4, 5):  # the detector misses the ball twice in a row (blur): paint it grey
        cx, cy = centres[t].astype(int)
        frames[t][cy - 4:cy + 4, cx - 4:cx + 4] = (128, 128, 128)
    coasting = guided(SmallBallDetector(), max_coast=2)
    forgetting = guided(SmallBallDetector(), max_coast=0)
    assert found(coasting.predict(frames), centres)[6:].all()
    assert not found(forgetting.predict(frames), centres)[6:].any()


def test_a_change_of_light_on_a_pan_is_not_a_cut_when_the_shift_stays_clear():
    """cut_max_response: a frame whose pixels all changed but that still shows one clear shift (a pan with a
    change of exposure) is followed, not rescanned; a different shot shows no clear shift and is rescanned."""
    frames, _ = frames_with_ball(4, pan=(6, 0))
    brighter = np.clip(frames[3].astype(np.int16) + 60, 0, 255).astype(np.uint8)
    other = 255 - frames_with_ball(1, seed=5)[0][0]
    n_full = len(tile_grid(W, H, tile_size=TILE, overlap=0.25)) + 1
    by_difference = guided(SmallBallDetector())
    by_difference.predict(frames[:3] + [brighter])
    assert by_difference.views_run[3] == n_full
    by_shift = guided(SmallBallDetector(), cut_max_response=0.2)
    by_shift.predict(frames[:3] + [brighter])
    assert by_shift.views_run[3] < n_full
    cut = guided(SmallBallDetector(), cut_max_response=0.2)
    cut.predict(frames[:3] + [other])
    assert cut.views_run[3] == n_full


def test_a_low_score_detection_starts_no_guide_but_continues_one():
    class Scored(SmallBallDetector):
        def __init__(self, score):
            super().__init__()
            self.score = score

        def predict(self, images):
            out = super().predict(images)
            for d in out:
                d.scores = np.full(len(d), self.score)
            return out

    frames, centres = frames_with_ball(6)
    low = guided(Scored(0.3), new_guide_score=0.5)
    assert not found(low.predict(frames), centres)[1:].any()  # the ball at 0.3 never starts a guide
    det = guided(Scored(0.9), new_guide_score=0.5)
    out = []
    for i, f in enumerate(frames):  # found at 0.9 in a full scan, then at 0.3: the guide goes on
        det.detector.score = 0.9 if i == 0 else 0.3
        out += det.predict([f])
    assert found(out, centres).all()


def test_with_tiles_of_two_sizes_each_size_follows_the_ball():
    """The detector sees the ball only in the small tiles: the large tiles, which hold the predicted centre with
    more room, must not take the guide from them."""
    frames, centres = frames_with_ball(12)
    inner = SmallBallDetector()
    det = guided(inner, tile_size=[TILE, 2 * TILE])
    out = [d for i in range(0, len(frames), 4) for d in det.predict(frames[i:i + 4])]
    assert found(out, centres).all()
    n_full = sum(len(tile_grid(W, H, tile_size=s, overlap=0.25)) for s in (TILE, 2 * TILE)) + 1
    assert det.views_run[0] == n_full
    assert max(det.views_run[1:]) < n_full / 3


def _first_scan_misses_the_ball(n):
    """A ball moving through ``n`` frames, hidden from the detector in frame 0 (the first full scan)."""
    frames, centres = frames_with_ball(n)
    cx, cy = centres[0].astype(int)
    frames[0][cy - 4:cy + 4, cx - 4:cx + 4] = (128, 128, 128)
    return frames, centres


def test_look_back_finds_the_ball_before_the_scan_that_first_saw_it():
    frames, centres = _first_scan_misses_the_ball(8)
    ahead = guided(SmallBallDetector(), scan_every=4)
    inner = SmallBallDetector()
    back = guided(inner, scan_every=4, look_back=True)
    # nothing guides the forward pass to the ball before the scan of frame 4 sees it
    assert found(ahead.predict(frames), centres).tolist() == [False] * 4 + [True] * 4
    assert found(back.predict(frames), centres).tolist() == [False] + [True] * 7
    n_full = len(tile_grid(W, H, tile_size=TILE, overlap=0.25)) + 1
    assert back.views_run[0] == back.views_run[4] == n_full
    assert all(b > a for a, b in zip(ahead.views_run[1:4], back.views_run[1:4]))  # tiles run on the way back
    assert inner.views == sum(back.views_run)


def test_look_back_streams_a_batch_once_the_scan_after_its_frames_has_come():
    frames, centres = _first_scan_misses_the_ball(8)
    pulled = []

    def batches():
        for i in range(0, len(frames), 3):
            pulled.append(i)
            yield frames[i:i + 3]

    stream = guided(SmallBallDetector(), scan_every=4, look_back=True).predict_stream(batches())
    first = next(stream)
    assert pulled == [0, 3]  # frames 0-2 wait for the scan of frame 4, in the second batch
    out = [first, *stream]
    assert [len(b) for b in out] == [3, 3, 2]
    whole = guided(SmallBallDetector(), scan_every=4, look_back=True).predict(frames)
    for a, b in zip([d for batch in out for d in batch], whole, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
    assert found(whole, centres)[1:].all()


def test_look_back_does_not_cross_a_cut():
    frames, centres = _first_scan_misses_the_ball(4)
    cut = 255 - frames[3]  # another shot, with a ball where this shot's ball would be
    cx, cy = centres[3].astype(int)
    cut[cy - 4:cy + 4, cx - 4:cx + 4] = (255, 0, 0)
    ahead, back = guided(SmallBallDetector()), guided(SmallBallDetector(), look_back=True)
    out = back.predict(frames[:3] + [cut])
    ahead.predict(frames[:3] + [cut])
    assert back.views_run == ahead.views_run  # frames 1-2 were not searched from the new shot's ball
    assert not found(out[:3], centres[:3]).any() and found(out[3:], centres[3:]).all()


def test_iter_detections_pairs_each_frame_with_its_result_when_guided_tiling_looks_back(tmp_path):
    import cv2

    from pseudolabel.label import iter_detections
    from pseudolabel.records import Frame

    frames, truth = [], {}
    for vid, start in (("a", (150, 100)), ("b", (400, 250))):
        ims, centres = frames_with_ball(6, start=start, velocity=(12, -6))
        for i, (im, c) in enumerate(zip(ims, centres)):
            name = f"{vid}_{i}.jpg"
            cv2.imwrite(str(tmp_path / name), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
            frames.append(Frame(id=len(frames) + 1, file_name=name, width=W, height=H, video_id=vid, frame_index=i))
            truth[name] = c
    det = guided(SmallBallDetector(), scan_every=4, look_back=True)
    out = list(iter_detections(det, frames, frames_dir=tmp_path, class_ids=None, score_threshold=0.0,
                               batch_size=4, progress=False))
    assert [f.file_name for f, _, _ in out] == [f.file_name for f in frames]
    for f, target, _ in out:
        c = (target.boxes[:, :2] + target.boxes[:, 2:]) / 2
        assert (np.linalg.norm(c - truth[f.file_name], axis=1) <= 3).any(), f.file_name
