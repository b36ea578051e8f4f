"""The benchmark scripts run end to end on a tiny input and report consistent figures (not their speed:
timings on a shared machine are never asserted)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # runs a benchmark script
def test_label_throughput_student_reports_every_level(tmp_path, capsys):
    bench = _load("label_throughput")
    res = bench.main(["--teacher", "student", "--frames", "8", "--size", "320x192", "--json", str(tmp_path / "r.json")])
    assert res["labelled_frames"] == 4 and res["reference"]["frames_decoded"] == 8
    assert res["boxes"]["matched_iou_0.5"] <= min(res["boxes"]["reference"], res["boxes"]["ours"])
    # (b)'s detector alone and its exported graph alone ran on the same 4 stored frames
    assert res["detector_alone"]["frames"] == 4 and res["detector_alone"]["seconds"] > 0
    assert res["graph_alone"]["frames"] == 4 and res["graph_alone"]["seconds"] > 0
    assert res["speedup"] == pytest.approx(res["ours"]["fps"] / res["reference"]["fps"])
    assert res["roofline"]["max_speedup"] == pytest.approx(
        res["reference"]["seconds"] / (res["flops_per_frame"] * 4 / (res["matmul_gflops"] * 1e9)))
    out = capsys.readouterr().out
    for line in ("(a) reference:", "(b) ours     :", "detector alone:", "graph alone   :", "roofline  :"):
        assert line in out
    assert (tmp_path / "r.json").is_file()


def test_graph_alone_is_none_without_an_exported_graph():
    import numpy as np

    bench = _load("label_throughput")
    assert bench.graph_alone(object(), np.zeros((32, 32, 3), np.uint8), forwards=1, repeats=1) is None


def test_label_quality_loads_and_names_its_sets():
    lq = _load("label_quality")
    assert lq.set_overrides("synthetic", clips=None) == ["data=synthetic"]
    assert set(lq.SETS) == {"synthetic", "football_broadcast", "football"}


def test_label_quality_clips_leave_out_the_first_ones_then_take_n(tmp_path, monkeypatch):
    lq = _load("label_quality")
    folder = tmp_path / "data" / "videos" / "football_broadcast"
    folder.mkdir(parents=True)
    for name in ("d", "a", "c", "b"):
        (folder / f"{name}.mp4").write_bytes(b"")
    monkeypatch.setattr(lq, "SHARED", tmp_path)

    def inputs(**kw):
        out = lq.set_overrides("football_broadcast", **kw)
        return [Path(v).stem for v in out[-1].removeprefix("data.inputs=[").rstrip("]").split(",")]

    assert inputs(clips=2) == ["a", "b"]
    assert inputs(clips=None, skip_clips=1) == ["b", "c", "d"]
    assert inputs(clips=2, skip_clips=1) == ["b", "c"]
    assert lq.set_overrides("football_broadcast", clips=None) == ["data=football_broadcast"]  # every clip


def test_label_quality_replay_takes_earlier_rounds_whole_and_only_the_labelling_of_the_replayed_one(tmp_path):
    from pseudolabel import layout

    lq = _load("label_quality")
    src, dst = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    (layout.default_frames_dir(src) / "v").mkdir(parents=True)
    (layout.default_frames_dir(src) / "v" / "000000.jpg").write_bytes(b"jpg")
    for k in range(3):
        rdir = layout.round_dir(src, k)
        (rdir / layout.STUDENT_DIRNAME).mkdir(parents=True)
        (rdir / layout.STUDENT_DIRNAME / layout.STUDENT_CHECKPOINT).write_bytes(b"pt")
        for part in (layout.LABELS, layout.FEATURES, layout.PRUNED, layout.ANNOTATIONS, layout.METRICS,
                     layout.fold_train_labels(0), layout.fold_train_labels(1)):
            (rdir / part).write_text(f"{k}")
        for stage in ("train", "label", "prune", "merge", "evaluate"):
            layout.mark_done(rdir, stage)
    lq.reuse_rounds(src, dst, through=2)
    assert (layout.default_frames_dir(dst) / "v" / "000000.jpg").read_bytes() == b"jpg"
    for k in (0, 1):  # finished: scored as they were
        assert (layout.round_dir(dst, k) / layout.METRICS).read_text() == f"{k}"
        assert layout.is_done(layout.round_dir(dst, k), "evaluate")
    r2 = layout.round_dir(dst, 2)
    assert (r2 / layout.LABELS).read_text() == "2" and (r2 / layout.FEATURES).read_text() == "2"
    assert [(r2 / layout.fold_train_labels(i)).read_text() for i in (0, 1)] == ["2", "2"]  # cross-fit students
    assert layout.is_done(r2, "label") and layout.is_done(r2, "train")
    assert (r2 / layout.STUDENT_DIRNAME / layout.STUDENT_CHECKPOINT).is_file()
    for part in (layout.PRUNED, layout.ANNOTATIONS, layout.METRICS):
        assert not (r2 / part).exists()
    for stage in ("prune", "merge", "evaluate"):
        assert not layout.is_done(r2, stage)
    assert not layout.round_dir(dst, 3).exists()
    with pytest.raises(SystemExit, match="nothing labelled"):
        lq.reuse_rounds(src, tmp_path / "runs" / "c", through=3)
    assert not (tmp_path / "runs" / "c").exists()


@pytest.mark.slow  # runs a benchmark script (a round of the pipeline)
def test_label_quality_benchmark_scores_round_0_of_a_tiny_suite(tmp_path, capsys):
    import json

    spec = importlib.util.spec_from_file_location("label_quality", BENCHMARKS / "label_quality.py")
    lq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lq)
    out = tmp_path / "lq.json"
    assert lq.main(["--sets", "synthetic", "--rounds", "0", "--root", str(tmp_path), "--out", str(out),
                    "data.synthetic.n_videos=2", "data.synthetic.n_frames=8", "teacher.detector.tile_size=320"]) == 0
    res = json.loads(out.read_text())["sets"]["synthetic"]
    (row,) = res["rounds"]
    metrics = json.loads((tmp_path / "runs" / "synthetic" / "round_0" / "metrics.json").read_text())
    assert row["n_boxes"] == metrics["n_boxes"] and row["f1"] == metrics["f1"]
    assert row["at_centre"]["max_distance_px"] == 4.0 and row["wall_s"] > 0
    assert set(res["round0_without_hysteresis"]) >= {"n_boxes", "precision", "recall", "f1", "at_centre"}
    for counts in row["pruned_truth"].values():
        assert set(counts) == {"true", "false"}
    assert "synthetic              0" in capsys.readouterr().out


@pytest.mark.slow
def test_guided_tiling_benchmark_prints_its_two_lines(tmp_path, capsys):
    """label_throughput.py --guided on two frames of each football clip (needs ../shared)."""
    import json

    bench = _load("label_throughput")
    if not bench.REPO.parent.joinpath("shared", "data", "videos", "football_broadcast", "ground_truth.json").is_file():
        pytest.skip("../shared/data/videos/football_broadcast is absent")
    out = tmp_path / "g.json"
    res = bench.main(["--guided", "--sets", "football_broadcast", "--guided-frames", "2", "--json", str(out)])
    entry = res["sets"]["football_broadcast"]
    assert entry["frames"] == 20 and entry["speed_up"] == pytest.approx(entry["guided"]["fps"] / entry["full"]["fps"])
    assert entry["guided"]["views_per_frame"] < entry["full"]["views_per_frame"]  # frame 2 of a clip is guided
    text = capsys.readouterr().out
    assert f"guided speed-up: {entry['speed_up']:.2f}x" in text
    floor = entry["score_0.2"]
    assert f"guided recall: {floor['guided']['recall']:.3f} vs {floor['full']['recall']:.3f}" in text
    kept = entry["kept_by_hysteresis"]  # round 0's labels: a subset of the floor's boxes
    assert all(kept[k]["tp"] <= floor[k]["tp"] and kept[k]["fp"] <= floor[k]["fp"] for k in ("full", "guided"))
    assert json.loads(out.read_text())["sets"]["football_broadcast"]["frames"] == 20


def test_student_box_fit_returns_each_labels_boxes_in_frame_pixels_per_pass():
    pytest.importorskip("torch")
    import numpy as np

    from pseudolabel.student.model import build_efficientnet_lite0_frcnn

    bench = _load("student_box_fit")
    model = build_efficientnet_lite0_frcnn(pretrained=False, scale=2.0, box_score_thresh=0.0)
    model.eval()
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    labels = np.array([[150.0, 20.0, 162.0, 32.0], [10.0, 90.0, 20.0, 100.0]])
    out = bench.student_boxes_on_crops(model, image, labels, crop=64, reapply=2)
    assert len(out) == 2
    for q, passes in zip(labels, out):
        assert passes.ndim == 3 and passes.shape[0] == 3 and passes.shape[2] == 4 and passes.shape[1] > 0
        # the first pass lies inside the 64-px crop around its label, in frame pixels
        cx, cy = (q[0] + q[2]) / 2, (q[1] + q[3]) / 2
        x0, y0 = np.clip(int(cx - 32), 0, 200 - 64), np.clip(int(cy - 32), 0, 120 - 64)
        assert (passes[0][:, [0, 2]] >= x0 - 1e-3).all() and (passes[0][:, [0, 2]] <= x0 + 64 + 1e-3).all()
        assert (passes[0][:, [1, 3]] >= y0 - 1e-3).all() and (passes[0][:, [1, 3]] <= y0 + 64 + 1e-3).all()
    with pytest.raises(SystemExit):
        bench.main(["--run", "runs/x", "--round", "0", "--set", "synthetic"])


def test_gt_extent_scores_runs_against_both_extents_and_reads_shape_from_motion(tmp_path, capsys):
    import json

    from pseudolabel import synth
    from pseudolabel.coco import load_coco, save_coco
    from pseudolabel.records import Box, Dataset, Frame

    bench = _load("gt_extent")
    kw = dict(n_videos=1, n_frames=12, width=320, height=180, fps=25.0, seed=3)
    suite = tmp_path / "suite"
    synth.make_suite(suite, **kw)
    run = tmp_path / "runs" / "swept_labels" / "round_0"
    run.mkdir(parents=True)
    # a "run" whose kept boxes are the swept ground truth itself
    save_coco(load_coco(synth.make_suite(tmp_path / "swept", gt_extent="swept", **kw)), run / "annotations.json")
    # human boxes of a ball speeding up sideways (20 px a frame and more), drawn wider the faster it goes
    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=320, height=180, video_id="v", frame_index=i)
              for i in range(6)]
    boxes = [Box(image_id=i + 1, xyxy=(10.0 + 20 * i + 2 * i * i, 50.0, 24.0 + 21 * i + 2 * i * i, 58.0),
                 score=1.0, round=0, source="ground_truth", category_id=1) for i in range(6)]
    human = Dataset(frames=frames, boxes=boxes)
    human.renumber()
    save_coco(human, tmp_path / "human.json")
    out = tmp_path / "out.json"
    assert bench.main(["--suite", str(suite), "--runs", str(run.parent), "--video-gt", str(tmp_path / "human.json"),
                       "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    scores = res["runs"]["swept_labels"]["round_0"]
    assert scores["swept"]["f1"] == pytest.approx(1.0)
    assert scores["disc"]["f1"] < 1.0  # the suite's balls are blurred: the two extents differ
    assert res["video_gt"]["boxes"] == 4 and res["video_gt"]["fast_n"] == 4
    assert res["video_gt"]["fast_w"] > res["video_gt"]["fast_h"]
    assert res["video_gt"]["corr_elongation_motion"] > 0.9
    assert "swept_labels" in capsys.readouterr().out
