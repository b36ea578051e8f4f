"""Teacher label quality against ground truth, with and without tiling, at several thresholds.

Runs the offline COCO teacher once per tiling setting (scores kept down to the lowest threshold) and
evaluates each threshold with ``pseudolabel.evaluate``. Data: the football stills of ../shared (YOLO GT,
class 0 = ball) and/or the embedded synthetic suite.

    .venv/bin/python benchmarks/teacher_quality.py --data football synthetic --tiles 320 none
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_data(name: str, work: Path):
    from pseudolabel.frames import SamplingConfig, sample_inputs
    from pseudolabel.gt_readers import load_ground_truth

    if name == "football":
        images = REPO.parent / "shared" / "data" / "football" / "valid" / "images"
        if not images.is_dir():
            raise SystemExit(f"football data not found at {images}")
        gt = load_ground_truth({"format": "yolo", "images_dir": str(images), "class_ids": [0]})
        inputs = [images]
    else:
        from pseudolabel.synth import make_suite

        out = make_suite(REPO / "data" / "synthetic")
        gt = load_ground_truth({"format": "coco", "path": str(Path(out) / "ground_truth.json")})
        inputs = [Path(out)]
    frames, _ = sample_inputs(inputs, frames_dir=work / name, config=SamplingConfig(stride=1, dedup_threshold=None))
    return frames, gt, work / name


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["football", "synthetic"])
    ap.add_argument("--tiles", nargs="+", default=["320", "none"], help="tile sizes; 'none' = whole frame")
    ap.add_argument("--thresholds", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    ap.add_argument("--iou", type=float, default=0.5)
    args = ap.parse_args(argv)

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from pseudolabel.evaluate import evaluate
    from pseudolabel.label import label_frames

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config")
    print(f"{'data':10s} {'tiles':>6s} {'thr':>5s} {'P':>6s} {'R':>6s} {'F1':>6s} {'AP50':>6s} {'boxes':>6s} {'s/frame':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.data:
            frames, gt, fdir = load_data(name, Path(tmp))
            for tiles in args.tiles:
                tcfg = cfg.teacher.detector.copy()
                tcfg.tile_size = None if tiles == "none" else int(tiles)
                det = instantiate(tcfg)
                t0 = time.perf_counter()
                ds, _ = label_frames(det, frames, frames_dir=fdir, round=0, class_ids=list(cfg.teacher.class_ids),
                                     score_threshold=min(args.thresholds), batch_size=4, progress=False)
                spf = (time.perf_counter() - t0) / max(1, len(frames))
                for thr in args.thresholds:
                    for b in ds.boxes:
                        b.decision = "kept" if b.score >= thr else "pruned"
                    m = evaluate(ds, gt, iou_threshold=args.iou)
                    print(f"{name:10s} {tiles:>6s} {thr:5.2f} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} "
                          f"{(m.get('ap50') or 0):6.3f} {m['tp'] + m['fp']:6d} {spf:8.2f}")


if __name__ == "__main__":
    main()
