"""Peak memory of labelling N frames against 10 x N frames: nothing but the annotations may grow with N.

Each size runs in a fresh subprocess (the real path: ``pipeline.stage_sample`` then
``pipeline.stage_label``) on a synthetic video; the parent reads the child's peak RSS
(``ru_maxrss`` from ``os.wait4``) and prints both, their ratio (goal <= 1.2) and the growth per extra
frame. The child also reports its peak before labelling (imports, sampling, detector built and run
once on a full batch), so the part of the peak that labelling adds is visible. Pick N of at least a
few batches (``runtime.teacher.frames_per_call`` = 4 frames; ``runtime.student.frames_per_call`` null = 4 on 2 cores): a smaller
N never fills a batch and measures the batch size, not N.

    .venv/bin/python benchmarks/memory_scaling.py                    # N = 16, the default teacher (SSD on OpenVINO), 320-px tiles
    .venv/bin/python benchmarks/memory_scaling.py --teacher opencv     # the same SSD in cv2.dnn
    .venv/bin/python benchmarks/memory_scaling.py --frames 30 --teacher student
    .venv/bin/python benchmarks/memory_scaling.py --frames 30 --teacher student --backend openvino --precision bf16
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def child(args) -> None:
    """Sample + label ``args.frames`` frames of ``args.video``; print one JSON line."""
    from hydra import compose, initialize_config_dir
    from pseudolabel.safe_config import instantiate

    from pseudolabel import layout, pipeline
    from pseudolabel.coco import load_coco
    from pseudolabel.frames import read_rgb
    from pseudolabel.label import configure_threads

    overrides = [f"paths.root_dir={args.root}", "exp=mem", "logger=none", "data=folder",
                 f"data.inputs=[{args.video}]", "data.sampling.stride=1", "data.sampling.target_fps=null",
                 "data.sampling.dedup_threshold=null", f"data.sampling.max_frames_per_video={args.frames}"]
    if args.teacher in ("opencv", "openvino"):
        overrides.append("teacher=" + {"opencv": "ssd_mobilenet_v2", "openvino": "ssd_mobilenet_v2_openvino"}[args.teacher])
        overrides.append(f"teacher.detector.tile_size={'null' if args.tile_size == 0 else args.tile_size}")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    frames = pipeline.stage_sample(cfg)
    configure_threads(cfg.label.num_threads)
    if args.teacher == "student":
        import torch

        from pseudolabel.student.model import StudentDetector

        torch.manual_seed(0)  # the same untrained heads in both children
        rt = cfg.runtime
        det = StudentDetector(instantiate(cfg.student.model), batch_size=rt.images_per_forward,
                              backend=args.backend or str(rt.backend),  # auto: ONNX Runtime
                              workers=rt.workers, precision=args.precision or str(rt.precision))
        label = dict(class_ids=[1], score_threshold=float(cfg.relabel.score_threshold),
                     batch_size=int(rt.student.frames_per_call or det.frames_per_call))
    else:
        det = instantiate(cfg.teacher.detector)
        label = dict(class_ids=list(cfg.teacher.class_ids), score_threshold=float(cfg.teacher.score_threshold),
                     batch_size=int(cfg.teacher.batch_size))
    first = read_rgb(pipeline.frames_dir(cfg) / frames.frames[0].file_name)
    det.predict([first] * label["batch_size"])  # one full batch: the steady-state working set
    ready = _peak_mb()
    pipeline.stage_label(cfg, 0, frames, lambda: det, **label)
    rdir = pipeline.round_dir(cfg, 0)
    ds = load_coco(rdir / layout.LABELS)
    print(json.dumps({"frames": len(ds.frames), "boxes": len(ds.boxes), "peak_before_label_mb": ready,
                      "labels_json_kb": (rdir / layout.LABELS).stat().st_size / 1024,
                      "features_kb": (rdir / layout.FEATURES).stat().st_size / 1024
                      if (rdir / layout.FEATURES).exists() else 0.0}))


def run_child(args, video: Path, frames: int, root: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--video", str(video), "--frames", str(frames), "--root", str(root),
           "--teacher", args.teacher, "--tile-size", str(args.tile_size)]
    cmd += ["--backend", args.backend] if args.backend else []
    cmd += ["--precision", args.precision] if args.precision else []
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the max over all children
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{err[-3000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mb"] = usage.ru_maxrss / 1024
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16, help="N: the small run labels N frames, the large 10 x N")
    ap.add_argument("--teacher", choices=["opencv", "openvino", "student"], default="openvino",
                    help="the offline SSD teacher in OpenVINO (the pipeline's default teacher, and this default) "
                         "or in cv2.dnn, or the student")
    ap.add_argument("--tile-size", type=int, default=320, help="SSD teacher tile size (0: whole frame only)")
    ap.add_argument("--size", default="640x360", help="synthetic video WxH")
    ap.add_argument("--backend", choices=["auto", "torch", "onnxruntime", "openvino"], default=None,
                    help="student backbone runtime (default: runtime.backend)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                    help="student backbone precision, bf16 with --backend openvino (default: runtime.precision)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--video", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return {}

    from pseudolabel.synth import render_video

    width, height = (int(v) for v in args.size.lower().split("x"))
    n = args.frames
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "synthetic.mp4"
        render_video(video, seed=0, venue="grass", n_frames=10 * n, width=width, height=height)
        small = run_child(args, video, n, Path(tmp) / "small")
        large = run_child(args, video, 10 * n, Path(tmp) / "large")
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    added_small = small["peak_rss_mb"] - small["peak_before_label_mb"]
    added_large = large["peak_rss_mb"] - large["peak_before_label_mb"]
    per_frame_kb = (large["peak_rss_mb"] - small["peak_rss_mb"]) * 1024 / (9 * n)
    tiles = "whole frame" if args.tile_size == 0 else f"{args.tile_size}-px tiles"
    what = (f" (backend {args.backend or 'as configured'}, {args.precision or 'precision as configured'})"
            if args.teacher == "student" else f" ({tiles})")
    print(f"teacher {args.teacher}{what}, synthetic {width}x{height}")
    for name, r in (("N", small), ("10N", large)):
        print(f"{name:>4s}: {r['frames']:5d} frames, {r['boxes']:5d} boxes: peak RSS {r['peak_rss_mb']:8.1f} MB "
              f"(before labelling {r['peak_before_label_mb']:.1f} MB; labels.json {r['labels_json_kb']:.0f} kB, "
              f"features {r['features_kb']:.0f} kB)")
    print(f"ratio 10N/N: {ratio:.3f} (goal <= 1.2); growth {per_frame_kb:.1f} kB per extra frame; "
          f"labelling adds {added_small:.1f} MB at N, {added_large:.1f} MB at 10N")
    return {"small": small, "large": large, "ratio": ratio, "per_frame_kb": per_frame_kb}


if __name__ == "__main__":
    main()
