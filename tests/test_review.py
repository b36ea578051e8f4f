"""A reviewer's corrections in the loop: import (and its errors), the next round's use of them (ground truth, hard
negatives, neighbouring frames of a track), the informativeness order of the export and the dashboard."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pseudolabel import layout
from pseudolabel.coco import load_coco, save_coco
from pseudolabel.export import export_dataset
from pseudolabel.records import KEPT, PRUNED, Box, Dataset, Frame
from pseudolabel.review import REVIEW_ABSENT, REVIEW_DELETED, REVIEW_TRACK
from pseudolabel.review.apply import apply_review
from pseudolabel.review.informative import SIGNALS, frame_scores, review_order
from pseudolabel.review.reviewed import reviewed_set

REPO = Path(__file__).resolve().parents[1]
W, H = 320, 240
N_FRAMES = 6


def ball(i: int) -> tuple[float, float, float, float]:
    """The ball on frame i: 8 px, moving 12 px a frame."""
    return (40.0 + 12 * i, 100.0, 48.0 + 12 * i, 108.0)


def head(i: int) -> tuple[float, float, float, float]:
    """A head the teacher takes for a ball on every frame: 10 px, nearly still."""
    return (250.0 + i, 40.0, 260.0 + i, 50.0)


def make_round(frames_dir: Path | None = None) -> Dataset:
    """One video of 6 frames: the ball kept everywhere but frame 3 (pruned, unconfirmed), the head kept everywhere."""
    frames, boxes = [], []
    for i in range(N_FRAMES):
        name = f"v/{i:06d}.jpg"
        if frames_dir is not None:
            import cv2

            (frames_dir / "v").mkdir(parents=True, exist_ok=True)
            img = np.full((H, W, 3), 30, np.uint8)
            cv2.rectangle(img, (int(head(i)[0]), 40), (int(head(i)[2]), 50), (255, 255, 255), -1)
            cv2.imwrite(str(frames_dir / name), img)
        frames.append(Frame(id=i + 1, file_name=name, width=W, height=H, video_id="v", frame_index=i))
        doubtful = {"decision": PRUNED, "reason": "unconfirmed", "extra": {"pruned_round": 0}} if i == 3 else {}
        boxes.append(Box(image_id=i + 1, xyxy=ball(i), score=0.3 if i == 3 else 0.9, source="teacher", **doubtful))
        boxes.append(Box(image_id=i + 1, xyxy=head(i), score=0.8, source="teacher"))
    ds = Dataset(frames=frames, boxes=boxes, info={"round": 0})
    ds.renumber()
    return ds


def experiment(root: Path) -> tuple[Path, Dataset]:
    """runs/e with a finished round 0 (frames on disk)."""
    exp = root / "runs" / "e"
    ds = make_round(exp / "frames")
    save_coco(ds, exp / "round_0" / "annotations.json")
    layout.mark_done(exp / "round_0", "evaluate")
    return exp, ds


def compose(root: Path, *overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=[f"paths.root_dir={root}", "exp=e", "logger=none", *overrides])


def run_import(root: Path, path: Path, *overrides: str):
    from pseudolabel.__main__ import run

    return run(compose(root, "stage=review_import", f"review.path={path}", *overrides))


def cvat_review(root: Path, ds: Dataset, edit) -> Path:
    """Our CVAT export of frames 2 and 4 of round 0 (``make export``'s folder), its JSON edited by ``edit``."""
    exp = root / "runs" / "e"
    out = exp / "export" / "cvat_round_0"
    view = Dataset(frames=[ds.frames[2], ds.frames[4]], boxes=[b for b in ds.boxes if b.image_id in (3, 5)],
                   categories=ds.categories)
    export_dataset(view, out, format="cvat", frames_dir=exp / "frames", images="none",
                   about={"experiment": "e", "round": 0})
    with zipfile.ZipFile(out / "cvat_coco.zip") as zf:
        coco = json.loads(zf.read("annotations/instances_default.json"))
    edit(coco)
    with zipfile.ZipFile(out / "cvat_coco.zip", "w") as zf:
        zf.writestr("annotations/instances_default.json", json.dumps(coco))
    return out / "cvat_coco.zip"


def reviewer_edit(coco: dict) -> None:
    """Frame 2: keep the ball, delete the head. Frame 4: move the ball by 3 px, delete the head, draw a second ball."""
    by_name = {im["file_name"]: im["id"] for im in coco["images"]}
    kept = []
    for a in coco["annotations"]:
        is_head = a["bbox"][0] >= 200
        if is_head:
            continue
        if a["image_id"] == by_name["v__000004.jpg"]:
            a["bbox"][0] += 3.0
        kept.append(a)
    blank = dict.fromkeys(("decision", "reason", "score", "round", "source"), "")  # what CVAT writes for a new box
    kept.append({"id": 99, "image_id": by_name["v__000004.jpg"], "category_id": 1, "bbox": [150, 180, 8, 8],
                 "area": 64, "iscrowd": 0, "segmentation": [], "attributes": {"occluded": False, **blank}})
    coco["annotations"] = kept


# ---------------------------------------------------------------- import
def test_import_records_what_the_reviewer_kept_moved_drew_and_deleted(tmp_path):
    exp, ds = experiment(tmp_path)
    path = cvat_review(tmp_path, ds, reviewer_edit)
    result = run_import(tmp_path, path)  # format and round from the export's pseudolabel_export.json
    assert result["format"] == "cvat" and result["round"] == 0 and result["n_frames"] == 2
    assert {k: result[k] for k in ("kept", "moved", "drawn", "deleted")} == {"kept": 1, "moved": 1, "drawn": 1,
                                                                              "deleted": 2}
    rs = load_coco(exp / "review" / "reviewed.json")
    assert sorted(f.key for f in rs.frames) == [("v", 2), ("v", 4)]
    assert all(b.source == "cvat" and b.extra["reviewed"] is True and b.round == 0 and b.score == 1.0
               for b in rs.boxes)
    key = {f.id: f.key for f in rs.frames}
    got = {(key[b.image_id][1], b.extra["review"]): b for b in rs.boxes}
    assert got[(2, "kept")].xyxy == pytest.approx(ball(2)) and got[(2, "kept")].extra["review_of"]["score"] == 0.9
    assert got[(4, "moved")].xyxy == pytest.approx((ball(4)[0] + 3, 100, ball(4)[2] + 3, 108))
    assert got[(4, "drawn")].xyxy == pytest.approx((150, 180, 158, 188)) and "review_of" not in got[(4, "drawn")].extra
    for i in (2, 4):
        deleted = got[(i, "deleted")]
        assert (deleted.decision, deleted.reason) == (PRUNED, REVIEW_DELETED)
        assert deleted.xyxy == pytest.approx(head(i))


def test_a_frame_reviewed_again_replaces_its_earlier_review(tmp_path):
    exp, ds = experiment(tmp_path)
    run_import(tmp_path, cvat_review(tmp_path, ds, reviewer_edit))
    again = Dataset(frames=[ds.frames[4], ds.frames[5]], boxes=[], categories=ds.categories)  # two empty frames
    out = tmp_path / "yolo"
    export_dataset(again, out, format="yolo", frames_dir=exp / "frames")
    run_import(tmp_path, out, "review.round=0")
    rs = load_coco(exp / "review" / "reviewed.json")
    assert [f.key for f in rs.frames] == [("v", 2), ("v", 4), ("v", 5)]
    by_frame = rs.boxes_by_image()
    assert [b.extra["review"] for b in by_frame[2]] == ["deleted", "deleted"]  # frame 4 now: no ball at all
    assert [i["tool"] for i in rs.info["imports"]] == ["cvat", "yolo"]


def test_label_studio_counts_only_the_tasks_a_reviewer_submitted(tmp_path):
    exp, ds = experiment(tmp_path)
    out = exp / "export" / "labelstudio_round_0"
    export_dataset(ds, out, format="labelstudio", frames_dir=exp / "frames", about={"experiment": "e", "round": 0})
    tasks = json.loads((out / "tasks.json").read_text())
    ball_only = [r for r in tasks[1]["predictions"][0]["result"] if r["value"]["x"] < 50]
    tasks[1]["annotations"] = [{"result": ball_only}]  # frame 1 reviewed: the head deleted; the others untouched
    (out / "tasks.json").write_text(json.dumps(tasks))
    result = run_import(tmp_path, out / "tasks.json")
    assert (result["format"], result["n_frames"], result["kept"], result["deleted"]) == ("labelstudio", 1, 1, 1)
    assert [f.key for f in load_coco(exp / "review" / "reviewed.json").frames] == [("v", 1)]
    del tasks[1]["annotations"]
    (out / "tasks.json").write_text(json.dumps(tasks))
    with pytest.raises(Exception, match="no task holds an annotation, so no frame was reviewed; nothing imported"):
        run_import(tmp_path, out)


def _yolo_review(root: Path, ds: Dataset) -> Path:
    out = root / "yolo"
    view = Dataset(frames=ds.frames[:2], boxes=[b for b in ds.boxes if b.image_id <= 2], categories=ds.categories)
    export_dataset(view, out, format="yolo", frames_dir=root / "runs" / "e" / "frames")
    return out


def _unknown_frame(root, ds):
    out = _yolo_review(root, ds)
    for sub, ext in (("images", ".jpg"), ("labels", ".txt")):
        (out / sub / f"v__000001{ext}").rename(out / sub / f"v__000042{ext}")
    return out


def _other_size(root, ds):
    import cv2

    out = _yolo_review(root, ds)
    cv2.imwrite(str(out / "images" / "v__000001.jpg"), np.zeros((H // 2, W // 2, 3), np.uint8))
    return out


def _empty(root, ds):
    path = root / "tasks.json"
    path.write_text("[]")
    return path


@pytest.mark.parametrize("make, message", [
    (_unknown_frame, "frame v__000042.jpg (video 'v', frame 42) is not a frame of round 0 of experiment 'e'; "
                     "nothing imported"),
    (_other_size, f"frame v__000001.jpg is {W // 2}x{H // 2} in the export but {W}x{H} in round 0 of experiment "
                  "'e'; nothing imported"),
    (_empty, "the export holds no frame; nothing imported"),
])
def test_import_errors_are_one_line_and_write_nothing(tmp_path, make, message):
    from pseudolabel.__main__ import user_errors

    exp, ds = experiment(tmp_path)
    run_import(tmp_path, cvat_review(tmp_path, ds, reviewer_edit))  # an earlier import must stay as it was
    before = (exp / "review" / "reviewed.json").read_bytes()
    path = make(tmp_path, ds)
    with pytest.raises(user_errors()) as info:
        run_import(tmp_path, path, "review.round=0")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(path) in str(info.value)
    assert (exp / "review" / "reviewed.json").read_bytes() == before
    assert sorted(p.name for p in (exp / "review").iterdir()) == ["reviewed.json"]


def test_cli_refuses_a_bad_import_with_exit_code_2(tmp_path):
    import os
    import subprocess
    import sys

    experiment(tmp_path)
    path = _empty(tmp_path, None)
    proc = subprocess.run([sys.executable, "-m", "pseudolabel", "stage=review_import", "exp=e", "logger=none",
                           f"paths.root_dir={tmp_path}", f"review.path={path}"], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"pseudolabel: {path}: the export holds no frame; nothing imported"]
    assert not (tmp_path / "runs" / "e" / "review").exists()


# ---------------------------------------------------------------- the next round
def _reviewed(ds: Dataset) -> Dataset:
    """Frame 2 reviewed: the ball kept, the head deleted."""
    exported = Dataset(frames=[ds.frames[2]], boxes=[Box(image_id=3, xyxy=ball(2))], categories=ds.categories)
    return reviewed_set(ds, exported, tool="cvat", round=0, round_name="round 0", source_name="x", iou_threshold=0.3)


def test_a_correction_fixes_the_neighbouring_frames_of_its_track():
    ds = make_round()
    counts = apply_review(ds, _reviewed(ds), round=1, iou_threshold=0.3, track_reach=2)
    assert counts["frames"] == 1 and counts["kept"] == 1 and counts["deleted"] == 1
    assert counts["track_kept"] == 1 and counts["track_pruned"] == 4
    by = {(b.image_id - 1, "ball" if b.xyxy[0] < 200 else "head"): b for b in ds.boxes}
    assert by[(2, "ball")].kept and by[(2, "ball")].source == "cvat" and by[(2, "ball")].extra["reviewed"]
    assert by[(2, "head")].reason == REVIEW_DELETED and by[(2, "head")].extra["before_review"]["score"] == 0.8
    revived = by[(3, "ball")]  # pruned for lack of evidence, on the track of the reviewer's ball one frame away
    assert revived.kept and revived.extra["review_track"] == {"video_id": "v", "frame_index": 2, "review": "kept"}
    assert revived.extra["before_review"]["reason"] == "unconfirmed" and "pruned_round" not in revived.extra
    assert [by[(i, "head")].reason for i in range(N_FRAMES)] == [REVIEW_TRACK] * 2 + [REVIEW_DELETED] + \
        [REVIEW_TRACK] * 2 + [""]  # frame 5 is 3 frames away: out of reach
    assert by[(5, "head")].kept
    alone = make_round()
    assert apply_review(alone, _reviewed(alone), round=1, iou_threshold=0.3, track_reach=0)["track_pruned"] == 0
    assert sum(b.reason == REVIEW_TRACK for b in alone.boxes) == 0


def test_reviewed_frames_end_as_the_reviewer_left_them_whatever_the_round_says():
    ds = make_round()
    reviewed = _reviewed(ds)  # reviewed on round 0; the round below then says otherwise
    f2 = ds.frames[2].id
    for b in ds.boxes:
        if b.image_id == f2 and b.xyxy == ball(2):
            b.prune("off_size", pruned_round=1)  # the round pruned the reviewer's ball
    ds.boxes.append(Box(image_id=f2, xyxy=(10.0, 10.0, 18.0, 18.0), score=0.99, id=100))  # and fired elsewhere
    apply_review(ds, reviewed, round=1, iou_threshold=0.3)
    on_f2 = {b.xyxy: b for b in ds.boxes if b.image_id == f2}
    assert on_f2[ball(2)].kept and on_f2[ball(2)].extra["before_review"]["reason"] == "off_size"
    assert on_f2[head(2)].reason == REVIEW_DELETED
    assert on_f2[(10.0, 10.0, 18.0, 18.0)].reason == REVIEW_ABSENT
    assert len({b.id for b in ds.boxes}) == len(ds.boxes)
    again = [(b.xyxy, b.decision, b.reason) for b in ds.boxes]
    apply_review(ds, reviewed, round=1, iou_threshold=0.3)  # applying twice changes nothing
    assert [(b.xyxy, b.decision, b.reason) for b in ds.boxes] == again


def test_reviewed_box_survives_the_next_round_and_a_deleted_one_becomes_a_negative(tmp_path, monkeypatch):
    """Round 1 of a hand-built experiment: its student trains on the reviewer's frame (the deleted head a hard
    negative), then the student says the opposite of the reviewer and the merge still ends as the reviewer said."""
    import pseudolabel.student.train as train_module
    from pseudolabel import pipeline
    from pseudolabel.merge import check_merge_invariant

    exp, ds = experiment(tmp_path)
    run_import(tmp_path, cvat_review(tmp_path, ds, reviewer_edit))
    cfg = compose(tmp_path, "stage=round", "round=1", "student.datamodule.val_fraction=0")
    seen = {}

    def fake_train(**kw):
        seen.update(kw)
        return Path(kw["out_dir"]) / "student.pt"

    monkeypatch.setattr(train_module, "train_student", fake_train)
    pipeline.stage_train(cfg, 1)
    assert Path(seen["pseudo_labels_path"]) == exp / "round_1" / "train_labels.json"
    assert json.loads((exp / "round_1" / ".done_train").read_text())["review"]["deleted"] == 2
    dm = seen["datamodule"](pseudo_labels_path=seen["pseudo_labels_path"], frames_dir=seen["frames_dir"])
    dm.setup("fit")
    data = dm.train_set
    frame2 = next(f.id for f in data.frames.values() if f.key == ("v", 2))
    assert data._boxes[frame2].tolist() == [list(ball(2))]
    assert data._hard[frame2].tolist() == [list(head(2))]  # the deleted head: a hard negative, never ignored
    assert len(data._ignore[frame2]) == 0
    _, target = data[data.frame_ids.index(frame2)]
    assert target["labels"].tolist() in ([1], [])  # a crop holds the ball or the head; the head is background

    # round 1's student (pruned.json): it doubts the reviewer's ball on frame 2 and keeps the head everywhere
    student = make_round()
    for b in student.boxes:
        b.round, b.source, b.extra = 1, "student", {}
        if b.xyxy == ball(2):
            b.prune("unconfirmed", pruned_round=1)
        elif b.xyxy[0] >= 200:
            b.score, b.decision, b.reason = 0.95, KEPT, ""
    save_coco(student, exp / "round_1" / "pruned.json")
    layout.mark_done(exp / "round_1", "prune")
    pipeline.stage_merge(cfg, 1)
    merged = load_coco(exp / "round_1" / "annotations.json")
    assert check_merge_invariant(load_coco(exp / "round_0" / "annotations.json"), merged) == []
    key = {f.id: f.key for f in merged.frames}
    on = {}
    for b in merged.boxes:
        on.setdefault(key[b.image_id][1], []).append(b)
    ball2 = next(b for b in on[2] if b.xyxy == pytest.approx(ball(2)))
    assert ball2.kept and ball2.source == "cvat" and ball2.extra["reviewed"] is True
    head2 = next(b for b in on[2] if b.xyxy[0] >= 200)
    assert not head2.kept and head2.reason == REVIEW_DELETED
    drawn = [b for b in on[4] if b.extra.get("review") == "drawn"]
    assert len(drawn) == 1 and drawn[0].kept and drawn[0].extra["prev_ids"] == []
    assert json.loads((exp / "round_1" / ".done_merge").read_text())["merge"]["review"]["frames"] == 2
    # the merged round now holds the deleted head as a pruned box: round 2's student learns it as a hard negative
    from pseudolabel.student.data import PseudoLabelDataset

    later = PseudoLabelDataset(merged, exp / "frames", [f.id for f in merged.frames], negatives_fraction=None)
    frame2 = next(f.id for f in merged.frames if f.key == ("v", 2))
    assert later._hard[frame2].tolist() == [list(head(2))]


def test_rounds_without_a_reviewed_set_are_unchanged(tmp_path):
    from pseudolabel import pipeline

    _, ds = experiment(tmp_path)
    assert pipeline.apply_reviewed_set(compose(tmp_path), ds, 1) is None


# ---------------------------------------------------------------- hard negatives in training
def test_hard_negatives_are_background_always_sampled_and_cropped_around(tmp_path):
    from pseudolabel.student.data import PseudoLabelDataset, train_transform

    ds = make_round(tmp_path)
    for b in ds.boxes:  # a reviewer deleted the head (white on dark frames: above 0.5 whatever the jitter) everywhere
        if b.xyxy[0] >= 200:
            b.prune(REVIEW_DELETED)
        elif b.image_id > 2:
            b.prune("aspect")  # frames 3..6: no kept ball, only the hard negative
    ids = [f.id for f in ds.frames]
    data = PseudoLabelDataset(ds, tmp_path, ids, transform=train_transform(64, seed=1), negatives_fraction=0.0,
                              ignore_reasons=["unconfirmed"])
    assert data.frame_ids == ids and data.n_hard_negatives == len(ids) and data.n_positives == 2
    for index in range(2, len(ids)):  # only a hard negative: every crop is around it, and it is not a target
        for _ in range(3):
            image, target = data[index]
            assert len(target["boxes"]) == 0 and image.max() > 0.5
    seen_head = False
    for _ in range(20):  # a ball and a hard negative: crops around either, targets only the ball
        image, target = data[0]
        assert set(target["labels"].tolist()) <= {1}
        seen_head |= bool(image.max() > 0.5)
    assert seen_head


# ---------------------------------------------------------------- informativeness
def test_frames_are_ordered_by_how_informative_they_are():
    frames = [Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=W, height=H, video_id="v", frame_index=i)
              for i in range(6)]
    frames.append(Frame(id=7, file_name="still/000000.jpg", width=W, height=H, video_id="still", frame_index=0))
    boxes = [
        Box(image_id=1, xyxy=ball(0), score=0.99, extra={"track_id": "v:0"}),
        Box(image_id=2, xyxy=ball(1), score=0.99, extra={"track_id": "v:0", "merge_status": "revived"}),  # disputed
        Box(image_id=2, xyxy=head(1), score=0.99, decision=PRUNED, reason="static"),  # a pruner overruled 0.99
        Box(image_id=3, xyxy=ball(2), score=0.5, extra={"track_id": "v:0"}),   # mid-confidence
        # frame 4: nothing between two frames with a ball: a track break
        Box(image_id=5, xyxy=ball(4), score=0.99, extra={"track_id": "v:0"}),
        Box(image_id=6, xyxy=ball(5), score=0.99, extra={"track_id": "v:0", "reviewed": True}),
        Box(image_id=7, xyxy=ball(0), score=0.75),
    ]
    ds = Dataset(frames=frames, boxes=boxes)
    ds.renumber()
    scores = {s.frame.key: s for s in frame_scores(ds)}
    assert scores[("v", 1)].why() == {"disagreement": 1.0, "mid_confidence": pytest.approx(0.02),
                                      "pruned_confident": pytest.approx(0.98)}
    assert scores[("v", 2)].why() == {"mid_confidence": 1.0}
    assert scores[("v", 3)].why() == {"track_break": 1.0}
    assert scores[("still", 0)].why() == {"mid_confidence": 0.5}
    assert scores[("v", 5)].reviewed and scores[("v", 5)].score == 0
    assert [s.frame.key for s in frame_scores(ds)] == [("v", 1), ("v", 2), ("v", 3), ("still", 0), ("v", 0),
                                                        ("v", 4), ("v", 5)]
    assert len(SIGNALS) == len(scores[("v", 1)].signals)
    top = review_order(ds, budget=3, reviewed_keys=[("v", 1)])
    assert [s.frame.key for s in top] == [("v", 2), ("still", 0), ("v", 3)]  # each video's best first, in turns
    assert len(review_order(ds, budget=100)) == 6  # never a reviewed frame


def test_export_budget_writes_the_most_informative_frames_first(tmp_path):
    from pseudolabel.__main__ import run

    exp, ds = experiment(tmp_path)
    for b in ds.boxes:  # frame 1's head is mid-confidence: the most informative frame
        if b.image_id == 2 and b.xyxy[0] >= 200:
            b.score = 0.5
    save_coco(ds, exp / "round_0" / "annotations.json")
    run_import(tmp_path, cvat_review(tmp_path, ds, reviewer_edit))  # frames 2 and 4 are reviewed already
    result = run(compose(tmp_path, "stage=export", "export.format=labelstudio", "export.budget=3"))
    tasks = json.loads((Path(result["out_dir"]) / "tasks.json").read_text())
    names = [t["data"]["image"].rsplit("/", 1)[-1] for t in tasks]
    assert names[0] == "000001.jpg" and len(names) == 3 and not {"000002.jpg", "000004.jpg"} & set(names)
    order = result["review_order"]
    assert [o["image"] for o in order] == ["v__000001.jpg", *(f"v__{n}" for n in names[1:])]
    assert order[0]["why"]["mid_confidence"] == pytest.approx(1.0) and result["budget"] == 3
    everything = run(compose(tmp_path, "stage=export", "export.format=yolo", "export.order=frame"))
    assert everything["n_images"] == N_FRAMES and "review_order" not in everything


def test_dashboard_lists_the_frames_to_review_first(tmp_path):
    from pseudolabel.report.build import build_report

    exp, ds = experiment(tmp_path)
    (exp / "round_0" / "metrics.json").write_text(json.dumps({"round": 0, "n_boxes": 11, "n_pruned": 1,
                                                              "n_images": N_FRAMES, "n_negative_frames": 0}))
    page = build_report(exp, review_frames=2).read_text()
    assert "Review these frames first" in page
    top = review_order(ds, budget=2)
    for s in top:
        assert f"v / {s.frame.frame_index:06d}" in page
    assert len(list((exp / "report_files" / "review" / "round_0").glob("*.jpg"))) == 2


def test_the_simulated_reviewer_of_the_benchmark_corrects_to_the_ground_truth():
    import importlib.util

    spec = importlib.util.spec_from_file_location("review_simulation", REPO / "benchmarks" / "review_simulation.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ds = make_round()
    truth = [Box(image_id=2, xyxy=ball(1)), Box(image_id=3, xyxy=(ball(2)[0] + 5, 100, ball(2)[2] + 5, 108)),
             Box(image_id=4, xyxy=ball(3))]
    gt = Dataset(frames=[Frame(**{**f.__dict__}) for f in ds.frames], boxes=truth)
    frames = bench.choose_frames(ds, ordering="random", budget=3, seed=0)
    assert len({f.key for f in frames}) == 3
    chosen = [ds.frames[1], ds.frames[2], ds.frames[3]]
    reviewed = bench.simulate_reviewer(ds, gt, chosen)
    got = {(b.image_id, tuple(b.xyxy)) for b in reviewed.boxes}
    # frame 1: the ball kept as it was, the head deleted; frame 2: the ball moved onto the truth; frame 3: the ball
    # the round had only pruned is drawn
    assert got == {(2, ball(1)), (3, (ball(2)[0] + 5, 100, ball(2)[2] + 5, 108)), (4, ball(3))}
    rs = reviewed_set(ds, reviewed, tool="labelstudio", round=0, round_name="round 0", source_name="sim",
                      iou_threshold=0.3, centre_factor=1.0)
    assert sorted(b.extra["review"] for b in rs.boxes) == ["deleted", "deleted", "deleted", "kept", "kept", "moved"]


def test_review_order_takes_turns_across_videos():
    """A budget goes to every video's most informative frames in turns, not all to the most disputed video."""
    frames = [Frame(id=i + 1, file_name=f"a/{i:06d}.jpg", width=W, height=H, video_id="a", frame_index=i)
              for i in range(3)]
    frames.append(Frame(id=4, file_name="b/000000.jpg", width=W, height=H, video_id="b", frame_index=0))
    scores = (0.5, 0.55, 0.6, 0.8)  # mid-confidence 1.0, 0.9, 0.8 in video a; 0.4 in video b
    ds = Dataset(frames=frames,
                 boxes=[Box(image_id=i + 1, xyxy=(10, 10, 20, 20), score=s) for i, s in enumerate(scores)])
    ds.renumber()
    assert [s.frame.key for s in frame_scores(ds)][:2] == [("a", 0), ("a", 1)]
    assert [s.frame.key for s in review_order(ds, budget=2)] == [("a", 0), ("b", 0)]
    assert [s.frame.key for s in review_order(ds)] == [("a", 0), ("b", 0), ("a", 1), ("a", 2)]


def test_a_budget_is_spread_over_each_videos_time():
    """Two frames of one 10-frame video: the most informative of frames 0-4 and of frames 5-9, not the two most
    informative, which are neighbours."""
    frames = [Frame(id=i + 1, file_name=f"a/{i:06d}.jpg", width=W, height=H, video_id="a", frame_index=i)
              for i in range(10)]
    scores = (0.5, 0.52, 0.55, 0.9, 0.95, 0.99, 0.97, 0.6, 0.9, 0.99)  # mid-confidence: frames 0, 1, 2 highest
    ds = Dataset(frames=frames,
                 boxes=[Box(image_id=i + 1, xyxy=(10, 10, 20, 20), score=s) for i, s in enumerate(scores)])
    ds.renumber()
    assert [s.frame.key for s in frame_scores(ds)][:2] == [("a", 0), ("a", 1)]
    assert [s.frame.key for s in review_order(ds, budget=2)] == [("a", 0), ("a", 7)]
    assert [s.frame.key for s in review_order(ds)][:2] == [("a", 0), ("a", 1)]  # no budget: the plain order
