"""torchvision detection models (FasterRCNN, RetinaNet, SSD, FCOS…) as detectors.

Weights: ``weights="DEFAULT"`` (or any weights enum name) goes through torchvision's own loader, which
reads ``$TORCH_HOME/hub/checkpoints/`` and only downloads when the file is not cached; offline, put the
file there or pass ``weights_path`` (a state dict, loaded with ``weights_only=True``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .base import BatchedDetector, Detections, check_counts


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


class TorchvisionDetector(BatchedDetector):
    """A torchvision detection model behind the :class:`~pseudolabel.detectors.base.Detector` contract;
    with a two-stage (R-CNN) model, the inference runtime of the teacher and of the student
    (:class:`~pseudolabel.student.model.StudentDetector` is this class over a trained checkpoint).

    ``predict`` returns per image ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` (N,) in the
    model's label space, and with ``box_features`` ``features`` (N, D) float32: the RoI box-head
    features of the returned boxes, pooled from the same backbone pass.

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
        a two-stage model on CPU when it is installed, else PyTorch), or ``openvino`` (the same graph in OpenVINO).
    precision : str
        ``fp32``, or ``bf16`` with ``backend="openvino"``: the graph's convolutions in bfloat16 on CPUs
        with AMX/AVX512-BF16 (faster; boxes no longer equal to fp32's).
    forward_batch : int or None
        Images per forward (None: all images of a ``predict`` call in one forward).
    workers : int or None
        Replicas of the model run side by side, one thread each, on the forwards of one ``predict``
        call (:mod:`pseudolabel.detectors.accel.side_by_side`); None: ``torch.get_num_threads()`` at
        construction. 1 (default): one model on torch's threads. Each replica holds a copy of the
        weights (~160 MB for ResNet-50 FPN). Always 1 on a device other than the CPU.
    lean_heads : bool or None
        Run a Faster R-CNN's RoI stage with :mod:`pseudolabel.detectors.accel.lean_heads`
        (same boxes up to float rounding; None: with the ONNX Runtime or OpenVINO backend), and build a
        native-resolution model's input batch in NumPy. CPU only.
    device : str
        Where the model runs (graph backends: CPU only).
    box_features : bool
        Also return the RoI box-head features of a two-stage model's boxes.
    uint8_resize : bool
        Frames that a native-resolution transform would shrink are shrunk with OpenCV before the tensor
        conversion (:func:`~pseudolabel.detectors.rcnn.shrink_to_model_input`); other models are unaffected.
    """

    def __init__(self, builder: str = "fasterrcnn_resnet50_fpn", *, weights: str | None = "DEFAULT",
                 weights_path: str | None = None, num_classes: int | None = None, model=None,
                 name: str | None = None, box_score_thresh: float = 0.05, num_threads: int | None = None,
                 model_kwargs: dict | None = None, backend: str = "torch", forward_batch: int | None = None,
                 workers: int | None = 1, lean_heads: bool | None = None, precision: str = "fp32",
                 device: str = "cpu", box_features: bool = False, uint8_resize: bool = True):
        import torch

        from .accel.onnx_backbone import GRAPH_BACKENDS, resolve_backend
        from .rcnn import inference_runtime, is_two_stage

        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        check_counts(forward_batch=forward_batch, workers=workers)
        self.forward_batch = None if forward_batch is None else int(forward_batch)
        self.workers = (int(workers) if workers is not None else torch.get_num_threads()) if device == "cpu" else 1
        kwargs = dict(model_kwargs or {})
        if model is None:
            if builder.startswith(("fasterrcnn", "maskrcnn", "keypointrcnn")):
                kwargs.setdefault("box_score_thresh", box_score_thresh)
            model = build_torchvision_detector(builder, weights=weights, weights_path=weights_path,
                                               num_classes=num_classes, **kwargs)
        self.model = model.to(device).eval()
        self.name = name or builder
        self.device = device
        self.box_features = bool(box_features)
        self.uint8_resize = bool(uint8_resize)
        if backend in GRAPH_BACKENDS and not is_two_stage(self.model):
            raise ValueError(f"backend {backend} needs a two-stage (R-CNN) model; {self.name} is "
                             f"{type(self.model).__name__}: use backend torch or auto")
        resolved = resolve_backend(backend, device, precision=precision)  # also refuses unknown names
        self.backend = resolved if is_two_stage(self.model) else "torch"
        # None: the lean proposal and RoI stages with an exported backbone graph (CPU)
        lean = self.backend in GRAPH_BACKENDS if lean_heads is None else bool(lean_heads)
        self.lean_heads = lean and device == "cpu"
        self._backbone, self._side_by_side = inference_runtime(self.model, backend=self.backend,
                                                               workers=self.workers, name=self.name,
                                                               precision=precision)

    @property
    def precision(self) -> str:
        """What the backbone last ran in: ``"bf16"`` only where bf16 was asked for and the CPU has it."""
        from .accel.onnx_backbone import effective_precision

        return effective_precision(self._backbone)

    def _forward(self, model, images: Sequence[np.ndarray]) -> list[Detections]:
        """One forward of ``model`` (a replica) on ``len(images)`` RGB uint8 images (H, W, 3)."""
        import torch

        from .accel.lean_heads import native_batch
        from .rcnn import is_two_stage, shrink_to_model_input, to_tensors, two_stage_predict

        transform = getattr(model, "transform", None)
        images, factors = shrink_to_model_input(images, transform if self.uint8_resize else None)
        feats = None
        if is_two_stage(model) and (self._backbone is not None or self.lean_heads or self.box_features):
            batch = native_batch(transform, images) if self.lean_heads else None
            outputs, feats = two_stage_predict(model, batch if batch is not None else to_tensors(images, self.device),
                                               backbone=self._backbone, box_features=self.box_features,
                                               lean_heads=self.lean_heads)
        else:
            with torch.inference_mode():
                outputs = model(to_tensors(images, self.device))
        out, offset = [], 0
        for o, factor in zip(outputs, factors):
            n = len(o["scores"])
            out.append(Detections(o["boxes"].cpu().numpy() * factor, o["scores"].cpu().numpy(),
                                  o["labels"].cpu().numpy(), None if feats is None else feats[offset:offset + n]))
            offset += n
        return out
