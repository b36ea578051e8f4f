import numpy as np
import pytest

from pseudolabel.prune.features import (
    FeatureOutlierConfig,
    apply_feature_outliers,
    crop_embeddings,
    load_features,
    outlier_mask,
    outlier_scores,
    square_crop,
    standardise_per_group,
)
from pseudolabel.records import Box, Dataset, Frame


def test_standardise_removes_per_video_offset():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(12, 6))
    shift = np.array([5.0, -3.0, 10.0, 0.5, 2.0, -7.0])
    X = np.concatenate([base, base + shift])
    groups = np.array(["a"] * 12 + ["b"] * 12)
    assert np.abs(X[:12].mean(0) - X[12:].mean(0)).max() > 0.4  # the offset is there before
    Z = standardise_per_group(X, groups)
    np.testing.assert_allclose(Z[:12], Z[12:], atol=1e-12)  # ... and gone after
    np.testing.assert_allclose(np.median(Z[:12], axis=0), 0, atol=1e-12)
    mad = np.median(np.abs(Z[:12]), axis=0)
    np.testing.assert_allclose(mad, 1 / 1.4826, rtol=1e-9)  # unit robust sigma


def test_standardise_pools_small_groups():
    X = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])
    Z = standardise_per_group(X, ["a", "b", "c"], min_group=2)  # each alone: pooled, not zeroed
    # pooled column 0: median 3, MAD 2 -> sigma 2.9652
    np.testing.assert_allclose(Z[:, 0], [-2 / 2.9652, 0, 2 / 2.9652], atol=1e-9)


@pytest.mark.parametrize("method", ["isolation_forest", "lof", "knn"])
def test_foreign_vector_scores_highest(method):
    rng = np.random.default_rng(1)
    X = rng.normal(0, 1, size=(40, 8))
    X[17] = rng.normal(0, 1, size=8) + 6.0  # from another distribution
    s = outlier_scores(X, method=method, n_neighbors=10)
    assert s.shape == (40,)
    assert int(np.argmax(s)) == 17
    assert s[17] > np.sort(s)[-2] * 1.1


def test_outlier_mask_criteria():
    s = np.array([0.1, 0.9, 0.2, 0.15, 0.8, 0.12, 0.11, 0.13, 0.14, 0.1])
    assert set(np.flatnonzero(outlier_mask(s, contamination=0.2))) == {1, 4}
    assert set(np.flatnonzero(outlier_mask(s, contamination=0.0))) == set()
    assert set(np.flatnonzero(outlier_mask(s, threshold=0.5))) == {1, 4}
    assert set(np.flatnonzero(outlier_mask(s, robust_z=5.0))) == {1, 4}
    assert not outlier_mask(np.full(10, 0.3), robust_z=3.0).any()  # nothing stands out
    with pytest.raises(ValueError):
        outlier_mask(s, contamination=0.1, threshold=0.5)


def _video_frames(video_id, n, start_id):
    return [Frame(id=start_id + i, file_name=f"{video_id}/{i:06d}.jpg", width=200, height=200, video_id=video_id,
                  frame_index=i) for i in range(n)]


