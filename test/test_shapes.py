"""Procedural NOCS shapes: canonical frame, exact extents, realistic sizes, variation."""

import numpy as np
import pytest

from posediff_ros.categories import class_id
from posediff_ros.data.shapes import (
    OOD_WIDEN,
    PART_HANDLE,
    PART_LENS,
    PART_SCREEN,
    SUBTYPES,
    make_shape,
)

# (class, axis, lo, hi): the metric range of a bbox extent (0 = x, 1 = y, 2 = z) over all
# sub-types, from the product dimensions in docs/DATA.md
SIZE_RANGES = [
    ("bottle", 1, 0.10, 0.33),
    ("bottle", 0, 0.054, 0.20),  # wide jugs reach 20 cm
    ("bowl", 0, 0.10, 0.29),
    ("can", 1, 0.055, 0.18),
    ("mug", 1, 0.052, 0.20),  # espresso cups .. travel mugs
    ("laptop", 2, 0.25, 0.40),
    ("camera", 2, 0.05, 0.17),
]


def _every_subtype(cls: int, rng, ood: bool = False, per_type: int = 2):
    for name in SUBTYPES[cls]:
        for _ in range(per_type):
            yield make_shape(cls, rng, ood=ood, subtype=name)


@pytest.mark.parametrize("cls", range(1, 7))
@pytest.mark.parametrize("ood", [False, True])
def test_bbox_centred_and_extents_exact(cls, ood):
    rng = np.random.default_rng(cls)
    for s in _every_subtype(cls, rng, ood):
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
    ext = np.array([make_shape(class_id(name), rng).extents for _ in range(200)])
    assert ext[:, axis].min() >= lo - 1e-9 and ext[:, axis].max() <= hi + 1e-9
    # real intra-class variation: the spread covers most of the range
    assert ext[:, axis].max() - ext[:, axis].min() > 0.6 * (hi - lo)


def test_every_subtype_drawn_with_its_weight():
    rng = np.random.default_rng(11)
    for cls, types in SUBTYPES.items():
        drawn = [make_shape(cls, rng).params["subtype"] for _ in range(300)]
        for name, spec in types.items():
            share = spec[0] / sum(t[0] for t in types.values())
            # binomial, n = 300: 4 standard deviations
            assert abs(drawn.count(name) / 300 - share) < 4 * np.sqrt(share * (1 - share) / 300)


def test_camera_front_not_given_away_by_proportions():
    """Compacts are wider (z) than deep (x); camcorders and long zoom lenses the other way:
    guessing the front from which horizontal side is longer fails half the time."""
    rng = np.random.default_rng(12)
    ext = np.array([make_shape(class_id("camera"), rng).extents for _ in range(400)])
    longer_x = (ext[:, 0] > ext[:, 2]).mean()
    assert 0.3 < longer_x < 0.7, longer_x


def test_ood_draws_leave_the_training_ranges():
    rng = np.random.default_rng(13)
    for cls in range(1, 7):
        train = [make_shape(cls, rng).params for _ in range(50)]
        ood = [make_shape(cls, rng, ood=True).params for _ in range(50)]
        assert all(p["params_outside"] == 0 and not p["ood"] for p in train)
        share = np.mean([p["params_outside"] / p["params_drawn"] for p in ood])
        # uniform over a range widened by OOD_WIDEN on each side: 2w / (1 + 2w) of the draws
        # fall outside (a little less where physical limits clip the widening)
        expect = 2 * OOD_WIDEN / (1 + 2 * OOD_WIDEN)
        assert 0.5 * expect < share <= expect + 0.08, (cls, share)


@pytest.mark.parametrize("name", ["bottle", "bowl", "can"])
def test_round_classes_symmetric_about_y(name):
    s = make_shape(class_id(name), np.random.default_rng(0))
    assert s.extents[0] == pytest.approx(s.extents[2], abs=1e-9)
    # the axis of revolution is the y axis through the bbox centre
    r = np.hypot(s.mesh.vertices[:, 0], s.mesh.vertices[:, 2])
    assert r.max() == pytest.approx(s.extents[0] / 2, abs=1e-9)


@pytest.mark.parametrize("ood", [False, True])
def test_mug_handle_toward_plus_x(ood):
    rng = np.random.default_rng(1)
    for s in _every_subtype(class_id("mug"), rng, ood):
        m = s.mesh
        handle = np.unique(m.faces[m.parts == PART_HANDLE])
        body = np.unique(m.faces[m.parts != PART_HANDLE])
        hv, bv = m.vertices[handle], m.vertices[body]
        assert hv[:, 0].max() == pytest.approx(s.extents[0] / 2)  # handle is the +x extreme
        axis_x = 0.5 * (bv[:, 0].max() + bv[:, 0].min())  # body axis
        assert hv[:, 0].min() > axis_x  # whole handle on the +x side
        assert np.abs(hv[:, 2]).max() < 0.5 * (bv[:, 2].max() - bv[:, 2].min())  # in the xy plane
        assert s.extents[0] > s.extents[2]


@pytest.mark.parametrize("ood", [False, True])
def test_camera_lens_along_plus_x(ood):
    rng = np.random.default_rng(2)
    for s in _every_subtype(class_id("camera"), rng, ood):
        m = s.mesh
        lens = m.vertices[np.unique(m.faces[m.parts == PART_LENS])]
        body = m.vertices[np.unique(m.faces[m.parts != PART_LENS])]
        assert lens[:, 0].mean() > body[:, 0].mean()
        # the lens is the front, except where a grip (a body without lens, or a pancake lens
        # out of distribution), a webcam's foot or an instant camera's front plate (a nearly
        # flush lens) reaches further forward
        if not ood and s.params["subtype"] not in ("dslr_body", "pedestal", "instant"):
            assert lens[:, 0].max() == pytest.approx(s.extents[0] / 2)
        # the lens is a solid of revolution about an axis parallel to x
        yz_spread = np.ptp(lens[:, 1]), np.ptp(lens[:, 2])
        assert yz_spread[0] == pytest.approx(yz_spread[1], rel=1e-6)
        assert np.ptp(lens[:, 0]) == pytest.approx(s.params["lens_len"], rel=1e-6)
        # the lens axis is parallel to x: front element centred on it
        front = lens[lens[:, 0] > lens[:, 0].max() - 1e-9]
        assert np.ptp(front[:, 1]) == pytest.approx(np.ptp(front[:, 2]), rel=1e-6)


@pytest.mark.parametrize("ood", [False, True])
def test_laptop_base_xz_lid_hinged_at_minus_x(ood):
    rng = np.random.default_rng(3)
    for s in _every_subtype(class_id("laptop"), rng, ood):
        v, m = s.mesh.vertices, s.mesh
        base = v[:8]  # first part is the base box
        assert np.ptp(base[:, 1]) < 0.045  # thin, lying in the xz plane
        assert base[:, 1].min() == pytest.approx(-s.extents[1] / 2)
        assert np.ptp(base[:, 2]) == pytest.approx(s.params["width"])
        hinge_x = base[:, 0].min()
        top = v[v[:, 1] > s.extents[1] / 2 - 1e-6]
        if s.params["lid_angle_deg"] > 30:  # (an OOD lid can be nearly closed)
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
