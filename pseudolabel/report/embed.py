"""Embeddings of boxes and frames for the report, and what is done with them: a 2-D PCA map,
k-means clusters and cosine nearest neighbours. All functions are pure over arrays.

Two box embeddings: the detector's own features (``features.npz``, student rounds) where they exist,
else a cheap appearance vector of the crop (:func:`pixel_features`: downsampled pixels + colour
histogram); :func:`cnn_features` (ImageNet EfficientNet-Lite0, as the feature pruner uses) is the
slower option. Frames are embedded by :func:`pixel_features` of the whole frame.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PIXELS = "pixels"
CNN = "cnn"
DETECTOR = "detector"
DESCRIPTIONS = {
    PIXELS: "downsampled crop pixels (12x12 RGB) + 4x4x4 colour histogram",
    CNN: "ImageNet EfficientNet-Lite0 features of the crop (1280-d)",
    DETECTOR: "per-box features of the detector itself (features.npz)",
}


def pixel_features(images: Sequence[np.ndarray], *, grid: tuple[int, int] = (12, 12), bins: int = 4,
                   hist_weight: float = 1.0) -> np.ndarray:
    """Appearance vector of each RGB uint8 image: its pixels resized to ``grid`` (w, h) in [0, 1],
    then a joint RGB histogram with ``bins`` per channel (sums to ``hist_weight``).

    Returns
    -------
    numpy.ndarray float32, shape (N, 3 * w * h + bins ** 3)
    """
    import cv2

    w, h = int(grid[0]), int(grid[1])
    out = np.zeros((len(images), 3 * w * h + bins ** 3), dtype=np.float32)
    for i, im in enumerate(images):
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"image {i}: expected (H, W, 3) RGB, got shape {im.shape}")
        small = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        q = (im.reshape(-1, 3).astype(np.int64) * bins) // 256
        hist = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins ** 3).astype(np.float32)
        out[i, : 3 * w * h] = small.ravel()
        out[i, 3 * w * h:] = hist_weight * hist / max(hist.sum(), 1.0)
    return out


def cnn_features(crops: Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
    """EfficientNet-Lite0 features (N, 1280) of square RGB uint8 crops (see
    :func:`pseudolabel.prune.features.crop_embeddings`, here fed whole crops)."""
    if not len(crops):
        return np.zeros((0, 1280), dtype=np.float32)
    from pseudolabel.prune.features import crop_embeddings

    # each crop is its own image and its box covers it exactly (context 1: the crop is the input)
    boxes = [[(0.0, 0.0, float(c.shape[1]), float(c.shape[0]))] for c in crops]
    return crop_embeddings(list(crops), boxes, crop_size=64, context=1.0, batch_size=batch_size)


def standardise(X) -> np.ndarray:
    """Columns to zero mean and unit variance (constant columns to 0)."""
    X = np.asarray(X, dtype=np.float64)
    if not len(X):
        return X
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)


def project_2d(X, *, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """PCA of the standardised rows to 2-D.

    Returns
    -------
    (numpy.ndarray (N, 2), list of 2 floats)
        The coordinates and the fraction of variance of each axis (zeros are padded when N < 3 or
        the data has fewer than two dimensions).
    """
    Z = standardise(X)
    n = len(Z)
    if n < 3 or Z.ndim != 2 or Z.shape[1] < 2:
        out = np.zeros((n, 2))
        if n and Z.ndim == 2 and Z.shape[1]:
            out[:, 0] = Z[:, 0]
        return out, [0.0, 0.0]
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    return pca.fit_transform(Z), [float(v) for v in pca.explained_variance_ratio_]


def kmeans_labels(X, *, n_clusters: int, seed: int = 0, max_dims: int = 20) -> np.ndarray:
    """k-means cluster of each row (on the first ``max_dims`` principal components of the
    standardised rows); ``n_clusters`` is capped at N; fewer than 2 rows give all zeros."""
    Z = standardise(X)
    n = len(Z)
    k = max(1, min(int(n_clusters), n))
    if n < 2 or k < 2:
        return np.zeros(n, dtype=int)
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    dims = min(max_dims, Z.shape[1], n)
    if dims < Z.shape[1]:
        Z = PCA(n_components=dims, random_state=seed).fit_transform(Z)
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(Z).astype(int)


def cosine_knn(X, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of every row by cosine similarity of the standardised rows.

    Returns
    -------
    (indices (N, k') int, similarities (N, k') float)
        ``k' = min(k, N - 1)``; each row's neighbours by decreasing similarity, itself excluded.
    """
    Z = standardise(X)
    n = len(Z)
    kk = max(0, min(int(k), n - 1))
    if kk == 0:
        return np.zeros((n, 0), dtype=int), np.zeros((n, 0))
    U = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    idx = np.argsort(-S, axis=1, kind="stable")[:, :kk]
    return idx, np.take_along_axis(S, idx, axis=1)
