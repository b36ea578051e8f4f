"""The round pipeline: the only module that runs the stages, in the order of :func:`run_round`.

Files and folders are those of :mod:`pseudolabel.layout` (every path from config ``paths``). Each stage writes
atomically and then its ``.done_<stage>`` marker; a rerun skips finished stages, so an interrupted round resumes
and a finished one changes no file. The experiment's reviewed set (``stage=review_import``) is applied by every
round run after it: by train and, last, by merge.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from . import files, layout
from .coco import load_coco, save_coco
from .records import Dataset

log = logging.getLogger("pseudolabel")


class PipelineError(RuntimeError):
    """A user-facing failure: printed as one clear message, without a traceback."""


class CollapseError(PipelineError):
    pass


# ---------------------------------------------------------------- paths
def exp_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.exp_dir)


def frames_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.frames_dir)


def round_dir(cfg: DictConfig, k: int) -> Path:
    return layout.round_dir(exp_dir(cfg), k)


def loop_labels(cfg: DictConfig, k: int) -> Path:
    """Round k's dataset as later rounds read it (:func:`pseudolabel.layout.loop_labels`)."""
    return layout.loop_labels(exp_dir(cfg), k)


def _run_once(directory: Path, stage: str, fn: Callable[[], dict | None]) -> bool:
    """Run ``fn`` unless ``directory`` records ``stage`` as done; returns True when it ran."""
    if layout.is_done(directory, stage):
        log.info("%s: %s already done, skipped", directory, stage)
        return False
    directory.mkdir(parents=True, exist_ok=True)
    started = time.time()
    info = fn() or {}
    layout.mark_done(directory, stage, info)
    # temps of a killed earlier attempt: older than this attempt, so no write of this one. 0.1 s, not more:
    # file times come from the kernel's coarse clock (a few ms behind time.time()), while a rerun can reach
    # this stage within a second of the kill it resumes from (seen: 0.8 s)
    files.remove_stale_temps(directory, older_than=started - 0.1)
    return True


# ---------------------------------------------------------------- stages
def stage_synth(cfg: DictConfig) -> Path | None:
    """Generate the embedded synthetic videos when the data config asks for them and they are absent."""
    spec = cfg.data.get("synthetic")
    if not spec:
        return None
    from .synth import make_suite

    return make_suite(spec.out_dir, n_videos=spec.n_videos, n_frames=spec.n_frames, width=spec.width,
                      height=spec.height, seed=spec.seed, gt_extent=spec.get("gt_extent", "disc"))


def stage_sample(cfg: DictConfig) -> Dataset:
    """Sample frames of every input once per experiment; returns the frames (no boxes)."""
    from .frames import SamplingConfig, require_frames, sample_inputs

    fdir = frames_dir(cfg)

    def run():
        sampling = SamplingConfig(**OmegaConf.to_container(cfg.data.sampling, resolve=True))
        frames, records = sample_inputs(list(cfg.data.inputs), frames_dir=fdir, config=sampling)
        files.atomic_write_json(fdir / layout.MANIFEST, {"inputs": list(cfg.data.inputs), "videos": records})
        require_frames(frames, records)
        save_coco(Dataset(frames=frames), fdir / layout.FRAMES_INDEX)
        skipped = [r for r in records if r.get("status") == "skipped"]
        for r in records:
            if r.get("status") != "ok":
                log.log(logging.WARNING if r in skipped else logging.INFO, "%s %s: %s", r.get("status"),
                        r.get("path"), r.get("reason"))
        return {"n_frames": len(frames), "n_inputs_skipped": len(skipped)}

    with files.file_lock(fdir / layout.SAMPLE_LOCK):  # label shards started together sample once
        _run_once(fdir, layout.SAMPLE, run)
    return load_coco(fdir / layout.FRAMES_INDEX)


def _build_teacher(cfg: DictConfig):
    from .safe_config import instantiate

    return instantiate(cfg.teacher.detector)


def label_shard(cfg: DictConfig) -> tuple[int | None, int]:
    """``(label.shard, label.num_shards)`` from the config, validated; ``(None, 1)`` when absent."""
    lcfg = cfg.get("label") or {}
    shard, n = lcfg.get("shard"), int(lcfg.get("num_shards") or 1)
    if n < 1 or (shard is not None and not 0 <= int(shard) < n):
        raise PipelineError(f"label.shard must be null or in 0..label.num_shards-1; got shard={shard}, "
                            f"num_shards={n}")
    return (None if shard is None else int(shard)), n


