"""Unit tests for display composition, roles, password hashing and label payloads."""
from __future__ import annotations

import numpy as np
import pytest

from ui import labeling, overlays
from ui.roles import PAGE_PERMISSIONS, PERMISSIONS, ROLE_PERMISSIONS, ROLES, has_permission


def test_display_uint8_windows_and_keeps_input():
    img = np.linspace(0, 1, 100, dtype=np.float64).reshape(10, 10)
    before = img.copy()
    out = overlays.display_uint8(img, low_percentile=0, high_percentile=100)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    np.testing.assert_array_equal(img, before)
    with pytest.raises(ValueError, match="percentiles"):
        overlays.display_uint8(img, low_percentile=50, high_percentile=10)
    with pytest.raises(ValueError, match="2-D"):
        overlays.display_uint8(np.zeros((2, 2, 2)))


def test_draw_points_vectorised_clips_at_border():
    rgb = np.zeros((20, 20, 3), np.uint8)
    pts = np.array([[5, 5], [0, 0], [19.4, 19.4], [-10, 3]], np.float32)
    out = overlays.draw_points(rgb, pts, color=(255, 0, 0), radius_px=1)
    assert rgb.sum() == 0  # input untouched
    assert tuple(out[5, 5]) == (255, 0, 0) and tuple(out[4, 5]) == (255, 0, 0)
    assert tuple(out[19, 19]) == (255, 0, 0)
    assert tuple(out[10, 10]) == (0, 0, 0)


def test_compose_enface_upscales_small_images_and_maps_points():
    img = np.random.default_rng(0).random((64, 64))
    rgb, factor = overlays.compose_enface(img, points=[(np.array([[10.0, 20.0]]), (0, 255, 0))],
                                          masks=[(np.zeros((64, 64), bool), (255, 0, 0))],
                                          heatmap=np.ones((64, 64)))
    assert factor == 8 and rgb.shape == (512, 512, 3)
    assert tuple(rgb[10 * 8 + 4, 20 * 8 + 4]) == (0, 255, 0)
    with pytest.raises(ValueError, match="does not match"):
        overlays.blend_mask(rgb, np.zeros((3, 3), bool), color=(1, 1, 1))


def test_draw_surfaces_and_png():
    rgb = np.zeros((30, 40, 3), np.uint8)
    out = overlays.draw_surfaces(rgb, {"ILM": np.full(40, 5.0), "RPE": np.r_[np.full(39, 25.0), np.nan]})
    assert (out[5, :, :].sum(axis=1) > 0).all() and out[25, 39].sum() == 0
    png = overlays.encode_png(out)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_roles_cover_every_permission_and_page():
    assert set(ROLES) == set(ROLE_PERMISSIONS)
    assert ROLE_PERMISSIONS["Admin"] == frozenset(PERMISSIONS)
    assert set(PAGE_PERMISSIONS.values()) <= set(PERMISSIONS)
    assert has_permission("Labeler", "label") and not has_permission("Labeler", "export")
    assert has_permission("Tech", "upload_case") and not has_permission("Researcher", "upload_case")
    assert not has_permission(None, "view_cases") and not has_permission("Intern", "view_cases")
    with pytest.raises(ValueError, match="unknown permission"):
        has_permission("Admin", "lable")


def test_password_hash_roundtrip():
    from ui.auth import check_password, hash_password

    h = hash_password("s3cret!", rounds=4)
    assert h.startswith("$2") and check_password("s3cret!", h) and not check_password("x", h)


def test_label_edits_and_rle_roundtrip():
    pts = labeling.add_point(np.zeros((0, 2)), 3, 4)
    pts = labeling.add_point(pts, 10, 10)
    pts, removed = labeling.remove_nearest(pts, 3.5, 4.5)
    assert removed == 0 and pts.tolist() == [[10, 10]]
    assert labeling.remove_nearest(pts, 50, 50)[1] is None
    pts = labeling.move_point(pts, 0, 1, 2)
    assert pts.tolist() == [[1, 2]]
    mask = labeling.paint_disc(np.zeros((32, 32), bool), 10, 10, 3, value=True)
    mask = labeling.paint_line(mask, (0, 0), (31, 31), 2, value=True)
    mask = labeling.paint_disc(mask, 10, 10, 1, value=False)
    payload = labeling.mask_payload(mask, source="model", edits=[])
    np.testing.assert_array_equal(labeling.payload_mask(payload), mask)
    assert labeling.payload_points(labeling.points_payload(pts, source="m", edits=[])).tolist() == [[1, 2]]


def test_compose_bscan_upscales_and_scales_surfaces():
    bscan = np.random.default_rng(1).random((40, 128))
    rgb = overlays.compose_bscan(bscan, {"ILM": np.full(128, 10.0)})
    assert rgb.shape == (160, 512, 3)
    drawn = [r for r in range(rgb.shape[0]) if (rgb[r, :, 0] == 255).all() and (rgb[r, :, 1] == 80).all()]
    assert drawn and all(40 <= r <= 43 for r in drawn)  # depth 10 → the upscaled rows 40..43
