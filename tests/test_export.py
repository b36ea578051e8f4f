"""Review exports (YOLO, CVAT, Label Studio, FiftyOne): layouts, round trips, options, safety, CLI."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pseudolabel.coco import save_coco
from pseudolabel.export import FORMATS, MANIFEST_NAME, ExportError, export_dataset, read_export
from pseudolabel.records import KEPT, PRUNED, Box, Dataset, Frame

REPO = Path(__file__).resolve().parents[1]
W, H = 64, 48  # non-square, so swapped x/y or w/h show up
CATS = [{"id": 1, "name": "ball"}, {"id": 2, "name": "person"}]


def _write_jpeg(path: Path, width: int, height: int, seed: int) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def make_dataset(frames_dir: Path) -> Dataset:
    """4 frames over 2 videos: several boxes on one frame, a true negative, a frame with only a pruned box."""
    specs = [("vidA", 0), ("vidA", 5), ("vid-B.2", 3), ("vid-B.2", 4)]
    frames = []
    for i, (vid, idx) in enumerate(specs, start=1):
        name = f"{vid}/{idx:06d}.jpg"
        _write_jpeg(frames_dir / name, W, H, seed=i)
        frames.append(Frame(id=10 + i, file_name=name, width=W, height=H, video_id=vid, frame_index=idx,
                            timestamp=idx / 25))
    boxes = [
        Box(image_id=11, xyxy=(3.25, 4.5, 11.75, 12.0), score=0.91, round=0, source="ssd_mobilenet_v2_coco", id=7),
        Box(image_id=11, xyxy=(40.0, 30.5, 47.5, 38.25), score=0.77, round=1, source="student", id=8),
        Box(image_id=11, xyxy=(20.0, 2.0, 22.5, 4.0), score=0.35, round=1, source="student", id=9,
            decision=PRUNED, reason="size", extra={"pruned_round": 1}),
        # frame 12 (vidA, 5): no box at all
        Box(image_id=13, xyxy=(10.0, 20.0, 30.0, 44.0), score=0.66, round=0, source="ssd_mobilenet_v2_coco",
            category_id=2, id=3),
        Box(image_id=14, xyxy=(50.5, 1.0, 58.0, 9.5), score=0.42, round=1, source="student", id=4,
            category_id=2, decision=PRUNED, reason="isolated"),
    ]
    return Dataset(frames=frames, boxes=boxes, categories=[dict(c) for c in CATS], info={"round": 1})


@pytest.fixture
def ds_and_frames(tmp_path):
    frames_dir = tmp_path / "frames"
    return make_dataset(frames_dir), frames_dir


def canon(ds: Dataset, *, provenance: bool, include_pruned: bool = True):
    """{frame key: (w, h, sorted boxes)} with category names; provenance fields only if asked."""
    names = {c["id"]: c["name"] for c in ds.categories}
    key_of = {f.id: f.key for f in ds.frames}
    out = {f.key: (f.width, f.height, []) for f in ds.frames}
    for b in ds.boxes:
        if not include_pruned and not b.kept:
            continue
        row = (names[b.category_id], b.decision, *b.xyxy)
        if provenance:
            row += (b.reason, b.score, b.round, b.source)
        out[key_of[b.image_id]][2].append(row)
    return {k: (w, h, sorted(rows, key=lambda r: r[2:6])) for k, (w, h, rows) in out.items()}


def assert_same(got: Dataset, want: Dataset, *, include_pruned: bool, provenance: bool, atol: float):
    a = canon(got, provenance=provenance)
    b = canon(want, provenance=provenance, include_pruned=include_pruned)
    assert a.keys() == b.keys()
    for key in b:
        (wa, ha, ra), (wb, hb, rb) = a[key], b[key]
        assert (wa, ha) == (wb, hb), key
        assert len(ra) == len(rb), (key, ra, rb)
        for x, y in zip(ra, rb, strict=True):
            assert x[:2] == y[:2], (key, x, y)
            np.testing.assert_allclose(x[2:6], y[2:6], atol=atol, rtol=0, err_msg=str(key))
            if provenance:
                assert x[6] == y[6] and x[8:] == y[8:], (key, x, y)
                assert x[7] == pytest.approx(y[7], abs=1e-12)


# atol in pixels: YOLO writes 6 decimals of a normalised value; the others keep full floats.
TOL = {"yolo": 1e-6 * max(W, H), "cvat": 1e-9, "labelstudio": 1e-9, "fiftyone": 1e-9}
CARRIES_PROVENANCE = {"yolo": False, "cvat": True, "labelstudio": True, "fiftyone": True}


@pytest.mark.parametrize("include_pruned", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_format(fmt, include_pruned, ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    out = tmp_path / "out"
    manifest = export_dataset(ds, out, format=fmt, frames_dir=frames_dir, include_pruned=include_pruned)
    back = read_export(out, format=fmt)
    assert_same(back, ds, include_pruned=include_pruned, provenance=CARRIES_PROVENANCE[fmt], atol=TOL[fmt])
    assert {f.file_name for f in back.frames} == {f.file_name for f in ds.frames}
    n_pruned = sum(not b.kept for b in back.boxes)
    assert n_pruned == (2 if include_pruned else 0)
    assert manifest["complete"] and manifest["n_images"] == 4
    assert manifest["images"] == ("none" if fmt == "labelstudio" else "copy")
    assert manifest["n_negative_images"] == (1 if include_pruned else 2)
    assert manifest["n_boxes_written"] == (5 if include_pruned else 3)
    assert json.loads((out / MANIFEST_NAME).read_text()) == manifest


def test_yolo_layout(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    out = tmp_path / "y"
    export_dataset(ds, out, format="yolo", frames_dir=frames_dir, include_pruned=True)
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == ["vid-B.2__000003.jpg", "vid-B.2__000004.jpg", "vidA__000000.jpg", "vidA__000005.jpg"]
    assert (out / "images" / "vidA__000000.jpg").read_bytes() == (frames_dir / "vidA/000000.jpg").read_bytes()
    assert (out / "labels" / "vidA__000005.txt").read_text() == ""  # negative: empty label file
    assert (out / "classes.txt").read_text().split() == ["ball", "person", "ball_pruned", "person_pruned"]
    import yaml

    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "ball", 1: "person", 2: "ball_pruned", 3: "person_pruned"} and data["nc"] == 4
    assert Path(data["path"]) == out.resolve() and data["train"] == "images"
    rows = [r.split() for r in (out / "labels" / "vidA__000000.txt").read_text().splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "2"]
    cx, cy, w, h = map(float, rows[0][1:])
    assert (cx, cy, w, h) == pytest.approx(((3.25 + 11.75) / 2 / W, (4.5 + 12.0) / 2 / H, 8.5 / W, 7.5 / H), abs=1e-6)
    assert (out / "labels" / "vid-B.2__000004.txt").read_text().split()[0] == "3"


def test_cvat_zip_layout_and_attributes(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    out = tmp_path / "c"
    export_dataset(ds, out, format="cvat", frames_dir=frames_dir, include_pruned=True)
    with zipfile.ZipFile(out / "cvat_coco.zip") as zf:
        members = set(zf.namelist())
        coco = json.loads(zf.read("annotations/instances_default.json"))
    assert members == {"annotations/instances_default.json", "images/default/vidA__000000.jpg",
                       "images/default/vidA__000005.jpg", "images/default/vid-B.2__000003.jpg",
                       "images/default/vid-B.2__000004.jpg"}
    assert {im["file_name"] for im in coco["images"]} == {m.split("/")[-1] for m in members if m.startswith("images")}
    assert [c["name"] for c in coco["categories"]] == ["ball", "person"]
    pruned = [a for a in coco["annotations"] if a["attributes"]["decision"] == PRUNED]
    assert sorted(a["attributes"]["reason"] for a in pruned) == ["isolated", "size"]
    a = next(a for a in coco["annotations"] if a["id"] == 7)
    assert a["bbox"] == pytest.approx([3.25, 4.5, 8.5, 7.5]) and a["segmentation"] == []
    assert a["attributes"] == {"occluded": False, "rotation": 0.0, "decision": KEPT, "reason": "",
                               "score": "0.91", "round": "0", "source": "ssd_mobilenet_v2_coco"}
    labels = json.loads((out / "cvat_labels.json").read_text())
    assert [lb["name"] for lb in labels] == ["ball", "person"]
    assert [at["name"] for at in labels[0]["attributes"]] == ["decision", "reason", "score", "round", "source"]


def test_cvat_without_images_and_reviewer_drawn_box(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    out = tmp_path / "c"
    export_dataset(ds, out, format="cvat", frames_dir=frames_dir, images="none")
    with zipfile.ZipFile(out / "cvat_coco.zip") as zf:
        assert zf.namelist() == ["annotations/instances_default.json"]
        coco = json.loads(zf.read("annotations/instances_default.json"))
    # what CVAT gives back for a box a reviewer drew: blank text attributes
    coco["annotations"].append({"id": 99, "image_id": coco["images"][1]["id"], "category_id": 1,
                                "bbox": [1, 2, 3, 4], "segmentation": [], "area": 12, "iscrowd": 0,
                                "attributes": {"occluded": False, "decision": "kept", "reason": "",
                                               "score": "", "round": "", "source": ""}})
    path = tmp_path / "reviewed.json"
    path.write_text(json.dumps(coco))
    back = read_export(path, format="cvat")
    drawn = next(b for b in back.boxes if b.id == 99)
    assert (drawn.score, drawn.round, drawn.source, drawn.decision) == (1.0, 0, "cvat", KEPT)
    assert drawn.xyxy == pytest.approx((1, 2, 4, 6))
    assert "occluded" not in drawn.extra


def test_labelstudio_tasks(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    out = tmp_path / "ls"
    export_dataset(ds, out, format="labelstudio", frames_dir=frames_dir, include_pruned=True,
                   options={"url_prefix": "http://host:8081/"})
    assert not (out / "images").exists()  # default: frames are referenced, not copied
    tasks = json.loads((out / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == [
        "http://host:8081/vidA/000000.jpg", "http://host:8081/vidA/000005.jpg",
        "http://host:8081/vid-B.2/000003.jpg", "http://host:8081/vid-B.2/000004.jpg"]
    first = tasks[0]["predictions"][0]
    assert first["score"] == pytest.approx(0.35)  # lowest box score: doubtful frames sort first
    rects = [r for r in first["result"] if r["type"] == "rectanglelabels"]
    assert [r["value"]["rectanglelabels"] for r in rects] == [["ball"], ["ball"], ["ball_pruned"]]
    r = rects[0]
    assert (r["original_width"], r["original_height"]) == (W, H) and r["score"] == pytest.approx(0.91)
    v = r["value"]
    assert (v["x"], v["y"], v["width"], v["height"]) == pytest.approx(
        (3.25 / W * 100, 4.5 / H * 100, 8.5 / W * 100, 7.5 / H * 100))
    text = {t["id"]: t["value"]["text"] for t in first["result"] if t["type"] == "textarea"}
    assert text[rects[2]["id"]] == ["reason: size", "score: 0.35", "round: 1", "source: student"]
    assert tasks[1]["predictions"][0]["result"] == []  # negative
    config = (out / "labeling_config.xml").read_text()
    for name in ("ball", "person", "ball_pruned", "person_pruned"):
        assert f'<Label value="{name}"' in config
    assert 'perRegion="true"' in config


def test_labelstudio_reviewed_annotation_wins_and_copied_images(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    out = tmp_path / "ls"
    export_dataset(ds, out, format="labelstudio", frames_dir=frames_dir, images="copy")
    tasks = json.loads((out / "tasks.json").read_text())
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=images/vidA__000000.jpg"
    assert (out / "images" / "vidA__000000.jpg").is_file()
    # a reviewer deletes one box and moves the other; a URL-only task (no video_id) must still map back
    result = [r for r in tasks[0]["predictions"][0]["result"] if r["id"] == "pl7"]
    for r in result:
        r["value"]["x"] += 10.0
    tasks[0]["annotations"] = [{"result": [], "was_cancelled": True}, {"result": result}]
    del tasks[0]["data"]["video_id"], tasks[0]["data"]["frame_index"]
    (out / "tasks.json").write_text(json.dumps(tasks))
    back = read_export(out, format="labelstudio")
    first = next(f for f in back.frames if f.key == ("vidA", 0))
    got = [b for b in back.boxes if b.image_id == first.id]
    assert len(got) == 1 and got[0].source == "ssd_mobilenet_v2_coco"
    assert got[0].xyxy == pytest.approx((3.25 + 6.4, 4.5, 11.75 + 6.4, 12.0))
    preds = read_export(out, format="labelstudio", prefer="predictions")
    assert sum(b.image_id == next(f.id for f in preds.frames if f.key == ("vidA", 0)) for b in preds.boxes) == 2


def test_labelstudio_rotated_region_becomes_envelope():
    from pseudolabel.export.labelstudio import rect_to_xyxy

    # 20x10 px rectangle at (10, 10) rotated 90 degrees clockwise about its top-left corner
    got = rect_to_xyxy({"x": 10, "y": 10, "width": 20, "height": 10, "rotation": 90}, width=100, height=100)
    assert got == pytest.approx((0.0, 10.0, 10.0, 30.0))


def test_fiftyone_directory(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    out = tmp_path / "fo"
    export_dataset(ds, out, format="fiftyone", frames_dir=frames_dir, include_pruned=True, images="symlink")
    assert sorted(p.name for p in out.iterdir()) == ["data", "labels.json", MANIFEST_NAME]
    link = out / "data" / "vidA__000005.jpg"
    assert link.is_symlink() and link.resolve() == (frames_dir / "vidA/000005.jpg").resolve()
    coco = json.loads((out / "labels.json").read_text())
    assert {im["file_name"] for im in coco["images"]} == {p.name for p in (out / "data").iterdir()}
    pruned = [a for a in coco["annotations"] if a["decision"] == PRUNED]
    assert sorted((a["reason"], a["category_id"]) for a in pruned) == [("isolated", 2), ("size", 1)]
    assert next(a for a in pruned if a["reason"] == "size")["pruned_round"] == 1  # extras travel too


def test_fiftyone_loads_the_directory_when_installed(ds_and_frames, tmp_path):
    fo = pytest.importorskip("fiftyone")  # optional: not a dependency
    ds, frames_dir = ds_and_frames
    out = tmp_path / "fo"
    export_dataset(ds, out, format="fiftyone", frames_dir=frames_dir, include_pruned=True)
    loaded = fo.Dataset.from_dir(dataset_dir=str(out), dataset_type=fo.types.COCODetectionDataset,
                                 label_types="detections", label_field="pseudo")
    try:
        assert len(loaded) == 4
        detections = [d for s in loaded if s.pseudo for d in s.pseudo.detections]
        assert len(detections) == 5
        assert sorted(d.reason for d in detections if d.decision == PRUNED) == ["isolated", "size"]
    finally:
        loaded.delete()


def test_options_errors_and_overwrite(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    with pytest.raises(ExportError, match="unknown export format 'pascal'"):
        export_dataset(ds, tmp_path / "x", format="pascal", frames_dir=frames_dir)
    with pytest.raises(ExportError, match="images='symlink' is not supported"):
        export_dataset(ds, tmp_path / "x", format="cvat", frames_dir=frames_dir, images="symlink")
    with pytest.raises(ExportError, match="unknown option"):
        export_dataset(ds, tmp_path / "x", format="yolo", frames_dir=frames_dir, options={"url_prefix": "x"})
    out = tmp_path / "y"
    export_dataset(ds, out, format="yolo", frames_dir=frames_dir)
    with pytest.raises(ExportError, match="already holds an export"):
        export_dataset(ds, out, format="yolo", frames_dir=frames_dir)
    export_dataset(ds, out, format="yolo", frames_dir=frames_dir, overwrite=True, include_pruned=True)
    assert "ball_pruned" in (out / "classes.txt").read_text()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export_dataset(ds, foreign, format="yolo", frames_dir=frames_dir, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_paths_stay_inside_out_dir(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    evil = Frame(id=99, file_name="../../outside.jpg", width=W, height=H, video_id="x", frame_index=0)
    bad = Dataset(frames=ds.frames + [evil], boxes=ds.boxes, categories=ds.categories)
    with pytest.raises(ExportError, match="not a path inside the frames folder"):
        export_dataset(bad, tmp_path / "o1", format="yolo", frames_dir=frames_dir)
    # a hostile video id is made safe: the image still lands in images/
    _write_jpeg(frames_dir / "v/000001.jpg", W, H, seed=9)
    sneaky = Frame(id=98, file_name="v/000001.jpg", width=W, height=H, video_id="../../../etc", frame_index=1)
    ok = Dataset(frames=[sneaky], boxes=[], categories=ds.categories)
    before = {p for p in tmp_path.rglob("*")}
    export_dataset(ok, tmp_path / "o2", format="fiftyone", frames_dir=frames_dir)
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(tmp_path / "o2" in p.parents or p == tmp_path / "o2" for p in new)
    assert [p.name for p in (tmp_path / "o2" / "data").iterdir()] == ["etc__000001.jpg"]
    dup = Dataset(frames=ds.frames + [Frame(id=50, file_name="vidA/000000.jpg", width=W, height=H,
                                            video_id="vidA", frame_index=0)], boxes=[], categories=ds.categories)
    with pytest.raises(ExportError, match="share the key"):
        export_dataset(dup, tmp_path / "o3", format="yolo", frames_dir=frames_dir)


def test_yolo_reader_rejects_bad_rows(ds_and_frames, tmp_path):
    ds, frames_dir = ds_and_frames
    out = tmp_path / "y"
    export_dataset(ds, out, format="yolo", frames_dir=frames_dir)
    (out / "labels" / "vidA__000005.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ExportError, match=r"vidA__000005.txt:1: class 5 has no name"):
        read_export(out, format="yolo")
    (out / "labels" / "vidA__000005.txt").write_text("0 0.5 0.5 1.5 0.1\n")
    with pytest.raises(ExportError, match=r"vidA__000005.txt:1: w=1.5 is outside"):
        read_export(out, format="yolo")


# ---------------------------------------------------------------- CLI
def _compose(*overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _hand_built_experiment(root: Path) -> Dataset:
    from pseudolabel import layout

    exp = root / "runs" / "e"
    ds = make_dataset(exp / "frames")
    for k in (0, 1, 2):
        save_coco(ds, exp / f"round_{k}" / "annotations.json")
    for k in (0, 1):  # round 2 has its dataset but never finished
        layout.mark_done(exp / f"round_{k}", "evaluate")
    return ds


def test_cli_stage_export_latest_finished_round(tmp_path):
    from pseudolabel.__main__ import run, user_errors

    ds = _hand_built_experiment(tmp_path)
    cfg = _compose("stage=export", f"paths.root_dir={tmp_path}", "exp=e", "export.format=labelstudio",
                   "export.include_pruned=true")
    assert cfg.export.round is None and cfg.export.out_dir is None
    result = run(cfg)
    out = tmp_path / "runs" / "e" / "export" / "labelstudio_round_1"
    assert Path(result["out_dir"]) == out and result["round"] == 1 and result["experiment"] == "e"
    assert Path(result["source"]) == tmp_path / "runs" / "e" / "round_1" / "annotations.json"
    assert_same(read_export(out, format="labelstudio"), ds, include_pruned=True, provenance=True, atol=1e-9)

    explicit = run(_compose("stage=export", f"paths.root_dir={tmp_path}", "exp=e", "export.format=yolo",
                            "export.round=2", f"export.out_dir={tmp_path / 'custom'}"))
    assert explicit["round"] == 2 and (tmp_path / "custom" / "data.yaml").is_file()

    for overrides, message in [
        (("export.format=voc",), "unknown export format 'voc'"),
        (("export.round=7",), "round 7 of experiment 'e' has no dataset"),
        (("exp=nothing",), "experiment 'nothing' has no finished round"),
    ]:
        cfg = _compose("stage=export", f"paths.root_dir={tmp_path}", "exp=e", *overrides)
        with pytest.raises(user_errors()) as info:
            run(cfg)
        assert message in str(info.value) and "\n" not in str(info.value)
