"""The literature detection protocol on hand-made point sets, and pixel Dice."""
import numpy as np
import pytest

from ml.evaluate import evaluate_detections, match_points, pixel_dice, summarize_scores


def _grid(n=10, spacing=10.0, offset=20.0):
    r, c = np.meshgrid(np.arange(n) * spacing + offset, np.arange(n) * spacing + offset, indexing="ij")
    return np.stack([r.ravel(), c.ravel()], 1)


def test_perfect_detection_scores_one():
    pts = _grid()
    s = evaluate_detections(pts, pts, image_shape=(140, 140))
    assert s.dice == 1.0 and s.fp == 0 and s.fn == 0 and s.count_error_pct == 0.0
    assert s.max_distance_px == pytest.approx(7.5)  # 0.75 x median NND 10 px


def test_match_radius_is_strict_and_one_to_one():
    m = np.array([[50.0, 50.0], [90.0, 90.0]])
    assert len(match_points(m + [2.9, 0], m, max_distance_px=3.0)) == 2
    assert len(match_points(m + [3.0, 0], m, max_distance_px=3.0)) == 0   # strictly closer
    # two detections near one manual point: only the closest is matched
    m = np.array([[50.0, 50.0], [50.0, 70.0]])
    d = np.array([[50.0, 51.0], [50.0, 52.0]])
    pairs = match_points(d, m, max_distance_px=15)
    assert [(i, j) for i, j, _ in pairs] == [(0, 0)]


def test_closest_pairs_first_not_greedy_by_index():
    m = np.array([[50.0, 50.0], [50.0, 60.0]])
    d = np.array([[50.0, 56.0], [50.0, 59.0]])   # d0 is closer to m1? no: d0-m1=4, d1-m1=1
    pairs = sorted((i, j) for i, j, _ in match_points(d, m, max_distance_px=7))
    assert pairs == [(0, 0), (1, 1)]


def test_border_points_ignored():
    manual = _grid(n=12, spacing=10.0, offset=3.0)   # first row/col at 3 px: within 7 px
    s = evaluate_detections(manual[manual.min(1) > 7], manual, image_shape=(120, 120))
    assert s.fn == 0 and s.dice == 1.0


def test_band_edge_pair_is_ignored_not_missed():
    # A mark on the band's edge (whole pixel 7) whose detection lands 0.6 px further out, inside the band:
    # the published protocol matches first and drops the pair; excluding first makes a miss.
    manual = _grid(n=12, spacing=10.0, offset=7.0)
    det = manual.copy()
    det[0] = [6.4, 7.2]
    s = evaluate_detections(det, manual, image_shape=(130, 130))
    assert (s.fp, s.fn, s.dice) == (0, 0, 1.0)
    strict = evaluate_detections(det, manual, image_shape=(130, 130), border_order="exclude-first")
    assert strict.fn == 1 and strict.fp == 0


def test_band_is_the_outer_pixels():
    manual = _grid(n=5, spacing=10.0, offset=30.0)
    extra = np.array([[6.5, 60.0], [6.51, 80.0]])      # in the band / just outside it
    s = evaluate_detections(np.concatenate([manual, extra]), manual, image_shape=(100, 100))
    assert s.fp == 1 and s.n_detected == len(manual) + 1
    with pytest.raises(ValueError, match="border_order"):
        evaluate_detections(manual, manual, image_shape=(100, 100), border_order="none")


def test_counts_fp_fn_and_count_error():
    manual = _grid()
    det = np.concatenate([manual[:-5], [[25.0, 25.0]]])   # 5 missed, 1 false (between cells)
    s = evaluate_detections(det, manual, image_shape=(140, 140))
    assert (s.tp, s.fp, s.fn) == (95, 1, 5)
    assert s.dice == pytest.approx(2 * 95 / (2 * 95 + 6))
    assert s.sensitivity == pytest.approx(0.95) and s.fdr == pytest.approx(1 / 96)
    assert s.count_error_pct == pytest.approx(4.0)
    summ = summarize_scores([s, s])
    assert summ["dice_mean"] == pytest.approx(s.dice) and summ["n_images"] == 2


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_detections(np.zeros((0, 2)), np.array([[1.0, 1.0]]), image_shape=(10, 10))
    with pytest.raises(ValueError, match="shape"):
        pixel_dice(np.zeros((3, 3)), np.zeros((4, 4)))


def test_pixel_dice():
    a = np.zeros((10, 10), bool); a[:5] = True
    b = np.zeros((10, 10), bool); b[:5, :5] = True
    assert pixel_dice(a, b) == pytest.approx(2 * 25 / 75)
    assert pixel_dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
