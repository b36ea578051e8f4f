from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

REPO = Path(__file__).resolve().parents[1]


def compose_cfg(*overrides):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("experiment, exp, builder_or_tile", [
    ("demo", "demo", 160), ("tennis", "tennis", 320), ("football", "football", 320),
])
def test_experiments_set_their_groups_and_name(experiment, exp, builder_or_tile):
    cfg = compose_cfg(f"experiment={experiment}")
    assert cfg.exp == exp and cfg.teacher.detector.tile_size == builder_or_tile


def test_reference_experiment_pairs_frcnn_teacher_and_student():
    cfg = compose_cfg("experiment=reference")
    assert cfg.teacher.detector.detector.builder == "fasterrcnn_resnet50_fpn"
    assert cfg.student.model._target_.endswith("build_torchvision_student")


def test_default_teacher_instantiates_offline_from_the_installed_package():
    det = instantiate(compose_cfg().teacher.detector)
    assert det.name == "ssd_mobilenet_v2_coco" and det.tile_size == 160
    assert det.detector.model_path.name == "frozen_inference_graph.pb"


def test_every_path_comes_from_paths_config(tmp_path):
    cfg = compose_cfg(f"paths.root_dir={tmp_path}", "exp=e")
    assert Path(cfg.paths.frames_dir) == tmp_path / "runs" / "e" / "frames"
    assert Path(cfg.data.synthetic.out_dir) == tmp_path / "data" / "synthetic"
    assert Path(cfg.logger.dir) == tmp_path / "runs" / "e"
