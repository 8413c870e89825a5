"""Geometry core: rotations, back-projection, boxes, errors, similarity fit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posediff_ros import geometry as g

quats = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1
)


def _is_rotation(R, atol=1e-9):
    return np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=atol) and np.allclose(
        np.linalg.det(R), 1.0, atol=atol
    )


def test_intrinsics_values():
    assert g.REAL275_K[0, 0] == 591.0125 and g.REAL275_K[1, 2] == 244.11084
    assert g.CAMERA25_K[0, 0] == g.CAMERA25_K[1, 1] == 577.5
    assert g.CAMERA25_K[0, 2] == 319.5 and g.CAMERA25_K[2, 2] == 1.0


@settings(max_examples=200, deadline=None)
@given(quats)
def test_quaternion_round_trip(q):
    R = g.quaternion_to_matrix(np.array(q))
    assert _is_rotation(R)
    q2 = g.matrix_to_quaternion(R)
    assert q2[3] >= 0
    q1 = np.array(q) / np.linalg.norm(q)
    assert np.allclose(q2, q1, atol=1e-9) or np.allclose(q2, -q1, atol=1e-9)
    assert np.allclose(g.quaternion_to_matrix(q2), R, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(quats)
def test_6d_round_trip(q):
    R = g.quaternion_to_matrix(np.array(q))
    r6 = g.matrix_to_rotation_6d(R)
    assert np.allclose(r6[:3], R[:, 0]) and np.allclose(r6[3:], R[:, 1])
    assert np.allclose(g.rotation_6d_to_matrix(r6), R, atol=1e-9)


def test_6d_gram_schmidt_of_arbitrary_vectors():
    rng = np.random.default_rng(0)
    r6 = rng.standard_normal((5, 7, 6))
    R = g.rotation_6d_to_matrix(r6)
    assert R.shape == (5, 7, 3, 3) and _is_rotation(R)
    # first column is the normalised first vector
    assert np.allclose(R[..., :, 0], r6[..., :3] / np.linalg.norm(r6[..., :3], axis=-1)[..., None])


def test_quaternion_known_values_and_batch():
    # 90 deg about z: x -> y
    q = np.array([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    R = g.quaternion_to_matrix(q)
    assert np.allclose(R @ [1, 0, 0], [0, 1, 0])
    # 180-degree rotations (w = 0) are the hard case for the trace formula
    R180 = np.stack([np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])])
    q180 = g.matrix_to_quaternion(R180)
    assert np.allclose(np.abs(q180), np.eye(4)[:3], atol=1e-12)
    assert g.matrix_to_quaternion(np.eye(3)).tolist() == [0, 0, 0, 1]


def test_rotation_error_geodesic_and_symmetric():
    Ry = g.rotation_about_y(np.radians(70))
    Rx = g.axis_angle_to_matrix([1, 0, 0], np.radians(10))
    assert np.isclose(g.rotation_error_deg(Ry, np.eye(3)), 70)
    assert np.isclose(g.rotation_error_deg(Ry, np.eye(3), symmetric=True), 0, atol=1e-6)
    assert np.isclose(g.rotation_error_deg(Rx @ Ry, np.eye(3), symmetric=True), 10)
    # batched with a per-item flag
    err = g.rotation_error_deg(np.stack([Ry, Ry]), np.eye(3), symmetric=np.array([True, False]))
    assert np.allclose(err, [0, 70], atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(quats, st.floats(-np.pi, np.pi))
def test_y_rotation_invisible_to_symmetric_error(q, angle):
    R = g.quaternion_to_matrix(np.array(q))
    Rs = R @ g.rotation_about_y(angle)
    assert g.rotation_error_deg(Rs, R, symmetric=True) < 1e-4
    geo = g.rotation_error_deg(Rs, R)
    assert np.isclose(geo, np.degrees(abs(angle)), atol=1e-4)
    # the aligned representative equals the ground truth
    assert np.allclose(g.align_symmetric_rotation(Rs, R), R, atol=1e-9)


def test_translation_error_cm():
    assert np.isclose(g.translation_error_cm([0.03, 0.04, 1.0], [0, 0, 1.0]), 5.0)


def test_box_corners():
    c = g.box_corners([2.0, 4.0, 6.0])
    assert c.shape == (8, 3)
    assert np.allclose(c.min(0), [-1, -2, -3]) and np.allclose(c.max(0), [1, 2, 3])
    R = g.rotation_about_y(np.pi / 2)
    c2 = g.box_corners([2.0, 4.0, 6.0], R, [0, 0, 1])
    assert np.allclose(c2.min(0), [-3, -2, 0]) and np.allclose(c2.max(0), [3, 2, 2])
    assert g.box_corners(np.ones((4, 3))).shape == (4, 8, 3)


def test_similarity_transform_recovers_known():
    rng = np.random.default_rng(1)
    src = rng.standard_normal((50, 3))
    R = g.random_rotations(1, rng)[0]
    dst = 0.37 * src @ R.T + [0.1, -0.2, 0.9]
    s, R2, t = g.similarity_transform(src, dst)
    assert np.isclose(s, 0.37) and np.allclose(R2, R) and np.allclose(t, [0.1, -0.2, 0.9])
    with pytest.raises(ValueError):
        g.similarity_transform(src[:2], dst[:2])


def test_project_to_so3_and_random():
    rng = np.random.default_rng(2)
    R = g.random_rotations(10, rng)
    assert _is_rotation(R)
    noisy = R + 1e-3 * rng.standard_normal(R.shape)
    assert np.allclose(g.project_to_so3(noisy), R, atol=1e-2)
    assert _is_rotation(g.project_to_so3(noisy))


def _plane(z_m, h=48, w=64):
    return np.full((h, w), z_m, dtype=np.float32)


def test_backproject_plane_at_known_depth():
    K = g.intrinsics_matrix(100.0, 120.0, 32.0, 24.0)
    depth = _plane(1.5)
    mask = np.zeros(depth.shape, bool)
    mask[10:20, 30:40] = True
    p = g.backproject(depth, mask, K)
    assert p.dtype == np.float32 and p.shape == (100, 3)
    assert np.allclose(p[:, 2], 1.5)
    # pixel (u=30, v=10): x = (30 - 32) * 1.5 / 100, y = (10 - 24) * 1.5 / 120
    assert np.allclose(p[0], [-0.03, -0.175, 1.5], atol=1e-6)
    # re-projection lands on the masked pixels
    uv = g.project(p, K)
    assert np.allclose(uv.min(0), [30, 10]) and np.allclose(uv.max(0), [39, 19])


def test_backproject_uint16_mm_equals_float_m():
    rng = np.random.default_rng(3)
    mm = rng.integers(300, 2000, size=(48, 64)).astype(np.uint16)
    mask = rng.random((48, 64)) < 0.3
    a = g.backproject(mm, mask, g.REAL275_K)
    b = g.backproject(mm.astype(np.float32) / 1000.0, mask, g.REAL275_K)
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-6)
    # explicit scale overrides the dtype rule
    c = g.backproject(mm.astype(np.float32), mask, g.REAL275_K, depth_scale=0.001)
    assert np.allclose(a, c, atol=1e-6)


def test_backproject_drops_zero_nan_inf():
    depth = _plane(1.0, 4, 4)
    depth[0, 0] = 0
    depth[0, 1] = np.nan
    depth[0, 2] = np.inf
    depth[0, 3] = -1
    p = g.backproject(depth, np.ones((4, 4), bool), g.REAL275_K)
    assert len(p) == 12 and np.all(np.isfinite(p))
    mm = np.full((4, 4), 1000, np.uint16)
    mm[1, :] = 0
    assert len(g.backproject(mm, np.ones((4, 4), bool), g.REAL275_K)) == 12
    with pytest.raises(ValueError):
        g.backproject(depth, np.ones((3, 4), bool), g.REAL275_K)


def test_sample_points_fixed_size():
    rng = np.random.default_rng(4)
    pts = np.arange(30, dtype=np.float32).reshape(10, 3)
    s = g.sample_points(pts, 6, rng)
    assert s.shape == (6, 3) and len({tuple(r) for r in s}) == 6  # no repeats
    s = g.sample_points(pts, 25, rng)
    assert s.shape == (25, 3) and len({tuple(r) for r in s}) == 10  # every point used
    a = g.sample_points(pts, 6, np.random.default_rng(7))
    b = g.sample_points(pts, 6, np.random.default_rng(7))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        g.sample_points(pts[:0], 4, rng)


def test_trim_outliers_removes_background_keeps_object():
    rng = np.random.default_rng(5)
    obj = rng.uniform([-0.05, -0.05, 0.95], [0.05, 0.05, 1.05], (500, 3))  # 10 cm cube
    bleed = rng.uniform([-0.05, -0.05, 1.6], [0.05, 0.05, 1.7], (40, 3))  # wall behind
    keep = g.outlier_mask(np.concatenate([obj, bleed]))
    assert keep[:500].all() and not keep[500:].any()
    # an elongated object (30 cm bottle lying across the view) keeps all its points
    long = rng.uniform([-0.15, -0.02, 0.98], [0.15, 0.02, 1.02], (500, 3))
    assert len(g.trim_outliers(long)) == 500
    assert g.outlier_mask(np.zeros((0, 3))).shape == (0,)


def test_outlier_rule_cuts_a_neighbour_at_the_same_depth():
    """The radius term, which the depth band cannot do: pixels of a neighbour 23-27 cm to the
    side at the object's own depth are cut, the whole 10 cm cube kept (median distance to the
    centre ~5.5 cm: radius ~17 cm; the cube's corners lie within 8.7 cm). Two objects in one
    call, the second 1 m further and 0.5 m aside, so each is cut around its own centre."""
    rng = np.random.default_rng(6)
    obj = rng.uniform([-0.05, -0.05, 0.95], [0.05, 0.05, 1.05], (500, 3))
    side = rng.uniform([0.23, -0.02, 0.98], [0.27, 0.02, 1.02], (30, 3))
    a = np.concatenate([obj, side])
    keep = g.grouped_outlier_mask(np.concatenate([a, a + [0.5, 0.0, 1.0]]), [530, 530])
    expected = np.r_[np.ones(500, bool), np.zeros(30, bool)]
    np.testing.assert_array_equal(keep, np.r_[expected, expected])


def test_grouped_outlier_mask_equals_the_rule_per_object():
    """Many objects in one call == the rule written with np.median, object by object (a probe
    as large as the objects: exact medians). Spreads of 5-40 cm put the thresholds on the MAD
    and median-distance terms (not the 3 cm floors); odd/even/one-point objects exercise the
    median's middle elements. The default probe (1024 points spread over an object) gives the
    same cut here: the thresholds it estimates lie between the clusters."""
    rng = np.random.default_rng(11)
    counts = np.array([1, 2, 7, 64, 65, 300])
    groups = [np.concatenate([rng.normal([0, 0, 1.5], rng.uniform(0.05, 0.4), (n, 3)),
                              rng.normal([0, 0, 3.0], 0.05, (n // 5, 3))]) for n in counts]
    points = np.concatenate(groups)

    def rule(p):
        zm = np.median(p[:, 2])
        near = np.abs(p[:, 2] - zm) <= max(3 * 1.4826 * np.median(np.abs(p[:, 2] - zm)), 0.03)
        d = np.linalg.norm(p - np.median(p[near], axis=0), axis=1)
        return near & (d <= max(3 * np.median(d[near]), 0.03))

    expected = np.concatenate([rule(p) for p in groups])
    got = g.grouped_outlier_mask(points, [len(p) for p in groups], probe=10_000)
    np.testing.assert_array_equal(got, expected)
    probed = g.grouped_outlier_mask(points, [len(p) for p in groups])
    assert (probed != expected).mean() < 0.01
    assert 0 < (~expected).sum() < len(expected)  # the rule does cut something here


def test_row_medians_with_padding_equal_np_median():
    rng = np.random.default_rng(12)
    counts = np.array([1, 2, 3, 8, 9, 10])
    values = rng.normal(size=(6, 10))
    padded = np.where(np.arange(10) < counts[:, None], values, np.inf)
    expected = [np.median(values[b, :n]) for b, n in enumerate(counts)]
    np.testing.assert_allclose(g._medians(padded, counts), expected, rtol=0, atol=1e-15)
