"""Cross-fitting (``student.folds``): which frames each fold's student trains on and relabels."""
import json

import numpy as np
import pytest

from pseudolabel import layout, pipeline
from pseudolabel.coco import load_coco, save_coco
from pseudolabel.records import Box, Dataset, Frame
from pseudolabel.student.data import cross_fit_folds

from tests.test_pipeline import make_cfg
from tests.test_shard import BrightSpots, video_frames  # noqa: F401 (fixture)


def frames_of(counts):
    frames = []
    for vid, n in counts:
        frames += [Frame(id=0, file_name=f"{vid}/{i:06d}.jpg", width=48, height=32, video_id=vid,
                         frame_index=10 * i) for i in range(n)]
    for i, f in enumerate(frames, start=1):
        f.id = i
    return frames


def test_each_video_is_cut_into_contiguous_stretches_one_per_fold():
    frames = frames_of([("b", 7), ("a", 4)])
    fold = cross_fit_folds(frames[::-1], folds=2)  # any input order
    assert [fold[("b", 10 * i)] for i in range(7)] == [0, 0, 0, 0, 1, 1, 1]
    assert [fold[("a", 10 * i)] for i in range(4)] == [0, 0, 1, 1]
    three = cross_fit_folds(frames, folds=3)
    assert [three[("b", 10 * i)] for i in range(7)] == [0, 0, 0, 1, 1, 2, 2]
    assert set(cross_fit_folds(frames, folds=1).values()) == {0}


def test_stills_are_dealt_to_the_folds_in_turn():
    stills = frames_of([(f"img_{i}", 1) for i in range(5)])
    fold = cross_fit_folds(stills, folds=2)
    assert [fold[(f"img_{i}", 0)] for i in range(5)] == [0, 1, 0, 1, 0]
    with pytest.raises(ValueError):
        cross_fit_folds(stills, folds=0)


class Tagged(BrightSpots):
    """BrightSpots whose scores are all ``score``: tells which labeller found a box."""

    def __init__(self, score):
        super().__init__()
        self.score = score

    def predict(self, images):
        out = super().predict(images)
        for d in out:
            d.scores[:] = self.score
        return out


def test_each_fold_is_labelled_by_its_own_student_into_one_labels_file(video_frames, tmp_path):
    root, frames = video_frames
    cfg = make_cfg(tmp_path, f"paths.frames_dir={root}", "prune.hysteresis.enabled=false")
    single = Dataset(frames=list(frames))
    pipeline.stage_label(cfg, 1, single, lambda: BrightSpots(), class_ids=None, score_threshold=0.0,
                         batch_size=2)
    one = load_coco(pipeline.round_dir(cfg, 1) / layout.LABELS)

    cfg2 = make_cfg(tmp_path, f"paths.frames_dir={root}", "prune.hysteresis.enabled=false", "exp=folds")
    seen = [Tagged(0.25), Tagged(0.75)]
    pipeline.stage_label(cfg2, 1, single, [lambda: seen[0], lambda: seen[1]], class_ids=None,
                         score_threshold=0.0, batch_size=2)
    rdir = pipeline.round_dir(cfg2, 1)
    two = load_coco(rdir / layout.LABELS)
    assert not (rdir / layout.FEATURES).exists()  # two students, two feature spaces: none kept
    assert not (rdir / layout.LABEL_PARTS).exists()
    fold = cross_fit_folds(frames, folds=2)
    in_fold_0 = sum(v == 0 for v in fold.values())
    assert (seen[0].frames_seen, seen[1].frames_seen) == (in_fold_0, len(frames) - in_fold_0)
    keys = {f.id: f.key for f in two.frames}
    assert [f.key for f in two.frames] == [f.key for f in frames]
    assert [b.id for b in two.boxes] == list(range(1, len(two.boxes) + 1))
    assert len(two.boxes) == len(one.boxes) > 0
    assert sorted((b.image_id, b.xyxy) for b in one.boxes) == sorted((b.image_id, b.xyxy) for b in two.boxes)
    assert all(b.score == (0.25, 0.75)[fold[keys[b.image_id]]] for b in two.boxes)  # each by its fold's labeller


def test_each_fold_trains_on_the_frames_outside_it(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path, "student.folds=2")
    frames = frames_of([("v", 6)])
    prev = Dataset(frames=frames, boxes=[Box(image_id=f.id, xyxy=(1.0, 1.0, 9.0, 9.0), score=0.9, round=0,
                                             source="t", id=f.id) for f in frames])
    pipeline.round_dir(cfg, 0).mkdir(parents=True)
    save_coco(prev, pipeline.round_dir(cfg, 0) / layout.ANNOTATIONS)
    calls = []

    def fake_train(*, pseudo_labels_path, out_dir, seed, **_):
        calls.append((sorted(f.frame_index for f in load_coco(pseudo_labels_path).frames), out_dir, seed))
        return f"{out_dir}/student.pt"

    monkeypatch.setattr("pseudolabel.student.train.train_student", fake_train)
    ckpt = pipeline.stage_train(cfg, 1)
    exp = pipeline.exp_dir(cfg)
    assert calls == [([30, 40, 50], str(layout.student_dir(exp, 1, 0)), int(cfg.seed) + 1),
                     ([0, 10, 20], str(layout.student_dir(exp, 1, 1)), int(cfg.seed) + 1001)]
    assert ckpt == layout.student_checkpoint(exp, 1, 0)
    info = json.loads(layout.done_marker(pipeline.round_dir(cfg, 1), "train").read_text())
    assert info["folds"] == 2 and len(info["checkpoints"]) == 2
    np.testing.assert_equal(len(load_coco(pipeline.round_dir(cfg, 1) / layout.fold_train_labels(1)).boxes), 3)
