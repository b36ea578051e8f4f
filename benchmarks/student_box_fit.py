"""Does round k's student draw the boxes it was taught? Its box size against its labels and the ground truth.

For every kept box of round k-1 (the student's training labels), the student of round k runs on a crop of
``student.datamodule.crop_size`` centred on it (the scale it trained at) and its box that overlaps the label most
(IoU >= 0.3) is compared with the label: median width and height ratios. With ground truth, the label and the
student's box are also compared with the ground-truth ball they overlap (IoU > 0.2): median size ratios and the
share at IoU >= 0.5. A student whose boxes are wider or taller than its labels makes every round's boxes grow
(``--reapply`` also feeds its boxes back to its box head that many times: a head without a size bias leaves them
where they are).

    .venv/bin/python benchmarks/student_box_fit.py --run runs/label_quality/runs/synthetic_CR_synth --round 1 \\
        --set synthetic
    .venv/bin/python benchmarks/student_box_fit.py --run <run dir> --round 2 --set football_broadcast --clips 3

Extra Hydra overrides (after the options) must be those the run was made with when they change the model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _sizes(b: np.ndarray) -> np.ndarray:
    return np.stack([b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], axis=-1)


def student_boxes_on_crops(model, image: np.ndarray, labels: np.ndarray, *, crop: int, reapply: int = 0):
    """For each label (xyxy), the student's boxes on a ``crop`` square centred on it: a list (one per label) of
    arrays (reapply + 1, n, 4) in frame pixels, the boxes as predicted then after each pass back through the head."""
    import torch

    h, w = image.shape[:2]
    out = []
    for q in labels:
        cx, cy = (q[0] + q[2]) / 2, (q[1] + q[3]) / 2
        x0, y0 = int(np.clip(cx - crop / 2, 0, max(w - crop, 0))), int(np.clip(cy - crop / 2, 0, max(h - crop, 0)))
        tile = torch.from_numpy(np.ascontiguousarray(image[y0:y0 + crop, x0:x0 + crop])).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            images, _ = model.transform([tile])
            feats = model.backbone(images.tensors)
            proposals, _ = model.rpn(images, feats)
            boxes = model.roi_heads(feats, proposals, images.image_sizes)[0][0]["boxes"]
            scale = images.image_sizes[0][1] / tile.shape[-1]
            passes = [boxes]
            heads = model.roi_heads
            for _ in range(reapply):
                x = heads.box_head(heads.box_roi_pool(feats, [passes[-1]], images.image_sizes))
                _, reg = heads.box_predictor(x)
                passes.append(heads.box_coder.decode(reg, [passes[-1]])[:, 1])
        out.append(np.stack([p.numpy() / scale for p in passes]) + np.array([x0, y0, x0, y0], dtype=np.float64))
    return out


def box_fit(run: Path, k: int, cfg, *, reapply: int = 1, ground_truth=None) -> dict:
    import cv2

    from pseudolabel import layout
    from pseudolabel.boxes import iou_matrix
    from pseudolabel.coco import load_coco
    from pseudolabel.safe_config import instantiate
    from pseudolabel.student.model import StudentDetector

    ckpt = layout.round_dir(run, k) / layout.STUDENT_DIRNAME / layout.STUDENT_CHECKPOINT
    model = StudentDetector.from_checkpoint(
        ckpt, model_factory=lambda: instantiate(cfg.student.model, pretrained=False)).model.eval()
    labels_ds = load_coco(layout.round_dir(run, k - 1) / layout.ANNOTATIONS)
    frames = {f.id: f for f in labels_ds.frames}
    gt_frames = ground_truth.frame_by_key() if ground_truth is not None else {}
    gt_boxes = ground_truth.boxes_by_image(kept_only=True) if ground_truth is not None else {}
    crop = int(cfg.student.datamodule.crop_size)
    ratio_label, ratio_gt, iou_gt, label_gt, label_iou = [], [], [], [], []
    for fid, boxes in sorted(labels_ds.boxes_by_image(kept_only=True).items()):
        if not boxes:
            continue
        f = frames[fid]
        image = cv2.imread(str(run / "frames" / f.file_name))[:, :, ::-1]
        labels = np.array([b.xyxy for b in boxes], dtype=np.float64)
        gts = np.array([g.xyxy for g in gt_boxes.get(gt_frames[f.key].id, [])]) if f.key in gt_frames else np.zeros((0, 4))
        for q, passes in zip(labels, student_boxes_on_crops(model, image, labels, crop=crop, reapply=reapply)):
            if passes.shape[1] == 0:
                continue
            overlap = iou_matrix(q[None], passes[0])[0]
            j = int(np.argmax(overlap))
            if overlap[j] < 0.3:
                continue
            ratio_label.append(_sizes(passes[:, j]) / _sizes(q))
            if len(gts):
                gi = iou_matrix(q[None], gts)[0]
                if gi.max() > 0.2:
                    g = gts[int(np.argmax(gi))]
                    ratio_gt.append(_sizes(passes[:, j]) / _sizes(g))
                    iou_gt.append(iou_matrix(passes[:, j], g[None])[:, 0])
                    label_gt.append(_sizes(q) / _sizes(g))
                    label_iou.append(iou_matrix(q[None], g[None])[0, 0])
    res: dict = {"run": str(run), "round": k, "labels_matched": len(ratio_label), "passes": []}
    r, rg, ig = np.array(ratio_label), np.array(ratio_gt), np.array(iou_gt)
    for p in range(reapply + 1):
        row = {"pass": p, "width_vs_label": float(np.median(r[:, p, 0])) if len(r) else None,
               "height_vs_label": float(np.median(r[:, p, 1])) if len(r) else None}
        if len(rg):
            row.update(width_vs_gt=float(np.median(rg[:, p, 0])), height_vs_gt=float(np.median(rg[:, p, 1])),
                       iou_at_least_0_5_with_gt=float(np.mean(ig[:, p] >= 0.5)))
        res["passes"].append(row)
    if label_gt:
        lg = np.array(label_gt)
        res["labels_vs_gt"] = {"n": len(lg), "width": float(np.median(lg[:, 0])), "height": float(np.median(lg[:, 1])),
                               "iou_at_least_0_5": float(np.mean(np.array(label_iou) >= 0.5))}
    return res


def main(argv=None) -> dict:
    import label_quality as lq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="an experiment directory (runs/<exp>)")
    ap.add_argument("--round", type=int, required=True, help="the student's round k >= 1 (trained on round k-1)")
    ap.add_argument("--set", choices=sorted(lq.SETS), required=True, help="the label_quality set the run is of")
    ap.add_argument("--clips", type=int, default=None, help="football_broadcast: the first N clips, as the run used")
    ap.add_argument("--reapply", type=int, default=1, help="passes of the student's boxes back through its head")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides the run was made with (model settings)")
    a = ap.parse_args(argv)
    if a.round < 1:
        ap.error("--round must be >= 1: round 0 has no student")
    overrides = lq.set_overrides(a.set, clips=a.clips)
    if overrides is None:
        raise SystemExit(f"set {a.set}: its data is absent")
    root = a.run.resolve().parents[1]
    cfg = lq.compose([*overrides, *a.overrides, f"paths.root_dir={root}", f"paths.shared_dir={lq.SHARED}",
                      f"exp={a.run.name}"])
    gt = None
    if cfg.data.get("ground_truth"):
        from pseudolabel.gt_readers import load_ground_truth

        gt = load_ground_truth(cfg.data.ground_truth)
    res = box_fit(a.run, a.round, cfg, reapply=a.reapply, ground_truth=gt)
    print(f"{a.run.name} round {a.round}: {res['labels_matched']} labels with a student box")
    if "labels_vs_gt" in res:
        lg = res["labels_vs_gt"]
        print(f"  labels vs ground truth ({lg['n']}): width {lg['width']:.3f} height {lg['height']:.3f}, "
              f"IoU >= 0.5 {lg['iou_at_least_0_5']:.3f}")
    for row in res["passes"]:
        line = f"  pass {row['pass']}: student vs label: width {row['width_vs_label']:.3f} height {row['height_vs_label']:.3f}"
        if "width_vs_gt" in row:
            line += (f" | vs ground truth: width {row['width_vs_gt']:.3f} height {row['height_vs_gt']:.3f}, "
                     f"IoU >= 0.5 {row['iou_at_least_0_5_with_gt']:.3f}")
        print(line)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