def stage_label(cfg: DictConfig, k: int, frames: Dataset,
                detector_factory: Callable[[], Any] | Sequence[Callable[[], Any]], *,
                class_ids, score_threshold: float, batch_size: int | None, policy: str = "fixed",
                context_class_ids=None, context_score_threshold: float = 0.5) -> None:
    """Run a detector over every sampled frame -> ``labels.json`` (and ``features.npz`` if any).

    With ``detector_factory`` a sequence of n >= 2 factories (cross-fitting, ``student.folds``): factory i labels the
    frames of fold i (:func:`~pseudolabel.student.data.cross_fit_folds`); features are then not kept (n models,
    n feature spaces).

    ``context_class_ids`` (the teacher's ``context_class_ids``, e.g. COCO person) also writes
    ``context.json``: the detector's boxes of those classes, evidence for ``prune.on_person``.

    Videos are labelled one by one into ``label_parts/<video_id>.json`` (:mod:`pseudolabel.parts`);
    a video whose part exists is not labelled again, so an interrupted run resumes. With
    ``label.shard`` set, only that shard's videos are labelled and the stage stops there (no
    ``labels.json``, not marked done); a run without it labels what is still missing, merges every
    part into ``labels.json`` (the same file one pass over all frames gives) and removes the parts.

    ``policy="adaptive"`` (student rounds) labels down to the lowest candidate threshold, then keeps the
    boxes above the threshold calibrated on agreement with round k-1 (:mod:`pseudolabel.threshold`).
    """
    import shutil

    from .label import configure_threads
    from .parts import PartMismatchError, label_parts, merge_context, select_videos

    rdir = round_dir(cfg, k)
    if layout.is_done(rdir, "label"):
        log.info("%s: label already done, skipped", rdir)
        return
    if policy not in ("fixed", "adaptive"):
        raise PipelineError(f"relabel.policy must be fixed or adaptive, got {policy!r}")
    shard, num_shards = label_shard(cfg)
    parts_dir = rdir / layout.LABEL_PARTS
    floor = float(cfg.relabel.min_threshold) if policy == "adaptive" else float(score_threshold)
    # round 0 keeps the teacher's boxes down to the hysteresis floor (tracks confirm them); a student round keeps
    # its boxes above the relabel threshold, or down to relabel.floor when set, and lets agreement with round k-1
    # seed its tracks (prune.hysteresis)
    hysteresis_floor = _hysteresis_floor(cfg) if k == 0 else _student_floor(cfg)
    keep_floor = min(float(score_threshold), hysteresis_floor) if hysteresis_floor is not None else None
    if keep_floor is not None:  # labels.json keeps the boxes a track may confirm (prune.hysteresis)
        floor = min(floor, keep_floor)
    class_ids = None if class_ids is None else [int(c) for c in class_ids]
    context = ({} if context_class_ids is None else
               {"context_class_ids": [int(c) for c in context_class_ids],
                "context_score_threshold": float(context_score_threshold)})
    videos = select_videos([f.video_id for f in frames.frames], shard=shard, num_shards=num_shards)
    groups = _label_groups(detector_factory, frames.frames, parts_dir)
    if len(groups) > 1 and context:
        raise PipelineError("context detections come from the teacher's single pass, not from cross-fit folds")

    def detector(factory):
        def build():
            n = configure_threads((cfg.get("label") or {}).get("num_threads"))
            log.info("round %d: labelling with %d thread(s)%s", k, n,
                     "" if shard is None else f", shard {shard} of {num_shards} ({len(videos)} video(s))")
            return factory()
        return build

    try:
        done = {"labelled": [], "reused": []}
        for group_dir, group_frames, factory in groups:
            for key, vids in label_parts(detector(factory), group_frames, parts_dir=group_dir, video_ids=videos,
                                         frames_dir=frames_dir(cfg), round=k, class_ids=class_ids,
                                         score_threshold=floor, batch_size=batch_size, **context).items():
                done[key] += vids
        if shard is not None:
            log.info("round %d, label shard %d of %d: %d video(s) labelled, %d already done; once every shard "
                     "is done, merge with the same command without label.shard", k, shard, num_shards,
                     len(set(done["labelled"])), len(set(done["reused"])))
            return

        def run():
            ds, feats, source = _merge_label_groups(groups, frames.frames, round=k, class_ids=class_ids,
                                                    score_threshold=floor, **context)
            info = {"round": k, "stage": "label", "source": source, "policy": policy,
                    "score_threshold": float(score_threshold)}
            if policy == "adaptive":
                calib = _calibrate(cfg, k, ds)
                info["score_threshold"], info["calibration"] = calib["threshold"], calib
                lowest = calib["threshold"] if keep_floor is None else min(calib["threshold"], keep_floor)
                ds.boxes = [b for b in ds.boxes if b.score >= lowest]
            if keep_floor is not None:
                info["label_floor"] = keep_floor
            ds.info = info
            if context:
                save_coco(merge_context(parts_dir, frames.frames), rdir / layout.CONTEXT)
            save_coco(ds, rdir / layout.LABELS)
            feats = {b.id: feats[b.id] for b in ds.boxes if b.id in feats}
            if feats:
                ids = np.array(sorted(feats), dtype=np.int64)
                files.atomic_write_npz(rdir / layout.FEATURES, ids=ids, features=np.stack([feats[i] for i in ids]))
            return {"n_boxes": len(ds.boxes), "score_threshold": info["score_threshold"]}

        _run_once(rdir, "label", run)
    except PartMismatchError as e:
        raise PipelineError(f"{e}. Delete {parts_dir} to label round {k} again with the current settings.") from None
    shutil.rmtree(parts_dir, ignore_errors=True)


def _label_groups(detector_factory, frames: Sequence, parts_dir: Path) -> list[tuple[Path, list, Callable]]:
    """(parts folder, frames, detector factory) of each labeller: one, or one per cross-fit fold."""
    if callable(detector_factory):
        return [(parts_dir, list(frames), detector_factory)]
    from .student.data import cross_fit_folds

    factories = list(detector_factory)
    fold_of = cross_fit_folds(frames, folds=len(factories))
    return [(parts_dir / f"fold_{i}", [f for f in frames if fold_of[f.key] == i], factory)
            for i, factory in enumerate(factories)]


def _merge_label_groups(groups, frames: Sequence, **settings) -> tuple[Dataset, dict, str]:
    """:func:`~pseudolabel.parts.merge_parts` over every labeller's frames: one dataset over ``frames`` in their
    order, box ids 1..N; with several labellers, no features (their feature spaces differ)."""
    from .parts import merge_parts

    if len(groups) == 1:
        return merge_parts(groups[0][0], frames, **settings)
    boxes_of: dict[int, list] = {}
    sources = set()
    for group_dir, group_frames, _ in groups:
        part, _, source = merge_parts(group_dir, group_frames, **settings)
        sources.add(source)
        for b in part.boxes:
            boxes_of.setdefault(b.image_id, []).append(b)
    ds = Dataset(frames=list(frames))
    for f in frames:
        for b in boxes_of.get(f.id, ()):
            b.id = len(ds.boxes) + 1
            ds.boxes.append(b)
    return ds, {}, ", ".join(sorted(s for s in sources if s))


