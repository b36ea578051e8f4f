import numpy as np

from pseudolabel.threshold import agreement_precision, calibrate_threshold


def frames():
    # 4 frames, each with one reference ball at (10,10,20,20); the student finds it (scores 0.9, 0.8, 0.6,
    # 0.55) and adds false positives elsewhere with scores 0.5, 0.65 (two frames) and 0.85.
    ref = [np.array([[10, 10, 20, 20]], float)] * 4
    ball, fp = [10, 10, 20, 20], [60, 60, 70, 70]
    pred = [
        (np.array([ball, fp], float), np.array([0.9, 0.5])),
        (np.array([ball, fp], float), np.array([0.8, 0.65])),
        (np.array([ball, fp], float), np.array([0.6, 0.65])),
        (np.array([ball, fp], float), np.array([0.55, 0.85])),
    ]
    return pred, ref


def test_agreement_precision_counts_matches():
    pred, ref = frames()
    assert agreement_precision(pred, ref, threshold=0.7, iou_threshold=0.3) == (2 / 3, 3)
    assert agreement_precision(pred, ref, threshold=0.95, iou_threshold=0.3) == (1.0, 0)


def test_calibration_picks_lowest_threshold_reaching_target():
    pred, ref = frames()
    grid = [0.5, 0.6, 0.7, 0.86, 0.9]
    out = calibrate_threshold(pred, ref, target_precision=0.66, grid=grid)
    assert out["threshold"] == 0.7  # 0.6: 3 of 6 hits; 0.7: 2 of 3
    out = calibrate_threshold(pred, ref, target_precision=0.99, grid=grid)
    assert out["threshold"] == 0.86 and out["precision"] == 1.0
    assert [c[0] for c in out["curve"]] == grid


def test_unreachable_target_uses_highest_threshold():
    pred, ref = frames()
    pred = [(b, s) for b, s in pred]
    ref = [np.array([[200, 200, 210, 210]], float)] * 4  # nothing agrees
    out = calibrate_threshold(pred, ref, target_precision=0.9, grid=[0.5, 0.8])
    assert out["threshold"] == 0.8 and out["precision"] == 0.0
