"""The run layout: where an experiment's files live, what they are called and how a stage records that it is done.

The one place that spells these paths; the pipeline writes them, export, report, the review notebook and the
benchmarks read them. Layout of an experiment (``exp_dir`` and ``frames_dir`` from config ``paths``)::

    runs/<exp>/frames/<video_id>/<index:06d>.jpg   sampled once, reused by every round
    runs/<exp>/frames/frames.json, manifest.json    the sampled frames and one record per input
    runs/<exp>/round_<N>/labels.json                raw detector output of the round (teacher or student)
    runs/<exp>/round_<N>/context.json               round 0: the teacher's boxes of its context classes (persons)
    runs/<exp>/round_<N>/features.npz               detector features of the boxes of labels.json, when any
    runs/<exp>/round_<N>/label_parts/               per-video parts of an unfinished label stage
    runs/<exp>/round_<N>/pruned.json                labels with heuristic decisions
    runs/<exp>/round_<N>/merged.json                the merge's boxes at the detectors' sizes, when the labels'
                                                    sizes were smoothed along tracks: what later rounds learn from
    runs/<exp>/round_<N>/annotations.json           the round's dataset (merged with round N-1)
    runs/<exp>/round_<N>/metrics.json               counts and, with ground truth, P/R/F1/AP
    runs/<exp>/round_<N>/student/student.pt         (N >= 1) the fine-tuned student
    runs/<exp>/round_<N>/train_labels.json          (N >= 1, with a reviewed set) what the student trained on
    runs/<exp>/round_<N>/.done_<stage>              written when ``stage`` finished (last of its writes)
    runs/<exp>/review/reviewed.json                 the reviewed set (``stage=review_import``), applied by every
                                                    round run after it: by train and, last, by merge
    runs/<exp>/sweep/                               sweep trials (:func:`pseudolabel.pipeline.run_sweep_trial`)
    runs/<exp>/export/<format>_round_<N>/           default folder of ``stage=export``
    runs/<exp>/report.html, report_files/           ``stage=report``

A round runs the stages of :func:`round_stages` in order, each marking itself done in the round's folder
(``frames_dir`` holds the ``sample`` marker, a round also ``log`` once W&B has it); a round is *finished* when
its last stage, ``evaluate``, is done.
"""
from __future__ import annotations

import re
from pathlib import Path

from .files import atomic_write_json

# ---------------------------------------------------------------- file names
FRAMES_DIRNAME = "frames"            # default paths.frames_dir, inside the experiment
FRAMES_INDEX = "frames.json"         # in frames_dir
MANIFEST = "manifest.json"           # in frames_dir
SAMPLE_LOCK = ".lock_sample"         # in frames_dir
LABELS = "labels.json"
CONTEXT = "context.json"
FEATURES = "features.npz"
LABEL_PARTS = "label_parts"
PRUNED = "pruned.json"
ANNOTATIONS = "annotations.json"
MERGED = "merged.json"               # with labels-only size smoothing: annotations before it (see loop_labels)
METRICS = "metrics.json"
STUDENT_DIRNAME = "student"
STUDENT_CHECKPOINT = "student.pt"    # in the round's student/ folder
TRAIN_LABELS = "train_labels.json"   # round N >= 1 with a reviewed set: round N-1's dataset, reviewed frames applied
REVIEW_DIRNAME = "review"
REVIEWED = "reviewed.json"           # in the experiment's review/ folder: the reviewed set
SWEEP_DIRNAME = "sweep"
EXPORT_DIRNAME = "export"
REPORT_PAGE = "report.html"

# ---------------------------------------------------------------- stages and markers
SAMPLE = "sample"                                              # stage of frames_dir, once per experiment
ROUND_STAGES = ("train", "label", "prune", "merge", "evaluate")  # a round's stages in order; round 0 has no train
LOG = "log"                                                    # a finished round logged to W&B
FINISHED = ROUND_STAGES[-1]                                    # a round is finished when this stage is done

_ROUND_DIRNAME = re.compile(r"^round_(\d+)$")


def round_stages(k: int) -> tuple[str, ...]:
    """The stages of round ``k`` in the order they run: round 0 labels with the teacher, later rounds train first."""
    return ROUND_STAGES[1:] if int(k) == 0 else ROUND_STAGES


def done_marker(stage_dir: str | Path, stage: str) -> Path:
    return Path(stage_dir) / f".done_{stage}"


def is_done(stage_dir: str | Path, stage: str) -> bool:
    return done_marker(stage_dir, stage).exists()


