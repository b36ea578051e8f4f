"""Evaluation: fails when boxes are shifted, dropped, duplicated or mixed up between xyxy and xywh."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pseudolabel.boxes import xyxy_to_xywh
from pseudolabel.coco import load_coco, save_coco
from pseudolabel.evaluate import evaluate, greedy_match, main, summarise
from pseudolabel.gt_readers import read_yolo_dir
from pseudolabel.records import Box, Dataset, Frame

# (video_id, frame_index) -> xyxy ground-truth boxes; (v1, 2) is a negative frame.
GT = {
    ("v1", 0): [(100.0, 100.0, 110.0, 112.0)],
    ("v1", 1): [(200.0, 50.0, 212.0, 60.0), (20.0, 300.0, 30.0, 310.0)],
    ("v1", 2): [],
    ("v2", 0): [(400.0, 400.0, 408.0, 409.0)],
    ("v2", 5): [(5.0, 6.0, 15.0, 18.0), (600.0, 10.0, 611.0, 21.0), (300.0, 300.0, 310.0, 310.0)],
}
N_GT = sum(len(b) for b in GT.values())  # 7


def make(frames: dict, *, first_id: int = 1, reverse: bool = False, score: float = 1.0) -> Dataset:
    """Dataset from {key: [xyxy, ...]}; ``first_id``/``reverse`` make image ids differ between files."""
    ds = Dataset()
    keys = sorted(frames, reverse=reverse)
    for i, key in enumerate(keys):
        fid = first_id + i
        ds.frames.append(Frame(id=fid, file_name=f"{key[0]}/{key[1]:06d}.jpg", width=640, height=480,
                               video_id=key[0], frame_index=key[1]))
        for xyxy in frames[key]:
            ds.boxes.append(Box(image_id=fid, xyxy=tuple(xyxy), score=score, id=len(ds.boxes) + 1))
    return ds


def shifted(frames: dict, *, by_width: float = 1.0) -> dict:
    return {k: [(x1 + by_width * (x2 - x1), y1, x2 + by_width * (x2 - x1), y2) for x1, y1, x2, y2 in v]
            for k, v in frames.items()}


def test_perfect_predictions():
    m = evaluate(make(GT, first_id=100, reverse=True), make(GT))
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    assert (m["tp"], m["fp"], m["fn"]) == (N_GT, 0, 0)
    assert m["ap50"] == pytest.approx(1.0) and m["ap"] == pytest.approx(1.0)
    assert (m["n_images"], m["n_pred"], m["n_gt"]) == (5, N_GT, N_GT)


def test_shift_by_one_box_width_gives_no_true_positive():
    m = evaluate(make(shifted(GT)), make(GT))
    assert (m["tp"], m["fp"], m["fn"]) == (0, N_GT, N_GT)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert m["ap50"] == 0.0 and m["ap"] == 0.0


def test_small_shift_depends_on_iou_threshold():
    # A 10x10 box moved 4 px: IoU = 60 / 140 = 0.43.
    gt = {("v", 0): [(0.0, 0.0, 10.0, 10.0)]}
    pred = {("v", 0): [(4.0, 0.0, 14.0, 10.0)]}
    assert evaluate(make(pred), make(gt), iou_threshold=0.5)["tp"] == 0
    m = evaluate(make(pred), make(gt), iou_threshold=0.4)
    assert m["tp"] == 1 and m["ap_at_iou"] == pytest.approx(1.0) and m["ap50"] == 0.0
    assert evaluate(make(pred), make(gt), iou_threshold=0.45)["tp"] == 0


def test_duplicated_predictions_halve_precision():
    dup = {k: v + v for k, v in GT.items()}
    m = evaluate(make(dup), make(GT))
    assert (m["tp"], m["fp"], m["fn"]) == (N_GT, N_GT, 0)
    assert m["precision"] == 0.5 and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(2 / 3)


def test_dropping_boxes_lowers_recall():
    flat = [(k, b) for k in sorted(GT) for b in GT[k]]
    kept = {k: [] for k in GT}
    for k, b in flat[::2]:  # 4 of 7
        kept[k].append(b)
    m = evaluate(make(kept), make(GT))
    assert (m["tp"], m["fp"], m["fn"]) == (4, 0, 3)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(4 / 7)
    assert m["ap50"] == pytest.approx(4 / 7, abs=0.01)  # 101-point interpolation


def test_half_recall_on_even_split():
    gt = {("v", i): [(10.0 * i, 0.0, 10.0 * i + 8, 8.0)] for i in range(4)}
    pred = {k: (v if k[1] % 2 == 0 else []) for k, v in gt.items()}
    m = evaluate(make(pred), make(gt))
    assert m["recall"] == 0.5 and m["precision"] == 1.0


def test_round_trip_through_coco_files_stays_perfect(tmp_path: Path):
    save_coco(make(GT, first_id=50), tmp_path / "pred.json")
    save_coco(make(GT), tmp_path / "gt.json")
    raw = json.loads((tmp_path / "pred.json").read_text())
    assert raw["annotations"][0]["bbox"] == list(xyxy_to_xywh([make(GT, first_id=50).boxes[0].xyxy])[0])
    m = evaluate(load_coco(tmp_path / "pred.json"), load_coco(tmp_path / "gt.json"))
    assert (m["tp"], m["fp"], m["fn"]) == (N_GT, 0, 0) and m["ap50"] == pytest.approx(1.0)


def test_xyxy_written_as_xywh_is_a_miss(tmp_path: Path):
    ds = make(GT)
    data = json.loads(save_coco(ds, tmp_path / "p.json").read_text())
    for ann, box in zip(data["annotations"], ds.boxes, strict=True):
        ann["bbox"] = list(box.xyxy)  # the bug: corners where COCO wants width/height
    (tmp_path / "p.json").write_text(json.dumps(data))
    m = evaluate(load_coco(tmp_path / "p.json"), ds)
    assert m["tp"] == 0 and m["fn"] == N_GT


def test_frames_joined_by_key_and_missing_frames_reported():
    pred = {k: v for k, v in GT.items() if k != ("v2", 5)}
    pred[("v9", 0)] = [(0.0, 0.0, 5.0, 5.0)]  # no ground truth for this frame: ignored
    m = evaluate(make(pred, first_id=3), make(GT))
    assert m["n_images"] == 4 and m["n_gt_frames_missing_in_pred"] == 1 and m["n_pred_frames_missing_in_gt"] == 1
    assert (m["tp"], m["fp"], m["fn"]) == (4, 0, 0)


def test_false_positive_on_negative_frame():
    pred = dict(GT)
    pred[("v1", 2)] = [(1.0, 1.0, 9.0, 9.0)]
    m = evaluate(make(pred), make(GT))
    assert (m["tp"], m["fp"], m["fn"]) == (N_GT, 1, 0)
    assert m["precision"] == pytest.approx(7 / 8)


def test_per_video_breakdown():
    pred = dict(GT)
    pred[("v2", 5)] = [GT[("v2", 5)][0], (100.0, 100.0, 120.0, 120.0)]  # 1 tp, 1 fp, 2 fn
    m = evaluate(make(pred), make(GT))
    v1, v2 = m["per_video"]["v1"], m["per_video"]["v2"]
    assert (v1["tp"], v1["fp"], v1["fn"], v1["n_images"]) == (3, 0, 0, 3)
    assert (v1["precision"], v1["recall"]) == (1.0, 1.0)
    assert (v2["tp"], v2["fp"], v2["fn"], v2["n_images"]) == (2, 1, 2, 2)
    assert v2["precision"] == pytest.approx(2 / 3) and v2["recall"] == pytest.approx(0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (5, 1, 2)
    assert list(m["per_video"]) == ["v1", "v2"]


def test_score_order_drives_ap_not_counts():
    gt = {("v", 0): [(0.0, 0.0, 10.0, 10.0)]}
    fp_first = make({("v", 0): [(50.0, 50.0, 60.0, 60.0), (0.0, 0.0, 10.0, 10.0)]})
    fp_first.boxes[0].score, fp_first.boxes[1].score = 0.9, 0.5
    m = evaluate(fp_first, make(gt))
    assert (m["tp"], m["fp"], m["precision"]) == (1, 1, 0.5)
    assert m["ap50"] == pytest.approx(0.5)
    fp_first.boxes[0].score, fp_first.boxes[1].score = 0.5, 0.9
    assert evaluate(fp_first, make(gt))["ap50"] == pytest.approx(1.0)


def test_pruned_predictions_ignored_unless_asked():
    pred = make(GT)
    pred.boxes[0].prune("test")
    assert evaluate(pred, make(GT))["fn"] == 1
    m = evaluate(pred, make(GT), kept_only=False)
    assert (m["tp"], m["fn"]) == (N_GT, 0)


def test_no_predictions_and_no_ground_truth():
    m = evaluate(make({k: [] for k in GT}), make(GT))
    assert (m["precision"], m["recall"], m["f1"], m["ap"], m["ap50"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert m["fn"] == N_GT
    m = evaluate(make(GT), make({k: [] for k in GT}))
    assert m["ap"] is None and m["ap50"] is None and m["fp"] == N_GT and m["precision"] == 0.0
    assert "n/a" in summarise(m)


def test_duplicate_frame_key_rejected():
    ds = make(GT)
    ds.frames[1].frame_index = ds.frames[0].frame_index
    with pytest.raises(ValueError, match="appears twice"):
        evaluate(ds, make(GT))


def test_greedy_match_by_score():
    gt = [(0, 0, 10, 10), (20, 0, 30, 10)]
    pred = [(1, 0, 11, 10), (0, 0, 10, 10), (20, 0, 30, 10), (100, 100, 110, 110)]
    tp, idx = greedy_match(pred, [0.3, 0.9, 0.8, 0.95], gt)
    # The exact copy (score 0.9) takes gt 0 first; the 0.3 near-copy is then a duplicate.
    assert tp.tolist() == [False, True, True, False]
    assert idx.tolist() == [-1, 0, 1, -1]
    tp, idx = greedy_match(np.zeros((0, 4)), [], gt)
    assert tp.shape == (0,) and idx.shape == (0,)
    tp, idx = greedy_match(pred, [1, 1, 1, 1], [])
    assert idx.tolist() == [-1, -1, -1, -1]


def test_greedy_match_takes_best_iou_free_gt():
    gt = [(0, 0, 10, 10), (2, 0, 12, 10)]
    tp, idx = greedy_match([(2, 0, 12, 10)], [1.0], gt)
    assert idx.tolist() == [1]


def test_summarise_mentions_numbers():
    s = summarise(evaluate(make(shifted(GT, by_width=0.0)), make(GT)))
    assert "P=1.000" in s and "R=1.000" in s and "tp=7" in s and "5 images" in s


def test_cli_writes_json(tmp_path: Path, capsys):
    import cv2

    images = tmp_path / "valid" / "images"
    images.mkdir(parents=True)
    (tmp_path / "valid" / "labels").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(images / f"{name}.png"), np.zeros((100, 200, 3), np.uint8))
    (tmp_path / "valid" / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.2\n")
    gt = read_yolo_dir(images)
    pred = Dataset(frames=[Frame(1, "b.png", 200, 100, "b", 0), Frame(2, "a.png", 200, 100, "a", 0)],
                   boxes=[Box(2, (90.0, 40.0, 110.0, 60.0), score=0.8, id=1),
                          Box(1, (0.0, 0.0, 10.0, 10.0), score=0.3, id=2)])
    save_coco(pred, tmp_path / "pred.json")
    rc = main(["--pred", str(tmp_path / "pred.json"), "--gt", str(images), "--out", str(tmp_path / "m.json")])
    assert rc == 0
    out = json.loads((tmp_path / "m.json").read_text())
    assert (out["tp"], out["fp"], out["fn"], out["n_images"]) == (1, 1, 0, 2)
    assert out["per_video"]["a"]["tp"] == 1 and out["per_video"]["b"]["fp"] == 1
    assert out["n_gt"] == len(gt.boxes) == 1
    printed = capsys.readouterr().out
    assert "P=0.500" in printed and "R=1.000" in printed
    assert main(["--pred", str(tmp_path / "missing.json"), "--gt", str(images)]) == 2


def test_centre_distance_match_counts_small_offsets_that_iou_misses():
    from pseudolabel.evaluate import greedy_match

    gt = [[100, 100, 108, 108], [200, 200, 208, 208]]
    pred = [[103, 103, 111, 111],   # centre 4.24 px away: IoU 0.29, a miss at IoU 0.5
            [201, 201, 209, 209],   # 1.41 px away
            [300, 300, 308, 308]]   # far from both
    scores = [0.9, 0.8, 0.7]
    tp_iou, _ = greedy_match(pred, scores, gt, iou_threshold=0.5)
    assert tp_iou.tolist() == [False, True, False]
    tp, idx = greedy_match(pred, scores, gt, max_centre_distance=4.0)
    assert tp.tolist() == [False, True, False] and idx.tolist() == [-1, 1, -1]
    tp, idx = greedy_match(pred, scores, gt, max_centre_distance=5.0)
    assert tp.tolist() == [True, True, False] and idx.tolist() == [0, 1, -1]
    # one-to-one: a second prediction on the same ball is a false positive
    tp, _ = greedy_match([[100, 100, 108, 108], [101, 100, 109, 108]], [0.5, 0.9], [gt[0]], max_centre_distance=4)
    assert tp.tolist() == [False, True]


def test_pruned_truth_by_reason_counts_removed_balls_and_removed_false_boxes():
    from pseudolabel.evaluate import pruned_truth_by_reason
    from pseudolabel.records import Box, Dataset, Frame

    frames = [Frame(id=i, file_name=f"{i}.jpg", width=100, height=100, video_id="v", frame_index=i) for i in (1, 2)]
    gt = Dataset(frames=frames, boxes=[Box(image_id=1, xyxy=(10, 10, 20, 20), id=1),
                                       Box(image_id=2, xyxy=(50, 50, 60, 60), id=2)])
    pred = Dataset(frames=frames, boxes=[
        Box(image_id=1, xyxy=(10, 10, 20, 20), score=0.9, id=1),                                  # kept, found
        Box(image_id=1, xyxy=(11, 10, 21, 20), score=0.8, id=2, decision="pruned", reason="overlap"),  # duplicate
        Box(image_id=1, xyxy=(80, 80, 90, 90), score=0.8, id=3, decision="pruned", reason="aspect"),   # no ball
        Box(image_id=2, xyxy=(50, 51, 60, 61), score=0.6, id=4, decision="pruned", reason="aspect"),   # lost ball
    ])
    assert pruned_truth_by_reason(pred, gt) == {"aspect": {"true": 1, "false": 1}, "overlap": {"true": 0, "false": 1}}
    assert pruned_truth_by_reason(pred, gt, max_centre_distance=0.5)["aspect"] == {"true": 0, "false": 2}


def test_kept_truth_by_provenance_splits_true_and_false_kept_boxes_by_what_kept_them():
    from pseudolabel.evaluate import kept_truth_by_provenance
    from pseudolabel.records import Box, Dataset, Frame, provenance

    frames = [Frame(id=i, file_name=f"{i}.jpg", width=100, height=100, video_id="v", frame_index=i) for i in (1, 2, 3)]
    gt = Dataset(frames=frames, boxes=[Box(image_id=1, xyxy=(10, 10, 20, 20), id=1),
                                       Box(image_id=2, xyxy=(50, 50, 60, 60), id=2)])
    carried = {"first_round": 1}
    pred = Dataset(frames=frames, boxes=[
        Box(image_id=1, xyxy=(10, 10, 20, 20), score=0.9, round=2, source="student", id=1, extra=dict(carried)),
        Box(image_id=1, xyxy=(11, 10, 21, 20), score=0.8, round=2, source="student", id=2, extra=dict(carried)),
        Box(image_id=2, xyxy=(50, 51, 60, 61), score=0.8, round=2, source="student", id=3,
            extra={"seed": "moving_track", "first_round": 2}),
        Box(image_id=3, xyxy=(80, 80, 90, 90), score=0.8, round=2, source="track_confirmed", id=4,
            extra={"first_round": 2}),
        Box(image_id=3, xyxy=(30, 30, 40, 40), score=0.8, round=0, source="ssd", id=5),
        Box(image_id=2, xyxy=(20, 20, 30, 30), score=0.8, round=2, source="student", id=6, decision="pruned",
            reason="aspect"),
    ])
    assert provenance(pred.boxes[2]) == "student/moving_track/new" and provenance(pred.boxes[4]) == "ssd"
    assert provenance(pred.boxes[2], round=3) == "student/moving_track"  # carried into a later round: not new there
    assert kept_truth_by_provenance(pred, gt) == {
        "ssd": {"true": 0, "false": 1},
        "student": {"true": 1, "false": 1},  # the second box on one ball is a false positive, as evaluate counts it
        "student/moving_track/new": {"true": 1, "false": 0},
        "track_confirmed/new": {"true": 0, "false": 1},
    }
