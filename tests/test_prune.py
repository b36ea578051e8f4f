import numpy as np
import pytest

from pseudolabel.prune import (
    HeuristicsConfig,
    apply_heuristics,
    aspect_mask,
    degenerate_mask,
    log_size_outlier_mask,
    overlap_mask,
    size_mask,
    static_mask,
)
from pseudolabel.records import Box, Dataset, Frame


def test_overlap_mask_is_independent_of_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [51, 50, 61, 60], [100, 0, 110, 10]], float)
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.5])
    expected_pruned = {1, 2}  # lower-scoring partner of each overlapping pair
    assert set(np.flatnonzero(overlap_mask(boxes, scores))) == expected_pruned
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(len(boxes))
        mask = overlap_mask(boxes[perm], scores[perm])
        assert set(perm[mask]) == expected_pruned


def test_overlap_mask_chain_is_transitive():
    # A overlaps B, B overlaps C, A does not overlap C: NMS keeps A, drops B, so C survives.
    boxes = np.array([[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    np.testing.assert_array_equal(overlap_mask(boxes, scores, iou_threshold=0.5), [False, True, False])
    # Reversed order, same result.
    np.testing.assert_array_equal(overlap_mask(boxes[::-1], scores[::-1], iou_threshold=0.5), [False, True, False])
    assert overlap_mask(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_aspect_mask():
    boxes = [[0, 0, 10, 10], [0, 0, 19, 10], [0, 0, 20, 10], [0, 0, 10, 30], [0, 0, 0, 10]]
    np.testing.assert_array_equal(aspect_mask(boxes, max_aspect=2.0), [False, False, True, True, True])


def test_size_mask():
    boxes = [[0, 0, 3, 10], [0, 0, 4, 4], [0, 0, 50, 50], [0, 0, 51, 20]]
    np.testing.assert_array_equal(size_mask(boxes, min_size=4.0), [True, False, False, False])
    np.testing.assert_array_equal(size_mask(boxes, min_size=4.0, max_size=50), [True, False, False, True])
    np.testing.assert_array_equal(size_mask(boxes, min_size=None, max_size=None), [False] * 4)


def test_degenerate_mask():
    boxes = [
        [10, 10, 20, 20],  # fine
        [10, 10, 10, 20],  # zero width
        [20, 10, 10, 20],  # x2 < x1
        [np.nan, 0, 5, 5],  # non-finite
        [95, 0, 105, 10],  # half inside a 100-wide image: kept at min_visible=0.5
        [96, 0, 106, 10],  # 40 % inside
        [-50, -50, -40, -40],  # fully outside
    ]
    np.testing.assert_array_equal(
        degenerate_mask(boxes, width=100, height=100),
        [False, True, True, True, False, True, True],
    )
    # Per-box image sizes: the first box falls outside a 15-pixel image.
    np.testing.assert_array_equal(
        degenerate_mask([[10, 10, 20, 20], [10, 10, 20, 20]], width=[15, 100], height=[15, 100]),
        [True, False],
    )


def test_log_size_outlier_prunes_big_box_among_small():
    rng = np.random.default_rng(1)
    sides = rng.uniform(9, 11, size=20)
    boxes = [[0, 0, s, s] for s in sides] + [[0, 0, 100, 100]]
    groups = ["v1"] * 21
    mask = log_size_outlier_mask(boxes, groups, k=3.0, min_group=8)
    assert mask.tolist() == [False] * 20 + [True]
    # The same box in a video of its own (too small a group) is untouched.
    mask = log_size_outlier_mask(boxes, ["v1"] * 20 + ["v2"], k=3.0, min_group=8)
    assert not mask.any()


def test_log_size_outlier_with_zero_mad_falls_back_to_std():
    boxes = [[0, 0, 10, 10]] * 19 + [[0, 0, 100, 100]]
    mask = log_size_outlier_mask(boxes, np.zeros(20), k=3.0, min_group=8)
    assert mask.tolist() == [False] * 19 + [True]


def test_static_mask_prunes_fixed_box_not_moving_ball():
    logo = [[5, 5, 25, 25]] * 10
    ball = [[30 + 20 * i, 100, 40 + 20 * i, 110] for i in range(10)]
    boxes = np.array(logo + ball, float)
    frames = list(range(10)) * 2
    mask = static_mask(boxes, ["v"] * 20, frames, iou_threshold=0.7, min_fraction=0.3, min_frames=5)
    assert mask.tolist() == [True] * 10 + [False] * 10


def test_static_mask_counts_negatives_and_groups():
    # Same place in 6 frames: enough for a video of 10 frames, not for one of 30 (0.3 * 30 = 9).
    boxes = [[5, 5, 25, 25]] * 6
    frames = list(range(6))
    assert static_mask(boxes, ["v"] * 6, frames, n_frames_per_group={"v": 10}).all()
    assert not static_mask(boxes, ["v"] * 6, frames, n_frames_per_group={"v": 30}).any()
    # Boundary: exactly min_frames frames is enough, one fewer is not.
    assert static_mask(boxes[:5], ["v"] * 5, frames[:5], min_frames=5).all()
    assert not static_mask(boxes[:4], ["v"] * 4, frames[:4], min_frames=5).any()
    # Split over two videos, 3 frames each: below min_frames=5 in both.
    assert not static_mask(boxes, ["a"] * 3 + ["b"] * 3, frames).any()
    # Several boxes in one frame count as one frame.
    assert not static_mask(boxes, ["v"] * 6, [0, 0, 0, 1, 1, 2]).any()


def _dataset():
    frames = [Frame(id=i + 1, file_name=f"v/{i}.jpg", width=100, height=100, video_id="v", frame_index=i)
              for i in range(10)]
    frames.append(Frame(id=11, file_name="w/0.jpg", width=100, height=100, video_id="w", frame_index=0))
    boxes = []
    for i in range(10):  # a lens-dirt detection in every frame of video v
        boxes.append(Box(image_id=i + 1, xyxy=(5, 5, 15, 15), score=0.5))
    boxes += [
        Box(image_id=1, xyxy=(50, 50, 60, 60), score=0.9),  # ball
        Box(image_id=1, xyxy=(51, 50, 61, 60), score=0.6),  # duplicate of the ball
        Box(image_id=2, xyxy=(50, 50, 52, 52), score=0.9),  # too small
        Box(image_id=3, xyxy=(20, 20, 50, 30), score=0.9),  # aspect 3
        Box(image_id=4, xyxy=(90, 90, 130, 130), score=0.9),  # mostly outside
        Box(image_id=11, xyxy=(10, 10, 20, 20), score=0.9),  # alone in video w
        Box(image_id=5, xyxy=(0, 0, 0, 0), score=0.9, decision="pruned", reason="manual"),
    ]
    return Dataset(frames=frames, boxes=boxes)


def test_apply_heuristics_counts_and_reasons():
    ds = _dataset()
    counts = apply_heuristics(ds, HeuristicsConfig(), round=2)
    assert counts == {"degenerate": 1, "too_small": 1, "too_large": 0, "aspect": 1,
                      "log_size_outlier": 0, "static": 10, "overlap": 1}
    reasons = [b.reason for b in ds.boxes]
    assert reasons == ["static"] * 10 + ["", "overlap", "too_small", "aspect", "degenerate", "", "manual"]
    assert [b.kept for b in ds.boxes[10:]] == [True, False, False, False, False, True, False]
    assert all(b.extra["pruned_round"] == 2 for b in ds.boxes[:16] if not b.kept)
    assert "pruned_round" not in ds.boxes[16].extra  # pruned before: untouched


def test_apply_heuristics_disabled_rules_and_determinism():
    cfg = HeuristicsConfig(degenerate=False, min_size=None, max_aspect=None, log_size=False,
                           static=False, overlap_iou=None)
    ds = _dataset()
    assert sum(apply_heuristics(ds, cfg, round=1).values()) == 0
    assert sum(b.kept for b in ds.boxes) == 16
    a, b = _dataset(), _dataset()
    apply_heuristics(a, HeuristicsConfig(), round=1)
    apply_heuristics(b, HeuristicsConfig(), round=1)
    assert a == b


def test_apply_heuristics_too_large_and_unknown_image():
    ds = Dataset(frames=[Frame(id=1, file_name="a.jpg", width=500, height=500, video_id="v", frame_index=0)],
                 boxes=[Box(image_id=1, xyxy=(0, 0, 300, 300))])
    counts = apply_heuristics(ds, HeuristicsConfig(max_size=200), round=1)
    assert counts["too_large"] == 1 and ds.boxes[0].reason == "too_large"
    ds.boxes.append(Box(image_id=7, xyxy=(0, 0, 10, 10)))
    with pytest.raises(ValueError, match="unknown image ids"):
        apply_heuristics(ds, HeuristicsConfig(), round=1)


def test_static_mask_blockwise_equals_whole(monkeypatch):
    import pseudolabel.prune.heuristics as h

    rng = np.random.default_rng(3)
    xy = rng.choice([0.0, 40.0, 80.0], size=(60, 2)) + rng.uniform(0, 1, size=(60, 2))
    boxes = np.concatenate([xy, xy + 10], axis=1)
    groups = rng.choice(["a", "b"], size=60)
    frames = rng.integers(0, 12, size=60)
    whole = static_mask(boxes, groups, frames, min_frames=3)
    monkeypatch.setattr(h, "_IOU_BLOCK_ELEMENTS", 70)  # one or two rows per block
    assert whole.any() and not whole.all()
    np.testing.assert_array_equal(static_mask(boxes, groups, frames, min_frames=3), whole)


def test_overlap_centre_suppresses_shifted_duplicates_of_a_tiny_ball():
    # two detections of one 8-px ball, 3 px apart: IoU 0.45/0.6... here 0.23, below any sane IoU threshold
    boxes = np.array([[100, 100, 108, 108], [103, 103, 111, 111], [200, 200, 208, 208]], float)
    scores = [0.9, 0.8, 0.7]
    assert overlap_mask(boxes, scores, iou_threshold=0.3).tolist() == [False, False, False]
    assert overlap_mask(boxes, scores, iou_threshold=0.3, centre_factor=1.0).tolist() == [False, True, False]
    # the higher score survives whatever the order
    assert overlap_mask(boxes[::-1], scores[::-1], iou_threshold=0.3, centre_factor=1.0).tolist() == \
        [False, True, False]
