"""SSD detection output: prior boxes + box encodings + class scores -> detections, as Caffe's and
OpenCV's ``DetectionOutput`` layer computes them (``code_type CENTER_SIZE``, shared locations,
per-class NMS, then the ``keep_top_k`` best over all classes).

Pure functions over arrays. Boxes are ``xyxy`` in the priors' units (normalised [0, 1] for TF
object-detection graphs), not clipped.
"""
from __future__ import annotations

import numpy as np


def decode_center_size(loc: np.ndarray, priors: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Decode box encodings against their priors.

    Parameters
    ----------
    loc : (A, 4) float
        Encodings ``(tx, ty, tw, th)`` (x before y: OpenCV's order; TF graphs emit ``(ty, tx, th, tw)``).
    priors : (A, 4) float
        Prior boxes ``xyxy``.
    variances : (A, 4) float
        Per-prior variances (``0.1, 0.1, 0.2, 0.2`` for TF SSDs).

    Returns
    -------
    (A, 4) float64 xyxy boxes.
    """
    loc, priors, variances = (np.asarray(a, dtype=np.float64) for a in (loc, priors, variances))
    pw, ph = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    cx = variances[:, 0] * loc[:, 0] * pw + (priors[:, 0] + priors[:, 2]) / 2
    cy = variances[:, 1] * loc[:, 1] * ph + (priors[:, 1] + priors[:, 3]) / 2
    w = np.exp(variances[:, 2] * loc[:, 2]) * pw
    h = np.exp(variances[:, 3] * loc[:, 3]) * ph
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def detection_output(boxes: np.ndarray, scores: np.ndarray, *, confidence_threshold: float = 0.01,
                     nms_threshold: float = 0.6, top_k: int = 100, keep_top_k: int = 100,
                     background_label_id: int = 0, min_score: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class NMS of one image's decoded boxes, as ``DetectionOutput`` does it.

    For every class but the background: the scores above ``confidence_threshold``, their ``top_k``
    best, greedy NMS at ``nms_threshold``; then the ``keep_top_k`` best of all classes together.
    ``min_score`` drops the results below it; applied before the NMS it changes none of the others
    (a box only suppresses lower-scored ones, and ranks below every box that scores more).

    Parameters
    ----------
    boxes : (A, 4) float xyxy, one per prior (shared across classes).
    scores : (A, C) float class probabilities.

    Returns
    -------
    boxes : (K, 4) float64 xyxy
    scores : (K,) float64, descending
    labels : (K,) int64 class ids
    """
    import torch
    from torchvision.ops import batched_nms

    scores = np.asarray(scores)
    mask = (scores > confidence_threshold) & (scores >= min_score)  # strictly above, as the layer
    mask[:, background_label_id] = False
    anchor, label = np.nonzero(mask)
    if not len(anchor):
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    s = scores[anchor, label].astype(np.float64)
    # top_k per class: rank within each class by descending score (stable: ties keep anchor order)
    order = np.lexsort((-s, label))
    label_sorted = label[order]
    first = np.searchsorted(label_sorted, label_sorted, side="left")
    order = order[np.arange(len(order)) - first < int(top_k)]
    anchor, label, s = anchor[order], label[order], s[order]
    cand = np.asarray(boxes, dtype=np.float64)[anchor]
    keep = batched_nms(torch.from_numpy(cand).float(), torch.from_numpy(s).float(),
                       torch.from_numpy(label), float(nms_threshold)).numpy()
    keep = keep[np.argsort(-s[keep], kind="stable")[:int(keep_top_k)]]
    return cand[keep], s[keep], label[keep].astype(np.int64)


def prior_box_layers(pbtxt) -> list[dict]:
    """The ``PriorBox`` nodes of an OpenCV text graph (``.pbtxt``), in the order ``PriorBox/concat`` joins them.

    Returns
    -------
    One dict per layer: ``name``, ``feature_node`` (the node whose spatial size is the layer's grid),
    ``widths`` and ``heights`` (pixels of the network input), ``variance`` (4,), ``offset`` (cell centre,
    0.5 unless set), ``step`` (pixels, None: input size / grid size), ``clip``.
    """
    import re
    from pathlib import Path

    text = Path(pbtxt).read_text()
    nodes = re.split(r"\nnode \{", text)
    layers = []
    for node in nodes:
        if not re.search(r'op: "PriorBox"', node):
            continue
        name = re.search(r'name: "([^"]+)"', node).group(1)
        inputs = re.findall(r'input: "([^"]+)"', node)

        def floats(key, node=node):
            m = re.search(r'key: "%s"\s*value \{(.*?)\n  \}' % key, node, re.S)
            return [float(v) for v in re.findall(r"(?:float_val|f): ([-0-9.e]+)", m.group(1))] if m else None

        def flag(key, node=node, default=False):
            m = re.search(r'key: "%s"\s*value \{\s*b: (true|false)' % key, node)
            return default if m is None else m.group(1) == "true"

        widths, heights = floats("width"), floats("height")
        if not widths or not heights or len(widths) != len(heights):
            raise ValueError(f"{pbtxt}: PriorBox {name} needs explicit width and height lists of one length "
                             "(TF object-detection text graphs have them)")
        if flag("flip"):
            raise ValueError(f"{pbtxt}: PriorBox {name} flip=true is not supported")
        step, offset = floats("step"), floats("offset")
        layers.append(dict(name=name, feature_node=inputs[0], widths=widths, heights=heights,
                           variance=floats("variance") or [0.1, 0.1, 0.2, 0.2], offset=offset[0] if offset else 0.5,
                           step=step[0] if step else None, clip=flag("clip")))
    concat = re.search(r'name: "PriorBox/concat"(.*?)(?:\nnode \{|\Z)', text, re.S)
    if concat:
        order = re.findall(r'input: "([^"]+)"', concat.group(1))
        by_name = {layer["name"]: layer for layer in layers}
        layers = [by_name[n] for n in order if n in by_name]
    if not layers:
        raise ValueError(f"{pbtxt}: no PriorBox node")
    return layers


def prior_boxes(layers: list[dict], feature_sizes: list[tuple[int, int]], *, image_size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Prior boxes as OpenCV's ``PriorBox`` layer computes them from explicit widths and heights.

    Parameters
    ----------
    layers : the dicts of :func:`prior_box_layers`.
    feature_sizes : one ``(height, width)`` grid per layer.
    image_size : ``(width, height)`` of the network input, in pixels.

    Returns
    -------
    priors : (A, 4) float64 xyxy, normalised by the image size; rows run over grid rows, then columns,
        then the layer's boxes, layer after layer.
    variances : (A, 4) float64.
    """
    img_w, img_h = (float(v) for v in image_size)
    priors, variances = [], []
    for layer, (fh, fw) in zip(layers, feature_sizes, strict=True):
        step_x = layer["step"] or img_w / fw
        step_y = layer["step"] or img_h / fh
        cy, cx = np.meshgrid((np.arange(fh) + layer["offset"]) * step_y,
                             (np.arange(fw) + layer["offset"]) * step_x, indexing="ij")
        half_w = np.asarray(layer["widths"], dtype=np.float64) / 2
        half_h = np.asarray(layer["heights"], dtype=np.float64) / 2
        cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)
        boxes = np.stack([(cx - half_w) / img_w, (cy - half_h) / img_h,
                          (cx + half_w) / img_w, (cy + half_h) / img_h], axis=-1).reshape(-1, 4)
        if layer["clip"]:
            boxes = np.clip(boxes, 0.0, 1.0)
        priors.append(boxes)
        variances.append(np.broadcast_to(np.asarray(layer["variance"], dtype=np.float64), boxes.shape))
    return np.concatenate(priors), np.concatenate(variances)
