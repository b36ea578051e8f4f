"""A simulated reviewer on football_broadcast: does correcting the most informative frames help the next round more
than correcting random ones?

Runs (or reuses) rounds 0..K of the pipeline on the first ``--clips`` broadcast clips, then, for each way of choosing
``--budget`` frames of round K (``informative``: what ``make export ARGS="export.budget=N"`` exports, most informative
first; ``random``: drawn with ``--seed``), copies the experiment, lets a reviewer who knows the ground truth correct
those frames, imports the correction with ``stage=review_import`` and runs round K+1. A control runs round K+1 with
no review. The reviewer keeps a kept box on a true ball (IoU >= 0.5), moves one close to a ball onto it, deletes the
others and draws the balls nobody found; the correction goes through a Label Studio export, as a real one would.

Prints F1 (IoU 0.5, and centres within 4 px) of round K (before) and of each round K+1 (after), on every frame and on
the frames neither ordering reviewed (the reviewed frames are right by construction: the question is what the
student learnt from them).

    .venv/bin/python benchmarks/review_simulation.py                       # 3 clips, review round 0, run round 1
    .venv/bin/python benchmarks/review_simulation.py --clips 10 --budget 20 --review-round 1
    .venv/bin/python benchmarks/review_simulation.py --root runs/label_quality --reuse-round0 ""  # its teacher pass

Writes everything to ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import label_quality as lq  # noqa: E402  (run_round, set_overrides, compose, SHARED)
from pseudolabel import layout  # noqa: E402

SET = "football_broadcast"
ORDERINGS = ("informative", "random")


def choose_frames(ds, *, ordering: str, budget: int, seed: int) -> list:
    """The frames of ``ds`` a reviewer corrects: the ``budget`` most informative, or ``budget`` random ones."""
    import numpy as np

    from pseudolabel.review.informative import review_order

    if ordering == "informative":
        return [s.frame for s in review_order(ds, budget=budget)]
    frames = sorted(ds.frames, key=lambda f: f.key)
    pick = np.random.default_rng(seed).choice(len(frames), size=min(budget, len(frames)), replace=False)
    return [frames[i] for i in sorted(pick)]


def simulate_reviewer(ds, gt, frames, *, keep_iou: float = 0.5, near: float = 2.0):
    """What a reviewer who knows the ground truth leaves on ``frames`` of round ``ds`` (a Dataset, xyxy pixels).

    A kept box matched to a true ball (:func:`pseudolabel.merge.assign_pairs`: IoU >= ``keep_iou``, or centres within
    ``near`` box diagonals) stays as it is when their IoU reaches ``keep_iou``, else it is moved onto the ball; other
    kept boxes are deleted; true balls without a box are drawn. Pruned boxes are not shown (a kept-only export).
    """
    from pseudolabel.boxes import iou_matrix
    from pseudolabel.merge import assign_pairs
    from pseudolabel.records import Box, Dataset

    gt_by_key = {f.key: f for f in gt.frames}
    gt_boxes = gt.boxes_by_image(kept_only=True)
    ours = ds.boxes_by_image(kept_only=True)
    boxes = []
    for f in frames:
        truth = [Box(image_id=f.id, xyxy=b.xyxy) for b in gt_boxes.get(gt_by_key[f.key].id, [])] \
            if f.key in gt_by_key else []
        kept = ours.get(f.id, [])
        pairs = assign_pairs(kept, truth, iou_threshold=keep_iou, centre_factor=near)
        for i, j in pairs:
            same = iou_matrix([kept[i].xyxy], [truth[j].xyxy])[0, 0] >= keep_iou
            boxes.append(Box(image_id=f.id, xyxy=kept[i].xyxy if same else truth[j].xyxy, source="reviewer"))
        boxes += [Box(image_id=f.id, xyxy=t.xyxy, source="reviewer")
                  for j, t in enumerate(truth) if j not in {j for _, j in pairs}]
    out = Dataset(frames=list(frames), boxes=boxes, categories=[dict(c) for c in ds.categories])
    out.renumber()
    return out


def f1_rows(ds, gt, *, exclude=frozenset()) -> dict:
    """P/R/F1 at IoU 0.5 and at 4 px of ``ds`` against ``gt``, on the frames whose key is not in ``exclude``."""
    from pseudolabel.evaluate import evaluate
    from pseudolabel.records import Dataset

    def only(d):
        frames = [f for f in d.frames if f.key not in exclude]
        ids = {f.id for f in frames}
        return Dataset(frames=frames, boxes=[b for b in d.boxes if b.image_id in ids], categories=d.categories)

    p, g = only(ds), only(gt)
    m, c = evaluate(p, g), evaluate(p, g, max_centre_distance=4.0)
    return {"n_images": m["n_images"], "n_boxes": len(p.kept_boxes()), "precision": m["precision"],
            "recall": m["recall"], "f1": m["f1"], "f1_at_centre": c["f1"]}


def copy_experiment(src: Path, dst: Path, *, last_round: int) -> None:
    """``dst`` = rounds 0..``last_round`` of ``src`` (copied) and its frames (a link: they are only read)."""
    if dst.exists():
        return
    dst.mkdir(parents=True)
    os.symlink(layout.default_frames_dir(src).resolve(), layout.default_frames_dir(dst), target_is_directory=True)
    for k in range(last_round + 1):
        shutil.copytree(layout.round_dir(src, k), layout.round_dir(dst, k), symlinks=True)


def review_import(root: Path, exp: str, reviewed, *, round: int, overrides: list[str]) -> dict:
    """Export the reviewer's boxes as Label Studio tasks and import them with ``stage=review_import``."""
    from pseudolabel.export import export_dataset

    exp_dir = root / "runs" / exp
    folder = layout.review_dir(exp_dir) / f"simulated_labelstudio_{layout.round_dirname(round)}"
    if not (folder / "tasks.json").is_file():
        export_dataset(reviewed, folder, format="labelstudio", frames_dir=layout.default_frames_dir(exp_dir),
                       options={"as_annotations": True}, overwrite=True)
    if not layout.reviewed_path(exp_dir).is_file():
        cfg = lq.compose([*overrides, f"paths.root_dir={root}", f"paths.shared_dir={lq.SHARED}", f"exp={exp}",
                          "stage=review_import", f"review.path={folder}", "review.format=labelstudio",
                          f"review.round={round}"])
        from pseudolabel.__main__ import run

        return run(cfg)
    return {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=3, help="the first N football_broadcast clips (default 3)")
    ap.add_argument("--budget", type=int, default=20, help="frames the reviewer corrects (default 20)")
    ap.add_argument("--review-round", type=int, default=0, help="round K that is reviewed; K+1 runs after (default 0)")
    ap.add_argument("--seed", type=int, default=0, help="random ordering's draw")
    ap.add_argument("--no-control", action="store_true", help="skip round K+1 without review")
    ap.add_argument("--root", default=str(REPO / "runs" / "review_simulation"), help="where the runs are kept")
    ap.add_argument("--tag", default="", help="suffix of the experiment names")
    ap.add_argument("--reuse-round0", default=None, metavar="TAG",
                    help="start from the frames and round 0's teacher labels of the run football_broadcast<TAG> under "
                         "--root (e.g. label_quality's: --root runs/label_quality --reuse-round0 '')")
    ap.add_argument("--out", default=None, help="JSON output (default: <root>/review_simulation<tag>.json)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. student.ema_decay=0.98")
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    overrides = lq.set_overrides(SET, clips=a.clips)
    if overrides is None:
        print(f"{SET}: no data under {lq.SHARED}; nothing to simulate")
        return 0
    overrides += list(a.overrides)
    from pseudolabel.coco import load_coco
    from pseudolabel.gt_readers import load_ground_truth

    base = f"{SET}_review{a.tag}"
    k = int(a.review_round)
    round0 = layout.round_dir(root / "runs" / base, 0)
    if a.reuse_round0 is not None and not round0.exists():
        src = root / "runs" / f"{SET}{a.reuse_round0}"
        round0.mkdir(parents=True)
        os.symlink(layout.default_frames_dir(src).resolve(), layout.default_frames_dir(root / "runs" / base),
                   target_is_directory=True)
        src0 = layout.round_dir(src, 0)
        for part in (layout.LABELS, layout.CONTEXT, layout.FEATURES, layout.done_marker(src0, "label").name):
            if (src0 / part).is_file():  # the teacher's pass
                shutil.copy2(src0 / part, round0 / part)
    for r in range(k + 1):
        lq.run_round(root, base, r, overrides)
    cfg = lq.compose([*overrides, f"paths.root_dir={root}", f"paths.shared_dir={lq.SHARED}", f"exp={base}"])
    gt = load_ground_truth(dict(cfg.data.ground_truth))
    before = load_coco(layout.round_dir(root / "runs" / base, k) / layout.ANNOTATIONS)

    chosen = {o: choose_frames(before, ordering=o, budget=a.budget, seed=a.seed) for o in ORDERINGS}
    reviewed_keys = frozenset(f.key for fs in chosen.values() for f in fs)
    rows = [{"ordering": "before", "round": k, "reviewed": 0, "all": f1_rows(before, gt),
             "unreviewed": f1_rows(before, gt, exclude=reviewed_keys)}]
    results: dict = {"command": " ".join(sys.argv), "clips": a.clips, "budget": a.budget, "review_round": k,
                     "chosen": {o: [list(f.key) for f in fs] for o, fs in chosen.items()}, "imports": {}}
    for ordering in ([] if a.no_control else ["none"]) + list(ORDERINGS):
        exp = f"{base}-{ordering}"
        copy_experiment(root / "runs" / base, root / "runs" / exp, last_round=k)
        if ordering != "none":
            reviewed = simulate_reviewer(before, gt, chosen[ordering])
            results["imports"][ordering] = review_import(root, exp, reviewed, round=k, overrides=overrides)
        try:
            wall, _ = lq.run_round(root, exp, k + 1, overrides)
        except RuntimeError as e:
            print(f"{ordering}: {e}")
            continue
        after = load_coco(layout.round_dir(root / "runs" / exp, k + 1) / layout.ANNOTATIONS)
        rows.append({"ordering": ordering, "round": k + 1, "reviewed": len(chosen.get(ordering, [])),
                     "all": f1_rows(after, gt), "unreviewed": f1_rows(after, gt, exclude=reviewed_keys),
                     "wall_s": wall})
    results["rows"] = rows
    n_unreviewed = rows[0]["unreviewed"]["n_images"]
    print(f"\n{SET}, first {a.clips} clip(s): round {k} reviewed on {a.budget} frames, then round {k + 1}")
    print(f"{'ordering':<13}{'round':>6}{'reviewed':>9}{'kept':>6}{'P':>7}{'R':>7}{'F1':>7}{'F1@4px':>8}"
          f"{'F1 unrev.':>10}{'F1@4px unrev.':>14}")
    for r in rows:
        al, un = r["all"], r["unreviewed"]
        print(f"{r['ordering']:<13}{r['round']:>6}{r['reviewed']:>9}{al['n_boxes']:>6}{al['precision']:>7.3f}"
              f"{al['recall']:>7.3f}{al['f1']:>7.3f}{al['f1_at_centre']:>8.3f}{un['f1']:>10.3f}"
              f"{un['f1_at_centre']:>14.3f}")
    print(f"(unrev.: the {n_unreviewed} frames neither ordering reviewed)")
    out = Path(a.out) if a.out else root / f"review_simulation{a.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
