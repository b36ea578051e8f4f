"""One validation step for the composed config: every setting a user is likely to mistype, checked before any
work starts.

The schema is a table (:data:`SCHEMA`): dotted key -> :class:`Rule` (type, range or choices, null allowed).
Keys absent from the composed config (another teacher, another pruner set) are not checked. A violation
raises :class:`ConfigError` with one line naming the key, the value and what is allowed; the command line
prints it and exits with code 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

STAGES: tuple[str, ...] = ("demo", "round", "download", "synth", "sample", "label", "relabel", "train", "prune",
                           "merge", "evaluate", "export", "report", "review_import", "sweep_trial")


class ConfigError(ValueError):
    """A setting of the wrong type, out of its range, or naming something that does not exist."""


@dataclass(frozen=True)
class Rule:
    """What one key may hold.

    ``kind`` is ``"int"``, ``"float"``, ``"bool"`` or ``"str"``; ``lo``/``hi`` bound numbers (inclusive unless
    ``lo_open``/``hi_open``); ``choices`` lists the allowed strings; ``nullable`` allows null; ``many`` also
    allows a non-empty list of such values.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    many: bool = False

    def allowed(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.kind in ("int", "float"):
            noun = "an integer" if self.kind == "int" else "a number"
            if self.lo is not None and self.hi is not None:
                text = (f"{noun} in {'(' if self.lo_open else '['}{_fmt(self.lo)}, "
                        f"{_fmt(self.hi)}{')' if self.hi_open else ']'}")
            elif self.lo is not None:
                text = f"{noun} {'>' if self.lo_open else '>='} {_fmt(self.lo)}"
            else:
                text = noun
        else:
            text = {"bool": "true or false", "str": "a string"}[self.kind]
        if self.many:
            text += ", a list of them,"
        return text + (" or null" if self.nullable else "")

    def check(self, value: Any) -> bool:
        if self.many and isinstance(value, (list, tuple)):
            return bool(value) and all(v is not None and self.check(v) for v in value)
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and (self.choices is None or value in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
            return False
        if not math.isfinite(float(value)):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return False
        return True


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


UNIT = Rule("float", 0.0, 1.0)
IOU = Rule("float", 0.0, 1.0, lo_open=True)
COUNT = Rule("int", 1)
OPTIONAL_COUNT = Rule("int", 1, nullable=True)

SCHEMA: dict[str, Rule] = {
    "stage": Rule("str", choices=STAGES),
    "exp": Rule("str"),
    "round": Rule("int", 0),
    "rounds": Rule("int", 0),
    "seed": Rule("int", 0),
    # inference runtime of teacher and student (the teacher's keys below read these unless its yaml sets its own)
    "runtime.workers": OPTIONAL_COUNT,
    "runtime.images_per_forward": OPTIONAL_COUNT,
    "runtime.backend": Rule("str", choices=("auto", "torch", "onnxruntime", "openvino")),
    "runtime.lean_heads": Rule("bool", nullable=True),
    "runtime.precision": Rule("str", choices=("fp32", "bf16")),
    "runtime.teacher.frames_per_call": COUNT,
    "runtime.teacher.views_per_call": COUNT,
    "runtime.student.frames_per_call": OPTIONAL_COUNT,
    # teacher
    "teacher.score_threshold": UNIT,
    "teacher.batch_size": COUNT,
    "teacher.context_score_threshold": UNIT,
    "teacher.detector.tile_size": Rule("int", 32, nullable=True, many=True),
    "teacher.detector.overlap": Rule("float", 0.0, 1.0, hi_open=True),
    "teacher.detector.fusion_iou": IOU,
    "teacher.detector.fusion": Rule("str", choices=("nms", "wbf")),
    "teacher.detector.batch_size": COUNT,
    "teacher.detector.full_frame": Rule("bool"),
    "teacher.detector.scan_every": COUNT,            # guided tiling (teacher=ssd_mobilenet_v2_guided)
    "teacher.detector.track_score": UNIT,
    "teacher.detector.max_guides": Rule("int", 0),
    "teacher.detector.max_speed": Rule("float", 0.0, lo_open=True),
    "teacher.detector.max_coast": Rule("int", 0),
    "teacher.detector.search_radius": Rule("float", 0.0, nullable=True),
    "teacher.detector.tile_margin": Rule("float", 0.0),
    "teacher.detector.new_guide_score": Rule("float", 0.0, 1.0, nullable=True),
    "teacher.detector.motion_tiles": Rule("int", 0),
    "teacher.detector.motion_threshold": Rule("float", 0.0),
    "teacher.detector.motion_scale": COUNT,
    "teacher.detector.look_back": Rule("bool"),
    "teacher.detector.cut_threshold": Rule("float", 0.0, lo_open=True),
    "teacher.detector.cut_max_response": Rule("float", nullable=True),
    "teacher.detector.detector.forward_batch": OPTIONAL_COUNT,
    "teacher.detector.detector.workers": OPTIONAL_COUNT,
    "teacher.detector.detector.min_score": UNIT,
    "teacher.detector.detector.precision": Rule("str", choices=("fp32", "bf16")),
    # student training and relabelling
    "student.folds": Rule("int", 1),
    "student.ema_decay": Rule("float", 0.0, 1.0, lo_open=True, hi_open=True, nullable=True),
    "student.datamodule.batch_size": COUNT,
    "student.datamodule.crop_size": Rule("int", 32),
    "student.datamodule.val_fraction": Rule("float", 0.0, 1.0, hi_open=True),
    "student.datamodule.negatives_fraction": Rule("float", 0.0, 1.0, hi_open=True),
    "student.datamodule.scale_jitter": Rule("float", 0.0),
    "student.module.optimizer.lr": Rule("float", 0.0, lo_open=True),
    "student.module.jittered_proposals": Rule("int", 0),
    "student.module.jitter_scale": Rule("float", 0.0),
    "student.module.jitter_shift": Rule("float", 0.0),
    "student.trainer.max_epochs": COUNT,
    "student.trainer.max_steps": Rule("int", -1),
    "relabel.native_tiles": Rule("bool"),
    "relabel.policy": Rule("str", choices=("fixed", "adaptive")),
    "relabel.score_threshold": UNIT,
    "relabel.target_precision": UNIT,
    "relabel.min_threshold": UNIT,
    "relabel.floor": Rule("float", 0.0, 1.0, nullable=True),
    "label.num_shards": COUNT,
    "label.shard": Rule("int", 0, nullable=True),
    "label.num_threads": OPTIONAL_COUNT,
    # pruners, merge, evaluation
    "prune.heuristics.min_visible": UNIT,
    "prune.track_size.max_ratio": Rule("float", 1.0, lo_open=True),
    "prune.track_size.min_seeds": COUNT,
    "prune.track_size.student_rounds": Rule("bool"),
    "prune.track_size.per_video": Rule("bool"),
    "prune.track_size.smooth": UNIT,
    "prune.track_size.smooth_min_boxes": COUNT,
    "prune.track_size.smooth_feeds_loop": Rule("bool"),
    "prune.track_size.confirmed_seed_size": Rule("bool"),
    "prune.on_person.min_score": UNIT,
    "prune.on_person.foot_fraction": UNIT,
    "prune.on_person.max_area_ratio": Rule("float", 0.0, lo_open=True),
    "prune.on_person.track_fraction": UNIT,
    "prune.on_person.max_frame_fraction": UNIT,
    "prune.heuristics.min_size": Rule("float", 0.0, nullable=True),
    "prune.heuristics.max_size": Rule("float", 0.0, lo_open=True, nullable=True),
    "prune.heuristics.max_aspect": Rule("float", 1.0, nullable=True),
    "prune.heuristics.log_size_k": Rule("float", 0.0, lo_open=True),
    "prune.heuristics.overlap_iou": Rule("float", 0.0, 1.0, lo_open=True, nullable=True),
    "prune.heuristics.static_iou": IOU,
    "prune.heuristics.static_min_fraction": UNIT,
    "prune.heuristics.static_min_frames": COUNT,
    "prune.hysteresis.enabled": Rule("bool"),
    "prune.hysteresis.floor": UNIT,
    "prune.hysteresis.max_gap": Rule("int", 0),
    "prune.hysteresis.gate": Rule("float", 0.0, lo_open=True, nullable=True),
    "prune.hysteresis.max_displacement_fraction": Rule("float", 0.0, 1.0, lo_open=True),
    "prune.hysteresis.max_size_ratio": Rule("float", 1.0),
    "prune.hysteresis.student_seeds": Rule("str", choices=("agreement", "agreement_or_doubtful",
                                                           "agreement_then_doubtful", "score")),
    "prune.hysteresis.track_seed_length": Rule("int", 1, nullable=True),
    "prune.hysteresis.doubtful_seed_frames": Rule("int", 1),
    "prune.hysteresis.track_evidence": Rule("str", choices=("max", "two_best")),
    "prune.hysteresis.student_confirm": Rule("str", choices=("track", "track_and_teacher", "track_between_teacher")),
    "prune.hysteresis.student_run": Rule("int", 2, nullable=True),
    "prune.hysteresis.student_reach": Rule("int", 0, nullable=True),
    "prune.hysteresis.cold_start_length": Rule("int", 2, nullable=True),
    "prune.hysteresis.cold_start_motion": Rule("float", 0.0),
    "prune.hysteresis.cold_start_window": Rule("float", 0.0, lo_open=True),
    "prune.hysteresis.cold_start_videos": Rule("str", choices=("empty", "all")),
    "prune.hysteresis.cold_start_residual": Rule("float", 0.0, nullable=True),
    "prune.hysteresis.cold_start_teacher": Rule("str", choices=("off", "anchored", "teacher_anchored", "all")),
    "prune.hysteresis.between_seeds": Rule("bool"),
    "prune.appearance.enabled": Rule("bool"),
    "prune.appearance.min_track_probability": UNIT,
    "prune.appearance.min_examples": COUNT,
    "prune.appearance.regularisation": Rule("float", 0.0, lo_open=True),
    "prune.appearance.crop_size": COUNT,
    "prune.appearance.crop_context": Rule("float", 0.0, lo_open=True),
    "prune.appearance.clean_folds": Rule("int", 2, nullable=True),
    "prune.per_frame.max_boxes": OPTIONAL_COUNT,
    "data.max_per_frame": OPTIONAL_COUNT,
    "student.datamodule.ignore_from": Rule("str", choices=("every_round", "teacher")),
    "student.datamodule.box_weights": Rule("str", choices=("uniform", "score")),
    "student.datamodule.train_samples_per_epoch": Rule("int", 1, nullable=True),
    "prune.hysteresis.max_displacement": Rule("float", 0.0, lo_open=True, nullable=True),
    "merge.iou_threshold": IOU,
    "merge.geometry": Rule("str", choices=("new", "prev", "fused")),
    "merge.centre_factor": Rule("float", 0.0, lo_open=True, nullable=True),
    "merge.max_unconfirmed_rounds": OPTIONAL_COUNT,
    "prune.heuristics.overlap_centre": Rule("float", 0.0, lo_open=True, nullable=True),
    "evaluate.iou_threshold": IOU,
    "evaluate.centre_distance": Rule("float", 0.0, lo_open=True),
    "collapse_guard.max_factor": Rule("float", 1.0, lo_open=True, nullable=True),
    "sweep.rounds": Rule("int", 0),
    "sweep.label_floor": UNIT,
    "sweep.repeats": COUNT,
    # review exports and imports
    "export.order": Rule("str", choices=("informative", "frame")),
    "export.budget": OPTIONAL_COUNT,
    "report.review_frames": Rule("int", 0),
    "review.path": Rule("str", nullable=True),
    "review.format": Rule("str", choices=("yolo", "cvat", "labelstudio", "fiftyone"), nullable=True),
    "review.round": Rule("int", 0, nullable=True),
    "review.track_reach": Rule("int", 0),
    "data.sampling.stride": OPTIONAL_COUNT,
    "data.sampling.target_fps": Rule("float", 0.0, lo_open=True, nullable=True),
}


def validate(cfg: Any, schema: dict[str, Rule] | None = None) -> None:
    """Check every key of ``schema`` present in ``cfg`` (a DictConfig; interpolations resolved).

    Raises
    ------
    ConfigError
        At the first violation: ``<key>=<value>: expected <what is allowed>``.
    """
    from omegaconf import OmegaConf

    for key, rule in (SCHEMA if schema is None else schema).items():
        missing = object()
        value = OmegaConf.select(cfg, key, default=missing, throw_on_missing=False)
        if value is missing:
            continue
        if rule.many and OmegaConf.is_list(value):
            value = OmegaConf.to_container(value)
        if OmegaConf.is_config(value):
            raise ConfigError(f"{key}: expected {rule.allowed()}, got a {type(value).__name__}")
        if not rule.check(value):
            raise ConfigError(f"{key}={_shown(value)}: expected {rule.allowed()}")


def _shown(value: Any) -> str:
    return "null" if value is None else str(value)
