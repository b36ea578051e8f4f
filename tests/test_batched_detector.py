"""BatchedDetector: chunks of ``forward_batch`` per forward, order kept, forwards' lengths checked."""
import numpy as np
import pytest
import torch

from pseudolabel.detectors.base import BatchedDetector, Detections, check_counts, split
from pseudolabel.detectors.accel.side_by_side import SideBySide
from pseudolabel.detectors.tiling import TiledDetector


class Echo(BatchedDetector):
    """One box per image, at (k, k, k + 1, k + 1) for the image filled with k; records each forward's size."""

    name = "echo"

    def __init__(self, forward_batch, workers=1, drop_last=False):
        self.forward_batch, self.workers, self.drop_last = forward_batch, workers, drop_last
        self.calls: list[int] = []
        self._side_by_side = SideBySide("primary", lambda: "replica", library="torch", name="echo")

    def _forward(self, replica, images):
        self.calls.append(len(images))
        out = [Detections([[im[0, 0, 0]] * 2 + [im[0, 0, 0] + 1] * 2], [1.0], [0]) for im in images]
        return out[:-1] if self.drop_last else out


def _images(n):
    return [np.full((4, 4, 3), k, np.uint8) for k in range(n)]


def test_split_and_counts():
    assert split([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert split([1, 2, 3], None) == [[1, 2, 3]] and split([], 2) == [] and split([], None) == []
    check_counts(forward_batch=None, workers=2)
    with pytest.raises(ValueError, match="forward_batch and workers must be >= 1, got 1 and 0"):
        check_counts(forward_batch=1, workers=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_predict_chunks_images_into_forwards_and_keeps_their_order(workers):
    torch.set_num_threads(2)
    det = Echo(forward_batch=2, workers=workers)
    got = det.predict(_images(5))
    assert sorted(det.calls) == [1, 2, 2] and [d.boxes[0, 0] for d in got] == [0, 1, 2, 3, 4]
    assert torch.get_num_threads() == 2
    det.calls.clear()
    streamed = list(det.predict_stream(iter([_images(3), [], _images(4)])))
    assert [[d.boxes[0, 0] for d in out] for out in streamed] == [[0, 1, 2], [], [0, 1, 2, 3]]
    assert sorted(det.calls) == [1, 2, 2, 2]
    whole = Echo(forward_batch=None)
    assert len(whole.predict(_images(5))) == 5 and whole.calls == [5]  # None: one forward per call
    assert whole.predict([]) == []


def test_a_forward_with_the_wrong_number_of_detections_raises():
    with pytest.raises(RuntimeError, match="2 Detections for 3 images"):
        Echo(forward_batch=3, drop_last=True).predict(_images(3))
    with pytest.raises(RuntimeError, match="for 3 images"):
        list(Echo(forward_batch=3, drop_last=True).predict_stream(iter([_images(3)])))


def test_tiled_detector_refuses_a_detector_that_loses_views():
    class Short:
        name = "short"

        def predict(self, images):
            return [Detections() for _ in images[1:]]

    with pytest.raises(RuntimeError, match="for 2 views"):
        TiledDetector(Short(), tile_size=None, batch_size=2).predict(_images(2))
