"""Synthetic suite: exact, deterministic ground truth that matches what is drawn."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pseudolabel import synth
from pseudolabel.coco import load_coco

W, H, N = 320, 180, 12


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    gt = synth.make_suite(out, n_videos=6, n_frames=N, width=W, height=H, seed=7)
    return out, gt


def test_gt_is_deterministic_and_seed_dependent(tmp_path):
    a = synth.render_video(tmp_path / "a.mp4", seed=11, venue="clay", n_frames=10, width=W, height=H)
    b = synth.render_video(tmp_path / "b.mp4", seed=11, venue="clay", n_frames=10, width=W, height=H)
    c = synth.render_video(tmp_path / "c.mp4", seed=12, venue="clay", n_frames=10, width=W, height=H)
    assert len(a) == 10 and a == b
    assert a != c
    # the mp4v encoder is deterministic here: identical bytes
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_boxes_lie_inside_the_frame(suite):
    _, gt = suite
    ds = load_coco(gt)
    assert ds.boxes
    xyxy = ds.xyxy()
    assert (xyxy[:, 0] >= 0).all() and (xyxy[:, 1] >= 0).all()
    assert (xyxy[:, 2] <= W).all() and (xyxy[:, 3] <= H).all()
    assert ((xyxy[:, 2] - xyxy[:, 0]) >= synth.MIN_VISIBLE_PX).all()
    assert ((xyxy[:, 3] - xyxy[:, 1]) >= synth.MIN_VISIBLE_PX).all()


@pytest.mark.parametrize("venue,seed", [("clay", 5), ("hard", 6), ("night", 6)])
def test_boxes_match_where_the_ball_was_drawn(venue, seed):
    kw = dict(seed=seed, venue=venue, n_frames=16, width=W, height=H, fps=25.0)
    with_ball, gt = synth._render_frames(**kw)
    without, gt2 = synth._render_frames(**kw, draw_ball=False)
    assert gt == gt2
    centred = 0
    for fa, fb, boxes in zip(with_ball, without, gt, strict=True):
        drawn = np.abs(fa.astype(np.int16) - fb.astype(np.int16)).max(axis=2) > 0
        if not boxes:
            continue
        (x1, y1, x2, y2), = boxes
        ys, xs = np.nonzero(drawn)
        assert len(xs), "a box where no ball was drawn"
        # ball pixels fill the box (nothing drawn in front of its visible part)
        inner = drawn[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))]
        assert inner.mean() > 0.6
        whole = abs((x2 - x1) - (y2 - y1)) < 1e-6 and x1 > 1 and y1 > 1 and x2 < W - 1 and y2 < H - 1
        if whole:  # unclipped, unoccluded: motion blur is symmetric, so the drawn extent is centred on the box
            assert (xs.min() + xs.max() + 1) / 2 == pytest.approx((x1 + x2) / 2, abs=1.5)
            assert (ys.min() + ys.max() + 1) / 2 == pytest.approx((y1 + y2) / 2, abs=1.5)
            assert xs.max() + 1 - xs.min() >= x2 - x1 - 1 and ys.max() + 1 - ys.min() >= y2 - y1 - 1
            centred += 1
    assert centred >= 2


def test_visible_box_clips_and_occludes():
    assert synth.visible_box(10.0, 10.0, 5.0, width=100, height=100) == (5.0, 5.0, 15.0, 15.0)
    assert synth.visible_box(2.0, 50.0, 5.0, width=100, height=100) == (0.0, 45.0, 7.0, 55.0)
    assert synth.visible_box(-6.0, 50.0, 5.0, width=100, height=100) is None
    occ = np.zeros((100, 100), bool)
    occ[:, 10:] = True  # covers the right half
    box = synth.visible_box(10.0, 10.0, 5.0, width=100, height=100, occluder=occ)
    assert box == pytest.approx((5.0, 5.0, 10.0, 15.0), abs=0.07)
    occ[:, 8:] = True  # about 75 % covered
    assert synth.visible_box(10.0, 10.0, 5.0, width=100, height=100, occluder=occ) is None


def test_swept_box_covers_the_blur_streak():
    # the disc swept along [-blur/2, blur/2]: the disc's box widened by half the blur on each side
    assert synth.visible_box(10.0, 10.0, 5.0, width=100, height=100, blur=(6.0, -2.0)) == (2.0, 4.0, 18.0, 16.0)
    assert synth.visible_box(10.0, 10.0, 5.0, width=100, height=100, blur=(0.0, 0.0)) == (5.0, 5.0, 15.0, 15.0)
    occ = np.zeros((100, 100), bool)
    occ[:, 10:] = True  # covers everything right of the centre
    box = synth.visible_box(10.0, 10.0, 5.0, width=100, height=100, occluder=occ, blur=(6.0, 0.0))
    assert box == pytest.approx((2.0, 5.0, 10.0, 15.0), abs=0.07)
    # without blur the occluded path gives the disc's visible part, as before
    assert synth.visible_box(10.0, 10.0, 5.0, width=100, height=100, occluder=occ, blur=(0.0, 0.0)) == \
        synth.visible_box(10.0, 10.0, 5.0, width=100, height=100, occluder=occ)
    with pytest.raises(ValueError, match="gt_extent"):
        synth._render_frames(seed=1, venue="clay", n_frames=1, width=W, height=H, fps=25.0, gt_extent="streak")


def test_swept_ground_truth_holds_the_disc_and_the_drawn_streak(tmp_path):
    kw = dict(seed=5, venue="clay", n_frames=16, width=W, height=H, fps=25.0)
    frames, disc = synth._render_frames(**kw)
    frames2, swept = synth._render_frames(**kw, gt_extent="swept")
    without, _ = synth._render_frames(**kw, draw_ball=False)
    assert all(np.array_equal(a, b) for a, b in zip(frames, frames2, strict=True))  # same video, other boxes
    wider = 0
    for d, s, fa, fb in zip(disc, swept, frames, without, strict=True):
        assert len(d) == len(s)
        for (a1, b1, a2, b2), (x1, y1, x2, y2) in zip(d, s, strict=True):
            assert x1 <= a1 and y1 <= b1 and x2 >= a2 and y2 >= b2
            wider += (x2 - x1) - (a2 - a1) > 1.0
            drawn = np.abs(fa.astype(np.int16) - fb.astype(np.int16)).max(axis=2) > 8
            ys, xs = np.nonzero(drawn)
            if x1 > 1 and y1 > 1 and x2 < W - 1 and y2 < H - 1:  # the visible streak lies in the swept box
                assert xs.min() >= x1 - 1.5 and xs.max() + 1 <= x2 + 1.5
    assert wider >= 3
    gt = synth.make_suite(tmp_path, n_videos=1, n_frames=4, width=W, height=H, seed=7, gt_extent="swept")
    assert json.loads((tmp_path / "suite.json").read_text())["params"]["gt_extent"] == "swept"
    assert load_coco(gt).boxes


def test_sprite_centroid_is_the_ball_centre():
    x0, y0, rgb, alpha = synth.render_ball_sprite("tennis", cx=20.3, cy=15.7, radius=5.0, rotation=np.eye(3),
                                                 light=np.array([0.0, -0.6, 0.8]))
    ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]]
    cx = x0 + ((xs + 0.5) * alpha).sum() / alpha.sum()
    cy = y0 + ((ys + 0.5) * alpha).sum() / alpha.sum()
    assert (cx, cy) == pytest.approx((20.3, 15.7), abs=0.02)
    assert alpha.sum() == pytest.approx(np.pi * 25, rel=0.02)


def test_coco_file_loads_everywhere(suite):
    from pycocotools.coco import COCO

    out, gt = suite
    coco = COCO(str(gt))
    assert len(coco.getImgIds()) == 6 * N
    assert coco.loadCats(coco.getCatIds()) == [{"id": 1, "name": "ball"}]
    ds = load_coco(gt)
    assert len(ds.frames) == 6 * N and len({f.id for f in ds.frames}) == 6 * N
    assert sorted(b.id for b in ds.boxes) == list(range(1, len(ds.boxes) + 1))
    assert {b.source for b in ds.boxes} == {"ground_truth"}
    assert {(b.score, b.round, b.category_id) for b in ds.boxes} == {(1.0, 0, 1)}
    f = next(f for f in ds.frames if f.video_id == "synth_03_wood" and f.frame_index == 5)
    assert f.file_name == "synth_03_wood/000005.jpg" and f.timestamp == pytest.approx(5 / 25.0)
    assert (f.width, f.height) == (W, H)
    for vid in {f.video_id for f in ds.frames}:
        cap = cv2.VideoCapture(str(out / f"{vid}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N
        assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (W, H)
        cap.release()


def test_negatives_exist(suite):
    _, gt = suite
    ds = load_coco(gt)
    per = ds.boxes_by_image()
    n_neg = sum(1 for f in ds.frames if not per[f.id])
    assert 0 < n_neg < len(ds.frames) // 2
    assert max(len(v) for v in per.values()) == 1


def test_venues_look_different(suite):
    out, _ = suite
    means = {}
    for vid in ("synth_00_grass", "synth_01_clay", "synth_02_hard"):
        ok, im = cv2.VideoCapture(str(out / f"{vid}.mp4")).read()
        assert ok
        means[vid] = im.reshape(-1, 3).mean(axis=0)  # BGR
    assert means["synth_00_grass"][1] > means["synth_00_grass"][2]  # green pitch
    assert means["synth_01_clay"][2] > means["synth_01_clay"][0] + 30  # red-orange clay
    for a, b in [("synth_00_grass", "synth_01_clay"), ("synth_01_clay", "synth_02_hard"),
                 ("synth_00_grass", "synth_02_hard")]:
        assert np.abs(means[a] - means[b]).max() > 20


def test_make_suite_is_idempotent_and_notices_new_parameters(tmp_path):
    gt = synth.make_suite(tmp_path, n_videos=2, n_frames=4, width=160, height=96, seed=1)
    meta = json.loads((tmp_path / "suite.json").read_text())
    assert meta["params"]["n_frames"] == 4 and [v["video_id"] for v in meta["videos"]] == [
        "synth_00_grass", "synth_01_clay"]
    stamp = gt.stat().st_mtime_ns, (tmp_path / "synth_00_grass.mp4").stat().st_mtime_ns
    assert synth.make_suite(tmp_path, n_videos=2, n_frames=4, width=160, height=96, seed=1) == gt
    assert (gt.stat().st_mtime_ns, (tmp_path / "synth_00_grass.mp4").stat().st_mtime_ns) == stamp
    synth.make_suite(tmp_path, n_videos=2, n_frames=5, width=160, height=96, seed=1)
    assert len(load_coco(gt).frames) == 10


def test_cli(tmp_path, capsys):
    synth.main(["--out", str(tmp_path), "--n-videos", "1", "--n-frames", "3", "--width", "160", "--height", "96"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "ground_truth.json")
    assert len(load_coco(tmp_path / "ground_truth.json").frames) == 3


def test_ball_sizes_are_mostly_10_to_30_px():
    cam = np.zeros(401)
    diam = []
    for seed in range(12):
        track = synth._simulate(np.random.default_rng(seed), n_frames=400, fps=25.0, width=640, ground_y=310.0,
                                cam_x=cam, scale=1.0)
        diam += sorted({round(2 * st[2], 3) for st in track if st is not None})
    diam = np.array(diam)
    assert len(diam) >= 30
    assert 0.5 < np.mean((diam >= 10) & (diam <= 30)) < 0.9
    assert (diam < 10).any() and (diam > 30).any()
