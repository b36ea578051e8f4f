"""The run layout (pseudolabel.layout): names, round discovery and done markers."""
from pseudolabel import layout


def test_round_paths_and_names(tmp_path):
    assert layout.round_dir(tmp_path, 3) == tmp_path / "round_3"
    assert layout.student_checkpoint(tmp_path, 1) == tmp_path / "round_1" / "student" / "student.pt"
    assert layout.export_dir(tmp_path, "yolo", 2) == tmp_path / "export" / "yolo_round_2"
    assert layout.default_frames_dir(tmp_path) == tmp_path / "frames"
    assert layout.reviewed_path(tmp_path) == tmp_path / "review" / "reviewed.json"
    assert [layout.round_number(n) for n in ("round_12", "round_x", "round_1b", "sweep")] == [12, None, None, None]
    assert layout.round_stages(0) == ("label", "prune", "merge", "evaluate")
    assert layout.round_stages(2) == ("train", "label", "prune", "merge", "evaluate")


def test_rounds_on_disk(tmp_path):
    from pseudolabel.pipeline import STAGE_INPUTS

    assert STAGE_INPUTS == {"prune": "label", "merge": "prune", "evaluate": "merge"}
    assert layout.round_dirs(tmp_path / "absent") == {} and layout.finished_rounds(tmp_path / "absent") == []
    for k in (0, 1, 2, 10):
        layout.round_dir(tmp_path, k).mkdir()
    (tmp_path / "round_x").mkdir()
    (tmp_path / "round_5").write_text("a file, not a round")
    for k in (0, 1, 10):
        (layout.round_dir(tmp_path, k) / layout.ANNOTATIONS).write_text("{}")
    (layout.round_dir(tmp_path, 2) / layout.PRUNED).write_text("{}")
    for k in (0, 2, 10):
        layout.mark_done(layout.round_dir(tmp_path, k), layout.FINISHED)
    assert (layout.round_dir(tmp_path, 0) / ".done_evaluate").is_file()
    assert list(layout.round_dirs(tmp_path)) == [0, 1, 2, 10]
    assert layout.finished_rounds(tmp_path) == [0, 10]  # round 1 unfinished, round 2 has no annotations.json
    assert layout.rounds_with_dataset(tmp_path) == [0, 1, 2, 10]
    assert layout.dataset_file(layout.round_dir(tmp_path, 2)).name == "pruned.json"
    assert layout.dataset_file(tmp_path / "round_x") is None
