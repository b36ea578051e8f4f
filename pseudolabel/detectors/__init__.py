"""Detectors: the teacher of round 0 and the student that relabels later rounds, behind one contract.

Read the plain PyTorch path first; it is complete on its own:

- :mod:`.base`: the contract (:class:`~.base.Detections`, ``predict``) and :class:`~.base.BatchedDetector`,
  which chunks a call into forwards and runs them;
- :mod:`.torchvision_detector`: any torchvision detection model, and the R-CNN runtime of the torchvision
  teacher and of the student (:class:`~pseudolabel.student.model.StudentDetector`);
- :mod:`.rcnn`: one two-stage (R-CNN) forward, split at the backbone, with the box features of its boxes;
- :mod:`.tiling`: tiles, so that small balls reach a detectable size, and their fusion
  (:mod:`.guided_tiling` searches fewer tiles between full scans on video);
- :mod:`.opencv_dnn`: the offline SSD teacher in ``cv2.dnn``.

:mod:`.accel` makes the same forwards faster without changing what they compute beyond float rounding (ONNX
Runtime and OpenVINO backbones, lean R-CNN heads, replicas side by side, the SSD on OpenVINO); the
``runtime`` config group switches it (``conf/runtime/``).
"""
