"""ONNX Runtime for a student's backbone + FPN at inference (optional: ``pip install 'pseudolabel[onnx]'``).

The backbone (EfficientNet-Lite0 body + FPN) is nearly all of a student's inference time on CPU, and
ONNX Runtime runs it several times faster than PyTorch's CPU kernels here (depthwise convolutions);
the RPN and RoI heads stay in PyTorch, so boxes, scores and box features come out of the same code
as with ``backend="torch"``, equal up to float rounding (``tests/test_onnx_student.py``).

The graph is exported with PyTorch's TorchScript-based exporter once per padded input size: timm's
TF-"same" padding is computed from the input size while tracing, so height and width are fixed in a
graph, the batch axis is not. Every frame of a video has one size, so a relabel exports once or twice.
"""
from __future__ import annotations

import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any


class OnnxBackbone:
    """Callable like ``model.backbone``: an (N, 3, H, W) float tensor -> OrderedDict of feature maps.

    Parameters
    ----------
    backbone : torch.nn.Module
        The model's backbone (returns an OrderedDict of tensors); its current weights are exported.
    num_threads : int or None
        ONNX Runtime intra-op threads (None: ``torch.get_num_threads()``, as set for labelling).
    work_dir : str or Path or None
        Where the ``.onnx`` files go (default: a temporary directory removed with this object).
    """

    def __init__(self, backbone, *, num_threads: int | None = None, work_dir: str | Path | None = None) -> None:
        import onnxruntime  # noqa: F401  (fail now, with a clear ImportError, not at the first frame)
        import torch

        self.backbone = backbone.eval()
        self.num_threads = int(num_threads or torch.get_num_threads())
        self._tmp = None if work_dir is not None else tempfile.TemporaryDirectory(prefix="student-onnx-")
        self.work_dir = Path(work_dir if work_dir is not None else self._tmp.name)
        self._sessions: dict[tuple[int, int], tuple[Any, list[str]]] = {}

    def _session(self, height: int, width: int):
        import onnxruntime as ort
        import torch

        key = (int(height), int(width))
        if key not in self._sessions:
            backbone = self.backbone

            class Flat(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.backbone = backbone

                def forward(self, x):
                    return tuple(self.backbone(x).values())

            dummy = torch.zeros(2, 3, *key)
            with torch.inference_mode():
                names = list(backbone(dummy[:1]).keys())
            path = self.work_dir / f"backbone_{key[0]}x{key[1]}.onnx"
            outputs = [f"feat_{n}" for n in names]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about the size-dependent padding
                torch.onnx.export(Flat().eval(), (dummy,), str(path), dynamo=False, opset_version=17,
                                  input_names=["images"], output_names=outputs,
                                  dynamic_axes={"images": {0: "n"}, **{o: {0: "n"} for o in outputs}})
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.num_threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._sessions[key] = (ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), names)
        return self._sessions[key]

    def __call__(self, images) -> "OrderedDict[str, Any]":
        import numpy as np
        import torch

        session, names = self._session(*images.shape[-2:])
        outs = session.run(None, {"images": np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)})
        return OrderedDict((n, torch.from_numpy(o)) for n, o in zip(names, outs))
