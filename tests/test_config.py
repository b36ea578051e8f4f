from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

REPO = Path(__file__).resolve().parents[1]


def compose_cfg(*overrides):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("experiment, exp, builder_or_tile", [
    ("demo", "demo", [160, 320]), ("tennis", "tennis", 320), ("football", "football", 320),
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
    assert det.name == "ssd_mobilenet_v2_coco" and det.tile_sizes == (160, 320)
    assert det.detector.model_path.name == "frozen_inference_graph.pb"


def test_every_path_comes_from_paths_config(tmp_path):
    cfg = compose_cfg(f"paths.root_dir={tmp_path}", "exp=e")
    assert Path(cfg.paths.frames_dir) == tmp_path / "runs" / "e" / "frames"
    assert Path(cfg.data.synthetic.out_dir) == tmp_path / "data" / "synthetic"
    assert Path(cfg.logger.dir) == tmp_path / "runs" / "e"


def test_teacher_and_student_take_their_runtime_from_the_one_group(tmp_path, monkeypatch):
    from pseudolabel import pipeline
    from pseudolabel.student.model import save_student_checkpoint

    cfg = compose_cfg(f"paths.root_dir={tmp_path}", "runtime.workers=1", "runtime.images_per_forward=2",
                      "runtime.backend=torch", "runtime.teacher.frames_per_call=3",
                      "runtime.teacher.views_per_call=5", "runtime.student.frames_per_call=6")
    inner = cfg.teacher.detector.detector
    assert (inner.workers, inner.forward_batch, cfg.teacher.detector.batch_size) == (1, 2, 5)
    assert not {"workers", "forward_batch", "batch_size", "backend", "lean_heads", "precision"} & set(cfg.relabel)
    ckpt = save_student_checkpoint(instantiate(cfg.student.model, pretrained=False), tmp_path / "student.pt")
    student = pipeline._build_student(cfg, ckpt)
    assert (student.workers, student.batch_size, student.backend) == (1, 2, "torch")

    calls = {}
    monkeypatch.setattr(pipeline, "stage_label", lambda cfg, k, *a, batch_size, **kw: calls.update({k: batch_size}))
    for k in (0, 1):
        pipeline.stage_label_round(cfg, k, None)
    assert calls == {0: 3, 1: 6}  # frames per call: teacher, student


def test_runtime_options_reach_the_torchvision_teacher_except_its_own():
    cfg = compose_cfg("teacher=fasterrcnn_resnet50_fpn", "runtime=openvino_bf16", "runtime.workers=2",
                      "runtime.lean_heads=false")
    inner = cfg.teacher.detector.detector
    assert (inner.backend, inner.precision, inner.lean_heads) == ("openvino", "bf16", False)
    assert (inner.workers, inner.forward_batch, cfg.teacher.batch_size) == (1, None, 2)  # its yaml's own
    assert compose_cfg("runtime=openvino_bf16").teacher.detector.detector.precision == "bf16"


def test_student_callbacks_are_keyed_by_name():
    from pytorch_lightning.callbacks import EarlyStopping

    from pseudolabel.pipeline import student_callbacks

    scfg = compose_cfg().student
    assert list(scfg.callbacks) == ["backbone_freeze", "early_stopping"]
    assert [type(c).__name__ for c in student_callbacks(scfg)] == ["BackboneFreeze", "EarlyStopping"]
    (only,) = student_callbacks(compose_cfg("student.callbacks.backbone_freeze=null",
                                            "student.callbacks.early_stopping.patience=5").student)
    assert isinstance(only, EarlyStopping) and only.patience == 5


@pytest.mark.parametrize("teacher", ["ssd_mobilenet_v2_openvino", "ssd_mobilenet_v2_guided", "fasterrcnn_resnet50_fpn"])
def test_sweep_teacher_digest_reads_the_runtime_of_the_composed_config(teacher):
    from pseudolabel.pipeline import _teacher_digest

    cfg = compose_cfg(f"teacher={teacher}")
    assert _teacher_digest(cfg, 0.2) == _teacher_digest(compose_cfg(f"teacher={teacher}"), 0.2)
    assert _teacher_digest(cfg, 0.2) != _teacher_digest(compose_cfg(f"teacher={teacher}", "runtime.precision=bf16"), 0.2)
