"""Detector replicas side by side: same detections as one replica, order kept, threads restored."""
import threading
import time

import numpy as np
import pytest
import torch

from pseudolabel.detectors.accel.side_by_side import SideBySide
from tests.detection_checks import assert_same_detections


def test_map_keeps_order_and_uses_each_replica_from_one_thread_at_a_time():
    made = []
    busy: dict[int, int] = {}
    threads_seen = set()
    lock = threading.Lock()

    def make():
        made.append(object())
        return made[-1]

    def fn(replica, chunk):
        with lock:
            busy[id(replica)] = busy.get(id(replica), 0) + 1
            assert busy[id(replica)] == 1, "a replica ran in two threads at once"
            threads_seen.add(threading.current_thread().name)
        assert torch.get_num_threads() == 1  # one core per worker
        time.sleep(0.01)
        with lock:
            busy[id(replica)] -= 1
        return [(x, id(replica)) for x in chunk]

    torch.set_num_threads(2)
    side = SideBySide("primary", make, library="torch", name="t")
    chunks = [[i, i + 100] for i in range(7)]
    out = side.map(fn, chunks, workers=3)
    assert [x for x, _ in out] == [x for c in chunks for x in c]
    assert len(made) == 2 and len({r for _, r in out}) == 3  # the primary and two replicas all worked
    assert all(name.startswith("t") for name in threads_seen)
    assert torch.get_num_threads() == 2  # restored after the call
    side.map(fn, chunks, workers=2)
    assert len(made) == 2  # replicas are kept, not made again


def test_one_worker_or_one_chunk_runs_in_the_calling_thread():
    torch.set_num_threads(2)
    seen = []

    def fn(replica, chunk):
        seen.append((threading.current_thread(), torch.get_num_threads(), replica))
        return list(chunk)

    side = SideBySide("primary", lambda: pytest.fail("no replica needed"), library="torch")
    assert side.map(fn, [[1, 2], [3]], workers=1) == [1, 2, 3]  # one model on all threads
    assert seen == [(threading.current_thread(), 2, "primary")] * 2
    assert side.map(fn, [[4]], workers=4) == [4]  # a lone chunk: one thread, as in a worker
    assert seen[-1] == (threading.current_thread(), 1, "primary") and torch.get_num_threads() == 2


def test_a_copy_makes_its_own_pool():
    import copy

    side = SideBySide("p", lambda: "r", library="cv2")
    side.map(lambda r, c: list(c), [[1], [2]], workers=2)
    clone = copy.copy(side)
    assert clone._pool is None and side._pool is not None
    assert clone.map(lambda r, c: list(c), [[1], [2]], workers=2) == [1, 2]
    with pytest.raises(ValueError, match="library"):
        SideBySide("p", lambda: "r", library="numba")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_student_side_by_side_matches_one_replica(backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    from pseudolabel.student.model import StudentDetector, build_efficientnet_lite0_frcnn
    from pseudolabel.synth import _render_frames

    torch.manual_seed(0)
    model = build_efficientnet_lite0_frcnn(pretrained=False, box_detections_per_img=20).eval()
    frames, _ = _render_frames(seed=2, venue="clay", n_frames=5, width=256, height=144, fps=25.0)
    torch.set_num_threads(2)
    one = StudentDetector(model, backend=backend, workers=1)
    side = StudentDetector(model, backend=backend, workers=2)
    assert side.batch_size == 1 and side.workers == 2
    ref, got = one.predict(frames), side.predict(frames)
    assert torch.get_num_threads() == 2
    assert len(side._side_by_side._spares) == 1
    # one frame per forward on both sides; only the thread count differs
    assert_same_detections(ref, got, features=True, box_atol=1e-3, score_atol=1e-5, feature_tol=1e-4)
    if backend == "onnxruntime":
        assert side._backbone.num_threads == 1 and side._backbone.shapes == [(1, 160, 256)]
    streamed = [d for out in side.predict_stream(iter([frames[0:3], frames[3:4], frames[4:]])) for d in out]
    assert_same_detections(got, streamed, features=True, box_atol=0.0, score_atol=0.0, feature_tol=0.0)


def test_torchvision_detector_side_by_side_matches_one_forward():
    from pseudolabel.detectors.torchvision_detector import TorchvisionDetector

    torch.manual_seed(0)
    builder = "fasterrcnn_mobilenet_v3_large_320_fpn"
    one = TorchvisionDetector(builder, weights=None, num_classes=2, box_score_thresh=0.0, backend="torch")
    side = TorchvisionDetector(builder, model=one.model, backend="torch", forward_batch=1, workers=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(3)]
    ref = [one.predict([im])[0] for im in images]
    got = side.predict(images)
    assert_same_detections(ref, got, features=False, box_atol=1e-3, score_atol=1e-5)
    streamed = [d for out in side.predict_stream(iter([images[:2], images[2:]])) for d in out]
    assert_same_detections(got, streamed, features=False, box_atol=0.0, score_atol=0.0)
    with pytest.raises(ValueError, match="forward_batch and workers"):
        TorchvisionDetector(builder, model=one.model, workers=0)


def test_shipped_config_runs_replicas_side_by_side(tmp_path):
    """runtime.workers=null: one student replica per labelling thread; forward_batch frames per forward."""
    from pseudolabel import pipeline
    from pseudolabel.safe_config import instantiate
    from pseudolabel.student.model import save_student_checkpoint
    from tests.test_config import compose_cfg

    cfg = compose_cfg(f"paths.root_dir={tmp_path}")
    assert cfg.runtime.workers is None and cfg.runtime.student.frames_per_call is None
    ckpt = save_student_checkpoint(instantiate(cfg.student.model, pretrained=False), tmp_path / "student.pt")
    torch.set_num_threads(2)
    det = pipeline._build_student(cfg, ckpt)
    assert (det.workers, det.batch_size, det.frames_per_call) == (2, 1, 4)
    det = pipeline._build_student(compose_cfg("runtime.workers=1", "runtime.images_per_forward=4"), ckpt)
    assert (det.workers, det.batch_size, det.frames_per_call) == (1, 4, 8)
    assert det.lean_heads == (det.backend == "onnxruntime")  # null: on with ONNX Runtime
    assert not pipeline._build_student(compose_cfg("runtime.lean_heads=false"), ckpt).lean_heads


def test_label_stage_sizes_its_calls_from_the_detector_when_batch_size_is_null(tmp_path):
    import cv2

    from pseudolabel.detectors.base import Detections
    from pseudolabel.parts import label_parts
    from pseudolabel.records import Frame

    calls = []

    class Probe:
        name = "probe"
        frames_per_call = 3

        def predict(self, images):
            calls.append(len(images))
            return [Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)) for _ in images]

    frames = [Frame(id=i + 1, file_name=f"v/{i}.jpg", width=8, height=8, video_id="v", frame_index=i)
              for i in range(7)]
    (tmp_path / "frames" / "v").mkdir(parents=True)
    for f in frames:
        cv2.imwrite(str(tmp_path / "frames" / f.file_name), np.zeros((8, 8, 3), np.uint8))
    kwargs = dict(parts_dir=tmp_path / "parts", video_ids=["v"], frames_dir=tmp_path / "frames", round=0,
                  class_ids=None, score_threshold=0.5, progress=False)
    label_parts(Probe, frames, batch_size=None, **kwargs)
    assert calls == [3, 3, 1]
    calls.clear()
    label_parts(Probe, frames, batch_size=2, **{**kwargs, "parts_dir": tmp_path / "parts2"})
    assert calls == [2, 2, 2, 1]


