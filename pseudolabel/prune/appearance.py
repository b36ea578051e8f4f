"""Tracks that do not look like the teacher's balls: an appearance check with a fixed anchor, round 0.

In the student rounds, a student finds again what the previous round kept (agreement seeds) and follows objects
that move like a ball (cold-start seeds); once a false object is kept, the next student learns it and finds it
again, so nothing inside the loop argues against it. Round 0 holds evidence that never drifts: the boxes its
hysteresis kept (mostly balls) and the teacher's detections it left unconfirmed (mostly not). A linear classifier
over ImageNet crop embeddings (:func:`pseudolabel.prune.features.crop_embeddings`), fit on those two groups (the
same examples in every student round; round 0's crops are embedded again each time), scores every kept box of a
student round; a track (``extra["track_id"]`` from the hysteresis; a box without one is its own group) whose mean
probability is below ``min_track_probability`` is pruned whole, reason ``appearance``.
One object on a track is judged by all of its crops, not by its one worst frame.

Some of round 0's unconfirmed detections are balls the hysteresis had no seed for, and taught as negatives they
teach that a faint ball is not one. With ``clean_folds`` set (opt-in), the negatives are cleaned before the fit
as confident learning does (cleanlab's ``predicted_neq_given``): a negative that a classifier fit on the other
folds (out of fold) finds more likely a ball than not is left out.

Off (nothing pruned) where round 0 holds fewer than ``min_examples`` boxes of either group: a classifier fit on a
handful of boxes says nothing. Boxes are ``xyxy`` float pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np

from pseudolabel.records import Dataset

REASON = "appearance"


@dataclass
class AppearanceConfig:
    """Options of :func:`apply_appearance`."""

    enabled: bool = True
    min_track_probability: float = 0.2  # prune a track whose crops' mean probability of being a ball is below this
    min_examples: int = 20               # round 0 needs this many kept and this many unconfirmed boxes
    regularisation: float = 0.01         # inverse strength C of the logistic regression's L2 penalty
    crop_size: int = 64                  # px, side of the square crop fed to the backbone
    crop_context: float = 2.0            # crop side = crop_context * longer box side
    clean_folds: int | None = None       # folds of the out-of-fold cleaning of the negatives (None: no cleaning)


# ---------------------------------------------------------------------------------- pure functions
def ball_classifier(*, regularisation: float = 0.01):
    """An unfitted scikit-learn pipeline: standardise, then L2 logistic regression with balanced class weights."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, class_weight="balanced",
                                                              max_iter=2000))


def fit_ball_classifier(positives, negatives, *, regularisation: float = 0.01):
    """:func:`ball_classifier` fit to tell ``positives`` (N_p, D) from ``negatives`` (N_n, D);
    ``predict_proba(X)[:, 1]`` is the probability of a ball."""
    return ball_classifier(regularisation=regularisation).fit(*_labelled(positives, negatives))


def _labelled(positives, negatives) -> tuple[np.ndarray, np.ndarray]:
    """X (N_p + N_n, D) float64, positives first, and y (N_p + N_n,): 1 for a positive, 0 for a negative."""
    X = np.concatenate([np.asarray(positives, np.float64), np.asarray(negatives, np.float64)])
    return X, np.r_[np.ones(len(positives)), np.zeros(len(negatives))]


def clean_negative_mask(positives, negatives, *, folds: int = 5, regularisation: float = 0.01,
                        seed: int = 0) -> np.ndarray:
    """(N_n,) bool: the negatives to keep, those a classifier that did not see them (stratified ``folds``-fold,
    out-of-fold probabilities of :func:`ball_classifier`) finds less likely a ball than not.

    Parameters
    ----------
    positives : array_like, shape (N_p, D)
    negatives : array_like, shape (N_n, D)
        Feature vectors; each group needs at least ``folds`` rows.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X, y = _labelled(positives, negatives)
    folds_split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    out_of_fold = cross_val_predict(ball_classifier(regularisation=regularisation), X, y, cv=folds_split,
                                    method="predict_proba")[:, 1]
    return out_of_fold[len(positives):] < 0.5


def unlike_track_mask(groups: Sequence[Hashable], probabilities, *, min_probability: float) -> np.ndarray:
    """(N,) bool: members of groups (tracks) whose mean probability is below ``min_probability``.

    Parameters
    ----------
    groups : sequence of hashable, length N
        Each box's track.
    probabilities : array_like of float, shape (N,)
        Each box's probability of showing the target.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    index = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    member = np.array([index[g] for g in groups], dtype=np.int64)
    if len(member) == 0:
        return np.zeros(0, dtype=bool)
    means = np.bincount(member, weights=p) / np.bincount(member)
    return means[member] < min_probability