def mark_done(stage_dir: str | Path, stage: str, info: dict | None = None) -> None:
    atomic_write_json(done_marker(stage_dir, stage), info or {})


# ---------------------------------------------------------------- paths
def round_dirname(k: int) -> str:
    return f"round_{int(k)}"


def round_dir(exp_dir: str | Path, k: int) -> Path:
    return Path(exp_dir) / round_dirname(k)


def round_number(path: str | Path) -> int | None:
    """``N`` of a ``round_<N>`` folder name (or path), else None."""
    m = _ROUND_DIRNAME.match(Path(path).name)
    return int(m[1]) if m else None


def round_dirs(exp_dir: str | Path) -> dict[int, Path]:
    """Every ``round_<N>`` folder of the experiment, by round number, ascending (empty when there is none)."""
    exp = Path(exp_dir)
    if not exp.is_dir():
        return {}
    found = {round_number(d): d for d in exp.iterdir() if d.is_dir()}
    return {k: found[k] for k in sorted(k for k in found if k is not None)}


def loop_labels(exp_dir: str | Path, k: int) -> Path:
    """The file of round ``k``'s dataset that later rounds read (to train on, merge with, agree with): ``merged.json``
    where the labels' sizes were smoothed for the output alone (``prune.track_size.smooth_feeds_loop: false``), so
    that no student learns sizes the smoothing made; else ``annotations.json``."""
    merged = round_dir(exp_dir, k) / MERGED
    return merged if merged.is_file() else round_dir(exp_dir, k) / ANNOTATIONS


def fold_train_labels(fold: int | str) -> str:
    """With cross-fitting: the file fold ``fold``'s student trains on (round k-1's frames outside the fold);
    ``"*"``: the glob pattern of every fold's."""
    return f"train_labels_fold_{fold}.json"


def student_dir(exp_dir: str | Path, k: int, fold: int | None = None) -> Path:
    """Round ``k``'s student folder; with cross-fitting (``student.folds`` >= 2), fold ``fold``'s: ``fold_<i>/``."""
    d = round_dir(exp_dir, k) / STUDENT_DIRNAME
    return d if fold is None else d / f"fold_{fold}"


def student_checkpoint(exp_dir: str | Path, k: int, fold: int | None = None) -> Path:
    """Round ``k``'s fine-tuned student (fold ``fold``'s with cross-fitting)."""
    return student_dir(exp_dir, k, fold) / STUDENT_CHECKPOINT


def default_frames_dir(exp_dir: str | Path) -> Path:
    """``paths.frames_dir`` of the default config: the experiment's ``frames/``."""
    return Path(exp_dir) / FRAMES_DIRNAME


def export_dir(exp_dir: str | Path, fmt: str, k: int) -> Path:
    """Default folder of the ``fmt`` export of round ``k``."""
    return Path(exp_dir) / EXPORT_DIRNAME / f"{fmt}_{round_dirname(k)}"


def sweep_dir(exp_dir: str | Path) -> Path:
    return Path(exp_dir) / SWEEP_DIRNAME


def review_dir(exp_dir: str | Path) -> Path:
    """The experiment's ``review/`` folder, outside every round: it holds the reviewed set."""
    return Path(exp_dir) / REVIEW_DIRNAME


def reviewed_path(exp_dir: str | Path) -> Path:
    """``<exp_dir>/review/reviewed.json``: the experiment's reviewed set (:mod:`pseudolabel.review`)."""
    return review_dir(exp_dir) / REVIEWED


# ---------------------------------------------------------------- rounds on disk
def is_finished(rdir: str | Path) -> bool:
    """The round in ``rdir`` ran its last stage."""
    return is_done(rdir, FINISHED)


def finished_rounds(exp_dir: str | Path) -> list[int]:
    """Rounds of the experiment that finished (``.done_evaluate``) and hold ``annotations.json``, ascending."""
    return [k for k, d in round_dirs(exp_dir).items() if is_finished(d) and (d / ANNOTATIONS).is_file()]


def dataset_file(rdir: str | Path) -> Path | None:
    """The round's dataset: ``annotations.json``, else ``pruned.json`` (the merge has not run), else None."""
    for name in (ANNOTATIONS, PRUNED):
        if (Path(rdir) / name).is_file():
            return Path(rdir) / name
    return None


def rounds_with_dataset(exp_dir: str | Path) -> list[int]:
    """Rounds of the experiment that have a dataset (:func:`dataset_file`), finished or not, ascending."""
    return [k for k, d in round_dirs(exp_dir).items() if dataset_file(d) is not None]