def test_apply_feature_outliers_prunes_foreign_box_and_respects_video_offset():
    rng = np.random.default_rng(2)
    frames = _video_frames("a", 20, 1) + _video_frames("b", 10, 101)
    boxes, feats = [], {}
    for i, f in enumerate(frames):
        boxes.append(Box(image_id=f.id, xyxy=(10, 10, 20, 20), score=0.9, id=i + 1))
        v = rng.normal(0, 1, size=16)
        feats[i + 1] = v + (8.0 if f.video_id == "b" else 0.0)  # video b: another venue, same object
    feats[5] = rng.normal(0, 1, size=16) * 0.5 + np.r_[np.full(8, 7.0), np.full(8, -7.0)]  # a foreign object
    ds = Dataset(frames=frames, boxes=boxes)
    cfg = FeatureOutlierConfig(method="knn", contamination=None, robust_z=8.0, pca_variance=None)
    counts = apply_feature_outliers(ds, feats, cfg, round=3)
    assert counts == {"feature_outlier": 1}
    pruned = [b for b in ds.boxes if not b.kept]
    assert [b.id for b in pruned] == [5]
    assert pruned[0].reason == "feature_outlier" and pruned[0].extra["pruned_round"] == 3
    assert all("outlier_score" in b.extra for b in ds.boxes)
    assert max(ds.boxes, key=lambda b: b.extra["outlier_score"]).id == 5
    # The shipped defaults (knn on PCA components, robust z 5) find the same box and only it.
    ds_default = Dataset(frames=frames, boxes=[Box(image_id=b.image_id, xyxy=b.xyxy, id=b.id) for b in boxes])
    assert apply_feature_outliers(ds_default, feats, FeatureOutlierConfig(), round=1) == {"feature_outlier": 1}
    assert [b.id for b in ds_default.boxes if not b.kept] == [5]
    # Without per-video standardisation the shifted video b looks foreign as a whole.
    ds2 = Dataset(frames=frames, boxes=[Box(image_id=b.image_id, xyxy=b.xyxy, id=b.id) for b in boxes])
    cfg2 = FeatureOutlierConfig(method="knn", contamination=None, robust_z=8.0, pca_variance=None,
                                per_video_standardise=False)
    apply_feature_outliers(ds2, feats, cfg2, round=3)
    top = sorted(ds2.boxes, key=lambda b: -b.extra["outlier_score"])[:10]
    assert sum(frames[b.id - 1].video_id == "b" for b in top) >= 5


def test_apply_feature_outliers_needs_min_boxes():
    frames = _video_frames("a", 5, 1)
    ds = Dataset(frames=frames, boxes=[Box(image_id=f.id, xyxy=(0, 0, 5, 5), id=f.id) for f in frames])
    feats = {f.id: np.full(4, float(f.id)) for f in frames}
    assert apply_feature_outliers(ds, feats, FeatureOutlierConfig(min_boxes=10), round=1) == {"feature_outlier": 0}
    assert all(b.kept and "outlier_score" not in b.extra for b in ds.boxes)


def test_load_features_roundtrip(tmp_path):
    np.savez(tmp_path / "features.npz", ids=np.array([3, 7]), features=np.array([[1.0, 2.0], [3.0, 4.0]]))
    f = load_features(tmp_path / "features.npz")
    assert sorted(f) == [3, 7]
    np.testing.assert_array_equal(f[7], [3.0, 4.0])
    assert load_features(tmp_path / "missing.npz") == {}


def test_square_crop_centres_box_and_pads_border():
    img = np.zeros((50, 50, 3), np.uint8)
    img[20:30, 20:30] = 255  # a 10 px white square
    crop = square_crop(img, (20, 20, 30, 30), size=20, context=2.0, min_side=4)
    assert crop.shape == (20, 20, 3)
    assert crop[10, 10].min() == 255 and crop[1, 1].max() == 0  # centre white, corner background
    edge = square_crop(img, (0, 0, 10, 10), size=20, context=2.0, min_side=4)  # half outside
    assert edge.shape == (20, 20, 3)


def _scene(rng, *, red_square_at=None):
    import cv2

    img = np.clip(rng.normal(0, 12, (120, 160, 3)) + np.array([60, 130, 50]), 0, 255).astype(np.uint8)
    boxes = []
    for j, (cx, cy) in enumerate([(30, 30), (90, 40), (130, 90)]):
        if red_square_at == j:
            cv2.rectangle(img, (cx - 7, cy - 7), (cx + 7, cy + 7), (220, 20, 20), -1)
        else:
            cv2.circle(img, (cx, cy), 7, (235, 220, 40), -1, cv2.LINE_AA)
        boxes.append((cx - 8, cy - 8, cx + 8, cy + 8))
    return img, boxes


def test_crop_embedding_red_square_is_outlier():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    scenes = [_scene(rng, red_square_at=1 if i == 2 else None) for i in range(6)]
    try:
        emb = crop_embeddings([s[0] for s in scenes], [s[1] for s in scenes], crop_size=64)
    except FileNotFoundError as e:
        pytest.skip(f"EfficientNet-Lite0 ImageNet weights not installed: {e}")
    assert emb.shape == (18, 1280) and emb.dtype == np.float32
    scores = outlier_scores(standardise_per_group(emb, np.zeros(18)), method="knn", n_neighbors=5)
    red = 2 * 3 + 1
    assert int(np.argmax(scores)) == red
