"""Training data for the student: pseudo-labelled frames, split by video, cropped at native resolution.

Only boxes with ``decision == "kept"`` are targets; frames without a kept box are negatives. Pruned boxes whose
reason is in ``ignore_reasons`` (doubtful: below the threshold and unconfirmed) are ignore regions. Boxes a reviewer
deleted (reasons of :data:`pseudolabel.review.HARD_NEGATIVE_REASONS`) are hard negatives: background, and training
crops are chosen around them as around the kept boxes. Boxes a student round pruned with a reason in
``mined_negatives`` (its confident boxes that no track confirmed) are mined negatives: the crops of frames without a
kept box are chosen around them instead of at random (hard negatives mined by tracking, RoyChowdhury et al. 2019).
Samples follow torchvision's detection contract: an image tensor float [0, 1] (3, H, W) and a target
``{"boxes": float32 (N, 4) xyxy pixels, "labels": int64 (N,)}`` (N may be 0): label 1 for a ball, then
:data:`~pseudolabel.student.ignore.IGNORE_LABEL` for ignore regions. With ``box_weights="score"`` the target also
has ``"weights"``: float32 (N,), each ball's score (how much its evidence is trusted; 0 for ignore regions), which
the box head's losses read (:mod:`~pseudolabel.student.evidence`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from ..boxes import as_boxes, clip_to_image, iou_matrix
from ..records import Dataset, Frame, provenance
from ..review import HARD_NEGATIVE_REASONS
from .ignore import IGNORE_LABEL


def split_by_video(video_ids: Sequence[str], *, val_fraction: float = 0.2,
                   seed: int = 0) -> tuple[list[str], list[str]]:
    """Split whole videos into train and validation sets (a video is never on both sides).

    Parameters
    ----------
    video_ids : video ids, repeats allowed (e.g. one per frame).
    val_fraction : share of videos held out, rounded, at least 1 and at most n - 1 when n >= 2.

    Returns
    -------
    (train_ids, val_ids), each sorted. With a single video the validation list is empty: use
    :func:`split_frames`, which then falls back to contiguous time blocks.
    """
    unique = sorted(set(str(v) for v in video_ids))
    if len(unique) < 2 or val_fraction <= 0:
        return unique, []
    n_val = min(len(unique) - 1, max(1, int(round(val_fraction * len(unique)))))
    order = np.random.default_rng(seed).permutation(len(unique))
    val = sorted(unique[i] for i in order[:n_val])
    return [v for v in unique if v not in set(val)], val


def split_frames(frames: Sequence[Frame], *, val_fraction: float = 0.2, seed: int = 0,
                 gap_fraction: float = 0.05) -> tuple[list[int], list[int]]:
    """Train and validation frame ids without temporal leakage.

    With two or more videos, whole videos go to one side (:func:`split_by_video`). With a single
    video, validation is one contiguous block of ``val_fraction`` of its frames (in frame order,
    position drawn from ``seed``), and ``gap_fraction`` of the frames on each side of the block are
    dropped, so that no training frame is a near-duplicate neighbour of a validation frame.
    """
    frames = list(frames)
    videos = sorted({f.video_id for f in frames})
    if len(videos) >= 2:
        _, val_videos = split_by_video(videos, val_fraction=val_fraction, seed=seed)
        val_set = set(val_videos)
        return ([f.id for f in frames if f.video_id not in val_set], [f.id for f in frames if f.video_id in val_set])
    ordered = sorted(frames, key=lambda f: (f.frame_index, f.id))
    n = len(ordered)
    if n < 2 or val_fraction <= 0:
        return [f.id for f in ordered], []
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    start = int(np.random.default_rng(seed).integers(0, n - n_val + 1))
    gap = int(np.ceil(gap_fraction * n)) if gap_fraction > 0 else 0
    val = [f.id for f in ordered[start:start + n_val]]
    train = [f.id for i, f in enumerate(ordered) if i < start - gap or i >= start + n_val + gap]
    if not train:  # too few frames for a gap
        train = [f.id for i, f in enumerate(ordered) if i < start or i >= start + n_val]
    return train, val


def cross_fit_folds(frames: Sequence[Frame], *, folds: int) -> dict[tuple[str, int], int]:
    """Fold of every frame for cross-fitting: round k trains one student per fold on the frames of the other folds,
    and each student relabels only its own fold, so that a kept box is found again by a model that never learnt it.

    Parameters
    ----------
    frames : the frames to split (any order; keys ``(video_id, frame_index)`` unique).
    folds : number of folds, >= 1.

    Returns
    -------
    dict frame key -> fold in ``0..folds-1``. A video of at least ``folds`` frames is cut, in frame order, into
    ``folds`` contiguous blocks of near-equal length (block i -> fold i): every student sees part of every video,
    and the frames it relabels are a stretch of time it did not train on, not the neighbours of its training frames.
    Shorter videos (stills: one frame each) are dealt whole to the folds in turn, in sorted video id order.
    """
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    by_video: dict[str, list[Frame]] = {}
    for f in frames:
        by_video.setdefault(f.video_id, []).append(f)
    out: dict[tuple[str, int], int] = {}
    dealt = 0
    for vid in sorted(by_video):
        ordered = sorted(by_video[vid], key=lambda f: f.frame_index)
        n = len(ordered)
        if n >= folds:
            out.update({f.key: i * folds // n for i, f in enumerate(ordered)})
        else:
            out.update({f.key: dealt % folds for f in ordered})
            dealt += 1
    return out


def _bbox_params(min_visibility: float):
    import albumentations as A

    return A.BboxParams(format="pascal_voc", min_visibility=min_visibility, clip=True)


IGNORE_FROM = ("every_round", "teacher")  # whose pruned boxes may be ignore regions (PseudoLabelDataset)
BOX_WEIGHTS = ("uniform", "score")  # what a kept box weighs in the student's box-head losses (PseudoLabelDataset)
IGNORE_TARGET = {"ignore": "bboxes"}  # ignore regions ride along as a second box set: crops pick kept boxes only


def _box_rows(bboxes) -> np.ndarray:
    """``bboxes`` as a float64 (N, 4 + k) array: xyxy pixels, then any extra columns (a hard-negative flag)."""
    arr = np.asarray(bboxes, dtype=np.float64)
    if arr.ndim == 2:
        return arr
    return as_boxes(arr)


def train_transform(crop_size: int = 256, *, brightness_contrast: float = 0.2, min_visibility: float = 0.5,
                    scale_jitter: float = 0.0, seed: int | None = 0):
    """Random ``crop_size`` crop at native resolution containing a kept box when the frame has one,
    horizontal flip, brightness/contrast jitter (albumentations, ``pascal_voc`` = xyxy pixels).

    ``scale_jitter`` s > 0 first rescales the frame by a factor drawn uniformly in ``[1 / (1 + s), 1 + s]``, boxes
    with it, so that the student also sees balls smaller and larger than its labels' (0: native size only).

    Called as ``t(image=, bboxes=, ignore=)``: ``ignore`` (ignore regions) follows the geometry but never picks
    the crop. Frames smaller than the crop are zero-padded. Boxes less than ``min_visibility`` inside the crop
    are dropped.
    """
    import albumentations as A
    import cv2

    if scale_jitter < 0:
        raise ValueError(f"scale_jitter must be >= 0, got {scale_jitter}")
    rescale = [A.RandomScale(scale_limit=(1 / (1 + scale_jitter) - 1, scale_jitter), p=1.0)] if scale_jitter else []
    return A.Compose([
        *rescale,
        A.PadIfNeeded(min_height=crop_size, min_width=crop_size, position="top_left",
                      border_mode=cv2.BORDER_CONSTANT, fill=0),
        A.AtLeastOneBBoxRandomCrop(height=crop_size, width=crop_size, erosion_factor=0.0),
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=brightness_contrast, contrast_limit=brightness_contrast, p=0.5),
    ], bbox_params=_bbox_params(min_visibility), additional_targets=IGNORE_TARGET, seed=seed)


class CenteredCrop:
    """Deterministic validation crop: ``crop_size`` square centred on the first box (else the frame centre).

    Called like :func:`train_transform`: ``t(image=..., bboxes=..., ignore=...) -> dict``; ``bboxes`` may carry
    extra columns after xyxy (kept through the crop). ``crop_size=None`` returns the full frame.
    """

    def __init__(self, crop_size: int | None = 256, *, min_visibility: float = 0.5) -> None:
        self.crop_size = crop_size
        self.min_visibility = min_visibility

    def __call__(self, *, image: np.ndarray, bboxes, ignore=()) -> dict[str, Any]:
        if self.crop_size is None:
            return {"image": image, "bboxes": _box_rows(bboxes), "ignore": as_boxes(ignore)}
        import albumentations as A
        import cv2

        c = int(self.crop_size)
        h, w = image.shape[:2]
        H, W = max(h, c), max(w, c)
        b = _box_rows(bboxes)
        cx, cy = ((b[0, 0] + b[0, 2]) / 2, (b[0, 1] + b[0, 3]) / 2) if len(b) else (w / 2, h / 2)
        x0 = int(np.clip(round(cx - c / 2), 0, W - c))
        y0 = int(np.clip(round(cy - c / 2), 0, H - c))
        t = A.Compose([
            A.PadIfNeeded(min_height=c, min_width=c, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0),
            A.Crop(x_min=x0, y_min=y0, x_max=x0 + c, y_max=y0 + c),
        ], bbox_params=_bbox_params(self.min_visibility), additional_targets=IGNORE_TARGET)
        return t(image=image, bboxes=b, ignore=as_boxes(ignore))


def cut_patch(image: np.ndarray, box, *, context: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ball crop for copy-paste: the box grown ``context`` times around its centre, and its soft alpha.

    Returns
    -------
    patch : (h, w, 3) uint8
    alpha : (h, w) float32 in [0, 1]: 1 inside an ellipse of the box's size, falling to 0 at the patch edge.
    box : (4,) float xyxy of the ball in patch coordinates.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    H, W = image.shape[:2]
    px1, py1 = int(max(0, np.floor(cx - context * w / 2))), int(max(0, np.floor(cy - context * h / 2)))
    px2, py2 = int(min(W, np.ceil(cx + context * w / 2))), int(min(H, np.ceil(cy + context * h / 2)))
    patch = image[py1:py2, px1:px2].copy()
    yy, xx = np.mgrid[py1:py2, px1:px2].astype(np.float32) + 0.5
    r = np.sqrt(((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2)  # 1 on the box's ellipse
    alpha = np.clip((context - r) / max(context - 1.0, 1e-6), 0.0, 1.0).astype(np.float32)
    return patch, alpha, np.array([x1 - px1, y1 - py1, x2 - px1, y2 - py1], dtype=np.float64)


def paste_patches(image: np.ndarray, boxes: np.ndarray, patches, rng: np.random.Generator, *,
                  max_pastes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Paste 1..``max_pastes`` of ``patches`` (``(patch, alpha, box)`` of :func:`cut_patch`) at random places of
    ``image`` that overlap no box of ``boxes`` (xyxy); returns the new image and the boxes with the pasted balls
    added."""
    out, boxes = image.copy(), as_boxes(boxes)
    H, W = image.shape[:2]
    added = []
    for _ in range(int(rng.integers(1, max_pastes + 1))):
        patch, alpha, rel = patches[int(rng.integers(len(patches)))]
        ph, pw = patch.shape[:2]
        if ph >= H or pw >= W or ph < 2 or pw < 2:
            continue
        for _try in range(10):
            x, y = int(rng.integers(0, W - pw)), int(rng.integers(0, H - ph))
            new = rel + np.array([x, y, x, y], dtype=np.float64)
            taken = np.concatenate([boxes, np.array(added).reshape(-1, 4)])
            if len(taken) == 0 or iou_matrix(new[None], taken).max() == 0:
                region = out[y:y + ph, x:x + pw].astype(np.float32)
                a = alpha[..., None]
                out[y:y + ph, x:x + pw] = np.clip(a * patch + (1 - a) * region, 0, 255).astype(np.uint8)
                added.append(new)
                break
    return out, np.concatenate([boxes, np.array(added).reshape(-1, 4)]) if added else boxes


