"""Hydra sweeps: objectives, the summary callback, and a real multirun on a tiny synthetic suite."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pseudolabel.records import Box, Dataset, Frame
from pseudolabel.sweep import best_trial, objective, track_proxy

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.synthetic.n_videos=2", "data.synthetic.n_frames=8", "teacher.detector.tile_size=320"]


def _video(n_frames: int, ball_frames: range, *, outlier_frame: int | None = None) -> Dataset:
    frames = [Frame(id=i + 1, file_name=f"{i}.jpg", width=200, height=100, video_id="v", frame_index=i)
              for i in range(n_frames)]
    boxes = [Box(image_id=i + 1, xyxy=(10 + 5 * i, 40, 20 + 5 * i, 50), id=i + 1) for i in ball_frames]
    if outlier_frame is not None:
        boxes.append(Box(image_id=outlier_frame + 1, xyxy=(150, 5, 160, 15), id=99))
    return Dataset(frames=frames, boxes=boxes)


def test_track_proxy_rewards_consistent_boxes_and_coverage():
    clean = track_proxy(_video(10, range(0, 8)), min_track_length=3)
    assert clean["consistency"] == 1.0 and clean["coverage"] == pytest.approx(0.8)
    noisy = track_proxy(_video(10, range(0, 8), outlier_frame=9), min_track_length=3)
    assert noisy["consistency"] == pytest.approx(8 / 9) and noisy["coverage"] == pytest.approx(0.8)
    assert noisy["proxy"] < clean["proxy"]
    sparse = track_proxy(_video(10, range(0, 4)), min_track_length=3)
    assert sparse["proxy"] < clean["proxy"]
    assert track_proxy(_video(10, []), min_track_length=3)["proxy"] == 0.0


def test_objective_prefers_f1_and_falls_back_to_proxy():
    assert objective({"f1": 0.4}, {"proxy": 0.9}) == ("f1", 0.4)
    assert objective({}, {"proxy": 0.9}) == ("proxy", 0.9)
    assert objective({"f1": 0.4}, {"proxy": 0.9}, kind="proxy") == ("proxy", 0.9)
    with pytest.raises(ValueError, match="ground truth"):
        objective({}, {"proxy": 0.9}, kind="f1")
    assert best_trial([{"value": 0.1}, {"value": None}, {"value": 0.3}, {"value": 0.3, "x": 1}]) == {"value": 0.3}
    assert best_trial([{"value": None}]) is None


def test_trial_value_carries_repeats_and_the_summary_prints_mean_and_spread(tmp_path, capsys):
    import pickle
    from types import SimpleNamespace

    from hydra.core.utils import JobStatus
    from omegaconf import OmegaConf

    from pseudolabel.sweep import SweepSummary, TrialValue

    v = TrialValue.of([0.5, 0.7, 0.6])
    assert float(v) == pytest.approx(0.6) and v.spread == pytest.approx(0.1) and v.values == (0.5, 0.7, 0.6)
    assert pickle.loads(pickle.dumps(v)).spread == pytest.approx(0.1)
    assert TrialValue.of([0.4]).spread == 0.0 and TrialValue.of([0.4]).describe() == "0.4000"
    summary = SweepSummary(results_file=str(tmp_path / "results.json"))
    config = OmegaConf.create({"hydra": {"sweeper": {"params": {"prune": "a,b"}}, "sweep": {"dir": str(tmp_path)}}})
    for value, prune in ((v, "a"), (TrialValue.of([0.65, 0.66]), "b")):
        summary.on_job_end(config, SimpleNamespace(status=JobStatus.COMPLETED, return_value=value,
                                                   overrides=[f"prune={prune}"]))
    summary.on_multirun_end(config)
    out = capsys.readouterr().out
    assert "0.6550 +- 0.0071 (n=2, min 0.6500, max 0.6600)  prune=b" in out
    assert "0.6000 +- 0.1000 (n=3, min 0.5000, max 0.7000)  prune=a" in out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["trials"][0]["values"] == [0.5, 0.7, 0.6] and saved["best"]["params"] == ["prune=b"]


@pytest.mark.parametrize("name,sweeper,n_trials", [("grid", "BasicSweeper", 6), ("optuna", "OptunaSweeper", 12)])
def test_sweep_configs_compose(name, sweeper, n_trials):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hparams_search={name}"], return_hydra_config=True)
    assert cfg.stage == "sweep_trial" and str(cfg.hydra.mode).endswith("MULTIRUN")
    assert cfg.hydra.sweeper._target_.endswith(sweeper)
    assert cfg.hydra.callbacks.sweep_summary._target_ == "pseudolabel.sweep.SweepSummary"
    params = cfg.hydra.sweeper.params
    assert "teacher.score_threshold" in params and "prune" in params
    if name == "grid":
        sizes = [len(str(v).split(",")) for v in params.values()]
        assert sizes[0] * sizes[1] == n_trials
    else:
        assert cfg.hydra.sweeper.n_trials == n_trials and cfg.hydra.sweeper.direction == "maximize"


@pytest.mark.slow  # a multirun of the whole CLI (in-process trial: test_pipeline.py)
def test_grid_sweep_runs_trials_and_reports_the_best(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "pseudolabel", "hparams_search=grid", "exp=s", "logger=none",
                           f"paths.root_dir={tmp_path}", *TINY], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "runs" / "s" / "sweep"
    results = json.loads((sweep / "hydra" / "results.json").read_text())
    assert len(results["trials"]) == 6 and all(t["status"] == "COMPLETED" for t in results["trials"])
    values = [t["value"] for t in results["trials"]]
    assert results["best"]["value"] == max(values)
    assert f"best: {max(values):.4f} with " in proc.stdout
    # the teacher labelled once, for every trial
    assert len(list(sweep.glob("teacher_*/round_0/labels.json"))) == 1
    trials = sorted(sweep.glob("*/trial.json"))
    assert len(trials) == 6
    for t in trials:
        rec = json.loads(t.read_text())
        assert rec["objective"] == "f1" and rec["value"] == pytest.approx(rec["runs"][0]["metrics"]["f1"])
        assert rec["repeats"] == 1 and rec["spread"] == 0.0
    # a trial equals an ordinary round 0 run with the same settings (labels at 0.7, heuristics)
    from pseudolabel.__main__ import run
    from pseudolabel.coco import load_coco

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root_dir={tmp_path}", "exp=s", "logger=none", "stage=round",
                                           "round=0", "teacher.score_threshold=0.7", *TINY])
    direct = run(cfg)
    (trial_dir,) = [t.parent for t in trials if "prune=heuristics" in t.parent.name
                    and "teacher.score_threshold=0.7" in t.parent.name]
    a = load_coco(trial_dir / "round_0" / "annotations.json")
    b = load_coco(tmp_path / "runs" / "s" / "round_0" / "annotations.json")
    assert [(x.image_id, x.xyxy, x.score, x.decision, x.reason) for x in a.boxes] == \
           [(x.image_id, x.xyxy, x.score, x.decision, x.reason) for x in b.boxes]
    assert json.loads((trial_dir / "trial.json").read_text())["value"] == pytest.approx(direct["f1"])