def _teacher_context(cfg: DictConfig) -> dict[str, Any]:
    """stage_label's context arguments from ``teacher.context_class_ids`` (absent or null: none)."""
    ids = OmegaConf.select(cfg, "teacher.context_class_ids")
    if not ids:
        return {}
    return {"context_class_ids": list(ids),
            "context_score_threshold": float(OmegaConf.select(cfg, "teacher.context_score_threshold",
                                                              default=0.5))}


def _student_floor(cfg: DictConfig) -> float | None:
    """A student round's label floor: ``relabel.floor`` when set and ``prune.hysteresis`` is on, else None."""
    floor = OmegaConf.select(cfg, "relabel.floor")
    return None if floor is None or _hysteresis_floor(cfg) is None else float(floor)


def _hysteresis_floor(cfg: DictConfig) -> float | None:
    """The label floor when ``prune.hysteresis`` is on (boxes between it and the threshold wait for a track)."""
    h = OmegaConf.select(cfg, "prune.hysteresis")
    return float(h.floor) if h and h.get("enabled", True) else None


def stage_label_round(cfg: DictConfig, k: int, frames: Dataset) -> None:
    """Label round ``k``: the teacher for k = 0, else round k's student (its ``student.pt`` must exist)."""
    if k == 0:
        stage_label(cfg, 0, frames, lambda: _build_teacher(cfg), class_ids=cfg.teacher.class_ids,
                    score_threshold=cfg.teacher.score_threshold, batch_size=cfg.teacher.batch_size,
                    **_teacher_context(cfg))
        return
    folds = student_folds(cfg)
    ckpts = [layout.student_checkpoint(exp_dir(cfg), k, None if folds == 1 else i) for i in range(folds)]
    factories = [lambda ckpt=ckpt: _student_relabeller(cfg, ckpt) for ckpt in ckpts]
    stage_label(cfg, k, frames, factories[0] if folds == 1 else factories, class_ids=[1],
                score_threshold=cfg.relabel.score_threshold, batch_size=cfg.runtime.student.frames_per_call,
                policy=str(cfg.relabel.policy))


def _calibrate(cfg: DictConfig, k: int, ds: Dataset) -> dict:
    from .threshold import calibrate_threshold

    prev = load_coco(loop_labels(cfg, k - 1))
    ref_by_key: dict = {}
    prev_keys = {f.id: f.key for f in prev.frames}
    for b in prev.kept_boxes():
        ref_by_key.setdefault(prev_keys[b.image_id], []).append(b.xyxy)
    by_image = ds.boxes_by_image()
    pred, ref = [], []
    for f in ds.frames:
        if f.key in ref_by_key:
            bs = by_image.get(f.id, [])
            pred.append((ds.xyxy(bs), np.array([b.score for b in bs])))
            ref.append(np.array(ref_by_key[f.key]))
    calib = calibrate_threshold(pred, ref, target_precision=float(cfg.relabel.target_precision))
    log.info("round %d: adaptive threshold %.2f (agreement precision %.3f on %d frames with a kept box)",
             k, calib["threshold"], calib["precision"], len(ref))
    return calib


def refuse_training_on_nothing(cfg: DictConfig, k: int) -> None:
    """Round k would train its student on round k-1's kept boxes: stop when there are none."""
    prev = loop_labels(cfg, k - 1)
    if layout.is_done(round_dir(cfg, k), "train") or not prev.is_file() or load_coco(prev).kept_boxes():
        return
    raise PipelineError(
        f"round {k - 1} kept no box, so round {k} has nothing to train on; stopped before training. Try a lower "
        f"teacher.score_threshold (now {OmegaConf.select(cfg, 'teacher.score_threshold')}), a smaller "
        f"teacher.detector.tile_size (now {OmegaConf.select(cfg, 'teacher.detector.tile_size')}), "
        f"or make sweep EXP={cfg.exp} to choose them")


def student_folds(cfg: DictConfig) -> int:
    """``student.folds``: students per round, each relabelling the frames the others trained on (1: one student)."""
    return int(OmegaConf.select(cfg, "student.folds", default=1) or 1)


def stage_train(cfg: DictConfig, k: int) -> Path:
    """Fine-tune the student on round k-1's kept boxes -> ``round_k/student/student.pt``.

    With ``student.folds`` = n >= 2 (cross-fitting), n students: fold i's (``student/fold_<i>/student.pt``) trains on
    the frames outside fold i (:func:`~pseudolabel.student.data.cross_fit_folds`; ``train_labels_fold_<i>.json``),
    and relabels fold i alone. Returns the single student's checkpoint, or fold 0's."""
    from .safe_config import instantiate

    from .student.data import cross_fit_folds
    from .student.train import train_student

    rdir, prev = round_dir(cfg, k), loop_labels(cfg, k - 1)
    folds = student_folds(cfg)
    refuse_training_on_nothing(cfg, k)

    def train(labels: Path, fold: int | None) -> str:
        scfg = cfg.student
        datamodule = instantiate(scfg.datamodule, pseudo_labels_path=str(labels), frames_dir=str(frames_dir(cfg)))
        module_factory = instantiate(scfg.module)
        # the model is built after seeding (inside train_student) so that its new heads are reproducible
        path = train_student(pseudo_labels_path=str(labels), frames_dir=str(frames_dir(cfg)),
                             out_dir=str(layout.student_dir(exp_dir(cfg), k, fold)),
                             model=lambda: instantiate(scfg.model), datamodule=datamodule,
                             module_factory=module_factory,
                             trainer_kwargs=OmegaConf.to_container(scfg.trainer, resolve=True),
                             callbacks=student_callbacks(scfg),
                             seed=int(cfg.seed) + k + 1000 * (fold or 0), ema_decay=scfg.get("ema_decay"))
        return str(path)

    def run():
        labels, info, ds = prev, {}, None
        if layout.reviewed_path(exp_dir(cfg)).is_file():  # else round k-1's file as it is, not read here
            ds = load_coco(prev)
            review = apply_reviewed_set(cfg, ds, k)
            if review is not None:  # round k-1's dataset with the reviewer's frames as ground truth
                labels, info["review"] = rdir / layout.TRAIN_LABELS, review
                save_coco(ds, labels)
        if folds == 1:
            return {"checkpoint": train(labels, None), **info}
        ds = ds if ds is not None else load_coco(prev)
        fold_of = cross_fit_folds(ds.frames, folds=folds)
        checkpoints = []
        for i in range(folds):
            part = ds.subset(lambda f: fold_of[f.key] != i)
            if not part.kept_boxes():
                raise PipelineError(f"round {k}, fold {i}: no kept box outside fold {i} to train on; use fewer "
                                    f"student.folds (now {folds})")
            path = rdir / layout.fold_train_labels(i)
            save_coco(part, path)
            checkpoints.append(train(path, i))
        return {"checkpoints": checkpoints, "folds": folds, **info}

    _run_once(rdir, "train", run)
    return layout.student_checkpoint(exp_dir(cfg), k, 0 if folds > 1 else None)


