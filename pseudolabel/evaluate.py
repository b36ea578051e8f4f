"""Label quality against ground truth: precision/recall/F1 at one IoU and COCO AP.

Kept apart from inference: it reads two :class:`Dataset` objects (predictions, ground truth) and
joins their frames by :attr:`Frame.key` ``(video_id, frame_index)``, because image ids are local to
one file. Evaluation is single-class: category ids are ignored.

CLI::

    python -m pseudolabel.evaluate --pred runs/x/round_0/annotations.json --gt data/valid/images \\
        --gt-format yolo --iou 0.5 --out metrics.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .boxes import as_boxes, iou_matrix, xyxy_to_xywh
from .records import Box, Dataset, Frame, provenance

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def centre_distance_matrix(a_xyxy, b_xyxy) -> np.ndarray:
    """(N, M) Euclidean distances in pixels between the centres of (N, 4) and (M, 4) xyxy boxes."""
    a, b = as_boxes(a_xyxy), as_boxes(b_xyxy)
    ca = (a[:, :2] + a[:, 2:]) / 2
    cb = (b[:, :2] + b[:, 2:]) / 2
    return np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=-1)


def greedy_match(pred_xyxy, pred_scores, gt_xyxy, *, iou_threshold: float = 0.5,
                max_centre_distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one greedy matching of predictions to ground truth on one image: the package's one greedy matcher
    (evaluation, threshold calibration and the student's ``val/f1`` all count with it).

    Predictions are visited by descending score (ties: input order); each takes the still-unmatched
    ground-truth box with the highest IoU, if that IoU is ``>= iou_threshold`` (as COCOeval does). With
    ``max_centre_distance`` (pixels) the match is by centres instead: the nearest unmatched ground-truth
    centre within that distance (the ball-tracking measure of WASB and TrackNet; IoU is unstable for
    5-15 px boxes).

    Parameters
    ----------
    pred_xyxy : (N, 4) xyxy pixels
    pred_scores : (N,)
    gt_xyxy : (M, 4) xyxy pixels

    Returns
    -------
    tp_mask : (N,) bool
        True where the prediction matched a ground-truth box.
    matched_gt_index : (N,) int64
        Index into ``gt_xyxy`` of the match, -1 for false positives.
    """
    pred, gt = as_boxes(pred_xyxy), as_boxes(gt_xyxy)
    scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(pred):
        raise ValueError(f"{len(pred)} boxes but {len(scores)} scores")
    matched = np.full(len(pred), -1, dtype=np.int64)
    if len(pred) and len(gt):
        if max_centre_distance is None:
            similarity, threshold = iou_matrix(pred, gt), float(iou_threshold)
        else:  # nearest centre first: similarity is the negated distance
            similarity, threshold = -centre_distance_matrix(pred, gt), -float(max_centre_distance)
        taken = np.zeros(len(gt), dtype=bool)
        for i in np.argsort(-scores, kind="stable"):
            cand = np.where(taken, -np.inf, similarity[i])
            j = int(np.argmax(cand))
            if cand[j] >= threshold:
                matched[i] = j
                taken[j] = True
    return matched >= 0, matched


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _frames_by_key(ds: Dataset, what: str) -> dict[tuple[str, int], Frame]:
    out: dict[tuple[str, int], Frame] = {}
    for f in ds.frames:
        if f.key in out:
            raise ValueError(f"{what}: frame key {f.key} appears twice (image ids {out[f.key].id} and {f.id})")
        out[f.key] = f
    return out