def _slow_echo(replica, chunk):
    assert torch.get_num_threads() == 1
    time.sleep(0.005 * (1 + chunk[0] % 3))  # uneven chunks: an early finisher must not wait
    return [(x, id(replica)) for x in chunk]


def test_stream_gives_each_batch_what_map_gives_it_in_order():
    torch.set_num_threads(2)
    side = SideBySide("primary", lambda: object(), library="torch", name="s")
    batches = [[[i, i + 1], [i + 2]] for i in range(0, 30, 3)]
    streamed = [[x for x, _ in out] for out in side.stream(_slow_echo, iter(batches), workers=2)]
    mapped = [[x for x, _ in side.map(_slow_echo, b, workers=2)] for b in batches]
    assert streamed == mapped == [[x for c in b for x in c] for b in batches]
    assert torch.get_num_threads() == 2  # restored when the stream ends
    assert [list(out) for out in SideBySide("p", lambda: pytest.fail("no replica"), library="torch")
            .stream(lambda r, c: list(c), iter([[[1], [2]], [[3]]]), workers=1)] == [[1, 2], [3]]


def test_stream_runs_ahead_of_its_consumer_with_bounded_chunks_in_flight():
    started: list[int] = []
    lock = threading.Lock()

    def fn(replica, chunk):
        with lock:
            started.append(chunk[0])
        time.sleep(0.01)
        return list(chunk)

    side = SideBySide("primary", lambda: object(), library="torch")
    stream = side.stream(fn, ([[i]] for i in range(20)), workers=2)
    assert next(stream) == [0]
    time.sleep(0.1)  # the consumer is busy: the workers keep going, but only so far ahead
    with lock:
        ahead = max(started)
    assert 1 <= ahead <= 3  # the chunk being consumed + `workers` chunks queued behind it
    assert [x for out in stream for x in out] == list(range(1, 20))


def test_stream_closed_early_or_failing_leaves_no_replica_busy():
    busy = set()
    lock = threading.Lock()

    def fn(replica, chunk):
        with lock:
            assert id(replica) not in busy, "a replica ran in two threads at once"
            busy.add(id(replica))
        time.sleep(0.01)
        with lock:
            busy.discard(id(replica))
        if chunk == ["boom"]:
            raise RuntimeError("boom")
        return list(chunk)

    side = SideBySide("primary", lambda: object(), library="torch")
    stream = side.stream(fn, ([[i]] for i in range(50)), workers=2)
    assert next(stream) == [0]
    stream.close()  # waits for the chunks already running
    assert not busy
    with pytest.raises(RuntimeError, match="boom"):
        list(side.stream(fn, iter([[[1]], [["boom"]], [[3]], [[4]]]), workers=2))
    assert not busy
    assert side.map(fn, [[5], [6]], workers=2) == [5, 6]  # the replicas are all free again