def student_callbacks(scfg: DictConfig) -> list:
    """The Lightning callbacks of ``student.callbacks``, a mapping name -> config (a null one is left out)."""
    from .safe_config import instantiate

    return [instantiate(c) for c in (scfg.get("callbacks") or {}).values() if c is not None]


def _build_student(cfg: DictConfig, checkpoint: Path):
    """Round k's student, with the inference runtime of ``runtime``."""
    from .safe_config import instantiate

    from .student.model import StudentDetector

    rt = cfg.runtime
    return StudentDetector.from_checkpoint(checkpoint, model_factory=lambda: instantiate(cfg.student.model,
                                                                                       pretrained=False),
                                           backend=str(rt.backend), batch_size=rt.images_per_forward,
                                           workers=rt.workers, lean_heads=rt.lean_heads, precision=str(rt.precision))


def _student_relabeller(cfg: DictConfig, checkpoint: Path):
    """The student as the relabel stage runs it. With ``relabel.native_tiles`` frames whose longest side, times
    the model's ``scale``, exceeds its ``max_size`` are cut into tiles of ``max_size / scale`` so that the student
    sees balls at the scale it trained on (its training crops are native-resolution times ``scale``), not shrunk
    with the whole frame."""
    from .detectors.tiling import TiledDetector

    student = _build_student(cfg, checkpoint)
    if not cfg.relabel.get("native_tiles", False):
        return student
    transform = student.model.transform
    tile = int(transform.max_size / getattr(transform, "scale", 1.0))
    tiled = TiledDetector(student, tile_size=tile, overlap=0.25, full_frame=False,
                          batch_size=student.frames_per_call)
    tiled.frames_per_call = max(1, student.frames_per_call // 2)  # a large frame gives two or more tiles
    return tiled


def stage_prune(cfg: DictConfig, k: int) -> None:
    """Apply the pruners configured in ``prune/`` (heuristics, then feature outliers, then temporal) to
    ``labels.json`` -> ``pruned.json``."""
    rdir = round_dir(cfg, k)

    def run():
        from .prune import HeuristicsConfig, apply_heuristics

        ds = load_coco(rdir / layout.LABELS)
        counts = {}
        pcfg = OmegaConf.to_container(cfg.prune, resolve=True)
        if pcfg.get("heuristics"):
            counts.update(apply_heuristics(ds, HeuristicsConfig(**pcfg["heuristics"]), round=k))
        if pcfg.get("hysteresis"):  # boxes below the round's threshold stay only where a seeded track links them
            from .prune.temporal import HysteresisConfig, apply_hysteresis

            high = float(ds.info.get("score_threshold", 0.0))
            hcfg = HysteresisConfig(**pcfg["hysteresis"])
            seeds = doubtful = confirmable = None
            if k > 0 and hcfg.student_seeds != "score":
                previous = load_coco(loop_labels(cfg, k - 1))
                seeds = _agreeing_box_ids(cfg, k, ds, previous=previous)
                if hcfg.student_seeds in ("agreement_or_doubtful", "agreement_then_doubtful"):
                    doubtful = _agreeing_box_ids(cfg, k, ds, with_doubtful=True, previous=previous) - seeds
                if hcfg.student_seeds == "agreement_then_doubtful":
                    doubtful = _in_videos_without_kept_boxes(doubtful, ds, previous)
            teacher_seen = (_teacher_seen_box_ids(cfg, ds) if k > 0 and (
                hcfg.student_confirm != "track" or hcfg.cold_start_teacher != "off") else None)
            if seeds is not None and hcfg.cold_start_length:
                cold_seeds = _cold_start_seed_ids(cfg, ds, previous, hcfg, high=high, teacher_seen=teacher_seen)
                for b in ds.boxes:
                    if b.id in cold_seeds:
                        b.extra["seed"] = "moving_track"  # provenance: seeded by the cold-start rule
                seeds |= cold_seeds
            if hcfg.student_confirm != "track":
                confirmable = teacher_seen
            counts.update(apply_hysteresis(ds, hcfg, round=k, high=high, seeds=seeds, doubtful_seeds=doubtful,
                                           confirmable=confirmable,
                                           confirm_between=hcfg.student_confirm == "track_between_teacher"))
            confirmed = counts.pop("track_confirmed")
        if pcfg.get("track_size"):  # after the hysteresis: it judges tracks against the seeds
            from .prune.track_size import TrackSizeConfig, apply_track_size

            counts.update(apply_track_size(ds, TrackSizeConfig(**pcfg["track_size"]), round=k))
        context_path = round_dir(cfg, 0) / layout.CONTEXT
        if (pcfg.get("on_person") or {}).get("enabled") and context_path.is_file():  # votes per track
            from .prune.context import OnPersonConfig, apply_on_person

            counts.update(apply_on_person(ds, load_coco(context_path), OnPersonConfig(**pcfg["on_person"]), round=k))
        if k > 0 and (pcfg.get("appearance") or {}).get("enabled"):  # per track: after the hysteresis
            from .prune.appearance import AppearanceConfig, apply_appearance

            counts.update(apply_appearance(ds, load_coco(loop_labels(cfg, 0)),
                                           AppearanceConfig(**pcfg["appearance"]), round=k,
                                           frames_dir=frames_dir(cfg)))
        if (pcfg.get("per_frame") or {}).get("max_boxes"):  # after the tracks: their lengths are evidence
            from .prune.per_frame import apply_per_frame_cap

            counts.update(apply_per_frame_cap(ds, max_boxes=pcfg["per_frame"]["max_boxes"], round=k))
        resized = {}
        sizing = _track_sizing(cfg, in_loop=True)
        if sizing is not None:  # the boxes that stay, sized by their track; what the next student learns
            from .prune.track_size import apply_track_size_smoothing

            resized = apply_track_size_smoothing(ds, sizing)
        if pcfg.get("features"):
            from .prune.features import FeatureOutlierConfig, apply_feature_outliers, load_features

            counts.update(apply_feature_outliers(ds, load_features(rdir / layout.FEATURES),
                                                 FeatureOutlierConfig(**pcfg["features"]), round=k,
                                                 frames_dir=frames_dir(cfg)))
        added = {"track_confirmed": confirmed} if pcfg.get("hysteresis") else {}
        if pcfg.get("temporal"):  # after feature outliers: interpolated boxes have no detector features
            from .prune.temporal import TemporalConfig, apply_temporal

            temporal = apply_temporal(ds, TemporalConfig(**pcfg["temporal"]), round=k)
            added["interpolated"] = temporal.pop("interpolated")
            counts.update(temporal)
        ds.info = {**ds.info, "stage": "prune", "pruned": counts, "added": added, **resized}
        save_coco(ds, rdir / layout.PRUNED)
        return {"pruned": counts, "added": added, **resized}

    _run_once(rdir, "prune", run)


def _agreeing_box_ids(cfg: DictConfig, k: int, ds: Dataset, *, with_doubtful: bool = False,
                      previous: Dataset | None = None) -> set[int]:
    """Ids of the kept boxes of ``ds`` (round k's labels) that match a kept box of round k-1 on the same frame
    (as the merge matches them): the student re-finding what the previous round trusted. ``with_doubtful``: also
    a teacher box that round 0's hysteresis left unconfirmed (reasons of :data:`DOUBTFUL_REASONS`), which the
    student, trained with it ignored, finds on its own: two models agreeing."""
    from .prune.temporal import DOUBTFUL_REASONS

    def evidence(b) -> bool:
        return b.kept or (with_doubtful and b.reason in DOUBTFUL_REASONS and b.extra.get("pruned_round") == 0)

    if previous is None:  # round k-1's dataset, unless the caller already read it
        previous = load_coco(loop_labels(cfg, k - 1))
    return _box_ids_matching(cfg, ds, previous, evidence)


def _videos_without_kept_boxes(ds: Dataset, previous: Dataset) -> set[str]:
    """The videos of ``ds`` that hold no kept box in ``previous``: where the previous round had nothing to anchor a
    track to."""
    frame_video = {f.id: f.video_id for f in previous.frames}
    anchored = {frame_video[b.image_id] for b in previous.boxes if b.kept}
    return {f.video_id for f in ds.frames} - anchored


def _in_videos_without_kept_boxes(box_ids: set[int], ds: Dataset, previous: Dataset) -> set[int]:
    """The ids of ``box_ids`` (boxes of ``ds``) in :func:`_videos_without_kept_boxes`."""
    cold = _videos_without_kept_boxes(ds, previous)
    video_of = {f.id: f.video_id for f in ds.frames}
    return {b.id for b in ds.boxes if b.id in box_ids and video_of[b.image_id] in cold}


def _cold_start_seed_ids(cfg: DictConfig, ds: Dataset, previous: Dataset, hcfg, *, high: float,
                         teacher_seen: set[int] | None = None) -> set[int]:
    """Moving-track seeds (:mod:`pseudolabel.prune.cold_start`) of the videos round k-1 kept nothing of, or of every
    video with ``cold_start_videos="all"``, reading those videos' stored frames.

    ``hcfg.cold_start_teacher`` ("all"; "anchored": in the videos round k-1 kept boxes in; "teacher_anchored": in
    the videos round 0 kept boxes in) keeps, there, only the seeds in ``teacher_seen`` (box ids:
    :func:`_teacher_seen_box_ids`): a student track can switch from the ball to a player it fires on, and every
    confident box after the switch would seed; the teacher rarely fires there too. In a video the reference round
    kept nothing of, the moving track may be all there is to go on: where the teacher kept nothing it hardly fires
    on the ball either, so asking for it there would stop the video's growth at its first student round."""
    from .prune.cold_start import moving_track_seed_ids, read_grey_frames

    root = frames_dir(cfg)
    videos = ({f.video_id for f in ds.frames} if hcfg.cold_start_videos == "all"
              else _videos_without_kept_boxes(ds, previous))
    ids = moving_track_seed_ids(ds, videos, hysteresis=hcfg, high=high,
                                min_length=hcfg.cold_start_length, min_motion=hcfg.cold_start_motion,
                                window=hcfg.cold_start_window,
                                min_residual=hcfg.cold_start_residual,
                                images=lambda frames: read_grey_frames([root / f.file_name for f in frames]))
    if hcfg.cold_start_teacher == "off":
        return ids
    if hcfg.cold_start_teacher == "all":
        return ids & teacher_seen
    reference = (previous if hcfg.cold_start_teacher == "anchored"
                 else load_coco(loop_labels(cfg, 0)))
    return (ids & teacher_seen) | _in_videos_without_kept_boxes(ids, ds, reference)


def _teacher_seen_box_ids(cfg: DictConfig, ds: Dataset) -> set[int]:
    """Ids of the kept boxes of ``ds`` that match one of the teacher's round-0 detections (``labels.json``, down
    to the label floor, whatever the pruners decided later)."""
    return _box_ids_matching(cfg, ds, load_coco(round_dir(cfg, 0) / layout.LABELS), lambda b: True)


def _box_ids_matching(cfg: DictConfig, ds: Dataset, reference: Dataset, evidence: Callable[[Any], bool]) -> set[int]:
    """Ids of the kept boxes of ``ds`` that match (as the merge matches) a box of ``reference`` on the same frame
    for which ``evidence(box)`` holds."""
    from .merge import assign_pairs

    ref_by_key = {f.key: f.id for f in reference.frames}
    ref_boxes = reference.boxes_by_image(kept_only=False)
    new_kept = ds.boxes_by_image(kept_only=True)
    out: set[int] = set()
    for f in ds.frames:
        old = [b for b in ref_boxes.get(ref_by_key.get(f.key), []) if evidence(b)]
        new = new_kept.get(f.id, [])
        for _, j in assign_pairs(old, new, iou_threshold=float(cfg.merge.iou_threshold),
                                 centre_factor=OmegaConf.select(cfg, "merge.centre_factor")):
            out.add(new[j].id)
    return out


def apply_reviewed_set(cfg: DictConfig, ds: Dataset, k: int) -> dict[str, int] | None:
    """Apply the experiment's reviewed set (:func:`pseudolabel.layout.reviewed_path`) to ``ds`` in place, as round
    ``k`` decides (:func:`pseudolabel.review.apply.apply_review`); its counts, or None (nothing changed) when there is
    none."""
    from .review.stage import load_reviewed

    reviewed = load_reviewed(exp_dir(cfg))
    if reviewed is None:
        return None
    from .prune.temporal import HysteresisConfig
    from .review.apply import apply_review

    h = OmegaConf.select(cfg, "prune.hysteresis")
    tracker = HysteresisConfig(**OmegaConf.to_container(h, resolve=True)) if h else HysteresisConfig()
    counts = apply_review(ds, reviewed, round=k, iou_threshold=float(cfg.merge.iou_threshold),
                          centre_factor=OmegaConf.select(cfg, "merge.centre_factor"),
                          track_reach=int(OmegaConf.select(cfg, "review.track_reach", default=0) or 0),
                          tracker=tracker)
    log.info("round %d: reviewed set applied: %s", k, ", ".join(f"{n} {c}" for c, n in counts.items() if n))
    return counts


def stage_merge(cfg: DictConfig, k: int) -> None:
    """Round 0: the pruned labels are the dataset. Round k: merge box by box with round k-1."""
    rdir = round_dir(cfg, k)

    def run():
        new = load_coco(rdir / layout.PRUNED)
        if k == 0:
            merged = new
            merged.renumber()
            merged.info = {"round": 0}
            stats = {"new": len(new.boxes)}
        else:
            from .merge import check_merge_invariant, merge_rounds, merge_stats

            prev = load_coco(loop_labels(cfg, k - 1))
            merged = merge_rounds(prev, new, round=k, iou_threshold=float(cfg.merge.iou_threshold),
                                  centre_factor=OmegaConf.select(cfg, "merge.centre_factor"),
                                  geometry=str(cfg.merge.geometry),
                                  max_unconfirmed_rounds=OmegaConf.select(cfg, "merge.max_unconfirmed_rounds"))
            problems = check_merge_invariant(prev, merged)
            if problems:
                raise PipelineError(f"merge lost boxes of round {k - 1}: {problems[:5]}")
            stats = merge_stats(prev, merged)
            cap = OmegaConf.select(cfg, "prune.per_frame.max_boxes")
            if cap:  # a ball of round k-1 and another of round k on one frame: the one with more evidence stays
                from .prune.per_frame import apply_per_frame_cap

                stats.update(apply_per_frame_cap(merged, max_boxes=cap, round=k))
            check_collapse(len(prev.kept_boxes()), len(merged.kept_boxes()), k=k,
                           max_factor=cfg.collapse_guard.max_factor)
        review = apply_reviewed_set(cfg, merged, k)  # the reviewer's frames end as the reviewer left them
        if review is not None:
            if k > 0:  # boxes the reviewer drew stand for no box of round k-1
                for b in merged.boxes:
                    b.extra.setdefault("prev_ids", [])
            merged.info["review"] = stats["review"] = review
        sizing = _track_sizing(cfg, in_loop=False)
        if sizing is not None:  # last: the labels' sizes; later rounds read the detectors' (merged.json)
            from .prune.track_size import apply_track_size_smoothing

            save_coco(merged, rdir / layout.MERGED)
            stats.update(apply_track_size_smoothing(merged, sizing))
        else:  # a merge redone without it: no stale file for later rounds to read
            (rdir / layout.MERGED).unlink(missing_ok=True)
        save_coco(merged, rdir / layout.ANNOTATIONS)
        return {"merge": stats}

    _run_once(rdir, "merge", run)


def _track_sizing(cfg: DictConfig, *, in_loop: bool):
    """The :class:`~pseudolabel.prune.track_size.TrackSizeConfig` of the sizing done in the prune stage (``in_loop``:
    ``confirmed_seed_size``, and ``smooth`` when ``smooth_feeds_loop``) or in the merge stage (``smooth`` for the
    labels alone), or None when that stage sizes nothing."""
    import dataclasses

    from .prune.track_size import TrackSizeConfig

    tcfg = OmegaConf.select(cfg, "prune.track_size")
    if not tcfg:
        return None
    full = TrackSizeConfig(**OmegaConf.to_container(tcfg, resolve=True))
    sizing = dataclasses.replace(full, smooth=full.smooth if full.smooth_feeds_loop == in_loop else 0.0,
                                 confirmed_seed_size=full.confirmed_seed_size and in_loop)
    return sizing if sizing.smooth or sizing.confirmed_seed_size else None


def check_collapse(prev_kept: int, new_kept: int, *, k: int, max_factor: float | None) -> None:
    """Stop when the kept-box count grows or shrinks by more than ``max_factor`` between rounds."""
    if max_factor is None:
        return
    lo, hi = prev_kept / max_factor, prev_kept * max_factor
    if prev_kept == 0:
        return  # nothing to compare with: stage_train refuses to train on an empty round
    if not (lo <= new_kept <= hi):
        raise CollapseError(
            f"collapse guard: round {k} keeps {new_kept} boxes against {prev_kept} in round {k - 1} "
            f"(allowed factor {max_factor}). Pseudo-labels are "
            f"{'exploding' if new_kept > prev_kept else 'drying up'}; check the threshold "
            f"(relabel.score_threshold) and pruners, or raise collapse_guard.max_factor.")


def stage_evaluate(cfg: DictConfig, k: int) -> dict:
    """Counts of the round's dataset and, when ground truth is configured, P/R/F1/AP -> ``metrics.json``."""
    rdir = round_dir(cfg, k)

    def run():
        from collections import Counter

        ds = load_coco(rdir / layout.ANNOTATIONS)
        kept = ds.kept_boxes()
        metrics: dict[str, Any] = {
            "round": k, "n_images": len(ds.frames), "n_boxes": len(kept),
            "n_pruned": len(ds.boxes) - len(kept),
            "pruned_by_reason": dict(Counter(b.reason for b in ds.boxes if not b.kept)),
            "n_negative_frames": sum(1 for v in ds.boxes_by_image(kept_only=True).values() if not v),
        }
        gt_spec = cfg.data.get("ground_truth")
        if gt_spec:
            from .evaluate import evaluate
            from .gt_readers import load_ground_truth

            gt = load_ground_truth(OmegaConf.to_container(gt_spec, resolve=True))
            iou = float(cfg.evaluate.iou_threshold)
            metrics.update(evaluate(ds, gt, iou_threshold=iou))
            loose = evaluate(ds, gt, iou_threshold=0.3)
            metrics["at_iou_0.3"] = {k: loose[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}
            px = float(cfg.evaluate.get("centre_distance", 4.0))
            near = evaluate(ds, gt, max_centre_distance=px)
            metrics["at_centre"] = {"max_distance_px": px,
                                    **{k: near[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}}
        files.atomic_write_json(rdir / layout.METRICS, metrics)
        return {}

    _run_once(rdir, "evaluate", run)
    return files.read_json(rdir / layout.METRICS)


# ---------------------------------------------------------------- rounds
ROUND_STAGES_NEEDING_PREVIOUS = ("round", "train", "label", "relabel")
# stage -> the stage of the same round it reads (the one before it): prune <- label, merge <- prune, evaluate <- merge
STAGE_INPUTS = dict(zip(layout.ROUND_STAGES[2:], layout.ROUND_STAGES[1:-1]))


def check_round_inputs(cfg: DictConfig) -> None:
    """Refuse, before any work, a round whose inputs do not exist: round k >= 1 (and its train / relabel
    stages) needs round k-1 finished; prune, merge and evaluate need the stage before them in round k."""
    stage, k = str(cfg.stage), int(cfg.round)
    if stage in ROUND_STAGES_NEEDING_PREVIOUS and k > 0 and not layout.is_finished(round_dir(cfg, k - 1)):
        finished = [r for r, d in layout.round_dirs(exp_dir(cfg)).items() if layout.is_finished(d)]
        raise PipelineError(f"round={k}: round {k - 1} of experiment {cfg.exp!r} does not exist or is not finished "
                            f"(finished: {finished or 'none'}); run it first: make round N={k - 1} EXP={cfg.exp}")
    if stage in ("round", "train") and k > 0:
        refuse_training_on_nothing(cfg, k)
    if stage in STAGE_INPUTS and not layout.is_done(round_dir(cfg, k), STAGE_INPUTS[stage]):
        raise PipelineError(f"stage={stage} round={k}: round {k} of experiment {cfg.exp!r} has no finished "
                            f"{STAGE_INPUTS[stage]} stage ({round_dir(cfg, k)}); run make round N={k} EXP={cfg.exp}")


def run_round(cfg: DictConfig, k: int, *, logger=None,
              label: Callable[[DictConfig, int, Dataset], None] | None = None) -> dict:
    """Run round ``k`` (0: teacher; k >= 1: train -> relabel from round k-1), then prune, merge, evaluate.

    ``label(cfg, k, frames)`` stands in for the label stage (default :func:`stage_label_round`): a sweep trial's
    round 0 takes its boxes from the teacher labels the trials share.
    """
    if k > 0 and not layout.is_finished(round_dir(cfg, k - 1)):
        raise PipelineError(f"round {k - 1} of experiment {cfg.exp!r} is not finished "
                            f"({round_dir(cfg, k - 1)}); run it first: make round N={k - 1} EXP={cfg.exp}")
    if label_shard(cfg)[0] is not None:
        raise PipelineError("label.shard labels part of the videos and stops: use it with stage=label or "
                            "stage=relabel, then merge with the same command without label.shard")
    stage_synth(cfg)  # the embedded synthetic suite, when the data config asks for it and it is absent
    frames = stage_sample(cfg)
    if k > 0:
        stage_train(cfg, k)
    (label or stage_label_round)(cfg, k, frames)
    stage_prune(cfg, k)
    stage_merge(cfg, k)
    metrics = stage_evaluate(cfg, k)
    rdir = round_dir(cfg, k)
    if logger is not None and not layout.is_done(rdir, layout.LOG):
        ckpt = layout.student_checkpoint(exp_dir(cfg), k)
        logger.log_round(experiment=str(cfg.exp), round=k, metrics=metrics,
                         dataset=load_coco(rdir / layout.ANNOTATIONS), frames_dir=frames_dir(cfg),
                         dataset_files={layout.ANNOTATIONS: rdir / layout.ANNOTATIONS,
                                        layout.METRICS: rdir / layout.METRICS},
                         checkpoint=ckpt if ckpt.is_file() else None,
                         config=OmegaConf.to_container(cfg, resolve=True))
        layout.mark_done(rdir, layout.LOG)
    log.info("round %d: %s", k, _one_line(metrics))
    return metrics


def _one_line(m: dict) -> str:
    parts = [f"{m['n_boxes']} kept boxes on {m['n_images']} frames, {m['n_pruned']} pruned"]
    if "f1" in m:
        parts.append(f"P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} AP50={m.get('ap50') or 0:.3f}")
    return "; ".join(parts)


def run_demo(cfg: DictConfig, *, logger=None) -> list[dict]:
    stage_synth(cfg)
    return [run_round(cfg, k, logger=logger) for k in range(int(cfg.rounds) + 1)]


# ---------------------------------------------------------------- sweeps
def _relocated(cfg: DictConfig, new_exp_dir: Path) -> DictConfig:
    """``cfg`` writing its rounds under ``new_exp_dir`` while reading the experiment's frames."""
    out = cfg.copy()
    out.paths.frames_dir = str(frames_dir(cfg))
    out.paths.exp_dir = str(new_exp_dir)
    return out


def _teacher_digest(cfg: DictConfig, floor: float) -> str:
    import hashlib

    detector = OmegaConf.to_container(cfg.teacher.detector, resolve=True)  # it reads ${runtime.*}
    spec = OmegaConf.to_yaml(OmegaConf.create({"detector": detector, "class_ids": cfg.teacher.class_ids,
                                               "floor": floor}), resolve=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def run_sweep_trial(cfg: DictConfig, *, trial: str) -> float:
    """One trial of a Hydra sweep: round 0 (then rounds 1..``sweep.rounds``) of ``cfg`` in
    ``runs/<exp>/sweep/<trial>/``; returns the objective of :mod:`pseudolabel.sweep` (to maximise).
    With ``sweep.repeats=k`` the trial runs k times (seeds ``seed .. seed+k-1``, in ``repeat_<r>/``) and
    returns the mean, a :class:`~pseudolabel.sweep.TrialValue` that also carries every value and the spread.

    The experiment's frames are sampled once, and the teacher labels them once at ``sweep.label_floor``
    (``runs/<exp>/sweep/teacher_<digest of the detector config>``); each trial keeps the boxes at or above
    its own ``teacher.score_threshold``, which gives what labelling at that threshold would give. Sweep
    only settings that do not change the sampled frames (teacher threshold or detector, pruners, merge,
    student); a data or sampling change is another experiment.
    """
    floor, threshold = float(cfg.sweep.label_floor), float(cfg.teacher.score_threshold)
    if threshold < floor:
        raise PipelineError(f"teacher.score_threshold={threshold} is below sweep.label_floor={floor}: "
                            f"lower sweep.label_floor")
    stage_synth(cfg)
    frames = stage_sample(cfg)
    sweep_dir = layout.sweep_dir(exp_dir(cfg))
    base = _relocated(cfg, sweep_dir / f"teacher_{_teacher_digest(cfg, floor)}")
    stage_label(base, 0, frames, lambda: _build_teacher(cfg), class_ids=cfg.teacher.class_ids,
                score_threshold=floor, batch_size=cfg.teacher.batch_size, **_teacher_context(cfg))
    repeats = int(cfg.sweep.get("repeats") or 1)
    values, records = [], []
    for r in range(repeats):  # repeat r: seed + r (student training); round 0 alone gives the same value each time
        tcfg = _relocated(cfg, sweep_dir / trial / (f"repeat_{r}" if repeats > 1 else ""))
        tcfg.seed = int(cfg.seed) + r
        name, value, record = _sweep_trial_once(tcfg, base, threshold=threshold, floor=floor)
        values.append(value)
        records.append(record)
    from .sweep import TrialValue

    result = TrialValue.of(values)
    files.atomic_write_json(sweep_dir / trial / "trial.json", {
        "trial": trial, "objective": name, "value": float(result), "values": values, "spread": result.spread,
        "repeats": repeats, "runs": records})
    log.info("sweep trial %s: %s = %s", trial, name, result.describe())
    return result


def _sweep_trial_once(tcfg: DictConfig, base: DictConfig, *, threshold: float, floor: float
                      ) -> tuple[str, float, dict]:
    """Round 0 from the shared teacher labels, then rounds 1..``sweep.rounds``; the objective and a record."""
    from .sweep import objective, track_proxy

    hysteresis_floor = _hysteresis_floor(tcfg)
    lowest = threshold if hysteresis_floor is None else max(floor, min(threshold, hysteresis_floor))

    def keep_above_threshold():
        ds = load_coco(round_dir(base, 0) / layout.LABELS)
        ds.boxes = [b for b in ds.boxes if b.score >= lowest]
        ds.renumber()
        ds.info = {**ds.info, "score_threshold": threshold, "label_floor": lowest}
        save_coco(ds, round_dir(tcfg, 0) / layout.LABELS)
        return {"n_boxes": len(ds.boxes), "score_threshold": threshold, "from": str(round_dir(base, 0))}

    def shared_teacher_labels(cfg: DictConfig, k: int, frames: Dataset) -> None:
        _run_once(round_dir(cfg, k), "label", keep_above_threshold)

    last = int(tcfg.sweep.rounds)
    for k in range(last + 1):  # round 0 labels from the shared teacher labels, later rounds as any round
        metrics = run_round(tcfg, k, label=shared_teacher_labels if k == 0 else None)
    proxy = track_proxy(load_coco(round_dir(tcfg, last) / layout.ANNOTATIONS),
                        min_track_length=int(tcfg.sweep.proxy_min_track_length))
    name, value = objective(metrics, proxy, kind=str(tcfg.sweep.objective))
    return name, value, {"seed": int(tcfg.seed), "objective": name, "value": value, "round": last, "proxy": proxy,
                         "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