def _coco_ap(pairs: list[tuple[list[Box], list[Box]]], iou_threshold: float) -> dict[str, float | None]:
    """COCO bbox AP over images given as (pred boxes, gt boxes) pairs; ids 1..K are assigned here."""
    n_gt = sum(len(g) for _, g in pairs)
    n_pred = sum(len(p) for p, _ in pairs)
    if n_gt == 0:
        return {"ap": None, "ap50": None, "ap_at_iou": None}
    if n_pred == 0:
        return {"ap": 0.0, "ap50": 0.0, "ap_at_iou": 0.0}
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, gt_anns, dets = [], [], []
    for image_id, (preds, gts) in enumerate(pairs, start=1):
        images.append({"id": image_id})
        for b, (x, y, w, h) in zip(gts, xyxy_to_xywh([b.xyxy for b in gts])):
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": image_id, "category_id": 1,
                            "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        for b, (x, y, w, h) in zip(preds, xyxy_to_xywh([b.xyxy for b in preds])):
            dets.append({"image_id": image_id, "category_id": 1, "bbox": [x, y, w, h], "score": float(b.score)})
    thrs = np.unique(np.round(np.concatenate([COCO_IOU_THRESHOLDS, [iou_threshold]]), 10))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": [{"id": 1, "name": "ball"}]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.iouThrs = thrs
        ev.evaluate()
        ev.accumulate()
    # precision: [T, R, K, A, M]; area "all" = 0, maxDets 100 = -1; -1 marks "no data".
    prec = ev.eval["precision"][:, :, 0, 0, -1]

    def mean_at(mask: np.ndarray) -> float:
        p = prec[mask]
        p = p[p > -1]
        return float(p.mean()) if p.size else 0.0

    return {"ap": mean_at(np.isin(thrs, np.round(COCO_IOU_THRESHOLDS, 10))),
            "ap50": mean_at(np.isclose(thrs, 0.5)),
            "ap_at_iou": mean_at(np.isclose(thrs, iou_threshold))}


def evaluate(pred: Dataset, gt: Dataset, *, iou_threshold: float = 0.5, kept_only: bool = True,
             max_centre_distance: float | None = None) -> dict[str, Any]:
    """Score predicted boxes against ground truth.

    Frames are joined by :attr:`Frame.key` ``(video_id, frame_index)``. **Only frames present in both
    data sets count**; ground-truth frames without a prediction frame are reported as
    ``n_gt_frames_missing_in_pred`` (and prediction frames without ground truth as
    ``n_pred_frames_missing_in_gt``), never as misses. A frame present in ``pred`` with no box is a
    frame where nothing was predicted.

    Parameters
    ----------
    pred, gt
        Boxes in xyxy pixels. Ground-truth boxes marked ``pruned`` are ignored.
    iou_threshold
        IoU (``>=``) for a true positive in the counts, precision, recall and F1.
    kept_only
        Score only predictions whose decision is ``kept`` (the labels the pipeline would export);
        ``False`` scores every predicted box, pruned ones included.
    max_centre_distance
        None: matches by IoU. A distance in pixels: the counts, precision, recall and F1 match by box
        centres within it instead (:func:`greedy_match`); AP stays COCO's (IoU).

    Returns
    -------
    dict
        ``precision`` = tp / (tp + fp), ``recall`` = tp / (tp + fn), ``f1``; each is 0.0 when its
        denominator is 0 (no predictions / no ground truth), so read them with the counts
        ``tp``, ``fp``, ``fn``. ``ap`` (COCO AP@[.5:.95]), ``ap50`` and ``ap_at_iou`` (AP at
        ``iou_threshold``) from pycocotools' COCOeval (101-point, max 100 detections per image):
        ``None`` when there is no ground-truth box (AP undefined), 0.0 when there are ground-truth
        boxes but no predictions. ``n_images`` (frames in both), ``n_pred``, ``n_gt`` (boxes on those
        frames), ``iou_threshold``, and ``per_video``: ``{video_id: {precision, recall, f1, tp, fp,
        fn, n_images}}``.
    """
    pred_frames = _frames_by_key(pred, "predictions")
    gt_frames = _frames_by_key(gt, "ground truth")
    common = sorted(set(pred_frames) & set(gt_frames))
    pred_boxes = pred.boxes_by_image(kept_only=kept_only)
    gt_boxes = gt.boxes_by_image(kept_only=True)

    totals = {"tp": 0, "fp": 0, "fn": 0}
    per_video: dict[str, dict[str, Any]] = {}
    pairs: list[tuple[list[Box], list[Box]]] = []
    for key in common:
        preds = pred_boxes.get(pred_frames[key].id, [])
        gts = gt_boxes.get(gt_frames[key].id, [])
        pairs.append((preds, gts))
        tp_mask, _ = greedy_match([b.xyxy for b in preds], [b.score for b in preds], [b.xyxy for b in gts],
                                  iou_threshold=iou_threshold, max_centre_distance=max_centre_distance)
        tp = int(tp_mask.sum())
        counts = {"tp": tp, "fp": len(preds) - tp, "fn": len(gts) - tp}
        video = per_video.setdefault(key[0], {"tp": 0, "fp": 0, "fn": 0, "n_images": 0})
        video["n_images"] += 1
        for k, v in counts.items():
            totals[k] += v
            video[k] += v
    for video in per_video.values():
        video.update(_prf(video["tp"], video["fp"], video["fn"]))

    return {
        **_prf(totals["tp"], totals["fp"], totals["fn"]),
        **totals,
        **_coco_ap(pairs, iou_threshold),
        "iou_threshold": float(iou_threshold),
        "n_images": len(common),
        "n_pred": sum(len(p) for p, _ in pairs),
        "n_gt": sum(len(g) for _, g in pairs),
        "n_gt_frames_missing_in_pred": len(set(gt_frames) - set(pred_frames)),
        "n_pred_frames_missing_in_gt": len(set(pred_frames) - set(gt_frames)),
        "per_video": {v: per_video[v] for v in sorted(per_video)},
    }


