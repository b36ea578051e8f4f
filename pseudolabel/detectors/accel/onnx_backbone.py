"""ONNX Runtime (or OpenVINO) for the backbone, FPN and RPN-head convolutions of a torchvision R-CNN at
inference, on CPU.

The backbone is nearly all of a Faster R-CNN's inference FLOPs, and PyTorch's eager CPU kernels run
it slowly: EfficientNet-Lite0's depthwise convolutions, and frozen BatchNorm layers that stay separate
passes over memory. ONNX Runtime folds the BatchNorms into the convolutions and fuses the activations
when it loads the graph. The RPN's proposal filtering and the RoI heads stay in PyTorch (:mod:`pseudolabel.detectors.rcnn`), so
boxes, scores and box features come out of the same code as with ``backend="torch"``, equal up to float
rounding (``tests/test_onnx_backbone.py``).

Why the graphs are static: one graph is exported (TorchScript-based exporter) per input shape
``(N, 3, H, W)``. timm's TF-"same" padding is computed from the input size while tracing, so H and W
must be fixed anyway; a fixed batch axis as well lets ONNX Runtime plan every buffer, and a dynamic batch
axis was measurably slower per forward (BENCHMARKS.md). Every frame of a
video has one size, so a relabel exports once or twice. Shapes past ``max_graphs`` run in PyTorch
instead of exporting yet another graph (a folder of stills of many sizes).

Why spinning is off: ONNX Runtime's worker threads busy-wait after each run by default; on a small
CPU they then steal the cores from the PyTorch heads that run next (BENCHMARKS.md).

Why OpenVINO too: the same exported graph, compiled by OpenVINO's CPU plugin. In fp32 it was no faster
than ONNX Runtime, so ``auto`` keeps ONNX Runtime. With ``precision="bf16"`` it runs the convolutions in
bfloat16 on CPUs that have AMX or AVX512-BF16, much faster there (BENCHMARKS.md). That changes the
numbers (feature maps are no longer fp32's), so it is opt-in, never
``auto``; on a CPU without bf16 OpenVINO runs fp32 and :attr:`OnnxBackbone.precision` says so.
"""
from __future__ import annotations

