"""Label quality of the whole loop against human / exact ground truth, round by round.

Runs rounds 0..N of the real pipeline (``python -m pseudolabel stage=round``, one process per round) on each
set, then prints per round: kept boxes; P/R/F1 at IoU 0.5; P/R/F1 with centres within 4 px (WASB, TrackNet);
the teacher alone at the same precision (round 0's raw labels, threshold swept, no pruning: the best F1
whose precision reaches the round's); the round's wall time; the true balls and false boxes each pruner
removed; and those each kind of evidence kept (source, seeding rule, first found this round). Round 0 is also
scored without the temporal hysteresis (the same labels.json, boxes below the threshold dropped, the same
heuristics).

Sets: ``synthetic`` (the demo's suite), ``football_broadcast`` (../shared clips, human boxes) and
``football`` (../shared stills, valid split). Runs resume: a rerun with the same ``--root`` reuses the rounds
already finished (their wall time is then reported as cached).

    .venv/bin/python benchmarks/label_quality.py --sets synthetic football_broadcast football --rounds 3
    .venv/bin/python benchmarks/label_quality.py --sets football_broadcast --clips 3 --rounds 1
    .venv/bin/python benchmarks/label_quality.py --sets football_broadcast --skip-clips 3   # the clips not tuned on

Writes everything to ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))
from pseudolabel import layout  # noqa: E402

SETS = {
    "synthetic": ["data=synthetic"],
    "football_broadcast": ["data=football_broadcast"],
    "football": ["experiment=football"],
}


def set_overrides(name: str, *, clips: int | None, skip_clips: int = 0) -> list[str] | None:
    """The Hydra overrides of one set, or None when its data is absent. football_broadcast: its clips in name order,
    the first ``skip_clips`` left out, then the first ``clips`` of the rest (None: all)."""
    if name == "synthetic":
        return list(SETS[name])
    if name == "football_broadcast":
        folder = SHARED / "data" / "videos" / "football_broadcast"
        if not folder.is_dir():
            return None
        out = list(SETS[name])
        if clips or skip_clips:
            videos = sorted(folder.glob("*.mp4"))[skip_clips:][:clips]
            out.append("data.inputs=[" + ",".join(str(v) for v in videos) + "]")
        return out
    if not (SHARED / "data" / "football" / "valid" / "images").is_dir():
        return None
    return list(SETS[name])


def run_round(root: Path, exp: str, k: int, overrides: list[str]) -> tuple[float | None, dict]:
    """Run round k (unless finished) and return (wall seconds or None when cached, metrics.json)."""
    metrics_path = layout.round_dir(root / "runs" / exp, k) / layout.METRICS
    if metrics_path.is_file():
        return None, json.loads(metrics_path.read_text())
    cmd = [sys.executable, "-m", "pseudolabel", "stage=round", f"round={k}", f"exp={exp}", "logger=none",
           f"paths.root_dir={root}", f"paths.shared_dir={SHARED}", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{exp} round {k} failed ({proc.returncode}): {' | '.join(tail)}")
    return wall, json.loads(metrics_path.read_text())


def teacher_alone_at(root: Path, exp: str, gt, *, precision: float) -> dict | None:
    """The teacher's raw round-0 labels (no pruning), thresholded at the score that gives the best F1 among
    the thresholds whose precision (IoU 0.5) is at least ``precision``."""
    import numpy as np

    from pseudolabel.coco import load_coco
    from pseudolabel.evaluate import evaluate

    raw = load_coco(layout.round_dir(root / "runs" / exp, 0) / layout.LABELS)
    best = None
    for t in np.round(np.arange(0.2, 1.0, 0.02), 2):
        ds = type(raw)(frames=raw.frames, boxes=[b for b in raw.boxes if b.score >= t], categories=raw.categories)
        m = evaluate(ds, gt)
        if m["precision"] >= precision and (best is None or m["f1"] > best["f1"]):
            best = {"threshold": float(t), "precision": m["precision"], "recall": m["recall"], "f1": m["f1"]}
    return best


def pruned_truth(root: Path, exp: str, k: int, gt) -> dict:
    """Boxes each pruner removed in round k (this round's decisions only), true balls against false boxes."""
    from pseudolabel.coco import load_coco
    from pseudolabel.evaluate import pruned_truth_by_reason

    ds = load_coco(layout.round_dir(root / "runs" / exp, k) / layout.ANNOTATIONS)
    ds.boxes = [b for b in ds.boxes if b.kept or b.extra.get("pruned_round", k) == k]
    return pruned_truth_by_reason(ds, gt, max_centre_distance=4.0)


def kept_truth(root: Path, exp: str, k: int, gt) -> dict:
    """Round k's kept boxes by what kept them (source, seeding rule, new this round), true balls against false boxes."""
    from pseudolabel.coco import load_coco
    from pseudolabel.evaluate import kept_truth_by_provenance

    return kept_truth_by_provenance(load_coco(layout.round_dir(root / "runs" / exp, k) / layout.ANNOTATIONS), gt)


def round0_without_hysteresis(root: Path, exp: str, gt, cfg) -> dict:
    """Round 0's labels as they would be without the hysteresis: boxes below the threshold dropped, then the
    same heuristics as the run."""
    from omegaconf import OmegaConf

    from pseudolabel.coco import load_coco
    from pseudolabel.evaluate import evaluate
    from pseudolabel.prune import HeuristicsConfig, apply_heuristics

    ds = load_coco(layout.round_dir(root / "runs" / exp, 0) / layout.LABELS)
    high = float(ds.info.get("score_threshold", cfg.teacher.score_threshold))
    ds.boxes = [b for b in ds.boxes if b.score >= high]
    heur = OmegaConf.to_container(cfg.prune, resolve=True).get("heuristics")
    if heur:
        apply_heuristics(ds, HeuristicsConfig(**heur), round=0)
    m = evaluate(ds, gt)
    c = evaluate(ds, gt, max_centre_distance=4.0)
    return {"n_boxes": len(ds.kept_boxes()), "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
            "at_centre": {k: c[k] for k in ("precision", "recall", "f1")}}


def reuse_rounds(src: Path, dst: Path, *, through: int = 0) -> None:
    """Start run ``dst`` from run ``src``: its frames, its rounds before ``through`` whole (they count as finished)
    and round ``through``'s labelling (the teacher's pass in round 0, else the student and its relabel), so that
    round ``through`` is pruned, merged and scored again with ``dst``'s settings on the same detections."""
    import shutil

    src_k, dst_k = layout.round_dir(src, through), layout.round_dir(dst, through)
    if not layout.is_done(src_k, "label"):
        raise SystemExit(f"{src_k}: nothing labelled to reuse")
    shutil.copytree(layout.default_frames_dir(src), layout.default_frames_dir(dst), symlinks=True)
    for k in range(through):
        shutil.copytree(layout.round_dir(src, k), layout.round_dir(dst, k), symlinks=True)
    dst_k.mkdir(parents=True)
    folds = sorted(p.name for p in src_k.glob(layout.fold_train_labels("*")))
    for part in (layout.LABELS, layout.CONTEXT, layout.FEATURES, layout.TRAIN_LABELS, *folds,
                 layout.done_marker(src_k, "train").name, layout.done_marker(src_k, "label").name):
        if (src_k / part).is_file():
            shutil.copy2(src_k / part, dst_k / part)
    if (src_k / layout.STUDENT_DIRNAME).is_dir():
        shutil.copytree(src_k / layout.STUDENT_DIRNAME, dst_k / layout.STUDENT_DIRNAME, symlinks=True)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--rounds", type=int, default=3, help="last round (default 3)")
    ap.add_argument("--clips", type=int, default=None,
                    help="football_broadcast: only the first N clips (of those --skip-clips leaves)")
    ap.add_argument("--skip-clips", type=int, default=0, metavar="K",
                    help="football_broadcast: leave out the first K clips (in name order) before --clips takes its N: "
                         "clips that settings were not chosen on")
    ap.add_argument("--root", default=str(REPO / "runs" / "label_quality"), help="where the runs are kept")
    ap.add_argument("--tag", default="", help="suffix of the experiment names (compare settings side by side)")
    ap.add_argument("--reuse-round0", default=None, metavar="TAG",
                    help="start from the frames and round 0's teacher labels of the runs tagged TAG ('' for "
                         "untagged), then prune (and go on) with this run's settings: compare pruner and student "
                         "settings on the same teacher pass")
    ap.add_argument("--replay-round", type=int, default=0, metavar="K",
                    help="with --reuse-round0: also take TAG's rounds 1..K-1 whole and round K's student and "
                         "relabel, so that only round K's pruning, merge and scores (and later rounds) are redone: "
                         "compare pruner settings on one student's boxes, without the noise of training")
    ap.add_argument("--out", default=None, help="JSON output (default: <root>/label_quality<tag>.json)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. prune=full")
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    from pseudolabel.gt_readers import load_ground_truth

    results: dict = {"command": " ".join(sys.argv), "rounds": a.rounds, "sets": {}}
    rows = []
    for name in a.sets:
        overrides = set_overrides(name, clips=a.clips, skip_clips=a.skip_clips)
        if overrides is None:
            print(f"{name}: skipped (no data under {SHARED})")
            continue
        overrides += list(a.overrides)
        exp = f"{name}{a.tag}"
        cfg = compose([*overrides, f"paths.root_dir={root}", f"paths.shared_dir={SHARED}", f"exp={exp}"])
        if a.reuse_round0 is not None and not layout.round_dir(root / "runs" / exp, 0).exists():
            reuse_rounds(root / "runs" / f"{name}{a.reuse_round0}", root / "runs" / exp, through=a.replay_round)
        entry: dict = {"overrides": overrides, "rounds": []}
        results["sets"][name] = entry
        for k in range(a.rounds + 1):
            try:
                wall, m = run_round(root, exp, k, overrides)
            except RuntimeError as e:
                print(f"{name}: {e}")
                entry["stopped"] = str(e)
                break
            if k == 0:
                gt = load_ground_truth(dict(cfg.data.ground_truth))
                entry["round0_without_hysteresis"] = round0_without_hysteresis(root, exp, gt, cfg)
            alone = teacher_alone_at(root, exp, gt, precision=m["precision"])
            pruned = pruned_truth(root, exp, k, gt)
            kept = kept_truth(root, exp, k, gt)
            row = {"set": name, "round": k, "n_boxes": m["n_boxes"], "precision": m["precision"],
                   "recall": m["recall"], "f1": m["f1"], "at_centre": m.get("at_centre"),
                   "teacher_alone_same_precision": alone, "wall_s": wall, "pruned_truth": pruned,
                   "kept_truth": kept}
            entry["rounds"].append(row)
            rows.append(row)
    print()
    print(f"{'set':<19}{'round':>5}{'kept':>6}{'P':>7}{'R':>7}{'F1':>7}{'P@4px':>7}{'R@4px':>7}{'F1@4px':>7}"
          f"{'alone F1':>9}{'(thr)':>7}{'wall s':>8}")
    for r in rows:
        c = r["at_centre"] or {}
        alone = r["teacher_alone_same_precision"]
        wall = "cached" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        print(f"{r['set']:<19}{r['round']:>5}{r['n_boxes']:>6}{r['precision']:>7.3f}{r['recall']:>7.3f}{r['f1']:>7.3f}"
              f"{c.get('precision', float('nan')):>7.3f}{c.get('recall', float('nan')):>7.3f}"
              f"{c.get('f1', float('nan')):>7.3f}"
              f"{(alone or {}).get('f1', float('nan')):>9.3f}{(alone or {}).get('threshold', float('nan')):>7.2f}"
              f"{wall:>8}")
    print("\npruned by reason in each round (true balls lost / false boxes removed; centre within 4 px):")
    for r in rows:
        if r["pruned_truth"]:
            print(f"  {r['set']} round {r['round']}: " + ", ".join(
                f"{reason} {c['true']}/{c['false']}" for reason, c in r["pruned_truth"].items()))
    print("\nkept by provenance in each round (true balls / false boxes at IoU 0.5; /new: first found this round):")
    for r in rows:
        if r["kept_truth"]:
            print(f"  {r['set']} round {r['round']}: " + ", ".join(
                f"{kind} {c['true']}/{c['false']}" for kind, c in r["kept_truth"].items()))
    for name, entry in results["sets"].items():
        w = entry.get("round0_without_hysteresis")
        if w:
            print(f"{name}: round 0 without hysteresis: kept {w['n_boxes']} P {w['precision']:.3f} "
                  f"R {w['recall']:.3f} F1 {w['f1']:.3f} (4 px: P {w['at_centre']['precision']:.3f} "
                  f"R {w['at_centre']['recall']:.3f} F1 {w['at_centre']['f1']:.3f})")
    out = Path(a.out) if a.out else root / f"label_quality{a.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