def pruned_truth_by_reason(pred: Dataset, gt: Dataset, *, iou_threshold: float = 0.5,
                           max_centre_distance: float | None = None) -> dict[str, dict[str, int]]:
    """What each pruner removed, judged against ground truth: ``{reason: {"true": n, "false": n}}``.

    A pruned box is *true* when keeping it would have added a true positive: it matches (as
    :func:`greedy_match`, IoU or centre distance) a ground-truth box of its frame that no kept box
    matches. Every other pruned box (no ball there, or a duplicate of a ball already found) is *false*.
    Frames are joined as in :func:`evaluate`; frames without ground truth are skipped.
    """
    pred_frames, gt_frames = _frames_by_key(pred, "predictions"), _frames_by_key(gt, "ground truth")
    all_boxes, gt_boxes = pred.boxes_by_image(kept_only=False), gt.boxes_by_image(kept_only=True)
    out: dict[str, dict[str, int]] = {}
    for key in sorted(set(pred_frames) & set(gt_frames)):
        boxes = all_boxes.get(pred_frames[key].id, [])
        gts = gt_boxes.get(gt_frames[key].id, [])
        kept = [b for b in boxes if b.kept]
        _, kept_idx = greedy_match([b.xyxy for b in kept], [b.score for b in kept], [b.xyxy for b in gts],
                                   iou_threshold=iou_threshold, max_centre_distance=max_centre_distance)
        found = set(kept_idx[kept_idx >= 0].tolist())
        missed = [g for j, g in enumerate(gts) if j not in found]
        for b in boxes:
            if b.kept:
                continue
            tp, _ = greedy_match([b.xyxy], [b.score], [g.xyxy for g in missed], iou_threshold=iou_threshold,
                                 max_centre_distance=max_centre_distance)
            counts = out.setdefault(b.reason or "unknown", {"true": 0, "false": 0})
            counts["true" if tp[0] else "false"] += 1
    return {r: out[r] for r in sorted(out)}


def kept_truth_by_provenance(pred: Dataset, gt: Dataset, *, iou_threshold: float = 0.5,
                             max_centre_distance: float | None = None) -> dict[str, dict[str, int]]:
    """What each kind of evidence kept, judged against ground truth: ``{provenance: {"true": n, "false": n}}``.

    A kept box is *true* when it is a true positive of :func:`evaluate` (:func:`greedy_match` over the frame's
    kept boxes, IoU or centre distance); :func:`~pseudolabel.records.provenance` names its kind, new in the round
    of ``pred.info["round"]``. Frames are joined as in :func:`evaluate`; frames without ground truth are skipped.
    """
    pred_frames, gt_frames = _frames_by_key(pred, "predictions"), _frames_by_key(gt, "ground truth")
    kept_boxes, gt_boxes = pred.boxes_by_image(kept_only=True), gt.boxes_by_image(kept_only=True)
    out: dict[str, dict[str, int]] = {}
    for key in sorted(set(pred_frames) & set(gt_frames)):
        kept = kept_boxes.get(pred_frames[key].id, [])
        tp, _ = greedy_match([b.xyxy for b in kept], [b.score for b in kept],
                             [g.xyxy for g in gt_boxes.get(gt_frames[key].id, [])],
                             iou_threshold=iou_threshold, max_centre_distance=max_centre_distance)
        for b, is_true in zip(kept, tp):
            counts = out.setdefault(provenance(b, round=pred.info.get("round")), {"true": 0, "false": 0})
            counts["true" if is_true else "false"] += 1
    return {r: out[r] for r in sorted(out)}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def summarise(metrics: dict[str, Any]) -> str:
    """One-line human summary of :func:`evaluate`'s result."""
    m = metrics
    line = (f"P={_fmt(m['precision'])} R={_fmt(m['recall'])} F1={_fmt(m['f1'])} "
            f"(tp={m['tp']} fp={m['fp']} fn={m['fn']}, IoU>={m.get('iou_threshold', 0.5):g}) "
            f"AP50={_fmt(m['ap50'])} AP={_fmt(m['ap'])} "
            + (f"AP@{m['iou_threshold']:g}={_fmt(m.get('ap_at_iou'))} "
               if m.get("iou_threshold", 0.5) != 0.5 else "")
            + f"on {m['n_images']} images "
            f"({m['n_pred']} predicted, {m['n_gt']} ground-truth boxes)")
    missing = m.get("n_gt_frames_missing_in_pred", 0)
    if missing:
        line += f"; {missing} ground-truth frames have no prediction frame and were not scored"
    return line


