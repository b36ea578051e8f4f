"""A TensorFlow object-detection SSD (the offline COCO teacher) run by OpenVINO instead of ``cv2.dnn``.

Why: OpenVINO's CPU plugin runs SSD-MobileNetV2's convolutions much faster than ``cv2.dnn``, in fp32 and
more so in bf16 on AMX (BENCHMARKS.md, "The SSD teacher on OpenVINO").

What runs where, so that the boxes are ``cv2.dnn``'s:

- OpenVINO reads the frozen graph itself and runs it from ``image_tensor`` (its own preprocessing)
  to the box encodings and class logits (nodes ``concat`` and ``concat_1`` of TF object-detection
  exports), cut before TF's postprocessing.
- The prior boxes are computed as ``cv2.dnn``'s ``PriorBox`` layers would from the text graph's settings
  (:func:`~pseudolabel.detectors.accel.ssd_output.prior_boxes`; no OpenCV importer is needed, and
  ``tests/test_openvino_ssd.py`` checks them against priors ``cv2.dnn`` produced), and
  :func:`~pseudolabel.detectors.accel.ssd_output.detection_output` decodes and suppresses as ``cv2.dnn``'s
  ``DetectionOutput`` layer, with the text graph's settings.
- Views are resized to the input size with ``cv2.resize`` (bilinear), as ``cv2.dnn.blobFromImages``.

Measured against ``cv2.dnn`` on 54 real football tiles (2629 boxes): the same boxes, scores within
3e-6, corners within 3e-4 px (``tests/test_openvino_ssd.py`` checks it on synthetic views).
``precision="bf16"`` is opt-in and changes the numbers.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..base import BatchedDetector, Detections, check_counts
from ..opencv_dnn import resolve_model_file
from .onnx_backbone import compile_on_cpu, resolve_backend
from .side_by_side import SideBySide


class _CompiledSSD:
    """The cut graph compiled once per batch size, shared by every worker thread (an infer request
    per thread and batch size: requests are not thread-safe)."""

    def __init__(self, model, *, streams: int, precision: str) -> None:
        self.model, self.streams, self.requested_precision = model, streams, precision
        self._compiled: dict[int, object] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.precision: str | None = None

    def _compile(self, n: int, height: int, width: int):
        with self._lock:
            if n not in self._compiled:
                m = self.model.clone()
                m.reshape({m.inputs[0].get_any_name(): [n, height, width, 3]})
                self._compiled[n], self.precision = compile_on_cpu(m, precision=self.requested_precision,
                                                                   streams=self.streams, threads=self.streams)
            return self._compiled[n]

    def run(self, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) uint8 -> box encodings (N, A, 4) ``(ty, tx, th, tw)``, class logits (N, A, C)."""
        n, h, w, _ = views.shape
        requests = self._local.__dict__.setdefault("requests", {})
        if n not in requests:
            requests[n] = self._compile(n, h, w).create_infer_request()
        request = requests[n]
        out = request.infer({0: views})
        loc, logits = (out[port] for port in request.model_outputs)
        return loc.reshape(n, -1, 4), logits.reshape(n, loc.size // (4 * n), -1)


class OpenVinoSSDDetector(BatchedDetector):
    """TF object-detection SSD through OpenVINO, same detections as
    :class:`~pseudolabel.detectors.opencv_dnn.OpenCVDnnDetector` on the same files up to float rounding.

    Parameters
    ----------
    model, config : str or dict
        The frozen graph (``.pb``) and OpenCV's text graph (``.pbtxt``: the priors and the
        ``DetectionOutput`` settings come from it); see :func:`~pseudolabel.detectors.opencv_dnn.resolve_model_file`.
    input_size : (int, int)
        Network input (width, height); each view is resized to it.
    swap_rb : bool
        True: the network takes RGB (images arrive RGB); False: BGR.
    name : str
        Provenance name stored on every box.
    min_score : float
        Detections below it are dropped at once.
    forward_batch : int
        Views per forward (one compiled graph per batch size met).
    workers : int or None
        Forwards run at once from their own threads, one core each (OpenVINO streams of the one
        compiled graph); None: ``cv2.getNumThreads()`` at the first call (the label stage sets it).
    precision : {"fp32", "bf16"}
        bf16: the convolutions in bfloat16 on CPUs with AMX/AVX512-BF16 (faster, no longer equal).
    box_encodings, class_logits : str
        Graph nodes where the network ends (TF object-detection SSD exports: ``concat``, ``concat_1``).
    priors_layer : str
        The text graph's prior-box layer.
    cache_dir : str or None
        Where the cut graph is kept as OpenVINO IR (fp32 weights), keyed by the graph file's content
        (None: :func:`default_cache_dir`): converting the TF graph is slow, reading the IR back is
        fast. The first forward after that is slow too (OpenVINO prepares its kernels).
    """

    def __init__(self, model: str | dict, config: str | dict, *, input_size=(300, 300), swap_rb: bool = True,
                 name: str = "openvino_ssd", min_score: float = 0.05, forward_batch: int = 1,
                 workers: int | None = None, precision: str = "fp32", box_encodings: str = "concat",
                 class_logits: str = "concat_1", priors_layer: str = "PriorBox/concat",
                 cache_dir: str | None = None) -> None:
        check_counts(forward_batch=forward_batch, workers=workers)
        resolve_backend("openvino", precision=precision)  # checks the precision
        self.model_path, self.config_path = resolve_model_file(model), resolve_model_file(config)
        self.input_size = tuple(int(v) for v in input_size)
        self.swap_rb, self.name, self.min_score = bool(swap_rb), name, float(min_score)
        self.forward_batch = int(forward_batch)
        self.workers = None if workers is None else int(workers)
        self.requested_precision = precision
        self.output_settings = _detection_output_settings(self.config_path)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._graph = _cut_graph(self.model_path, (box_encodings, class_logits), self.cache_dir)
        self.priors, self.variances = self._priors(priors_layer)
        self._compiled: _CompiledSSD | None = None
        self._init_lock = threading.Lock()
        self._side_by_side = SideBySide(self, lambda: self, library="cv2", name="ovssd")  # shared: per-thread requests

    @property
    def precision(self) -> str:
        """What the graph ran in (before the first call: what was asked for)."""
        return (self._compiled and self._compiled.precision) or self.requested_precision

    def _priors(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """The text graph's prior boxes, computed as ``cv2.dnn``'s ``PriorBox`` layers would (no OpenCV
        importer needed): widths, heights and variances from the ``.pbtxt``, each layer's grid from the
        OpenVINO graph's shapes at this input size."""
        from .ssd_output import prior_box_layers, prior_boxes

        layers = prior_box_layers(self.config_path)
        if layer != "PriorBox/concat":
            raise ValueError(f"priors_layer={layer!r}: only the text graph's 'PriorBox/concat' is supported")
        w, h = self.input_size
        model = self._graph.clone()
        model.reshape({model.inputs[0].get_any_name(): [1, h, w, 3]})
        ops = {op.get_friendly_name(): op for op in model.get_ops()}
        missing = [lay["feature_node"] for lay in layers if lay["feature_node"] not in ops]
        if missing:
            raise ValueError(f"{self.model_path.name}: no node {missing} for the priors of {self.config_path.name}")
        sizes = []
        for lay in layers:
            shape = ops[lay["feature_node"]].output(0).get_shape()  # NHWC, as the TF graph
            sizes.append((int(shape[1]), int(shape[2])))
        return prior_boxes(layers, sizes, image_size=(w, h))

    def _runtime(self) -> _CompiledSSD:
        """The compiled graph, with one stream per worker. Called from the caller's thread first
        (``predict``): inside a worker ``cv2.getNumThreads()`` is 1."""
        with self._init_lock:
            if self._compiled is None:
                workers = self.workers if self.workers is not None else max(1, cv2_threads())
                self._compiled = _CompiledSSD(self._graph, streams=workers, precision=self.requested_precision)
            return self._compiled

    def _views(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import cv2

        w, h = self.input_size
        views = [im if im.shape[:2] == (h, w) else cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
                 for im in images]
        batch = np.stack(views)
        return batch if self.swap_rb else np.ascontiguousarray(batch[..., ::-1])

    def _forward(self, _replica, images: Sequence[np.ndarray]) -> list[Detections]:
        """One inference on ``len(images)`` RGB uint8 images (H, W, 3); boxes in each image's pixels."""
        from .ssd_output import decode_center_size, detection_output

        loc, logits = self._runtime().run(self._views(images))
        out = []
        for im, l, z in zip(images, loc, logits):
            scores = 1.0 / (1.0 + np.exp(-z))
            boxes = decode_center_size(l[:, [1, 0, 3, 2]], self.priors, self.variances)
            b, s, c = detection_output(boxes, scores, min_score=self.min_score, **self.output_settings)
            ih, iw = im.shape[:2]
            out.append(Detections(np.clip(b, 0.0, 1.0) * np.array([iw, ih, iw, ih], dtype=np.float64), s, c))
        return out

    def _workers(self) -> int:
        return self._runtime().streams  # fixed when the graph is compiled


def cv2_threads() -> int:
    import cv2

    return int(cv2.getNumThreads())


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pseudolabel/openvino`` (``~/.cache/pseudolabel/openvino``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pseudolabel" / "openvino"


def _cut_graph(model_path: Path, outputs: tuple[str, ...], cache_dir: Path):
    """The frozen graph as an OpenVINO model ending at ``outputs``, converted once and kept in
    ``cache_dir`` as IR (written atomically; fp32 weights, not compressed)."""
    import openvino as ov

    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]
    tag = hashlib.sha256("|".join(outputs).encode()).hexdigest()[:8]
    xml = cache_dir / f"{model_path.stem}-{digest}-{tag}.xml"
    core = ov.Core()
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return core.read_model(str(xml))
    graph = core.read_model(str(model_path))
    ops = {op.get_friendly_name(): op for op in graph.get_ops()}
    missing = [n for n in outputs if n not in ops]
    if missing:
        raise ValueError(f"{model_path.name}: no node {missing} (expected a TF object-detection SSD export)")
    cut = ov.Model([ops[n].output(0) for n in outputs], graph.get_parameters(), "ssd_heads")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".tmp-") as tmp:
        tmp_xml = Path(tmp) / xml.name
        ov.save_model(cut, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))  # .bin first: .xml marks it complete
        os.replace(tmp_xml, xml)
    return cut


def _detection_output_settings(pbtxt) -> dict:
    """``confidence_threshold``, ``nms_threshold``, ``top_k``, ``keep_top_k``, ``background_label_id`` of
    the text graph's ``DetectionOutput`` node (the values ``cv2.dnn`` runs with)."""
    import re

    text = pbtxt.read_text()
    start = text.find('op: "DetectionOutput"')
    if start < 0:
        raise ValueError(f"{pbtxt}: no DetectionOutput node")
    node = text[start:text.find("\nnode {", start) if "\nnode {" in text[start:] else len(text)]
    out = {}
    for key, kind in (("confidence_threshold", float), ("nms_threshold", float), ("top_k", int),
                      ("keep_top_k", int), ("background_label_id", int)):
        m = re.search(r'key: "%s"\s*value \{\s*[fi]: ([-0-9.e]+)' % key, node)
        if m:
            out[key] = kind(float(m.group(1)))
    for key in ("code_type", "share_location"):
        m = re.search(r'key: "%s"\s*value \{\s*[sb]: "?([A-Za-z_]+)"?' % key, node)
        if m and m.group(1) not in ("CENTER_SIZE", "true"):
            raise ValueError(f"{pbtxt}: DetectionOutput {key}={m.group(1)} is not supported (CENTER_SIZE, shared)")
    return out
