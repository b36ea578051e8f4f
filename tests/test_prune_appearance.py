"""The appearance check of the student rounds: tracks unlike round 0's kept boxes go whole, balls stay."""
import numpy as np
import pytest

from pseudolabel.prune.appearance import (
    AppearanceConfig,
    apply_appearance,
    clean_negative_mask,
    fit_ball_classifier,
    round0_examples,
    unlike_track_mask,
)
from pseudolabel.records import Box, Dataset, Frame


def test_unlike_track_mask_judges_each_track_by_its_mean():
    groups = ["a", "a", "a", "b", "b", ("box", 7)]
    p = [0.05, 0.9, 0.9, 0.1, 0.2, 0.1]  # a: one bad frame, mean 0.62; b: mean 0.15; a lone box at 0.1
    assert unlike_track_mask(groups, p, min_probability=0.2).tolist() == [False, False, False, True, True, True]
    assert not unlike_track_mask(groups, p, min_probability=0.1).any()
    assert unlike_track_mask([], [], min_probability=0.2).shape == (0,)


def test_fit_ball_classifier_separates_two_clusters():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.0, 1.0, (40, 16)), rng.normal(-1.0, 1.0, (200, 16))
    model = fit_ball_classifier(pos, neg)
    p = model.predict_proba(np.r_[np.full((1, 16), 1.0), np.full((1, 16), -1.0)])[:, 1]
    assert p[0] > 0.9 and p[1] < 0.1


def test_clean_negative_mask_leaves_out_the_negatives_that_look_like_positives():
    rng = np.random.default_rng(0)
    pos = rng.normal(1.0, 1.0, (40, 16))
    neg = np.r_[rng.normal(-1.0, 1.0, (190, 16)), rng.normal(1.0, 1.0, (10, 16))]  # the last 10: balls unconfirmed
    keep = clean_negative_mask(pos, neg, folds=5)
    assert keep.shape == (200,)
    assert not keep[190:].any() and keep[:190].mean() > 0.95


def _frames(videos=("v", "w"), n=4):
    return [Frame(id=10 * j + i + 1, file_name=f"{v}/{i:06d}.png", width=160, height=120, video_id=v,
                  frame_index=i) for j, v in enumerate(videos) for i in range(n)]


def test_round0_examples_take_negatives_only_where_round0_kept_a_box():
    frames = _frames()
    boxes = [Box(image_id=1, xyxy=(0, 0, 8, 8), score=0.9, id=1),
             Box(image_id=2, xyxy=(0, 0, 8, 8), score=0.3, id=2),
             Box(image_id=11, xyxy=(0, 0, 8, 8), score=0.3, id=3),  # video w: nothing kept, may be its ball
             Box(image_id=3, xyxy=(0, 0, 8, 8), score=0.3, id=4)]
    boxes[1].prune("unconfirmed", pruned_round=0)
    boxes[2].prune("unconfirmed", pruned_round=0)
    boxes[3].prune("overlap", pruned_round=0)  # a duplicate, not a verdict on the object
    assert round0_examples(Dataset(frames=frames, boxes=boxes)) == ([1], [2])


def _write_scene(path, rng, centres, *, red):
    import cv2

    img = np.clip(rng.normal(0, 12, (120, 160, 3)) + np.array([50, 130, 60]), 0, 255).astype(np.uint8)
    for cx, cy in centres:
        if red:
            cv2.rectangle(img, (cx - 7, cy - 7), (cx + 7, cy + 7), (20, 20, 220), -1)  # BGR: red
        else:
            cv2.circle(img, (cx, cy), 7, (40, 220, 235), -1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def test_apply_appearance_prunes_the_track_that_looks_like_round0_rejects(tmp_path):
    """Round 0 kept yellow discs and left red squares unconfirmed; in round 1 a track of red squares goes whole,
    the track of discs and a lone disc stay."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    n = 24
    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.png", width=160, height=120, video_id="v", frame_index=i)
              for i in range(n)]
    disc = lambda i: (20 + 4 * i, 30)  # noqa: E731
    square = lambda i: (20 + 4 * i, 90)  # noqa: E731
    for i, f in enumerate(frames):  # discs and squares in separate images: each crop shows one object
        _write_scene(tmp_path / f.file_name, rng, [disc(i)], red=False)
        _write_scene(tmp_path / "r" / f.file_name, rng, [square(i)], red=True)
    frames_r = [Frame(id=100 + f.id, file_name=f"r/{f.file_name}", width=160, height=120, video_id="v",
                      frame_index=f.frame_index + n) for f in frames]

    def box(frame_id, c, *, id, **extra):
        return Box(image_id=frame_id, xyxy=(c[0] - 8.0, c[1] - 8.0, c[0] + 8.0, c[1] + 8.0), score=0.8, id=id,
                   extra=extra)

    round0 = [box(f.id, disc(i), id=i + 1) for i, f in enumerate(frames)]
    round0 += [box(f.id, square(i), id=100 + i) for i, f in enumerate(frames_r)]
    for b in round0[n:] + round0[n - 3:n]:  # and three discs the hysteresis had no seed for
        b.prune("unconfirmed", pruned_round=0)
    ds0 = Dataset(frames=frames + frames_r, boxes=round0)

    labels = [box(f.id, disc(i), id=i + 1, track_id="v:1") for i, f in enumerate(frames[:8])]
    labels.append(box(frames[9].id, disc(9), id=50))
    labels += [box(f.id, square(i), id=200 + i, track_id="v:2") for i, f in enumerate(frames_r[:8])]
    ds1 = Dataset(frames=frames + frames_r, boxes=labels)
    try:
        counts = apply_appearance(ds1, ds0, AppearanceConfig(enabled=True, clean_folds=5), round=1,
                                  frames_dir=tmp_path)
    except FileNotFoundError as e:
        pytest.skip(f"EfficientNet-Lite0 ImageNet weights not installed: {e}")
    pruned = {b.id for b in ds1.boxes if not b.kept}
    assert pruned == set(range(200, 208)) and counts == {"appearance": 8}
    assert all(b.reason == "appearance" and b.extra["pruned_round"] == 1 for b in ds1.boxes if not b.kept)
    assert all(0.0 <= b.extra["ball_probability"] <= 1.0 for b in ds1.boxes)
    info = ds1.info["appearance"]  # the three discs taught as negatives were left out (a square may be too)
    assert info["positives"] == n - 3 and info["negatives"] + info["negatives_left_out"] == n + 3
    assert 3 <= info["negatives_left_out"] <= 6

    def fresh():
        return Dataset(frames=frames + frames_r, boxes=[Box(image_id=b.image_id, xyxy=b.xyxy, score=b.score, id=b.id,
                                                            extra=dict(b.extra)) for b in labels])

    ds1_default = fresh()
    assert apply_appearance(ds1_default, ds0, AppearanceConfig(enabled=True), round=1,
                            frames_dir=tmp_path) == {"appearance": 8}  # by default every unconfirmed box teaches
    assert ds1_default.info["appearance"] == {"positives": n - 3, "negatives": n + 3, "negatives_left_out": 0}

    ds1_again = fresh()
    assert apply_appearance(ds1_again, ds0, AppearanceConfig(enabled=True), round=0,
                            frames_dir=tmp_path) == {"appearance": 0}  # round 0 is the anchor, never judged
    assert apply_appearance(ds1_again, ds0, AppearanceConfig(enabled=True, min_examples=n + 1), round=1,
                            frames_dir=tmp_path) == {"appearance": 0}  # too few examples to fit on
    assert all(b.kept for b in ds1_again.boxes)