def per_video_table(metrics: dict[str, Any]) -> str:
    """Fixed-width per-video table of :func:`evaluate`'s ``per_video``."""
    rows = metrics["per_video"]
    width = max([len("video")] + [len(v) for v in rows])
    lines = [f"{'video':<{width}} {'images':>6} {'tp':>5} {'fp':>5} {'fn':>5} {'P':>6} {'R':>6} {'F1':>6}"]
    for v, r in rows.items():
        lines.append(f"{v:<{width}} {r['n_images']:>6} {r['tp']:>5} {r['fp']:>5} {r['fn']:>5} "
                     f"{r['precision']:>6.3f} {r['recall']:>6.3f} {r['f1']:>6.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from .coco import CocoFormatError, load_coco
    from .gt_readers import GroundTruthError, load_ground_truth
    from .files import atomic_write_json

    ap = argparse.ArgumentParser(prog="python -m pseudolabel.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--pred", required=True, help="predicted labels, COCO JSON (e.g. round_0/annotations.json)")
    ap.add_argument("--gt", required=True, help="ground truth: COCO JSON, YOLO images folder or TrackNet CSV")
    ap.add_argument("--gt-format", choices=("coco", "yolo", "tracknet"), help="default: inferred from --gt")
    ap.add_argument("--iou", type=float, default=0.5, help="IoU for a true positive (default 0.5)")
    ap.add_argument("--include-pruned", action="store_true", help="also score boxes the pipeline pruned")
    ap.add_argument("--labels-dir", help="yolo: labels folder (default: sibling labels/ of the images folder)")
    ap.add_argument("--class-ids", type=int, nargs="+", help="yolo: target classes (default 0); coco: category ids")
    ap.add_argument("--video-id", help="tracknet: the video the CSV labels")
    ap.add_argument("--box-size", type=float, default=12.0, help="tracknet: box side in pixels (default 12)")
    ap.add_argument("--out", help="write the metrics here as JSON")
    args = ap.parse_args(argv)

    spec: dict[str, Any] = {"path": args.gt}
    if args.gt_format:
        spec["format"] = args.gt_format
    fmt = args.gt_format or ("yolo" if Path(args.gt).is_dir() else Path(args.gt).suffix.lower().lstrip("."))
    if fmt == "yolo":
        if args.labels_dir:
            spec["labels_dir"] = args.labels_dir
        if args.class_ids:
            spec["class_ids"] = args.class_ids
    elif fmt in ("coco", "json"):
        if args.class_ids:
            spec["category_ids"] = args.class_ids
    elif fmt in ("tracknet", "csv"):
        if args.video_id:
            spec["video_id"] = args.video_id
        spec["box_size"] = args.box_size
    try:
        pred = load_coco(args.pred)
        gt = load_ground_truth(spec)
        metrics = evaluate(pred, gt, iou_threshold=args.iou, kept_only=not args.include_pruned)
    except (CocoFormatError, GroundTruthError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarise(metrics))
    print(per_video_table(metrics))
    if args.out:
        atomic_write_json(args.out, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
