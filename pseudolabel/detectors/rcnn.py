"""One inference pass of a torchvision two-stage detector (GeneralizedRCNN: Faster R-CNN and kin),
split at the backbone so that the backbone can run elsewhere (ONNX Runtime, OpenVINO) and the RoI box-head
features of the final boxes can be read from the same pass.

Boxes are ``xyxy`` float pixels of the input images, as everywhere in the package.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

_ANCHORS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def is_two_stage(model: Any) -> bool:
    """True for a torchvision GeneralizedRCNN with RoI heads (Faster/Mask/Keypoint R-CNN)."""
    return all(hasattr(model, a) for a in ("transform", "backbone", "rpn", "roi_heads"))


def inference_runtime(model: Any, *, backend: str, workers: int, name: str,
                      precision: str = "fp32") -> tuple[Any, Any]:
    """What runs a torchvision detector's inference: ``(backbone, replicas)``.

    ``backbone`` is an :class:`~pseudolabel.detectors.accel.onnx_backbone.OnnxBackbone` holding the RPN head
    when ``backend`` is ``"onnxruntime"`` or ``"openvino"`` (one thread per run when ``workers > 1``:
    all replicas share it, up to ``workers`` runs at once), else None (the model's own).
    ``replicas`` is a :class:`~pseudolabel.detectors.accel.side_by_side.SideBySide` over deep copies of
    ``model``: torchvision's RoI pooler sets attributes while it runs, so threads must not share one.
    """
    import copy

    from .accel.onnx_backbone import GRAPH_BACKENDS, OnnxBackbone
    from .accel.side_by_side import SideBySide

    backbone = (OnnxBackbone(model.backbone, rpn_head=model.rpn.head, num_threads=1 if workers > 1 else None,
                             runtime=backend, precision=precision, concurrency=workers)
                if backend in GRAPH_BACKENDS else None)
    return backbone, SideBySide(model, lambda: copy.deepcopy(model), library="torch", name=name)


def to_tensors(images: Sequence[np.ndarray], device: str = "cpu") -> list:
    """RGB uint8 images (H, W, 3) -> float tensors (3, H, W) in [0, 1], as torchvision detectors take."""
    import torch

    tensors = []
    for im in images:
        arr = np.asarray(im)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected RGB images (H, W, 3), got shape {arr.shape}")
        tensors.append(torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(2, 0, 1).float().div_(255.0))
    return tensors


def two_stage_predict(model: Any, tensors: list, *, backbone: Callable | None = None,
                      box_features: bool = False, lean_heads: bool = False) -> tuple[list[dict], np.ndarray | None]:
    """What ``model(tensors)`` returns in eval mode, with the backbone call replaceable.

    Parameters
    ----------
    model : torchvision GeneralizedRCNN in eval mode.
    tensors : list of (3, H, W) float tensors in [0, 1]; or a torchvision ``ImageList`` that is
        already what ``model.transform`` makes of the images, at their own size
        (:func:`~pseudolabel.detectors.accel.lean_heads.native_batch`).
    backbone : callable (N, 3, H', W') tensor -> OrderedDict of feature maps (or one tensor);
        default ``model.backbone``. One with a ``with_rpn_head`` method (an
        :class:`~pseudolabel.detectors.accel.onnx_backbone.OnnxBackbone` holding the RPN head) also returns
        the RPN head's outputs, and ``model.rpn.head`` is not called.
    box_features : also return the box-head features of the returned boxes, pooled from the same
        feature maps.
    lean_heads : run the RoI stage with :mod:`pseudolabel.detectors.accel.lean_heads` (same results up to
        float rounding, faster on CPU) where it supports the model. Proposals always come from
        :func:`propose`.

    Returns
    -------
    detections : one dict per image, ``boxes`` (K, 4) xyxy in input pixels, ``scores`` (K,), ``labels`` (K,).
    features : (sum K, D) float32 in detection order, or None when ``box_features`` is False.
    """
    import torch
    from torchvision.models.detection.image_list import ImageList

    from .accel import lean_heads as lean

    backbone = model.backbone if backbone is None else backbone
    with torch.inference_mode():
        if isinstance(tensors, ImageList):  # transformed already, without resizing
            batch, original_sizes = tensors, list(tensors.image_sizes)
        else:
            original_sizes = [tuple(t.shape[-2:]) for t in tensors]
            batch, _ = model.transform(tensors)
        head = None
        if hasattr(backbone, "with_rpn_head"):  # the RPN's convolutions ran with the backbone
            feats, head = backbone.with_rpn_head(batch.tensors)
        else:
            feats = backbone(batch.tensors)
        if isinstance(feats, torch.Tensor):
            feats = OrderedDict([("0", feats)])
        if head is None:
            head = model.rpn.head(list(feats.values()))
        proposals = propose(model.rpn, batch, feats, *head)
        if lean_heads and lean.supports(model):
            pool = lean.Pooler(model.roi_heads.box_roi_pool, feats, batch.image_sizes)
            dets = lean.detect(model.roi_heads, pool, proposals, batch.image_sizes)
        else:
            dets, _ = model.roi_heads(feats, proposals, batch.image_sizes)

            def pool(boxes):
                return model.roi_heads.box_roi_pool(feats, boxes, batch.image_sizes)
        features = None
        if box_features:
            pooled = pool([d["boxes"] for d in dets])
            features = model.roi_heads.box_head(pooled).float().cpu().numpy()  # float32 already
        dets = model.transform.postprocess(dets, batch.image_sizes, original_sizes)
    return dets, features


def anchors_per_level(generator, batch, feature_maps: list) -> list:
    """The anchors of ``generator`` (a torchvision ``AnchorGenerator``) for this input shape: one
    (H_l x W_l x A_l, 4) xyxy tensor per level, the same for every image of the batch; kept per shape
    (torchvision rebuilds them for every batch)."""
    key = (tuple(batch.tensors.shape[-2:]), tuple(tuple(f.shape[-2:]) for f in feature_maps),
           feature_maps[0].dtype, feature_maps[0].device)
    cache = _ANCHORS.setdefault(generator, {})
    if key not in cache:
        first = generator(batch, feature_maps)[0]  # torchvision gives every image the same anchors
        sizes = [f.shape[-2] * f.shape[-1] * a for f, a in zip(feature_maps, generator.num_anchors_per_location())]
        cache[key] = list(first.split(sizes))
    return cache[key]


def propose(rpn, batch, feats, objectness: list, deltas: list) -> list:
    """``rpn(batch, feats)[0]`` in eval mode (a torchvision ``RegionProposalNetwork``), from the RPN head's
    outputs: the one proposal path of every two-stage forward here, whichever runtime computed the head.

    Torchvision decodes every anchor's box and then keeps each level's top ``pre_nms_top_n`` by objectness;
    here the top ones are chosen first and only they are decoded. Decoding is per box, so the boxes are the
    same numbers (``tests/test_lean_heads.py``); the rest (clip, small boxes, score threshold, per-level NMS,
    ``post_nms_top_n``) is torchvision's own functions in its order.

    Parameters
    ----------
    rpn : torchvision ``RegionProposalNetwork`` in eval mode.
    batch : torchvision ``ImageList``, the transformed input.
    feats : OrderedDict of the backbone's feature maps.
    objectness, deltas : the RPN head's outputs, one (N, A, H_l, W_l) and one (N, 4A, H_l, W_l) tensor per level.

    Returns
    -------
    list of (K_i, 4) float tensors, xyxy pixels of the batched input, one per image.
    """
    import torch
    from torchvision.models.detection.rpn import permute_and_flatten
    from torchvision.ops import boxes as box_ops

    anchors = anchors_per_level(rpn.anchor_generator, batch, list(feats.values()))
    n_images = batch.tensors.shape[0]
    rows = torch.arange(n_images, device=batch.tensors.device)[:, None]
    scores, boxes, levels = [], [], []
    for level, (obj, dlt, anc) in enumerate(zip(objectness, deltas, anchors, strict=True)):
        n, a, h, w = obj.shape
        obj = permute_and_flatten(obj, n, a, 1, h, w).reshape(n, -1)  # (N, H*W*A), torchvision's order
        dlt = permute_and_flatten(dlt, n, a, 4, h, w)  # (N, H*W*A, 4)
        top, idx = obj.topk(min(int(rpn.pre_nms_top_n()), obj.shape[1]), dim=1)
        decoded = rpn.box_coder.decode_single(dlt[rows, idx].reshape(-1, 4), anc[idx].reshape(-1, 4))
        scores.append(top)
        boxes.append(decoded.reshape(n, -1, 4))
        levels.append(torch.full_like(idx, level))
    scores, boxes, levels = torch.sigmoid(torch.cat(scores, 1)), torch.cat(boxes, 1), torch.cat(levels, 1)
    out = []
    for img_boxes, img_scores, img_levels, shape in zip(boxes, scores, levels, batch.image_sizes):
        img_boxes = box_ops.clip_boxes_to_image(img_boxes, shape)
        keep = box_ops.remove_small_boxes(img_boxes, rpn.min_size)
        keep = keep[img_scores[keep] >= rpn.score_thresh]
        img_boxes, img_scores, img_levels = img_boxes[keep], img_scores[keep], img_levels[keep]
        keep = box_ops.batched_nms(img_boxes, img_scores, img_levels, rpn.nms_thresh)[:int(rpn.post_nms_top_n())]
        out.append(img_boxes[keep])
    return out


def shrink_to_model_input(images: Sequence[np.ndarray], transform) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Resize, in uint8 with OpenCV, the images that ``transform`` (a native-resolution transform)
    would resize itself, to the size it would give them; other transforms (or None) and images pass
    unchanged.

    Why: torchvision's transform resizes the float tensor of the whole frame, which for a large frame costs
    far more (tensor conversion and interpolation) than ``cv2.resize`` on uint8 (BENCHMARKS.md).
    ``INTER_LINEAR`` samples as ``F.interpolate(mode="bilinear", align_corners=False)`` does, so the
    network input differs only by uint8 rounding (boxes within 0.5 px: ``tests/test_student.py``).

    Returns
    -------
    images : the images to feed the model.
    factors : per image, (4,) float64 ``[sx, sy, sx, sy]`` mapping xyxy boxes of the fed image back to
        the original one (ones for images left unchanged).
    """
    import cv2

    shrunk_size = getattr(transform, "shrunk_size", None)
    out, factors = [], []
    for im in images:
        h, w = im.shape[:2]
        nh, nw = shrunk_size(h, w) if shrunk_size is not None else (h, w)
        if (nh, nw) == (h, w):
            out.append(im)
            factors.append(np.ones(4))
            continue
        out.append(cv2.resize(np.ascontiguousarray(im), (nw, nh), interpolation=cv2.INTER_LINEAR))
        factors.append(np.array([w / nw, h / nh, w / nw, h / nh]))
    return out, factors
