"""Ground-truth readers: exact boxes, negatives kept, malformed input named by file and line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pseudolabel.coco import save_coco
from pseudolabel.gt_readers import (GroundTruthError, load_ground_truth, read_coco_gt, read_tracknet_csv,
                                    read_yolo_dir)
from pseudolabel.records import Box, Dataset, Frame

def _image(path: Path, width: int, height: int) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))


@pytest.fixture
def yolo_dir(tmp_path: Path) -> Path:
    root = tmp_path / "valid"
    _image(root / "images" / "a.png", 200, 100)
    _image(root / "images" / "b.png", 200, 100)  # no label file: a negative
    _image(root / "images" / "sub" / "c.jpg", 64, 32)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.2\n1 0.25 0.25 0.5 0.5\n\n0 0.05 0.9 0.1 0.2")
    (root / "labels" / "sub").mkdir()
    (root / "labels" / "sub" / "c.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    return root / "images"


def test_yolo_exact_boxes_and_frames(yolo_dir: Path):
    ds = read_yolo_dir(yolo_dir)
    assert [(f.id, f.file_name, f.width, f.height, f.video_id, f.frame_index) for f in ds.frames] == [
        (1, "a.png", 200, 100, "a", 0), (2, "b.png", 200, 100, "b", 0), (3, "sub/c.jpg", 64, 32, "c", 0)]
    assert [(b.image_id, b.xyxy) for b in ds.boxes] == [
        (1, (90.0, 40.0, 110.0, 60.0)), (1, (0.0, 80.0, 20.0, 100.0)), (3, (24.0, 8.0, 40.0, 24.0))]
    assert {(b.source, b.score, b.category_id, b.decision) for b in ds.boxes} == {("ground_truth", 1.0, 1, "kept")}
    assert ds.boxes_by_image()[2] == []


def test_yolo_class_filter(yolo_dir: Path):
    ds = read_yolo_dir(yolo_dir, class_ids=(1,))
    assert [(b.image_id, b.xyxy) for b in ds.boxes] == [(1, (0.0, 0.0, 100.0, 50.0))]
    assert len(read_yolo_dir(yolo_dir, class_ids=(0, 1)).boxes) == 4
    assert len(read_yolo_dir(yolo_dir, class_ids=(0, 1)).frames) == 3


def test_yolo_explicit_labels_dir(yolo_dir: Path, tmp_path: Path):
    other = tmp_path / "other_labels"
    other.mkdir()
    (other / "b.txt").write_text("0 0.5 0.5 1 1\n")
    ds = read_yolo_dir(yolo_dir, other)
    assert [(b.image_id, b.xyxy) for b in ds.boxes] == [(2, (0.0, 0.0, 200.0, 100.0))]


@pytest.mark.parametrize("row, words", [
    ("0 0.5 0.5 0.1", "5 fields"),
    ("0 0.5 0.5 0.1 0.1 0.3", "5 fields"),
    ("0 abc 0.5 0.1 0.1", "non-numeric"),
    ("0 1.5 0.5 0.1 0.1", "outside [0, 1]"),
    ("0 0.5 0.5 0.1 1.01", "outside [0, 1]"),
    ("0 nan 0.5 0.1 0.1", "not finite"),
    ("0 0.5 0.5 -0.1 0.1", "negative"),
    ("0.5 0.5 0.5 0.1 0.1", "class"),
])
def test_yolo_malformed_row_names_file_and_line(yolo_dir: Path, row: str, words: str):
    label = yolo_dir.parent / "labels" / "b.txt"
    label.write_text(f"0 0.5 0.5 0.1 0.1\n{row}\n")
    with pytest.raises(GroundTruthError) as err:
        read_yolo_dir(yolo_dir)
    assert f"{label}:2:" in str(err.value)
    assert words in str(err.value)


def test_yolo_missing_folders(tmp_path: Path):
    with pytest.raises(GroundTruthError, match="images folder not found"):
        read_yolo_dir(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    with pytest.raises(GroundTruthError, match="labels folder not found"):
        read_yolo_dir(tmp_path / "images")


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_tracknet_boxes_centred_and_negatives(tmp_path: Path):
    p = _csv(tmp_path / "Label.csv", "File Name,Visibility Class,X,Y,Trajectory Pattern\n"
             "0000.jpg,1,100,200,0\n0001.jpg,0,0,0,0\n0002.jpg,2,50.5,60,1\n")
    ds = read_tracknet_csv(p, video_id="clip1", box_size=10, image_size=(1280, 720))
    assert [(f.id, f.frame_index, f.file_name, f.video_id, f.width, f.height) for f in ds.frames] == [
        (1, 0, "0000.jpg", "clip1", 1280, 720), (2, 1, "0001.jpg", "clip1", 1280, 720),
        (3, 2, "0002.jpg", "clip1", 1280, 720)]
    assert [(b.image_id, b.xyxy) for b in ds.boxes] == [(1, (95.0, 195.0, 105.0, 205.0)),
                                                         (3, (45.5, 55.0, 55.5, 65.0))]
    assert ds.boxes_by_image()[2] == []
    centres = (ds.xyxy()[:, :2] + ds.xyxy()[:, 2:]) / 2
    np.testing.assert_allclose(centres, [[100, 200], [50.5, 60]])


def test_tracknet_header_variants_and_row_order(tmp_path: Path):
    p = _csv(tmp_path / "l.csv", "file name , VISIBILITY, x-coordinate,y-coordinate\n"
             "first.jpg,1,10,10\nsecond.jpg,0,,\nthird.jpg,1,30,40\n")
    ds = read_tracknet_csv(p, video_id="v")
    assert [f.frame_index for f in ds.frames] == [0, 1, 2]
    assert [(b.image_id, b.xyxy) for b in ds.boxes] == [(1, (4.0, 4.0, 16.0, 16.0)), (3, (24.0, 34.0, 36.0, 46.0))]
    assert (ds.frames[0].width, ds.frames[0].height) == (0, 0)


def test_tracknet_frame_index_from_digits(tmp_path: Path):
    p = _csv(tmp_path / "l.csv", "File Name,Visibility Class,X,Y\nframe_0017.jpg,0,0,0\nframe_0005.jpg,1,1,1\n")
    assert [f.frame_index for f in read_tracknet_csv(p, video_id="v").frames] == [17, 5]


@pytest.mark.parametrize("rows, line, words", [
    ("0000.jpg,1,10,10\n0001.jpg,yes,10,10\n", 3, "visibility"),
    ("0000.jpg,1,,\n", 2, "numeric X, Y"),
    ("0000.jpg,1,nan,3\n", 2, "finite"),
    ("0000.jpg,1\n", 2, "columns"),
    ("0000.jpg,0,0,0\n0000.png,0,0,0\n", 3, "repeats line 2"),
])
def test_tracknet_malformed_rows(tmp_path: Path, rows: str, line: int, words: str):
    p = _csv(tmp_path / "bad.csv", "File Name,Visibility Class,X,Y\n" + rows)
    with pytest.raises(GroundTruthError) as err:
        read_tracknet_csv(p, video_id="v")
    assert f"{p}:{line}:" in str(err.value)
    assert words in str(err.value)


def test_tracknet_missing_column(tmp_path: Path):
    p = _csv(tmp_path / "bad.csv", "File Name,X,Y\n0000.jpg,1,1\n")
    with pytest.raises(GroundTruthError, match=r"bad\.csv:1: no 'visibilityclass' column"):
        read_tracknet_csv(p, video_id="v")


def _coco_file(tmp_path: Path) -> Path:
    ds = Dataset(frames=[Frame(7, "x.jpg", 100, 50, "vid", 3), Frame(9, "y.jpg", 100, 50, "vid", 4)],
                 boxes=[Box(7, (10, 10, 20, 30), score=0.4, id=1, category_id=37, source="teacher"),
                        Box(7, (50, 10, 60, 20), id=2, category_id=1),
                        Box(7, (0, 0, 5, 5), id=3, category_id=37, decision="pruned")])
    return save_coco(ds, tmp_path / "gt.json")


def test_coco_gt_normalises_boxes(tmp_path: Path):
    ds = read_coco_gt(_coco_file(tmp_path))
    assert [f.key for f in ds.frames] == [("vid", 3), ("vid", 4)]
    assert [(b.image_id, b.xyxy) for b in ds.boxes] == [(7, (10.0, 10.0, 20.0, 30.0)), (7, (50.0, 10.0, 60.0, 20.0))]
    assert {(b.source, b.score, b.category_id, b.decision) for b in ds.boxes} == {("ground_truth", 1.0, 1, "kept")}
    only_37 = read_coco_gt(tmp_path / "gt.json", category_ids=[37])
    assert [b.xyxy for b in only_37.boxes] == [(10.0, 10.0, 20.0, 30.0)]


def test_coco_gt_bad_file(tmp_path: Path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(GroundTruthError, match="bad.json"):
        read_coco_gt(tmp_path / "bad.json")


def test_load_ground_truth_dispatch(tmp_path: Path, yolo_dir: Path):
    coco = _coco_file(tmp_path)
    assert len(load_ground_truth(str(coco)).boxes) == 2
    assert len(load_ground_truth({"format": "coco", "path": str(coco), "category_ids": [1]}).boxes) == 1
    assert len(load_ground_truth(yolo_dir).boxes) == 3
    assert len(load_ground_truth({"format": "yolo", "images_dir": str(yolo_dir), "class_ids": [1]}).boxes) == 1
    csv = _csv(tmp_path / "l.csv", "File Name,Visibility Class,X,Y\n0003.jpg,1,10,20\n")
    ds = load_ground_truth({"format": "tracknet", "path": "l.csv", "video_id": "g1", "box_size": 4,
                            "image_size": [64, 48]}, base_dir=tmp_path)
    assert ds.frames[0].key == ("g1", 3) and ds.boxes[0].xyxy == (8.0, 18.0, 12.0, 22.0)
    assert (ds.frames[0].width, ds.frames[0].height) == (64, 48)
    with pytest.raises(GroundTruthError, match="video_id"):
        load_ground_truth(str(csv))
    with pytest.raises(GroundTruthError, match="unknown ground-truth format"):
        load_ground_truth({"format": "voc", "path": str(coco)})
    with pytest.raises(GroundTruthError, match="unknown keys"):
        load_ground_truth({"format": "coco", "path": str(coco), "class_ids": [0]})


def test_load_ground_truth_accepts_omegaconf(yolo_dir: Path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"gt": {"format": "yolo", "path": str(yolo_dir), "class_ids": [0, 1]}})
    assert len(load_ground_truth(cfg.gt).boxes) == 4


def test_real_football_valid_set(shared_dir: Path):
    images = shared_dir / "data" / "football" / "valid" / "images"
    if not images.is_dir():
        pytest.skip(f"shared football data not found at {images}")
    ds = read_yolo_dir(images)
    assert len(ds.frames) == 49
    assert 20 <= len(ds.boxes) <= 100  # about one ball per image
    assert {(f.width, f.height) for f in ds.frames} == {(1280, 1280)}
    sizes = ds.xyxy()[:, 2:] - ds.xyxy()[:, :2]
    assert np.all(sizes > 2) and np.all(sizes < 40)  # tiny balls, in pixels
    assert len({f.key for f in ds.frames}) == 49
