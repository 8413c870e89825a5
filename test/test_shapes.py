"""Procedural NOCS shapes: canonical frame, exact extents, realistic sizes, variation."""

import numpy as np
import pytest

from posediff_ros.categories import class_id
from posediff_ros.data.shapes import PART_HANDLE, PART_LENS, PART_SCREEN, make_shape

# (class, axis, lo, hi): plausible metric ranges of a bbox extent (0 = x, 1 = y, 2 = z)
SIZE_RANGES = [
    ("bottle", 1, 0.15, 0.30),
    ("bowl", 0, 0.12, 0.24),
    ("can", 1, 0.07, 0.17),
    ("mug", 1, 0.075, 0.12),
    ("laptop", 2, 0.28, 0.40),
    ("camera", 2, 0.09, 0.18),
]


@pytest.mark.parametrize("cls", range(1, 7))
def test_bbox_centred_and_extents_exact(cls):
    rng = np.random.default_rng(cls)
    for _ in range(10):
        s = make_shape(cls, rng)
        v = s.mesh.vertices
        lo, hi = v.min(0), v.max(0)
        np.testing.assert_allclose(lo + hi, 0.0, atol=1e-12)
        np.testing.assert_allclose(hi - lo, s.extents, atol=1e-12)
        assert s.mesh.faces.min() >= 0 and s.mesh.faces.max() < len(v)
        assert len(s.mesh.parts) == len(s.mesh.faces)
        assert s.class_id == cls
        assert s.nocs_scale == pytest.approx(np.linalg.norm(s.extents))


@pytest.mark.parametrize("name,axis,lo,hi", SIZE_RANGES)
def test_metric_sizes(name, axis, lo, hi):
    rng = np.random.default_rng(7)
    ext = np.array([make_shape(class_id(name), rng).extents for _ in range(40)])
    assert ext[:, axis].min() >= lo - 1e-9 and ext[:, axis].max() <= hi + 1e-9
    # real intra-class variation: the spread covers a good part of the range
    assert ext[:, axis].max() - ext[:, axis].min() > 0.3 * (hi - lo)


@pytest.mark.parametrize("name", ["bottle", "bowl", "can"])
def test_round_classes_symmetric_about_y(name):
    s = make_shape(class_id(name), np.random.default_rng(0))
    assert s.extents[0] == pytest.approx(s.extents[2], abs=1e-9)
    # the axis of revolution is the y axis through the bbox centre
    r = np.hypot(s.mesh.vertices[:, 0], s.mesh.vertices[:, 2])
    assert r.max() == pytest.approx(s.extents[0] / 2, abs=1e-9)


def test_mug_handle_toward_plus_x():
    rng = np.random.default_rng(1)
    for _ in range(10):
        s = make_shape(class_id("mug"), rng)
        m = s.mesh
        handle = np.unique(m.faces[m.parts == PART_HANDLE])
        body = np.unique(m.faces[m.parts != PART_HANDLE])
        hv, bv = m.vertices[handle], m.vertices[body]
        assert hv[:, 0].max() == pytest.approx(s.extents[0] / 2)  # handle is the +x extreme
        axis_x = 0.5 * (bv[:, 0].max() + bv[:, 0].min())  # body axis
        assert hv[:, 0].min() > axis_x  # whole handle on the +x side
        assert np.abs(hv[:, 2]).max() < 0.5 * (bv[:, 2].max() - bv[:, 2].min())  # in the xy plane
        assert s.extents[0] > s.extents[2]


def test_camera_lens_along_plus_x():
    rng = np.random.default_rng(2)
    for _ in range(10):
        s = make_shape(class_id("camera"), rng)
        m = s.mesh
        lens = m.vertices[np.unique(m.faces[m.parts == PART_LENS])]
        body = m.vertices[np.unique(m.faces[m.parts != PART_LENS])]
        assert lens[:, 0].mean() > body[:, 0].mean()
        # the lens is a solid of revolution about an axis parallel to x
        yz_spread = np.ptp(lens[:, 1]), np.ptp(lens[:, 2])
        assert yz_spread[0] == pytest.approx(yz_spread[1], rel=1e-6)
        assert np.ptp(lens[:, 0]) == pytest.approx(s.params["lens_len"], rel=1e-6)
        assert s.params["width"] == pytest.approx(np.ptp(body[:, 2]), rel=1e-6)


def test_laptop_base_xz_lid_hinged_at_minus_x():
    rng = np.random.default_rng(3)
    for _ in range(10):
        s = make_shape(class_id("laptop"), rng)
        v, m = s.mesh.vertices, s.mesh
        base = v[:8]  # first part is the base box
        assert np.ptp(base[:, 1]) < 0.03  # thin, lying in the xz plane
        assert base[:, 1].min() == pytest.approx(-s.extents[1] / 2)
        assert np.ptp(base[:, 2]) == pytest.approx(s.params["width"])
        hinge_x = base[:, 0].min()
        top = v[v[:, 1] > s.extents[1] / 2 - 1e-6]
        assert top[:, 0].mean() < base[:, 0].mean()  # the lid rises at the back (-x)
        assert base[:, 0].mean() > hinge_x  # keyboard side extends toward +x
        # the screen faces the keyboard: its normal points toward +x and up
        screen = v[np.unique(m.faces[m.parts == PART_SCREEN])]
        lid = v[8:16]
        theta = np.deg2rad(s.params["lid_angle_deg"])
        n_in = np.array([np.sin(theta), -np.cos(theta)])  # lid's inner normal (x, y)
        assert n_in[0] > 0  # the inner side faces +x
        assert (screen[:, :2] @ n_in).max() > (lid[:, :2] @ n_in).max()


def test_shapes_vary_and_are_seeded():
    a = [make_shape(c, np.random.default_rng(5)).extents for c in range(1, 7)]
    b = [make_shape(c, np.random.default_rng(5)).extents for c in range(1, 7)]
    np.testing.assert_array_equal(np.array(a), np.array(b))
    rng = np.random.default_rng(6)
    for c in range(1, 7):
        ext = np.array([make_shape(c, rng).extents for _ in range(5)])
        assert len(np.unique(ext.round(5), axis=0)) == 5
