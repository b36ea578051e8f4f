"""Comparisons of detector outputs shared by the tests."""
import numpy as np


def assert_same_detections(ref, got, *, features: bool, box_atol: float = 1e-2, score_atol: float = 1e-4,
                           feature_tol: float = 1e-3):
    """Same number of detections per image (some at all), boxes, scores and features within tolerance."""
    assert len(ref) == len(got) and sum(len(d) for d in ref) > 0
    for r, g in zip(ref, got, strict=True):
        assert len(r) == len(g)
        np.testing.assert_allclose(g.boxes, r.boxes, atol=box_atol)
        np.testing.assert_allclose(g.scores, r.scores, atol=score_atol)
        np.testing.assert_array_equal(g.labels, r.labels)
        if features:
            np.testing.assert_allclose(g.features, r.features, atol=feature_tol, rtol=feature_tol)