class PseudoLabelDataset(torch.utils.data.Dataset):
    """Frames with their kept pseudo-label boxes, in torchvision's detection format.

    Parameters
    ----------
    ds : the pseudo-labels; ``kept`` boxes are targets.
    frames_dir : directory that ``Frame.file_name`` is relative to.
    frame_ids : the frames of this split.
    transform : callable ``(image=, bboxes=, ignore=) -> dict`` (:func:`train_transform`) or None (full frame).
    negatives_fraction : target share of negatives (frames without a kept box) among the samples,
        drawn with ``seed``; None keeps every negative. With no positive frame all negatives are kept.
    max_samples : cap on the number of samples (positives and negatives subsampled alike).
    copy_paste : probability that a sample gets 1..``max_pastes`` kept balls of other frames of the split pasted
        in (soft-edged, where no box is; :func:`paste_patches`), after the transform (0: off). Few labels go
        further: every crop, negatives included, can teach the ball against another background.
    ignore_reasons : pruned boxes with one of these reasons are ignore regions (label
        :data:`~pseudolabel.student.ignore.IGNORE_LABEL`): doubtful boxes neither teach the ball nor are taught as
        background. Empty: every pruned box is background.
    ignore_from : ``"every_round"``: any round's pruned box with such a reason; ``"teacher"``: only those round 0
        pruned (the teacher's doubtful boxes); a student's own unconfirmed boxes are then taught as background.
    mined_negatives : reasons (e.g. ``("unconfirmed",)``): boxes a student round (``round >= 1``) pruned with one
        are mined negatives. The negatives drawn (``negatives_fraction``) are frames holding one first, and such a
        frame's crop is chosen around one of them: the student is shown where it fired without a track to back
        it. Frames with a kept box are cropped as before. Empty: off.
    probation : provenances (:func:`~pseudolabel.records.provenance`, e.g. ``("student/moving_track/new",)``):
        kept boxes of those kinds, new in the round ``ds`` holds, are ignore regions instead of targets. Found on
        weaker evidence than two rounds agreeing, they are not taught to the next student, so that its finding
        them again is evidence of its own and not a student repeating its lesson. Empty: off.
    box_weights : ``"uniform"``: every kept box teaches alike (no ``"weights"`` in the targets); ``"score"``: each
        kept box weighs its score in the box head's losses (a ball kept on weak evidence, a track-confirmed box of
        score 0.3, teaches a third as much as a sure one; balls pasted by ``copy_paste`` weigh 1).

    Pruned boxes with a reason of :data:`~pseudolabel.review.HARD_NEGATIVE_REASONS` (a reviewer deleted them) are
    hard negatives: background, a frame holding one is always a sample, and the transform gets them with the kept
    boxes (an extra column: 1 kept, 0 hard negative) so that crops are chosen around them too.
    """

    def __init__(self, ds: Dataset, frames_dir: str | Path, frame_ids: Sequence[int], *,
                 transform: Callable[..., dict] | None = None, negatives_fraction: float | None = 0.25,
                 max_samples: int | None = None, seed: int = 0, copy_paste: float = 0.0,
                 max_pastes: int = 2, ignore_reasons: Sequence[str] = (), ignore_from: str = "every_round",
                 mined_negatives: Sequence[str] = (), probation: Sequence[str] = (),
                 box_weights: str = "uniform") -> None:
        if box_weights not in BOX_WEIGHTS:
            raise ValueError(f"box_weights must be one of {BOX_WEIGHTS}, got {box_weights!r}")
        self.frames_dir = Path(frames_dir)
        self.transform = transform
        self.copy_paste, self.max_pastes = float(copy_paste), int(max_pastes)
        self._patches: list | None = None
        frames = {f.id: f for f in ds.frames}
        unknown = [i for i in frame_ids if i not in frames]
        if unknown:
            raise KeyError(f"frame ids not in the dataset: {unknown[:5]}")
        kept = ds.boxes_by_image(kept_only=True)
        on_probation = set(probation)

        def taught(b) -> bool:
            return provenance(b, round=ds.info.get("round")) not in on_probation

        self._boxes = {i: ds.xyxy([b for b in kept.get(i, []) if taught(b)]) for i in frame_ids}
        # (N,) per frame, aligned with self._boxes; None: no weights in the targets
        self._weights = None if box_weights == "uniform" else {
            i: np.array([float(np.clip(b.score, 0.0, 1.0)) for b in kept.get(i, []) if taught(b)], dtype=np.float64)
            for i in frame_ids}
        if ignore_from not in IGNORE_FROM:
            raise ValueError(f"ignore_from must be one of {IGNORE_FROM}, got {ignore_from!r}")
        reasons = set(ignore_reasons)

        def ignored(b) -> bool:
            if b.kept:
                return not taught(b)
            return b.reason in reasons and (ignore_from == "every_round" or b.extra.get("pruned_round") == 0)

        every_box = ds.boxes_by_image(kept_only=False)
        self._ignore = {i: ds.xyxy([b for b in every_box.get(i, []) if ignored(b)]) for i in frame_ids}
        self._hard = {i: ds.xyxy([b for b in every_box.get(i, []) if not b.kept and b.reason in HARD_NEGATIVE_REASONS])
                      for i in frame_ids}
        mined_reasons = set(mined_negatives)
        self._mined = {i: ds.xyxy([b for b in every_box.get(i, []) if not b.kept and b.reason in mined_reasons
                                   and b.round >= 1]) for i in frame_ids}
        pos = [i for i in frame_ids if len(self._boxes[i])]
        neg = [i for i in frame_ids if not len(self._boxes[i])]
        hard = [i for i in neg if len(self._hard[i])]  # never subsampled: the student must learn not to fire there
        neg = [i for i in neg if not len(self._hard[i])]
        rng = np.random.default_rng(seed)
        if negatives_fraction is not None and pos:
            if not 0 <= negatives_fraction < 1:
                raise ValueError(f"negatives_fraction must be in [0, 1), got {negatives_fraction}")
            n_neg = min(len(neg), int(round(negatives_fraction / (1 - negatives_fraction) * len(pos))))
            if mined_reasons:  # frames holding a mined negative first, each group in random order
                draw = sorted(rng.permutation(len(neg)), key=lambda i: not len(self._mined[neg[i]]))[:n_neg]
            else:
                draw = rng.choice(len(neg), size=n_neg, replace=False)
            neg = [neg[i] for i in sorted(draw)]
        samples = sorted(pos + hard + neg)
        if max_samples is not None and len(samples) > max_samples:
            samples = sorted(samples[i] for i in rng.choice(len(samples), size=int(max_samples), replace=False))
        self.frame_ids: list[int] = samples
        self.frames = frames
        self.n_positives = sum(1 for i in samples if len(self._boxes[i]))
        self.n_negatives = len(samples) - self.n_positives
        self.n_hard_negatives = sum(1 for i in samples if len(self._hard[i]))  # frames holding one

    def __len__(self) -> int:
        return len(self.frame_ids)

    def patches(self) -> list:
        """Ball patches (:func:`cut_patch`) of every kept box of this split's frames, cut once."""
        if self._patches is None:
            self._patches = [cut_patch(self.read_image(fid), b) for fid in sorted(self._boxes)
                             for b in self._boxes[fid]]
        return self._patches

    def read_image(self, frame_id: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of a frame."""
        from ..frames import read_rgb

        return read_rgb(self.frames_dir / self.frames[frame_id].file_name)

    def __getitem__(self, index: int):
        fid = self.frame_ids[index]
        image = self.read_image(fid)
        h, w = image.shape[:2]

        def visible(b):  # xyxy clipped to the frame, any extra columns (a weight) kept
            b = _box_rows(b).copy()
            b[:, :4] = clip_to_image(b[:, :4], width=w, height=h)
            return b[(b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)]

        weighted = self._weights is not None
        boxes = np.c_[self._boxes[fid], self._weights[fid]] if weighted else self._boxes[fid]
        boxes, ignore, hard = visible(boxes), visible(self._ignore[fid]), visible(self._hard[fid])
        if not len(boxes) and not len(hard):
            hard = visible(self._mined[fid])
        if weighted:
            hard = np.c_[hard, np.ones(len(hard))]  # rows as the balls' (xyxy, weight); background is not weighted
        width = boxes.shape[1]
        if self.transform is not None and len(hard):
            flagged = np.concatenate([np.c_[boxes, np.ones(len(boxes))], np.c_[hard, np.zeros(len(hard))]])
            out = self.transform(image=image, bboxes=flagged, ignore=ignore)
            rows = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, width + 1)
            image, ignore = out["image"], as_boxes(out["ignore"])
            boxes, hard = rows[rows[:, width] > 0.5, :width], rows[rows[:, width] <= 0.5, :4]
        elif self.transform is not None:
            out = self.transform(image=image, bboxes=boxes, ignore=ignore)
            image, ignore = out["image"], as_boxes(out["ignore"])
            boxes = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, width)
        weights = boxes[:, 4] if weighted else None
        boxes, hard = as_boxes(boxes[:, :4]), as_boxes(hard[:, :4])
        if self.copy_paste > 0:
            # torch's generator is seeded by seed_everything (and per DataLoader worker): reproducible
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            if rng.random() < self.copy_paste and self.patches():
                taken = np.concatenate([boxes, ignore, hard])  # never paste over a box, doubtful or deleted ones too
                image, pasted = paste_patches(image, taken, self._patches, rng, max_pastes=self.max_pastes)
                boxes = np.concatenate([boxes, pasted[len(taken):]])
                if weighted:
                    weights = np.concatenate([weights, np.ones(len(boxes) - len(weights))])
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        labels = np.concatenate([np.ones(len(boxes)), np.full(len(ignore), IGNORE_LABEL)])
        target = {"boxes": torch.as_tensor(np.concatenate([boxes, ignore]), dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.as_tensor(labels, dtype=torch.int64)}
        if weighted:
            target["weights"] = torch.as_tensor(np.concatenate([weights, np.zeros(len(ignore))]), dtype=torch.float32)
        return tensor, target


def collate_detection(batch):
    """List of (image, target) -> (list of images, list of targets), as torchvision detectors take them."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


class PseudoLabelDataModule(pl.LightningDataModule):
    """Lightning data module over a pseudo-label COCO file (our format) and its frames directory.

    ``setup()`` splits by video (:func:`split_frames`) and exposes ``train_video_ids`` /
    ``val_video_ids``. Training samples are random native-resolution crops of ``crop_size`` with
    ``negatives_fraction`` negatives; validation uses every held-out frame (all its negatives
    included), each a deterministic crop centred on its first box (``val_full_frame``: whole frames).
    ``train_samples_per_epoch`` makes an epoch that many draws with replacement, so that the training length in
    steps does not shrink with the number of labels; None: one pass over the training samples.
    """

    def __init__(self, pseudo_labels_path: str | Path, frames_dir: str | Path, *, batch_size: int = 4,
                 crop_size: int = 256, val_fraction: float = 0.2, negatives_fraction: float = 0.25,
                 num_workers: int = 0, seed: int = 0, max_train_samples: int | None = None,
                 max_val_samples: int | None = None, val_full_frame: bool = False,
                 brightness_contrast: float = 0.2, min_visibility: float = 0.5, copy_paste: float = 0.0,
                 max_pastes: int = 2, ignore_reasons: Sequence[str] = (), ignore_from: str = "every_round",
                 train_samples_per_epoch: int | None = None, mined_negatives: Sequence[str] = (),
                 scale_jitter: float = 0.0, probation: Sequence[str] = (), box_weights: str = "uniform") -> None:
        super().__init__()
        self.pseudo_labels_path = Path(pseudo_labels_path)
        self.frames_dir = Path(frames_dir)
        self.batch_size = int(batch_size)
        self.crop_size = int(crop_size)
        self.val_fraction = float(val_fraction)
        self.negatives_fraction = negatives_fraction
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.max_train_samples = max_train_samples
        self.max_val_samples = max_val_samples
        self.val_full_frame = bool(val_full_frame)
        self.brightness_contrast = float(brightness_contrast)
        self.min_visibility = float(min_visibility)
        self.scale_jitter = float(scale_jitter)
        self.copy_paste, self.max_pastes = float(copy_paste), int(max_pastes)
        self.ignore_reasons = tuple(str(r) for r in ignore_reasons)
        self.ignore_from = str(ignore_from)
        self.mined_negatives = tuple(str(r) for r in mined_negatives)
        self.probation = tuple(str(p) for p in probation)
        self.box_weights = str(box_weights)
        self.train_samples_per_epoch = None if train_samples_per_epoch is None else int(train_samples_per_epoch)
        self.train_set: PseudoLabelDataset | None = None
        self.val_set: PseudoLabelDataset | None = None
        self.train_video_ids: list[str] = []
        self.val_video_ids: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from ..coco import load_coco

        ds = load_coco(self.pseudo_labels_path)
        if not ds.frames:
            raise ValueError(f"{self.pseudo_labels_path}: no frames to train on")
        train_ids, val_ids = split_frames(ds.frames, val_fraction=self.val_fraction, seed=self.seed)
        by_id = {f.id: f for f in ds.frames}
        self.train_video_ids = sorted({by_id[i].video_id for i in train_ids})
        self.val_video_ids = sorted({by_id[i].video_id for i in val_ids})
        self.train_set = PseudoLabelDataset(
            ds, self.frames_dir, train_ids,
            transform=train_transform(self.crop_size, brightness_contrast=self.brightness_contrast,
                                      min_visibility=self.min_visibility, scale_jitter=self.scale_jitter,
                                      seed=self.seed),
            negatives_fraction=self.negatives_fraction, max_samples=self.max_train_samples, seed=self.seed,
            copy_paste=self.copy_paste, max_pastes=self.max_pastes, ignore_reasons=self.ignore_reasons,
            ignore_from=self.ignore_from, mined_negatives=self.mined_negatives, probation=self.probation,
            box_weights=self.box_weights)
        self.val_set = PseudoLabelDataset(
            ds, self.frames_dir, val_ids,
            transform=CenteredCrop(None if self.val_full_frame else self.crop_size, min_visibility=self.min_visibility),
            negatives_fraction=None, max_samples=self.max_val_samples, seed=self.seed,
            ignore_reasons=self.ignore_reasons,
            ignore_from=self.ignore_from, probation=self.probation, box_weights=self.box_weights)

    def _loader(self, dataset: PseudoLabelDataset, *, shuffle: bool, num_samples: int | None = None):
        from torch.utils.data import DataLoader, RandomSampler

        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        sampler = None
        if shuffle and num_samples is not None and len(dataset):
            # a fixed number of draws per epoch, whatever the number of labels: few labels are seen more often
            # (each draw is a new random crop), not trained on for fewer steps
            sampler, shuffle = RandomSampler(dataset, replacement=True, num_samples=num_samples,
                                             generator=generator), False
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
                          collate_fn=collate_detection, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0,
                          worker_init_fn=_reseed_worker if self.num_workers > 0 else None,
                          generator=generator if sampler is None else None)

    def train_dataloader(self):
        self.setup()
        return self._loader(self.train_set, shuffle=True, num_samples=self.train_samples_per_epoch)

    def val_dataloader(self):
        self.setup()
        return self._loader(self.val_set, shuffle=False)


def _reseed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own augmentation stream (derived from torch's per-worker seed)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    t = getattr(info.dataset, "transform", None) if info is not None else None
    if hasattr(t, "set_random_seed"):
        t.set_random_seed(torch.initial_seed() % 2**32)
