"""Bad settings stop before any work: one line naming the key, the value and what is allowed, exit code 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pseudolabel.config_schema import STAGES, ConfigError, validate
from tests.conftest import REPO


def run_cli(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pseudolabel", "logger=none", f"paths.root_dir={tmp_path}",
                           *overrides], cwd=REPO, capture_output=True, text=True, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pseudolabel: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("override, expected", [
    ("teacher.score_threshold=abc", "teacher.score_threshold=abc: expected a number in [0, 1]"),
    ("teacher.score_threshold=1.5", "teacher.score_threshold=1.5: expected a number in [0, 1]"),
    ("teacher.detector.tile_size=8", "teacher.detector.tile_size=8: expected an integer >= 32, a list of them, or null"),
    ("round=-1", "round=-1: expected an integer >= 0"),
    ("relabel.policy=sometimes", "relabel.policy=sometimes: expected one of fixed, adaptive"),
])
def test_bad_setting_is_one_line_with_exit_code_2(tmp_path, override, expected):
    line = one_line_error(run_cli(tmp_path, "stage=round", override))
    assert line == f"pseudolabel: {expected}"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()  # no work started


def test_unknown_stage_lists_every_stage(tmp_path):
    line = one_line_error(run_cli(tmp_path, "stage=bogus"))
    assert line.startswith("pseudolabel: stage=bogus: expected one of ")
    for stage in ("report", "download", "sweep_trial", "export", "demo", "round", "evaluate"):
        assert stage in line
    assert set(STAGES) <= set(line.split("one of ")[1].split(", "))


def test_round_that_does_not_exist(tmp_path):
    line = one_line_error(run_cli(tmp_path, "stage=round", "round=3", "exp=nothing"))
    assert "round=3: round 2 of experiment 'nothing' does not exist" in line
    assert "make round N=2 EXP=nothing" in line


def test_round_whose_previous_round_kept_no_box_stops_before_training(tmp_path):
    from pseudolabel import layout
    from pseudolabel.coco import save_coco
    from pseudolabel.records import Dataset, Frame

    r0 = tmp_path / "runs" / "empty" / "round_0"
    r0.mkdir(parents=True)
    save_coco(Dataset(frames=[Frame(id=1, file_name="v/000000.jpg", width=64, height=48, video_id="v",
                                    frame_index=0)], boxes=[]), r0 / "annotations.json")
    for stage in ("label", "prune", "merge", "evaluate"):
        layout.mark_done(r0, stage)
    line = one_line_error(run_cli(tmp_path, "stage=round", "round=1", "exp=empty"))
    assert "round 0 kept no box, so round 1 has nothing to train on" in line
    assert "teacher.score_threshold" in line and "teacher.detector.tile_size" in line and "make sweep" in line
    assert not (tmp_path / "runs" / "empty" / "round_1").exists()


def test_validate_checks_types_ranges_and_nulls():
    from omegaconf import OmegaConf

    validate(OmegaConf.create({"round": 2, "teacher": {"score_threshold": 0.5, "detector": {"tile_size": None}}}))
    validate(OmegaConf.create({"teacher": {"detector": {"tile_size": [160, 320]}}}))
    for bad, msg in [({"teacher": {"detector": {"tile_size": [160, 8]}}}, "tile_size=[160, 8]"),
                     ({"teacher": {"detector": {"tile_size": [160, None]}}}, "tile_size=[160, None]"),
                     ({"teacher": {"detector": {"tile_size": []}}}, "tile_size=[]"),
                     ({"round": [1]}, "round: expected an integer >= 0, got a ListConfig"),({"round": 1.5}, "round=1.5"), ({"round": True}, "round=True"),
                     ({"merge": {"iou_threshold": 0}}, "merge.iou_threshold=0: expected a number in (0, 1]"),
                     ({"collapse_guard": {"max_factor": 1}}, "collapse_guard.max_factor=1"),
                     ({"student": {"folds": 0}}, "student.folds=0: expected an integer >= 1"),
                     ({"teacher": {"score_threshold": None}}, "teacher.score_threshold=null"),
                     ({"teacher": {"score_threshold": "nan"}}, "teacher.score_threshold=nan")]:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace("[", r"\[")):
            validate(OmegaConf.create(bad))


def test_the_composed_default_configs_pass():
    from tests.test_config import compose_cfg

    for overrides in [(), ("experiment=reference",), ("prune=full",), ("teacher=fasterrcnn_resnet50_fpn",), ("data=folder", "data.inputs=[x]"), ("experiment=tennis",), ("data=football_broadcast",),
                      ("hparams_search=grid",)]:
        try:
            validate(compose_cfg(*overrides))
        except ConfigError as e:
            raise AssertionError(f"{overrides}: {e}") from None
