"""The acceleration layer: the plain path's forwards (:mod:`pseudolabel.detectors`), faster, with the same
results up to float rounding (bf16 aside, which is opt-in).

- :mod:`.onnx_backbone`: an R-CNN's backbone, FPN and RPN head exported to ONNX Runtime or OpenVINO
  (``runtime.backend``); :func:`~.onnx_backbone.resolve_backend` picks one;
- :mod:`.lean_heads`: the R-CNN RoI stage in fewer operations, and its input batch in NumPy (``runtime.lean_heads``);
- :mod:`.side_by_side`: replicas of a detector, one thread each, on the forwards of a call (``runtime.workers``);
- :mod:`.openvino_ssd` and :mod:`.ssd_output`: the SSD teacher run by OpenVINO, decoded as ``cv2.dnn`` does.
"""
