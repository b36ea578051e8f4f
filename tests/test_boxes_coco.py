import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from pseudolabel.boxes import cxcywh_to_xyxy, iou_matrix, nms_keep, xywh_to_xyxy, xyxy_to_xywh
from pseudolabel.coco import CocoFormatError, from_coco, load_coco, save_coco, to_coco
from pseudolabel.records import Box, Dataset, Frame


def make_ds():
    frames = [Frame(id=1, file_name="v/000000.jpg", width=100, height=80, video_id="v", frame_index=0),
              Frame(id=2, file_name="v/000001.jpg", width=100, height=80, video_id="v", frame_index=1, timestamp=0.04),
              Frame(id=3, file_name="v/000002.jpg", width=100, height=80, video_id="v", frame_index=2)]
    boxes = [Box(image_id=1, xyxy=(10.0, 20.0, 30.0, 25.0), score=0.9, source="teacher", id=1),
             Box(image_id=1, xyxy=(50.5, 5.0, 60.0, 15.5), score=0.8, source="teacher", id=2),
             Box(image_id=2, xyxy=(0.0, 0.0, 4.0, 8.0), score=0.75, round=1, source="student", id=3,
                 decision="pruned", reason="too_small", extra={"track_id": 7})]
    return Dataset(frames=frames, boxes=boxes)


def test_conversions_are_exact_and_inverse():
    xyxy = np.array([[10, 20, 30, 25], [1.5, 2.5, 4.0, 9.0]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), [[10, 20, 20, 5], [1.5, 2.5, 2.5, 6.5]])
    np.testing.assert_array_equal(xywh_to_xyxy(xyxy_to_xywh(xyxy)), xyxy)
    np.testing.assert_array_equal(cxcywh_to_xyxy([[50, 40, 10, 20]]), [[45, 30, 55, 50]])
    assert xyxy_to_xywh([]).shape == (0, 4)


def test_iou_and_nms_order_independent():
    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], dtype=float)
    iou = iou_matrix(a, a)
    assert iou[0, 1] == pytest.approx(50 / 150)
    assert iou[0, 2] == 0
    scores = np.array([0.5, 0.9, 0.7])
    kept = set(nms_keep(a, scores, iou_threshold=0.3).tolist())
    assert kept == {1, 2}
    perm = [2, 0, 1]
    kept_perm = {perm[i] for i in nms_keep(a[perm], scores[perm], iou_threshold=0.3).tolist()}
    assert kept_perm == kept


def test_coco_roundtrip_keeps_every_box_and_provenance(tmp_path):
    ds = make_ds()
    path = save_coco(ds, tmp_path / "a.json")
    back = load_coco(path)
    assert [b.xyxy for b in back.boxes] == [b.xyxy for b in ds.boxes]
    assert [(b.id, b.image_id, b.score, b.round, b.source, b.decision, b.reason) for b in back.boxes] == \
        [(b.id, b.image_id, b.score, b.round, b.source, b.decision, b.reason) for b in ds.boxes]
    assert back.boxes[2].extra == {"track_id": 7}
    assert [f.key for f in back.frames] == [("v", 0), ("v", 1), ("v", 2)]
    assert back.frames[1].timestamp == 0.04


def test_coco_file_is_xywh_and_loads_in_pycocotools(tmp_path):
    path = save_coco(make_ds(), tmp_path / "a.json")
    raw = json.loads(path.read_text())
    assert raw["annotations"][0]["bbox"] == [10.0, 20.0, 20.0, 5.0]
    assert raw["annotations"][0]["area"] == 100.0
    for key in ("id", "iscrowd", "category_id", "score", "round", "source", "decision", "reason"):
        assert key in raw["annotations"][0]
    coco = COCO(str(path))
    # two boxes on image 1: none orphaned (the reference assigned an image per annotation)
    assert sorted(coco.getAnnIds(imgIds=[1])) == [1, 2]
    assert coco.getAnnIds(imgIds=[3]) == []  # negative frame kept
    assert len(coco.getImgIds()) == 3


def test_kept_only_export_drops_pruned_boxes():
    data = to_coco(make_ds(), kept_only=True)
    assert [a["id"] for a in data["annotations"]] == [1, 2]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "invalid bbox"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, float("nan"), 3]), "invalid bbox"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 3]), "invalid bbox"),
    (lambda d: d["annotations"][0].update(image_id=99), "unknown image_id"),
    (lambda d: d["images"][1].update(id=1), "repeats image id"),
    (lambda d: d.pop("images"), "not a COCO file"),
])
def test_malformed_coco_names_the_entry(mutate, message):
    data = to_coco(make_ds())
    mutate(data)
    with pytest.raises(CocoFormatError, match=message):
        from_coco(data, source_name="x.json")


def test_invalid_json_names_file_and_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"images": [\n  1,\n  ]}')
    with pytest.raises(CocoFormatError, match=r"bad.json: invalid JSON at line 3"):
        load_coco(p)
