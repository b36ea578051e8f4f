"""torchvision detection models (FasterRCNN, RetinaNet, SSD, FCOS…) as detectors.

Weights: ``weights="DEFAULT"`` (or any weights enum name) goes through torchvision's own loader, which
reads ``$TORCH_HOME/hub/checkpoints/`` and only downloads when the file is not cached; offline, put the
file there or pass ``weights_path`` (a state dict, loaded with ``weights_only=True``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .base import Detections


def build_torchvision_detector(builder: str, *, weights: str | None = "DEFAULT", weights_path: str | None = None,
                               num_classes: int | None = None, **model_kwargs):
    """Build ``torchvision.models.get_model(builder)`` with weights from torchvision or from disk.

    Parameters
    ----------
    builder : str
        A torchvision detection builder name, e.g. ``fasterrcnn_resnet50_fpn``.
    weights : str or None
        A weights enum member name (``DEFAULT``, ``COCO_V1``) resolved by torchvision; ignored when
        ``weights_path`` is given. ``None`` gives random weights (tests, mechanics).
    weights_path : str or None
        A state dict file (or a dict with a ``state_dict`` key) loaded with ``weights_only=True``.
    num_classes : int or None
        Number of classes of ``weights_path``'s model (default: 91, COCO).
    """
    import torch
    import torchvision

    if weights_path is not None:
        model = torchvision.models.get_model(builder, weights=None, weights_backbone=None,
                                             num_classes=num_classes or 91, **model_kwargs)
        state = torch.load(Path(weights_path).expanduser(), map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        return model
    if weights is None:
        kwargs = {"num_classes": num_classes} if num_classes else {}
        return torchvision.models.get_model(builder, weights=None, weights_backbone=None, **kwargs,
                                            **model_kwargs)
    enum = torchvision.models.get_model_weights(builder)
    try:
        return torchvision.models.get_model(builder, weights=enum[weights], **model_kwargs)
    except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum[weights].url).name
        raise RuntimeError(
            f"cannot load {builder} weights {weights}: {e}. Offline, place the file at {cache} "
            f"or set weights_path to a local state dict.") from None


class TorchvisionDetector:
    """A torchvision detection model behind the :class:`~pseudolabel.detectors.base.Detector` contract.

    Parameters
    ----------
    builder, weights, weights_path, num_classes : see :func:`build_torchvision_detector`.
    model : torch.nn.Module or None
        An already built model (takes precedence over ``builder``).
    name : str or None
        Provenance name (default: the builder name).
    box_score_thresh : float
        The model's own pre-filter (the labelling threshold is applied later).
    num_threads : int or None
        ``torch.set_num_threads``.
    model_kwargs : dict
        Extra builder arguments, e.g. ``min_size``/``max_size`` to run at native resolution.
    backend : str
        ``torch``, ``onnxruntime`` (the backbone, FPN and RPN head of a two-stage model run by ONNX Runtime, the
        heads in PyTorch: same boxes up to float rounding, faster on CPU) or ``auto`` (ONNX Runtime for
        a two-stage model when it is installed, else PyTorch), or ``openvino`` (the same graph in OpenVINO).
    precision : str
        ``fp32``, or ``bf16`` with ``backend="openvino"``: the graph's convolutions in bfloat16 on CPUs
        with AMX/AVX512-BF16 (faster; boxes no longer equal to fp32's).
    forward_batch : int or None
        Images per forward (None: all images of a ``predict`` call in one forward).
    workers : int or None
        Replicas of the model run side by side, one thread each, on the forwards of one ``predict``
        call (:mod:`pseudolabel.detectors.side_by_side`); None: ``torch.get_num_threads()`` at
        construction. 1 (default): one model on torch's threads. Each replica holds a copy of the
        weights (~160 MB for ResNet-50 FPN).
    lean_heads : bool or None
        Run a Faster R-CNN's proposal and RoI stages with :mod:`pseudolabel.detectors.lean_heads`
        (same boxes up to float rounding; None: with the ONNX Runtime or OpenVINO backend).
    """

    def __init__(self, builder: str = "fasterrcnn_resnet50_fpn", *, weights: str | None = "DEFAULT",
                 weights_path: str | None = None, num_classes: int | None = None, model=None,
                 name: str | None = None, box_score_thresh: float = 0.05, num_threads: int | None = None,
                 model_kwargs: dict | None = None, backend: str = "torch", forward_batch: int | None = None,
                 workers: int | None = 1, lean_heads: bool | None = None, precision: str = "fp32"):
        import torch

        from .onnx_backbone import GRAPH_BACKENDS, resolve_backend
        from .rcnn import inference_runtime, is_two_stage

        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        if (forward_batch is not None and int(forward_batch) < 1) or (workers is not None and int(workers) < 1):
            raise ValueError(f"forward_batch and workers must be >= 1, got {forward_batch} and {workers}")
        self.forward_batch = None if forward_batch is None else int(forward_batch)
        self.workers = int(workers) if workers is not None else torch.get_num_threads()
        kwargs = dict(model_kwargs or {})
        if model is None:
            if builder.startswith(("fasterrcnn", "maskrcnn", "keypointrcnn")):
                kwargs.setdefault("box_score_thresh", box_score_thresh)
            model = build_torchvision_detector(builder, weights=weights, weights_path=weights_path,
                                               num_classes=num_classes, **kwargs)
        self.model = model.eval()
        self.name = name or builder
        if backend in GRAPH_BACKENDS and not is_two_stage(self.model):
            raise ValueError(f"backend {backend} needs a two-stage (R-CNN) model; {self.name} is "
                             f"{type(self.model).__name__}: use backend torch or auto")
        resolved = resolve_backend(backend, precision=precision)  # also refuses unknown names
        self.backend = resolved if is_two_stage(self.model) else "torch"
        # None: the lean proposal and RoI stages with an exported backbone graph (CPU), as the student
        self.lean_heads = self.backend in GRAPH_BACKENDS if lean_heads is None else bool(lean_heads)
        self._backbone, self._side_by_side = inference_runtime(self.model, backend=self.backend,
                                                               workers=self.workers, name=self.name,
                                                               precision=precision)

    @property
    def precision(self) -> str:
        """What the backbone last ran in: ``"bf16"`` only where bf16 was asked for and the CPU has it."""
        from .onnx_backbone import effective_precision

        return effective_precision(self._backbone)

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self._side_by_side.map(self._forward, self._chunks(images), workers=self.workers)

    def predict_stream(self, batches: Iterable[Sequence[np.ndarray]]) -> Iterator[list[Detections]]:
        """``predict`` of each batch, in order, the replicas never waiting between batches
        (:meth:`~pseudolabel.detectors.side_by_side.SideBySide.stream`); same detections as ``predict``."""
        return self._side_by_side.stream(self._forward, map(self._chunks, batches), workers=self.workers)

    def _chunks(self, images: Sequence[np.ndarray]) -> list[Sequence[np.ndarray]]:
        step = self.forward_batch or max(1, len(images))
        return [images[i:i + step] for i in range(0, len(images), step)]

    def _forward(self, model, images: Sequence[np.ndarray]) -> list[Detections]:
        import torch

        from .rcnn import is_two_stage, to_tensors, two_stage_predict

        tensors = to_tensors(images)
        if self._backbone is not None or (self.lean_heads and is_two_stage(model)):
            outputs, _ = two_stage_predict(model, tensors, backbone=self._backbone, lean_heads=self.lean_heads)
        else:
            with torch.inference_mode():
                outputs = model(tensors)
        return [Detections(o["boxes"].double().numpy(), o["scores"].double().numpy(), o["labels"].numpy())
                for o in outputs]
