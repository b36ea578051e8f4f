"""Resumable, shardable labelling: per-video parts, their merge, shards through Hydra launchers."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pseudolabel import pipeline
from pseudolabel.coco import to_coco
from pseudolabel.detectors.base import Detections
from pseudolabel.label import configure_threads, label_frames
from pseudolabel.parts import (PartMismatchError, label_parts, merge_parts, part_paths, read_part,
                               select_videos)
from pseudolabel.records import Frame

from tests.test_pipeline import make_cfg

REPO = Path(__file__).resolve().parents[1]




class BrightSpots:
    """Deterministic per-image detector: one box per bright 8x8 cell, score from its brightness,
    a feature vector per box. Counts frames seen; ``fail_after`` frames raise (a killed run)."""

    name = "bright_spots"

    def __init__(self, fail_after=None):
        self.frames_seen = 0
        self.fail_after = fail_after

    def predict(self, images):
        if self.fail_after is not None and self.frames_seen + len(images) > self.fail_after:
            raise KeyboardInterrupt("killed")
        self.frames_seen += len(images)
        out = []
        for im in images:
            cells = im[:, :, 0].reshape(im.shape[0] // 8, 8, im.shape[1] // 8, 8).mean(axis=(1, 3))
            ys, xs = np.nonzero(cells > 100)
            boxes = np.stack([xs * 8, ys * 8, xs * 8 + 8, ys * 8 + 8], axis=1).astype(float) + 0.1
            scores = cells[ys, xs] / 255.0
            feats = np.stack([scores, xs.astype(float), ys.astype(float)], axis=1).astype(np.float32)
            out.append(Detections(boxes, scores, np.where(scores > 0.6, 37, 1), feats))
        return out


@pytest.fixture(scope="module")
def video_frames(tmp_path_factory):
    """3 'videos' of 32x48 JPEGs (3, 4 and 2 frames), ids 1..N sorted by (video, index); some without spots."""
    import cv2

    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    frames = []
    for vid, n in (("cam_b", 4), ("cam_a", 3), ("cam_c", 2)):
        (root / vid).mkdir()
        for i in range(n):
            im = np.zeros((32, 48, 3), np.uint8)
            for _ in range(int(rng.integers(0, 6))):
                y, x = int(rng.integers(0, 4)) * 8, int(rng.integers(0, 6)) * 8
                im[y:y + 8, x:x + 8] = int(rng.integers(110, 256))
            cv2.imwrite(str(root / vid / f"{i:06d}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 100])
            frames.append(Frame(id=0, file_name=f"{vid}/{i:06d}.jpg", width=48, height=32, video_id=vid, frame_index=i))
    frames.sort(key=lambda f: (f.video_id, f.frame_index))
    for i, f in enumerate(frames, start=1):
        f.id = i
    return root, frames


LABEL = dict(round=0, class_ids=[37], score_threshold=0.5)


def one_pass(root, frames, batch_size=2):
    return label_frames(BrightSpots(), frames, frames_dir=root, batch_size=batch_size, progress=False, **LABEL)


def as_comparable(ds, feats):
    return to_coco(ds), {k: v.tolist() for k, v in feats.items()}


def test_shards_partition_the_sorted_videos_whatever_their_order():
    ids = ["v3", "v1", "v2", "v1", "v0", "v4"]
    shards = [select_videos(ids, shard=i, num_shards=3) for i in range(3)]
    assert shards == [["v0", "v3"], ["v1", "v4"], ["v2"]]
    assert shards == [select_videos(list(reversed(ids)), shard=i, num_shards=3) for i in range(3)]
    assert select_videos(ids, shard=None, num_shards=3) == ["v0", "v1", "v2", "v3", "v4"]
    with pytest.raises(ValueError, match="label.shard"):
        select_videos(ids, shard=3, num_shards=3)


@pytest.mark.parametrize("num_shards", [1, 2, 3])
def test_merged_parts_equal_one_pass_over_every_frame(video_frames, tmp_path, num_shards):
    root, frames = video_frames
    ref = one_pass(root, frames)
    assert len(ref[0].boxes) > 5 and ref[1]  # the data exercises boxes, features...
    assert any(not bs for bs in ref[0].boxes_by_image().values())  # ...and negative frames
    videos = sorted({f.video_id for f in frames})
    for shard in range(num_shards):
        done = label_parts(BrightSpots, frames, parts_dir=tmp_path, batch_size=2, frames_dir=root,
                           video_ids=select_videos(videos, shard=shard, num_shards=num_shards), **LABEL)
        assert done["labelled"] == select_videos(videos, shard=shard, num_shards=num_shards)
    ds, feats, source = merge_parts(tmp_path, frames, **LABEL)
    assert source == "bright_spots"
    assert [b.id for b in ds.boxes] == list(range(1, len(ds.boxes) + 1))
    assert as_comparable(ds, feats) == as_comparable(*ref)


def test_killed_run_resumes_at_the_video_it_was_on(video_frames, tmp_path):
    root, frames = video_frames
    videos = sorted({f.video_id for f in frames})  # cam_a (3 frames), cam_b (4), cam_c (2)
    killed = BrightSpots(fail_after=5)  # dies inside cam_b
    with pytest.raises(KeyboardInterrupt):
        label_parts(lambda: killed, frames, parts_dir=tmp_path, video_ids=videos, frames_dir=root,
                    batch_size=2, **LABEL)
    assert read_part(tmp_path, "cam_a") is not None
    assert read_part(tmp_path, "cam_b") is None and read_part(tmp_path, "cam_c") is None
    resumed = BrightSpots()
    done = label_parts(lambda: resumed, frames, parts_dir=tmp_path, video_ids=videos, frames_dir=root,
                       batch_size=2, **LABEL)
    assert done == {"labelled": ["cam_b", "cam_c"], "reused": ["cam_a"]}
    assert resumed.frames_seen == 6  # cam_a is not labelled again
    assert as_comparable(*merge_parts(tmp_path, frames, **LABEL)[:2]) == as_comparable(*one_pass(root, frames))
    built = []
    label_parts(lambda: built.append(1), frames, parts_dir=tmp_path, video_ids=videos, frames_dir=root,
                batch_size=2, **LABEL)
    assert built == []  # everything labelled: the detector is not even built


def test_parts_made_with_other_settings_or_frames_are_refused(video_frames, tmp_path):
    root, frames = video_frames
    label_parts(BrightSpots, frames, parts_dir=tmp_path, video_ids=["cam_c"], frames_dir=root, batch_size=2,
                **LABEL)
    with pytest.raises(PartMismatchError, match="score_threshold"):
        merge_parts(tmp_path, [f for f in frames if f.video_id == "cam_c"], **{**LABEL, "score_threshold": 0.3})
    with pytest.raises(PartMismatchError, match="missing"):
        merge_parts(tmp_path, frames, **LABEL)
    moved = [Frame(**{**vars(f), "id": f.id + 100}) for f in frames if f.video_id == "cam_c"]
    with pytest.raises(PartMismatchError, match="other frames"):
        merge_parts(tmp_path, moved, **LABEL)
    assert part_paths(tmp_path, "cam_c")[0].is_file()


def test_configure_threads_follows_omp_num_threads(monkeypatch):
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_threads() == 1 and torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
        assert configure_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_a_shard_cannot_run_a_whole_round(tmp_path):
    with pytest.raises(pipeline.PipelineError, match="label.shard"):
        pipeline.run_round(make_cfg(tmp_path, "label.shard=0", "label.num_shards=2"), 0)
    with pytest.raises(pipeline.PipelineError, match="label.shard must be"):
        pipeline.label_shard(make_cfg(tmp_path, "label.shard=2", "label.num_shards=2"))


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=cpu",
                                           "label.num_shards=8", "label.shard=3"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "cpu" and launcher.cpus_per_task >= 1 and launcher.timeout_min > 0
    assert launcher.max_num_timeout > 0  # a requeued shard resumes from its parts
    assert (cfg.label.shard, cfg.label.num_shards) == (3, 8)


@pytest.mark.slow  # a multirun of the whole CLI
def test_two_joblib_shards_then_merge_equal_the_single_process_labels(tmp_path, monkeypatch):
    """The real multirun: 2 shards in parallel (hydra joblib launcher), then a merge that labels nothing."""
    from pseudolabel.__main__ import run

    run(make_cfg(tmp_path, "stage=synth"))
    run(make_cfg(tmp_path, "stage=label", "exp=single"))
    single = tmp_path / "runs" / "single" / "round_0"
    assert (single / "labels.json").is_file() and not (single / "label_parts").exists()

    common = [f"paths.root_dir={tmp_path}", "logger=none", "exp=sharded", "data.synthetic.n_videos=2",
              "data.synthetic.n_frames=8", "teacher.detector.tile_size=320"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "pseudolabel", "-m", "stage=label", "label.num_shards=2",
                           "label.shard=0,1", "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                           *common], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shard 0 of 2" in proc.stderr + proc.stdout and "shard 1 of 2" in proc.stderr + proc.stdout
    sharded = tmp_path / "runs" / "sharded" / "round_0"
    parts = sorted(p.name for p in (sharded / "label_parts").glob("*.json"))
    assert parts == ["synth_00_grass.json", "synth_01_clay.json"]
    assert not (sharded / "labels.json").exists() and not (sharded / ".done_label").exists()

    def no_model():
        raise AssertionError("the merge must not label again")

    monkeypatch.setattr(pipeline, "_build_teacher", lambda cfg: no_model())
    run(make_cfg(tmp_path, "stage=label", "exp=sharded"))
    assert (sharded / "labels.json").read_bytes() == (single / "labels.json").read_bytes()
    assert (sharded / ".done_label").is_file() and not (sharded / "label_parts").exists()


def test_opencv_teacher_feeds_rgb_without_channel_copies_and_same_output():
    """The teacher's blob is built from the RGB images directly: same detections as flipping to BGR
    and letting OpenCV swap back (what it did before)."""
    import cv2
    from hydra import compose, initialize_config_dir

    from pseudolabel.safe_config import instantiate

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        det = instantiate(compose("config", overrides=["teacher=ssd_mobilenet_v2"]).teacher.detector.detector)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (160, 200, 3), dtype=np.uint8) for _ in range(2)]
    images[1][40:80, 60:100] = (240, 120, 20)
    old_blob = cv2.dnn.blobFromImages([im[:, :, ::-1] for im in images], scalefactor=det.scale,
                                      size=det.input_size, mean=det.mean, swapRB=det.swap_rb, crop=False)
    det.net.setInput(old_blob)
    rows = det.net.forward().reshape(-1, 7)
    new = det.predict(images)
    for i, d in enumerate(new):
        r = rows[(rows[:, 0] == i) & (rows[:, 2] >= det.min_score)]
        np.testing.assert_array_equal(d.scores, r[:, 2])
        np.testing.assert_array_equal(d.labels, r[:, 1].astype(np.int64))


def test_background_jpeg_writes_finish_before_sampling_returns_and_raise_disk_errors(tmp_path, monkeypatch):
    from pseudolabel import frames as frames_mod
    from pseudolabel.synth import render_video

    video = tmp_path / "v.mp4"
    render_video(video, seed=0, venue="grass", n_frames=6, width=160, height=96)
    cfg = frames_mod.SamplingConfig(stride=2, dedup_threshold=None)
    got, rec = frames_mod.sample_video(video, video_id="v", frames_dir=tmp_path / "f", config=cfg)
    assert [f.frame_index for f in got] == [0, 2, 4] and rec["status"] == "ok"
    assert all((tmp_path / "f" / f.file_name).stat().st_size > 0 for f in got)
    assert not list((tmp_path / "f" / "v").glob(".*.tmp"))

    def disk_full(path, img, quality):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(frames_mod, "_write_jpeg", disk_full)
    with pytest.raises(OSError, match="No space"):
        frames_mod.sample_video(video, video_id="w", frames_dir=tmp_path / "f", config=cfg)


def test_context_detections_survive_parts_and_equal_one_pass(video_frames, tmp_path):
    from pseudolabel.label import iter_detections
    from pseudolabel.parts import merge_context

    root, frames = video_frames
    ctx = dict(context_class_ids=[1], context_score_threshold=0.45)
    label_parts(BrightSpots, frames, parts_dir=tmp_path, video_ids=["cam_a", "cam_b", "cam_c"], frames_dir=root,
                batch_size=2, progress=False, **LABEL, **ctx)
    merged = merge_context(tmp_path, frames)
    expected = [(f.id, tuple(c.boxes[j]), float(c.scores[j])) for f, _, c in
                iter_detections(BrightSpots(), frames, frames_dir=root, batch_size=3, progress=False,
                                class_ids=[37], score_threshold=0.5, **ctx) for j in range(len(c))]
    assert expected  # the fixture has dim spots (class 1) above 0.45
    assert [(b.image_id, b.xyxy, b.score) for b in merged.boxes] == expected
    assert {b.category_id for b in merged.boxes} == {1} and merged.categories == [{"id": 1, "name": "class_1"}]
    assert [b.id for b in merged.boxes] == list(range(1, len(merged.boxes) + 1))
    with pytest.raises(PartMismatchError, match="context_class_ids"):  # parts with context, merge without
        merge_parts(tmp_path, frames, **LABEL)
    assert len(merge_parts(tmp_path, frames, **LABEL, **ctx)[0].boxes) == len(one_pass(root, frames)[0].boxes)
