"""Ablation of the pruners: label once with the default teacher, then prune with none / heuristics /
+temporal / +features / all, and score each against ground truth (P, R, F1 at IoU 0.5).

Data: the embedded synthetic suite (videos: every pruner applies) and, when present, the football
stills of ../shared (YOLO GT, class 0; stills have no time axis, so temporal rows are synthetic only).
Teacher boxes carry no features, so the feature pruner embeds their crops (EfficientNet-Lite0).
Labels and embeddings are cached under ``--cache`` (keyed by threshold and ground-truth file hash).
Exits 1 if "all" has a lower F1 than "none" on the synthetic suite.

    .venv/bin/python benchmarks/prune_ablation.py --data synthetic football
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETTINGS = ("none", "heuristics", "+temporal", "+features", "all")


def load_data(name: str, cache: Path):
    """(frames, ground truth, frames dir, data key) of one data set; frames are sampled into the cache."""
    from pseudolabel.frames import SamplingConfig, sample_inputs
    from pseudolabel.gt_readers import load_ground_truth
    from pseudolabel.files import file_sha256

    if name == "football":
        images = REPO.parent / "shared" / "data" / "football" / "valid" / "images"
        if not images.is_dir():
            return None
        gt = load_ground_truth({"format": "yolo", "images_dir": str(images), "class_ids": [0]})
        inputs, key = [images], hashlib.sha256("".join(sorted(p.name for p in images.iterdir())).encode()).hexdigest()
    else:
        from pseudolabel.synth import make_suite

        gt_path = make_suite(REPO / "data" / "synthetic")
        gt = load_ground_truth({"format": "coco", "path": str(gt_path)})
        inputs, key = [Path(gt_path).parent], file_sha256(gt_path)
    fdir = cache / name / key[:12] / "frames"
    frames, _ = sample_inputs(inputs, frames_dir=fdir, config=SamplingConfig(stride=1, dedup_threshold=None))
    for i, f in enumerate(frames, start=1):
        f.id = i
    return frames, gt, fdir, key[:12]


def label_cached(cfg, frames, fdir: Path, *, threshold: float):
    """Teacher labels at ``threshold`` and the threshold they were computed at: a cached labelling at a
    lower threshold is filtered by score (box ids kept, so cached embeddings still apply)."""
    from hydra.utils import instantiate

    from pseudolabel.coco import load_coco, save_coco
    from pseudolabel.label import label_frames

    cached = sorted((float(p.stem.removeprefix("labels_thr")), p) for p in fdir.parent.glob("labels_thr*.json"))
    usable = [(t, p) for t, p in cached if t <= threshold + 1e-9]
    if usable:
        source, path = usable[-1]
        ds = load_coco(path)
        ds.boxes = [b for b in ds.boxes if b.score >= threshold]
        return ds, source, 0.0
    t0 = time.perf_counter()
    ds, _ = label_frames(instantiate(cfg.teacher.detector), frames, frames_dir=fdir, round=0,
                         class_ids=list(cfg.teacher.class_ids), score_threshold=threshold,
                         batch_size=int(cfg.teacher.batch_size), progress=False)
    save_coco(ds, fdir.parent / f"labels_thr{threshold:.3f}.json")
    return ds, threshold, (time.perf_counter() - t0) / max(1, len(frames))


def embeddings_cached(ds, fdir: Path, fcfg, *, source: float) -> dict[int, np.ndarray]:
    """Crop embeddings of the boxes of ``ds`` (cached per source labelling and crop geometry)."""
    from pseudolabel.files import atomic_write_npz
    from pseudolabel.prune.features import embed_dataset_crops, load_features

    path = fdir.parent / f"crops_thr{source:.3f}_{fcfg.crop_size}_{fcfg.crop_context:g}.npz"
    feats = load_features(path)
    todo = [b.id for b in ds.boxes if b.id not in feats]
    if todo:
        feats.update(embed_dataset_crops(ds, fdir, todo, crop_size=fcfg.crop_size, context=fcfg.crop_context))
        ids = np.array(sorted(feats), dtype=np.int64)
        atomic_write_npz(path, ids=ids, features=np.stack([feats[i] for i in ids]))
    return feats


def run_setting(ds, setting: str, *, hcfg, tcfg, fcfg, feats) -> tuple:
    from pseudolabel.prune.features import apply_feature_outliers
    from pseudolabel.prune.heuristics import apply_heuristics
    from pseudolabel.prune.temporal import apply_temporal

    ds = copy.deepcopy(ds)
    counts: dict[str, int] = {}
    if setting != "none":
        counts.update({k: v for k, v in apply_heuristics(ds, hcfg, round=0).items() if v})
    if setting in ("+features", "all"):
        counts.update(apply_feature_outliers(ds, feats, fcfg, round=0))
    if setting in ("+temporal", "all"):
        counts.update(apply_temporal(ds, tcfg, round=0))
    return ds, counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["synthetic", "football"], choices=["synthetic", "football"])
    ap.add_argument("--threshold", type=float, default=None, help="teacher score threshold (default: config's)")
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "prune_ablation")
    ap.add_argument("--overrides", nargs="*", default=[],
                    help="Hydra overrides, e.g. prune.temporal.min_track_length=3")
    args = ap.parse_args(argv)

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pseudolabel.evaluate import evaluate
    from pseudolabel.prune.features import FeatureOutlierConfig
    from pseudolabel.prune.heuristics import HeuristicsConfig
    from pseudolabel.prune.temporal import TemporalConfig

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["prune=full", *args.overrides])
    thr = float(cfg.teacher.score_threshold if args.threshold is None else args.threshold)
    conf = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    hcfg, tcfg = HeuristicsConfig(**conf(cfg.prune.heuristics)), TemporalConfig(**conf(cfg.prune.temporal))
    fcfg = FeatureOutlierConfig(**conf(cfg.prune.features))

    rows, f1 = [], {}
    for name in args.data:
        loaded = load_data(name, args.cache)
        if loaded is None:
            print(f"[{name}] skipped: ../shared/data/football/valid not found", file=sys.stderr)
            continue
        frames, gt, fdir, _ = loaded
        ds, source, spf = label_cached(cfg, frames, fdir, threshold=thr)
        print(f"[{name}] {len(frames)} frames, {len(ds.boxes)} teacher boxes at score >= {thr:.2f}"
              + (f" (labelled at {spf:.2f} s/frame)" if spf else f" (cached labels at >= {source:.2f})"),
              file=sys.stderr)
        feats = embeddings_cached(ds, fdir, fcfg, source=source)
        for setting in SETTINGS:
            if setting in ("+temporal",) and name == "football":
                continue  # stills: no time axis
            t0 = time.perf_counter()
            out, counts = run_setting(ds, setting, hcfg=hcfg, tcfg=tcfg, fcfg=fcfg, feats=feats)
            dt = time.perf_counter() - t0
            m = evaluate(out, gt, iou_threshold=args.iou)
            f1[(name, setting)] = m["f1"]
            rows.append((name, setting, len(out.kept_boxes()), m, counts, dt))

    print(f"{'data':10s} {'setting':11s} {'kept':>5s} {'tp':>4s} {'fp':>4s} {'fn':>4s} {'P':>6s} {'R':>6s} "
          f"{'F1':>6s} {'s':>5s}  pruned/added")
    for name, setting, kept, m, counts, dt in rows:
        changes = json.dumps({k: v for k, v in counts.items() if v}, separators=(",", ":"))
        print(f"{name:10s} {setting:11s} {kept:5d} {m['tp']:4d} {m['fp']:4d} {m['fn']:4d} {m['precision']:6.3f} "
              f"{m['recall']:6.3f} {m['f1']:6.3f} {dt:5.1f}  {changes}")
    if ("synthetic", "all") in f1 and f1[("synthetic", "all")] < f1[("synthetic", "none")]:
        print(f"FAIL: synthetic F1 all={f1[('synthetic', 'all')]:.3f} < none={f1[('synthetic', 'none')]:.3f}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
