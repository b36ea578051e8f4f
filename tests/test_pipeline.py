"""Round 0 end to end on a tiny synthetic suite, with the real Hydra config and the real offline teacher.

Round 1 (a student trained in the ``round1`` fixture) is ``slow``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from pycocotools.coco import COCO

from pseudolabel import pipeline
from pseudolabel.__main__ import run

REPO = Path(__file__).resolve().parents[1]


def make_cfg(root: Path, *overrides: str):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"paths.root_dir={root}", "logger=none", "exp=t",
                                            "data.synthetic.n_videos=2", "data.synthetic.n_frames=8",
                                            "teacher.detector.tile_size=320", *overrides])


def tree_state(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(d.rglob("*")) if p.is_file()}


TINY_STUDENT = ["student.trainer.limit_train_batches=2", "student.trainer.max_epochs=1", "student.trainer.limit_val_batches=2",
                "student.datamodule.batch_size=2"]


@pytest.fixture(scope="module")
def round0(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    cfg = make_cfg(root, "stage=demo", "rounds=0")
    run(cfg)
    return root, cfg


@pytest.fixture(scope="module")
def round1(round0):
    root, _ = round0
    cfg = make_cfg(root, "stage=round", "round=1", *TINY_STUDENT)
    before = {d: tree_state(root / d) for d in ("runs/t/round_0", "runs/t/frames", "data")}  # all round 1 reads
    run(cfg)
    return root, cfg, before


def test_round0_writes_coco_and_metrics_against_ground_truth(round0):
    root, cfg = round0
    rdir = root / "runs" / "t" / "round_0"
    coco = COCO(str(rdir / "annotations.json"))
    gt = json.loads((root / "data" / "synthetic" / "ground_truth.json").read_text())
    assert len(coco.getImgIds()) == len(gt["images"]) == 16  # every frame, negatives included
    metrics = json.loads((rdir / "metrics.json").read_text())
    for key in ("n_images", "n_boxes", "precision", "recall", "f1", "ap", "ap50"):
        assert key in metrics
    assert metrics["n_images"] == 16
    anns = coco.loadAnns(coco.getAnnIds())
    # teacher boxes, and low-score teacher boxes a seeded track confirmed (prune.hysteresis)
    assert all(a["source"] in ("ssd_mobilenet_v2_coco", "track_confirmed") and a["round"] == 0 for a in anns)
    assert metrics["n_boxes"] == sum(a["decision"] == "kept" for a in anns)
    assert metrics["tp"] + metrics["fp"] == metrics["n_boxes"]
    context = COCO(str(rdir / "context.json"))  # the teacher's person boxes (teacher.context_class_ids)
    assert len(context.getImgIds()) == 16
    assert {a["category_id"] for a in context.loadAnns(context.getAnnIds())} <= {1}


def test_frames_are_extracted_once_per_experiment(round0):
    root, _ = round0
    frames = sorted((root / "runs" / "t" / "frames").rglob("*.jpg"))
    assert len(frames) == 16
    assert frames[0].relative_to(root / "runs" / "t" / "frames").as_posix().endswith("/000000.jpg")


def test_rerunning_a_finished_round_changes_no_file(round0):
    root, cfg = round0
    before = tree_state(root / "runs")
    run(cfg)
    assert tree_state(root / "runs") == before


def test_next_round_requires_the_previous_one(tmp_path):
    cfg = make_cfg(tmp_path, "stage=round", "round=1")
    with pytest.raises(pipeline.PipelineError, match="round 0 of experiment 't' is not finished"):
        run(cfg)


def test_collapse_guard():
    pipeline.check_collapse(100, 250, k=1, max_factor=3.0)
    with pytest.raises(pipeline.CollapseError, match="exploding"):
        pipeline.check_collapse(100, 301, k=1, max_factor=3.0)
    with pytest.raises(pipeline.CollapseError, match="drying up"):
        pipeline.check_collapse(100, 30, k=2, max_factor=3.0)
    pipeline.check_collapse(100, 1000, k=1, max_factor=None)


def test_cli_no_usable_input_is_one_clear_message(tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "a.mp4").write_bytes(b"")
    (bad / "b.mp4").write_text("<html>not a video</html>")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "pseudolabel", "stage=round", "round=0", "exp=bad", "logger=none",
                           f"paths.root_dir={tmp_path}", "data=folder", f"data.inputs=[{bad}]"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "a.mp4" in proc.stderr and "b.mp4" in proc.stderr


@pytest.mark.slow  # trains a student in the round1 fixture
def test_round1_keeps_every_round0_box_and_leaves_round0_untouched(round1):
    from pseudolabel.coco import load_coco
    from pseudolabel.merge import check_merge_invariant

    root, _, round0_before = round1
    exp = root / "runs" / "t"
    assert {d: tree_state(root / d) for d in round0_before} == round0_before  # bytes and mtimes
    assert all(round0_before.values())
    prev, merged = load_coco(exp / "round_0" / "annotations.json"), load_coco(exp / "round_1" / "annotations.json")
    assert check_merge_invariant(prev, merged) == []
    represented = sorted(i for b in merged.boxes for i in b.extra.get("prev_ids", []))
    assert represented == sorted(b.id for b in prev.boxes)
    metrics = json.loads((exp / "round_1" / "metrics.json").read_text())
    assert metrics["round"] == 1 and "f1" in metrics


@pytest.mark.slow  # trains a student in the round1 fixture
def test_round1_student_trains_on_every_video_and_records_it(round1):
    """student.datamodule.val_fraction is 0 by default: every video of round 0 trains, none is held out (the split
    itself, with a held-out share, is tested in tests/test_student.py)."""
    import torch

    from pseudolabel.coco import load_coco

    root, _, _ = round1
    ckpt = torch.load(root / "runs" / "t" / "round_1" / "student" / "student.pt", map_location="cpu",
                      weights_only=True)
    train, val = set(ckpt["meta"]["train_video_ids"]), set(ckpt["meta"]["val_video_ids"])
    videos = {f.video_id for f in load_coco(root / "runs" / "t" / "round_0" / "annotations.json").frames}
    assert len(videos) > 1 and train == videos and val == set()


@pytest.mark.slow  # trains a student in the round1 fixture
def test_rerunning_round1_changes_no_file(round1):
    root, cfg, _ = round1
    before = tree_state(root / "runs")
    run(cfg)
    assert tree_state(root / "runs") == before


@pytest.mark.slow  # trains a student in the round1 fixture
def test_adaptive_relabel_threshold_is_recorded(round1, tmp_path):
    import shutil

    from pseudolabel.coco import load_coco

    root, _, _ = round1
    src = root / "runs" / "t"
    dst = tmp_path / "runs" / "t"
    shutil.copytree(src / "frames", dst / "frames")
    shutil.copytree(src / "round_0", dst / "round_0")
    shutil.copytree(src / "round_1" / "student", dst / "round_1" / "student")
    shutil.copy(src / "round_1" / ".done_train", dst / "round_1" / ".done_train")
    shutil.copytree(root / "data", tmp_path / "data")
    cfg = make_cfg(tmp_path, "stage=round", "round=1", "relabel.policy=adaptive", *TINY_STUDENT)
    run(cfg)
    labels = load_coco(dst / "round_1" / "labels.json")
    calib = labels.info["calibration"]
    assert labels.info["policy"] == "adaptive" and labels.info["score_threshold"] == calib["threshold"]
    assert all(b.score >= calib["threshold"] for b in labels.boxes)
    assert len(calib["curve"]) > 1


def test_full_prune_config_runs_temporal_and_feature_pruners(round0, tmp_path):
    import shutil

    from pseudolabel.coco import load_coco

    root, _ = round0
    shutil.copytree(root / "runs" / "t" / "frames", tmp_path / "runs" / "t" / "frames")
    shutil.copytree(root / "data", tmp_path / "data")
    run(make_cfg(tmp_path, "stage=round", "round=0", "prune=full", "prune.features.min_boxes=2",
                 "teacher.score_threshold=0.3"))
    rdir = tmp_path / "runs" / "t" / "round_0"
    done = json.loads((rdir / ".done_prune").read_text())
    assert {"isolated", "feature_outlier", "overlap"} <= set(done["pruned"])
    assert "interpolated" in done["added"] and "interpolated" not in done["pruned"]
    ds = load_coco(rdir / "pruned.json")
    kept = ds.kept_boxes()
    assert kept and all("track_id" in b.extra for b in kept if b.source != "track_interp")
    assert all("outlier_score" in b.extra for b in ds.boxes if b.reason == "feature_outlier")


def test_atomic_writes_follow_the_umask(tmp_path):
    from pseudolabel import files

    p = files.atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert p.stat().st_mode & 0o777 == 0o666 & ~files._UMASK


def test_sweep_trial_in_process_equals_an_ordinary_round_0(round0):
    """One sweep trial (``sweep.rounds=0``) in process: the teacher labels the frames once at the label floor, the
    trial keeps its own threshold and runs round 0 through ``run_round``; it equals the ordinary round 0."""
    from pseudolabel.coco import load_coco

    root, _ = round0
    exp = root / "runs" / "t"
    value = pipeline.run_sweep_trial(make_cfg(root, "stage=sweep_trial"), trial="in_process")
    assert len(list((exp / "sweep").glob("teacher_*/round_0/labels.json"))) == 1
    a = load_coco(exp / "sweep" / "in_process" / "round_0" / "annotations.json")
    b = load_coco(exp / "round_0" / "annotations.json")
    assert [(x.image_id, x.xyxy, x.score, x.decision, x.reason) for x in a.boxes] == \
           [(x.image_id, x.xyxy, x.score, x.decision, x.reason) for x in b.boxes]
    rec = json.loads((exp / "sweep" / "in_process" / "trial.json").read_text())
    f1 = json.loads((exp / "round_0" / "metrics.json").read_text())["f1"]
    assert rec["objective"] == "f1" and rec["value"] == pytest.approx(f1) and float(value) == pytest.approx(f1)


@pytest.mark.slow  # trains two students
def test_cross_fit_round_trains_one_student_per_fold_on_the_other_folds(round0, tmp_path):
    import shutil

    import torch

    from pseudolabel.coco import load_coco
    from pseudolabel.student.data import cross_fit_folds

    root, _ = round0
    dst = tmp_path / "runs" / "t"
    shutil.copytree(root / "runs" / "t" / "frames", dst / "frames")
    shutil.copytree(root / "runs" / "t" / "round_0", dst / "round_0")
    shutil.copytree(root / "data", tmp_path / "data")
    run(make_cfg(tmp_path, "stage=round", "round=1", "student.folds=2", *TINY_STUDENT))
    r1 = dst / "round_1"
    frames = load_coco(dst / "round_0" / "annotations.json").frames
    fold = cross_fit_folds(frames, folds=2)
    for i in (0, 1):
        trained = load_coco(r1 / f"train_labels_fold_{i}.json").frames
        assert sorted(f.key for f in trained) == sorted(k for k, v in fold.items() if v != i)
        ckpt = torch.load(r1 / "student" / f"fold_{i}" / "student.pt", map_location="cpu", weights_only=True)
        assert ckpt["meta"]["pseudo_labels_path"] == str(r1 / f"train_labels_fold_{i}.json")
        assert ckpt["meta"]["seed"] == 1 + 1000 * i  # seed 0 + round 1, folds apart
    assert not (r1 / "student" / "student.pt").exists() and not (r1 / "features.npz").exists()
    labels = load_coco(r1 / "labels.json")
    assert sorted(f.key for f in labels.frames) == sorted(fold)
    assert json.loads((r1 / "metrics.json").read_text())["round"] == 1
