"""ONNX Runtime for the backbone, FPN and RPN-head convolutions of a torchvision R-CNN at inference, on CPU.

The backbone is nearly all of a Faster R-CNN's inference FLOPs, and PyTorch's eager CPU kernels run
it slowly: EfficientNet-Lite0's depthwise convolutions, and frozen BatchNorm layers that stay separate
passes over memory. ONNX Runtime folds the BatchNorms into the convolutions and fuses the activations
when it loads the graph. The RPN's proposal filtering and the RoI heads stay in PyTorch (:mod:`pseudolabel.detectors.rcnn`), so
boxes, scores and box features come out of the same code as with ``backend="torch"``, equal up to float
rounding (``tests/test_onnx_backbone.py``).

Why the graphs are static: one graph is exported (TorchScript-based exporter) per input shape
``(N, 3, H, W)``. timm's TF-"same" padding is computed from the input size while tracing, so H and W
must be fixed anyway; a fixed batch axis as well let ONNX Runtime plan every buffer, and measured here
(2 cores, EfficientNet-Lite0 at 384x640) a dynamic batch axis cost ~40 % more per forward. Every frame of a
video has one size, so a relabel exports once or twice. Shapes past ``max_graphs`` run in PyTorch
instead of exporting yet another graph (a folder of stills of many sizes).

Why spinning is off: ONNX Runtime's worker threads busy-wait after each run by default; on a small
CPU they then steal the cores from the PyTorch heads that run next (measured: 87 ms vs 51 ms per frame).
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

BACKENDS = ("auto", "torch", "onnxruntime")


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` and ``onnx`` (needed by the exporter) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def resolve_backend(backend: str, device: str = "cpu") -> str:
    """``"auto"`` -> ``"onnxruntime"`` on CPU when it is installed, else ``"torch"``; others are checked.

    Raises
    ------
    ValueError
        An unknown backend, or ``"onnxruntime"`` on a device other than the CPU.
    """
    backend = str(backend)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return "onnxruntime" if str(device) == "cpu" and onnxruntime_available() else "torch"
    if backend == "onnxruntime" and str(device) != "cpu":
        raise ValueError(f"backend onnxruntime runs on the CPU only, got device {device!r}")
    return backend


class OnnxBackbone:
    """Callable like ``model.backbone``: an (N, 3, H, W) float tensor -> OrderedDict of feature maps.

    Parameters
    ----------
    backbone : torch.nn.Module
        The model's backbone (returns an OrderedDict of tensors, or one tensor); its current weights
        are exported, so build this after loading the weights.
    num_threads : int or None
        ONNX Runtime intra-op threads (None: ``torch.get_num_threads()``, as set for labelling). With 1,
        a run uses only its calling thread, and several threads may run this object at once.
    work_dir : str or Path or None
        Where the ``.onnx`` files go (default: a temporary directory removed with this object).
    max_graphs : int
        Input shapes exported at most; further shapes run the PyTorch backbone.
    rpn_head : torch.nn.Module or None
        The RPN head (``model.rpn.head``), exported into the same graph: :meth:`with_rpn_head` then
        returns its objectness and box deltas too, and the RPN's convolutions run in ONNX Runtime.
    """

    def __init__(self, backbone, *, num_threads: int | None = None, work_dir: str | Path | None = None,
                 max_graphs: int = 8, rpn_head=None) -> None:
        import onnxruntime  # noqa: F401  (fail now, with a clear ImportError, not at the first frame)
        import torch

        self.backbone = backbone.eval()
        self.rpn_head = None if rpn_head is None else rpn_head.eval()
        self.num_threads = int(num_threads or torch.get_num_threads())
        self.max_graphs = int(max_graphs)
        self._tmp = None if work_dir is not None else tempfile.TemporaryDirectory(prefix="pseudolabel-onnx-")
        self.work_dir = Path(work_dir if work_dir is not None else self._tmp.name)
        self._sessions: dict[tuple[int, int, int], tuple[Any, list[str] | None]] = {}
        self._export_lock = threading.Lock()  # side-by-side workers may meet a new shape at once
        self.torch_fallbacks = 0

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """``(N, H, W)`` of the graphs exported so far, in export order."""
        return list(self._sessions)

    def _export(self, key: tuple[int, int, int]):
        import onnxruntime as ort
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
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        log.info("ONNX Runtime backbone%s exported for input %s", " + RPN head" if rpn_head is not None else "",
                 (key[0], 3, key[1], key[2]))
        return session, names

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
        session, names = found
        outs = [torch.from_numpy(o) for o in session.run(
            None, {"images": np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)})]
        levels = len(names) if names is not None else 1
        feats = outs[0] if names is None else OrderedDict(zip(names, outs[:levels]))
        head = None
        if self.rpn_head is not None:
            head = (outs[levels:2 * levels], outs[2 * levels:3 * levels])
        return feats, head

    def __call__(self, images):
        return self.with_rpn_head(images)[0]