import logging
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger("pseudolabel")

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
GRAPH_BACKENDS = ("onnxruntime", "openvino")  # backends that run an exported graph (this module)
PRECISIONS = ("fp32", "bf16")


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` and ``onnx`` (needed by the exporter) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def resolve_backend(backend: str, device: str = "cpu", *, precision: str = "fp32") -> str:
    """``"auto"`` -> ``"onnxruntime"`` on CPU when it is installed, else ``"torch"``; others are checked.

    Raises
    ------
    ValueError
        An unknown backend or precision, a graph backend (``onnxruntime``, ``openvino``) on a device
        other than the CPU, or ``precision="bf16"`` with a backend other than ``openvino``.
    """
    backend, precision = str(backend), str(precision)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "fp32" and backend != "openvino":
        raise ValueError(f"precision {precision} needs backend openvino, got backend {backend!r}")
    if backend == "auto":
        return "onnxruntime" if str(device) == "cpu" and onnxruntime_available() else "torch"
    if backend in GRAPH_BACKENDS and str(device) != "cpu":
        raise ValueError(f"backend {backend} runs on the CPU only, got device {device!r}")
    return backend


def effective_precision(backbone: "OnnxBackbone | None") -> str:
    """The precision a detector's backbone runs in: ``"fp32"`` without an exported graph; else what the
    runtime compiled the last graph in (before the first graph: what was asked for)."""
    if backbone is None:
        return "fp32"
    return backbone.precision or backbone.requested_precision


class _OrtGraph:
    """One exported graph in an ONNX Runtime session; ``run`` may be called from several threads."""

    precision = "fp32"

    def __init__(self, path: Path, *, num_threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(self, images) -> list:
        return self.session.run(None, {"images": images})


class _OpenVinoGraph:
    """One exported graph compiled by OpenVINO's CPU plugin, with ``concurrency`` streams so that as many
    threads run it at once (each thread keeps its own infer request: requests are not thread-safe)."""

    def __init__(self, path: Path, *, num_threads: int, concurrency: int, precision: str) -> None:
        self.compiled, self.precision = compile_on_cpu(str(path), precision=precision, streams=concurrency,
                                                       threads=concurrency * num_threads)
        self._local = threading.local()

    def run(self, images) -> list:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        out = request.infer({0: images})  # copies the outputs (share_outputs=False)
        return [out[port] for port in self.compiled.outputs]


def compile_on_cpu(model, *, precision: str, streams: int, threads: int) -> tuple[Any, str]:
    """``model`` (an ``openvino.Model`` or a model file) compiled for the CPU with ``streams`` streams
    over ``threads`` threads, warmed up (:func:`warm_up`); returns it and the precision it runs in
    (``"fp32"``, or ``"bf16"`` where asked for and the CPU has it)."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
        "NUM_STREAMS": streams,
        "INFERENCE_NUM_THREADS": threads,
        # pinned streams of two compiled models (student replicas, teacher) could share one core
        "ENABLE_CPU_PINNING": False,
    })
    hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16", ...
    warm_up(compiled)
    return compiled, {"f32": "fp32"}.get(hint, hint)


def warm_up(compiled) -> None:
    """One inference on zeros, from this thread alone, before worker threads share ``compiled``.

    Why: the first NumPy array that OpenVINO's Python binding converts initialises a process-wide
    static; two threads doing that at once deadlocked here (pybind11's ``gil_safe_call_once_and_store``
    for the NumPy API, seen with two student replicas). It also moves the first run's kernel
    preparation, which is slow, out of the workers.
    """
    import numpy as np

    request = compiled.create_infer_request()
    request.infer({i: np.zeros(tuple(p.get_shape()), dtype=p.get_element_type().to_dtype())
                   for i, p in enumerate(compiled.inputs)})


class OnnxBackbone:
    """Callable like ``model.backbone``: an (N, 3, H, W) float tensor -> OrderedDict of feature maps,
    computed by an exported ONNX graph in ONNX Runtime or OpenVINO.

    Parameters
    ----------
    backbone : torch.nn.Module
        The model's backbone (returns an OrderedDict of tensors, or one tensor); its current weights
        are exported, so build this after loading the weights.
    num_threads : int or None
        Threads of one run (None: ``torch.get_num_threads()``, as set for labelling). With 1, an ONNX
        Runtime run uses only its calling thread, and several threads may run this object at once.
    runtime : str
        ``"onnxruntime"`` or ``"openvino"``.
    precision : str
        ``"fp32"``, or ``"bf16"`` (OpenVINO only): see the module docstring.
    concurrency : int
        Threads that may run this object at once (OpenVINO compiles that many streams of
        ``num_threads`` threads each; ONNX Runtime needs nothing for it).
    work_dir : str or Path or None
        Where the ``.onnx`` files go (default: a temporary directory removed with this object).
    max_graphs : int
        Input shapes exported at most; further shapes run the PyTorch backbone.
    rpn_head : torch.nn.Module or None
        The RPN head (``model.rpn.head``), exported into the same graph: :meth:`with_rpn_head` then
        returns its objectness and box deltas too, and the RPN's convolutions run in ONNX Runtime.
    """

    def __init__(self, backbone, *, num_threads: int | None = None, work_dir: str | Path | None = None,
                 max_graphs: int = 8, rpn_head=None, runtime: str = "onnxruntime", precision: str = "fp32",
                 concurrency: int = 1) -> None:
        import importlib

        import torch

        if runtime not in GRAPH_BACKENDS:
            raise ValueError(f"runtime must be one of {', '.join(GRAPH_BACKENDS)}; got {runtime!r}")
        resolve_backend(runtime, precision=precision)  # checks the precision for this runtime
        importlib.import_module(runtime)  # fail now, with a clear ImportError, not at the first frame
        self.runtime, self.requested_precision = runtime, precision
        self.concurrency = max(1, int(concurrency))
        self.backbone = backbone.eval()
        self.rpn_head = None if rpn_head is None else rpn_head.eval()
        self.num_threads = int(num_threads or torch.get_num_threads())
        self.max_graphs = int(max_graphs)
        self._tmp = None if work_dir is not None else tempfile.TemporaryDirectory(prefix="pseudolabel-onnx-")
        self.work_dir = Path(work_dir if work_dir is not None else self._tmp.name)
        self._sessions: dict[tuple[int, int, int], tuple[Any, list[str] | None]] = {}
        self.precision: str | None = None  # what the runtime ran the last graph in (None: no graph yet)
        self._export_lock = threading.Lock()  # side-by-side workers may meet a new shape at once
        self.torch_fallbacks = 0

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """``(N, H, W)`` of the graphs exported so far, in export order."""
        return list(self._sessions)

    def _export(self, key: tuple[int, int, int]):
        import torch

        backbone, rpn_head = self.backbone, self.rpn_head
        dummy = torch.zeros(key[0], 3, key[1], key[2])
        with torch.inference_mode():
            probe = backbone(dummy)
        names = list(probe.keys()) if isinstance(probe, dict) else None
        levels = len(names) if names is not None else 1

        class Flat(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.backbone = backbone
                self.rpn_head = rpn_head

            def forward(self, x):
                out = self.backbone(x)
                feats = tuple(out.values()) if isinstance(out, dict) else (out,)
                if self.rpn_head is None:
                    return feats
                objectness, deltas = self.rpn_head(list(feats))
                return (*feats, *objectness, *deltas)

        path = self.work_dir / f"backbone_{key[0]}x{key[1]}x{key[2]}.onnx"
        outputs = [f"feat_{n}" for n in names] if names is not None else ["feat"]
        if rpn_head is not None:
            outputs += [f"objectness_{i}" for i in range(levels)] + [f"deltas_{i}" for i in range(levels)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the size-dependent padding
            torch.onnx.export(Flat().eval(), (dummy,), str(path), dynamo=False, opset_version=17,
                              input_names=["images"], output_names=outputs)
        if self.runtime == "openvino":
            graph = _OpenVinoGraph(path, num_threads=self.num_threads, concurrency=self.concurrency,
                                   precision=self.requested_precision)
        else:
            graph = _OrtGraph(path, num_threads=self.num_threads)
        if graph.precision != self.requested_precision:
            log.warning("%s ran the backbone in %s, not the %s asked for (this CPU has no %s kernels)",
                        self.runtime, graph.precision, self.requested_precision, self.requested_precision)
        self.precision = graph.precision
        log.info("%s backbone%s exported for input %s (%s)", self.runtime, " + RPN head" if rpn_head is not None else "",
                 (key[0], 3, key[1], key[2]), graph.precision)
        return graph, names

    def with_rpn_head(self, images):
        """``(features, (objectness, deltas))``: the feature maps (OrderedDict) and the RPN head's outputs
        (lists with one tensor per level, as ``rpn.head`` returns them); the head outputs are None when
        this object holds no ``rpn_head`` or the shape runs in PyTorch."""
        import numpy as np
        import torch

        key = (int(images.shape[0]), int(images.shape[-2]), int(images.shape[-1]))
        with self._export_lock:
            if key not in self._sessions and len(self._sessions) < self.max_graphs:
                self._sessions[key] = self._export(key)
            found = self._sessions.get(key)
            if found is None:
                self.torch_fallbacks += 1
                if self.torch_fallbacks == 1:
                    log.warning("ONNX Runtime backbone: %d input shapes exported already; new shapes (%s) run "
                                "in PyTorch", self.max_graphs, key)
        if found is None:
            with torch.inference_mode():
                return self.backbone(images), None
        graph, names = found
        outs = [torch.from_numpy(o) for o in graph.run(
            np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32))]
        levels = len(names) if names is not None else 1
        feats = outs[0] if names is None else OrderedDict(zip(names, outs[:levels]))
        head = None
        if self.rpn_head is not None:
            head = (outs[levels:2 * levels], outs[2 * levels:3 * levels])
        return feats, head

    def __call__(self, images):
        return self.with_rpn_head(images)[0]