# ------------------------------------------------------------------------------------ dataset shell
def round0_examples(round0: Dataset) -> tuple[list[int], list[int]]:
    """Ids of round 0's kept boxes (positives) and of the teacher's detections its hysteresis left unconfirmed
    (negatives) in the videos where it kept a box: in a video it kept nothing of, what it left unconfirmed may
    be the ball it had no seed for (stills: each image is its own video, so negatives come from images with a
    kept box)."""
    from pseudolabel.prune.temporal import DOUBTFUL_REASONS

    video_of = {f.id: f.video_id for f in round0.frames}
    positives = [b.id for b in round0.boxes if b.kept]
    anchored = {video_of[b.image_id] for b in round0.boxes if b.kept}
    negatives = [b.id for b in round0.boxes if not b.kept and b.reason in DOUBTFUL_REASONS
                 and video_of[b.image_id] in anchored]
    return positives, negatives


def apply_appearance(ds: Dataset, round0: Dataset, cfg: AppearanceConfig, *, round: int,
                     frames_dir: str | Path) -> dict[str, int]:
    """Prune, in place, the kept boxes of ``ds`` (a student round's labels) on tracks that look unlike round 0's
    kept boxes; reason ``appearance``. Run it after the hysteresis (it reads ``extra["track_id"]``). Each scored
    box gets ``extra["ball_probability"]``; ``ds.info["appearance"]`` counts the examples the classifier was fit
    on (``positives``, ``negatives``, ``negatives_left_out`` by the cleaning).

    Returns
    -------
    dict
        ``{"appearance": number of boxes pruned}``.
    """
    from pseudolabel.prune.features import embed_dataset_crops

    counts = {REASON: 0}
    kept = ds.kept_boxes()
    if not cfg.enabled or round < 1 or not kept:
        return counts
    positives, negatives = round0_examples(round0)
    if min(len(positives), len(negatives)) < cfg.min_examples:
        return counts
    crops = {"crop_size": cfg.crop_size, "context": cfg.crop_context}
    train = embed_dataset_crops(round0, frames_dir, positives + negatives, **crops)
    pos_x = np.stack([train[i] for i in positives])
    neg_x = np.stack([train[i] for i in negatives])
    folds = min(cfg.clean_folds or 0, len(positives), len(negatives))
    clean = (clean_negative_mask(pos_x, neg_x, folds=folds, regularisation=cfg.regularisation) if folds >= 2
             else np.ones(len(negatives), dtype=bool))
    neg_x = neg_x[clean]
    ds.info = {**ds.info, "appearance": {"positives": len(positives), "negatives": int(clean.sum()),
                                         "negatives_left_out": int((~clean).sum())}}
    model = fit_ball_classifier(pos_x, neg_x, regularisation=cfg.regularisation)
    emb = embed_dataset_crops(ds, frames_dir, [b.id for b in kept], **crops)
    prob = model.predict_proba(np.stack([emb[b.id] for b in kept]).astype(np.float64))[:, 1]
    video_of = {f.id: f.video_id for f in ds.frames}
    groups = [(video_of[b.image_id], b.extra["track_id"]) if "track_id" in b.extra else ("box", b.id)
              for b in kept]
    mask = unlike_track_mask(groups, prob, min_probability=cfg.min_track_probability)
    for b, p, hit in zip(kept, prob, mask):
        b.extra["ball_probability"] = _rounded(p)
        if hit:
            b.prune(REASON, pruned_round=round)
            counts[REASON] += 1
    return counts


def _rounded(p: float, digits: int = 4) -> float:
    return float(np.round(float(p), digits))
