"""The student: a small detector fine-tuned on the previous round's kept pseudo-labels.

- :mod:`.model`: model builders (EfficientNet-Lite0 Faster R-CNN, torchvision detectors) and
  :class:`~.model.StudentDetector` (the Detector protocol, with RoI features).
- :mod:`.data`: split by video, native-resolution crops, the Lightning data module.
- :mod:`.module`: the LightningModule (losses, ``val/f1``); :mod:`.callbacks`: backbone freezing.
- :mod:`.train`: :func:`~.train.train_student` -> ``student.pt``.

Submodules import torch/Lightning; import them explicitly.
"""
