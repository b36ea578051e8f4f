"""Which box convention do labels follow: the ball at mid-exposure, or the streak its motion blur leaves?

The synthetic suite's ground truth boxes the disc where the ball is at mid-exposure (``gt_extent=disc``); a
person boxing a blurred ball by eye draws the streak (``swept``). This script

1. scores each round of the given runs against the suite's ground truth written both ways (the same videos,
   :func:`pseudolabel.synth.make_suite` with ``gt_extent`` ``disc`` and ``swept``), P / R / F1 at IoU 0.5;
2. reads human ground truth of real video (default: ``../shared/data/videos/football_broadcast``) and prints
   how box shape follows motion: the correlation, over boxes whose previous and next frames are boxed too,
   between ``w - h`` and ``|dx| - |dy|`` (the ball's displacement per frame), and the median box of fast and of
   slow balls. A positive correlation means people drew the blur streak.

Usage::

    .venv/bin/python benchmarks/gt_extent.py --runs runs/label_quality/runs/synthetic_X [...]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"


def shape_follows_motion(gt_path: Path) -> dict[str, float]:
    """Correlation of box elongation with motion direction over the boxes with boxed neighbours in time."""
    from pseudolabel.gt_readers import read_coco_gt

    gt = read_coco_gt(gt_path)
    key = {f.id: f.key for f in gt.frames}
    first = {}
    for b in gt.boxes:
        first.setdefault(key[b.image_id], b.xyxy)
    rows = []
    for (video, i), (x1, y1, x2, y2) in first.items():
        prev, nxt = first.get((video, i - 1)), first.get((video, i + 1))
        if prev is None or nxt is None:
            continue
        dx = ((nxt[0] + nxt[2]) - (prev[0] + prev[2])) / 4  # centre displacement per frame
        dy = ((nxt[1] + nxt[3]) - (prev[1] + prev[3])) / 4
        rows.append((x2 - x1, y2 - y1, abs(dx), abs(dy)))
    a = np.array(rows, dtype=np.float64).reshape(-1, 4)
    speed = np.hypot(a[:, 2], a[:, 3])
    fast, slow = a[speed > 15], a[speed < 3]
    def median(x: np.ndarray) -> float:
        return float(np.median(x)) if len(x) else float("nan")

    return {"boxes": len(a),
            "corr_elongation_motion": float(np.corrcoef(a[:, 0] - a[:, 1], a[:, 2] - a[:, 3])[0, 1]),
            "fast_n": len(fast), "fast_w": median(fast[:, 0]), "fast_h": median(fast[:, 1]),
            "slow_n": len(slow), "slow_w": median(slow[:, 0]), "slow_h": median(slow[:, 1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default=str(REPO / "runs" / "label_quality" / "data" / "synthetic"),
                    help="synthetic suite directory (its suite.json gives the parameters)")
    ap.add_argument("--runs", nargs="*", default=[], help="run directories (runs/<exp>) made on that suite")
    ap.add_argument("--video-gt", default=str(SHARED / "data" / "videos" / "football_broadcast" / "ground_truth.json"),
                    help="human ground truth of real video (COCO with video_id / frame_index)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    a = ap.parse_args(argv)
    from pseudolabel import synth
    from pseudolabel.coco import load_coco
    from pseudolabel.evaluate import evaluate
    from pseudolabel.gt_readers import read_coco_gt

    out: dict = {"runs": {}}
    params = json.loads((Path(a.suite) / "suite.json").read_text())["params"]
    kw = {k: params[k] for k in ("n_videos", "n_frames", "width", "height", "fps", "seed")}
    with tempfile.TemporaryDirectory() as tmp:
        gts = {extent: read_coco_gt(synth.make_suite(Path(tmp) / extent, gt_extent=extent, **kw))
               for extent in synth.GT_EXTENTS}
    print(f"synthetic suite {a.suite}: {len(gts['disc'].boxes)} balls; P/R/F1 at IoU 0.5 against each extent")
    print(f"{'run':32s} round  {'disc':>17s}  {'swept':>17s}")
    for run in map(Path, a.runs):
        for rdir in sorted(run.glob("round_*"), key=lambda p: int(p.name.split("_")[1])):
            if not (rdir / "annotations.json").is_file():
                continue
            pred = load_coco(rdir / "annotations.json")
            m = {e: evaluate(pred, g, iou_threshold=0.5) for e, g in gts.items()}
            out["runs"].setdefault(run.name, {})[rdir.name] = {
                e: {k: v[k] for k in ("precision", "recall", "f1")} for e, v in m.items()}
            cells = "  ".join(f"{v['precision']:.3f}/{v['recall']:.3f}/{v['f1']:.3f}" for v in m.values())
            print(f"{run.name:32s} {rdir.name.split('_')[1]:>5s}  {cells}")
    if Path(a.video_gt).is_file():
        s = shape_follows_motion(Path(a.video_gt))
        out["video_gt"] = {"path": a.video_gt, **s}
        print(f"human boxes {a.video_gt}: {s['boxes']} with boxed neighbours; corr(w - h, |dx| - |dy|) "
              f"{s['corr_elongation_motion']:.2f}; median box of fast balls (> 15 px/frame, n={s['fast_n']}) "
              f"{s['fast_w']:.1f}x{s['fast_h']:.1f}, of slow ones (< 3, n={s['slow_n']}) "
              f"{s['slow_w']:.1f}x{s['slow_h']:.1f}")
    else:
        print(f"{a.video_gt}: absent, human-box check skipped")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
