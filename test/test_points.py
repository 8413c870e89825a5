"""Masked depth -> object point sets (data/points.py)."""

import numpy as np
import pytest

from posediff_ros.data.points import frame_objects, object_points
from posediff_ros.geometry import REAL275_K


def _scene():
    depth = np.full((48, 64), 2500, np.uint16)  # wall at 2.5 m (mm)
    mask = np.full((48, 64), 255, np.uint8)
    depth[10:30, 10:30] = 800  # object 1 at 0.8 m, 400 px
    mask[10:30, 10:30] = 1
    depth[5:8, 40:43] = 900  # object 2: 9 px only
    mask[5:8, 40:43] = 2
    depth[30:40, 40:60] = 0  # object 3: no depth at all
    mask[30:40, 40:60] = 3
    return depth, mask


def test_object_points_fixed_size_in_metres():
    depth, mask = _scene()
    res = object_points(depth, mask == 1, REAL275_K, 256, np.random.default_rng(0))
    assert res and res.reason == ""
    assert res.points.shape == (256, 3) and res.points.dtype == np.float32
    assert np.allclose(res.points[:, 2], 0.8)
    # 256 of 400 pixels are needed: a random subset of them is examined, all kept
    assert res.num_valid == 400 and 256 <= res.num_kept <= 400


def test_object_points_reasons():
    depth, mask = _scene()
    rng = np.random.default_rng(0)
    r = object_points(depth, mask == 7, REAL275_K, 64, rng)
    assert not r and r.points is None and r.reason == "mask empty"
    r = object_points(depth, mask == 2, REAL275_K, 64, rng)
    assert not r and r.reason.startswith("only 9 valid depth pixels of 9") and "min 32" in r.reason
    r = object_points(depth, mask == 3, REAL275_K, 64, rng)
    assert not r and r.reason.startswith("only 0 valid depth pixels of 200")
    # depth range filter: object 1 at 0.8 m is outside (1.0, 3.0)
    r = object_points(depth, mask == 1, REAL275_K, 64, rng, depth_range=(1.0, 3.0))
    assert not r and r.num_valid == 0


def test_object_points_trims_bleeding():
    depth, mask = _scene()
    mask[10:30, 30:33] = 1  # mask bleeds 3 columns onto the wall at 2.5 m
    rng = np.random.default_rng(0)
    res = object_points(depth, mask == 1, REAL275_K, 512, rng)
    assert res.num_valid == 460 and res.num_kept == 400
    assert res.points[:, 2].max() < 0.81
    raw = object_points(depth, mask == 1, REAL275_K, 512, rng, trim=False)
    assert raw.points[:, 2].max() > 2.0


def test_frame_objects_stacks_and_reports():
    depth, mask = _scene()
    fo = frame_objects(depth, mask, REAL275_K, [1, 2, 3], 128, np.random.default_rng(0))
    assert fo.points.shape == (1, 128, 3) and fo.ids.tolist() == [1]
    assert set(fo.dropped) == {2, 3} and "valid depth" in fo.dropped[2]
    fo = frame_objects(depth, mask, REAL275_K, [2], 128, np.random.default_rng(0), min_points=4)
    assert fo.ids.tolist() == [2] and fo.points.shape == (1, 128, 3)
    empty = frame_objects(depth, mask, REAL275_K, [], 128, np.random.default_rng(0))
    assert empty.points.shape == (0, 128, 3) and empty.ids.shape == (0,)


# --- all objects of a frame at once ----------------------------------------------------------


def _reference_points(depth_m, mask, K, lo=0.1, hi=3.0):
    """The rule written out plainly, one object, every pixel: back-projection with K^-1,
    depth range, the two-pass median/MAD outlier rule with np.median (geometry docstring)."""
    v, u = np.nonzero(mask & (depth_m >= lo) & (depth_m <= hi))
    z = depth_m[v, u].astype(np.float64)
    p = (np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)]).astype(np.float64) * z).T
    zm = np.median(p[:, 2])
    near = np.abs(p[:, 2] - zm) <= max(3 * 1.4826 * np.median(np.abs(p[:, 2] - zm)), 0.03)
    c = np.median(p[near], axis=0)
    d = np.linalg.norm(p - c, axis=1)
    return p[near & (d <= max(3 * np.median(d[near]), 0.03))]


def _frame(rng):
    """Wall at 2.5 m, three box objects at different depths with noisy depth, masks that
    bleed onto the wall, a small one, plus an object of 20000 pixels."""
    depth = np.full((240, 320), 2.5, np.float32)
    mask = np.zeros((240, 320), np.uint8)
    for inst, (r, c, h, w, z) in enumerate([(10, 10, 20, 25, 0.8), (40, 60, 15, 30, 1.2),
                                            (5, 200, 8, 8, 0.6)], start=1):
        depth[r:r + h, c:c + w] = z + rng.normal(0, 0.004, (h, w))
        mask[r:r + h, c:c + w + 2] = inst  # two columns of wall inside the mask
    depth[100:200, 50:250] = 1.0 + rng.normal(0, 0.004, (100, 200))
    mask[100:200, 50:250] = 4
    return depth, mask


SKEWED_K = REAL275_K + np.array([[0.0, 40.0, 0.0], [0.0] * 3, [0.0] * 3])  # not pinhole


@pytest.mark.parametrize("K", [REAL275_K, SKEWED_K], ids=["pinhole", "skewed"])
def test_objects_keep_the_rules_points(K):
    """Every valid pixel is examined: the kept set is the reference rule's, point for point
    (n_points larger than the set, so all of it is drawn). The thresholds come from <= 1024
    points spread over each object; the wall is far outside them. The skewed K takes the
    general back-projection (a pinhole K drops K^-1's zero terms)."""
    depth, mask = _frame(np.random.default_rng(1))
    for inst in (1, 2, 3):
        ref = _reference_points(depth, mask == inst, K)
        got = object_points(depth, mask == inst, K, 2000, np.random.default_rng(0))
        assert got.num_kept == len(ref) and got.num_kept < got.num_valid  # wall cut
        np.testing.assert_allclose(np.unique(got.points, axis=0), np.unique(ref, axis=0),
                                   atol=1e-6)


def test_all_objects_at_once_equal_one_at_a_time():
    """One call for the frame == one call per object with the same random stream (no
    object's points mixed into another's), also with repeated ids and uint16 millimetres.
    (The draws come in the same order: one sample per object, in the order asked.)"""
    from posediff_ros.data.points import ObjectPixels, extract_objects

    depth, mask = _frame(np.random.default_rng(2))
    depth_mm = np.round(depth * 1000).astype(np.uint16)
    ids = [3, 1, 2, 1, 9]  # 9 is not in the mask
    rng = np.random.default_rng(5)
    for d in (depth, depth_mm):
        pixels = ObjectPixels.of(mask, d, (0.1, 3.0), background=0)
        assert pixels.ids.tolist() == [1, 2, 3, 4]
        batch = extract_objects(pixels, REAL275_K, ids, 256, np.random.default_rng(5))
        one = [object_points(d, mask == i, REAL275_K, 256, rng) for i in ids]
        assert batch.ids.tolist() == [3, 1, 2, 1] and batch.dropped == {9: "mask empty"}
        np.testing.assert_array_equal(batch.points, np.stack([o.points for o in one[:4]]))
        rng = np.random.default_rng(5)
    np.testing.assert_allclose(  # millimetres read as metres x 0.001, like depth_to_metres
        frame_objects(depth_mm, mask, REAL275_K, [4], 64, np.random.default_rng(0)).points,
        frame_objects(depth_mm.astype(np.float32) / 1000, mask, REAL275_K, [4], 64,
                      np.random.default_rng(0)).points, atol=1e-6)


def test_large_object_sample_is_uniform_over_the_whole_object():
    """A 100x200-pixel object: the n points must cover it uniformly (not the first rows, not
    one corner). Over 40 draws of 64 points the share in the left half is binomial(2560,
    0.5): 0.5 +- 0.05 is > 5 standard deviations."""
    depth, mask = _frame(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    pts = np.concatenate([object_points(depth, mask == 4, REAL275_K, 64, rng).points
                          for _ in range(40)])
    u = pts[:, 0] / pts[:, 2] * REAL275_K[0, 0] + REAL275_K[0, 2]
    v = pts[:, 1] / pts[:, 2] * REAL275_K[1, 1] + REAL275_K[1, 2]
    assert abs(np.mean(u < 150) - 0.5) < 0.05 and abs(np.mean(v < 150) - 0.5) < 0.05
    assert len(np.unique(pts[:64], axis=0)) == 64  # without replacement within a draw
    assert np.abs(pts[:, 2] - 1.0).max() < 0.03  # all on the object


def test_outlier_rule_cuts_the_wall_behind_a_large_object():
    depth, mask = _frame(np.random.default_rng(4))
    mask[100:200, 250:270] = 4  # 2000 wall pixels at 2.5 m inside the mask
    res = object_points(depth, mask == 4, REAL275_K, 256, np.random.default_rng(0))
    assert res.num_valid == 22000 and res.points[:, 2].max() < 1.03


def test_centroids_are_the_means_of_all_valid_pixels():
    """Per id, the mean of every valid pixel back-projected (geometry.backproject of its mask,
    inside the depth range), in metres from float metres and from uint16 millimetres alike;
    ids asked in any order; NaN for an id without valid depth or not in the mask. A wrong
    pixel axis (u <-> v), a missing K^-1 or the ids' order mixed up moves a centre by cm."""
    from posediff_ros.data.points import ObjectPixels
    from posediff_ros.geometry import backproject

    depth, mask = _frame(np.random.default_rng(3))
    depth[5:13, 200:208] = 0  # object 3: no valid depth at all
    depth_mm = np.round(depth * 1000).astype(np.uint16)
    ids = [4, 1, 3, 2, 9]
    for d in (depth, depth_mm):
        got = ObjectPixels.of(mask, d, (0.1, 2.0), background=0).centroids(ids, REAL275_K)
        for row, inst in zip(got, ids, strict=True):
            pts = backproject(d, mask == inst, REAL275_K)
            pts = pts[pts[:, 2] <= 2.0]  # the wall inside the mask is outside the range
            if len(pts) == 0:
                assert np.isnan(row).all()
            else:
                np.testing.assert_allclose(row, pts.mean(axis=0), rtol=0, atol=1e-5)


def test_a_subset_that_falls_short_examines_every_pixel(monkeypatch):
    """Large objects are sampled from a random subset of their pixels, sized from the share
    of probe pixels the rule keeps; when that subset holds fewer than n kept pixels, every
    pixel is examined instead: the same kept set as the reference rule, n points drawn from
    it without repeats. (A subset of 10 pixels is forced here.)"""
    from posediff_ros.data import points

    depth, mask = _frame(np.random.default_rng(4))
    mask[100:200, 250:270] = 4  # 2000 wall pixels at 2.5 m inside the mask
    ref = _reference_points(depth, mask == 4, REAL275_K)
    subset = object_points(depth, mask == 4, REAL275_K, 256, np.random.default_rng(0))
    assert subset.num_kept < len(ref)  # only a subset was examined
    monkeypatch.setattr(points, "CANDIDATE_MARGIN", 0.0)
    monkeypatch.setattr(points, "CANDIDATE_EXTRA", 10)
    full = object_points(depth, mask == 4, REAL275_K, 256, np.random.default_rng(0))
    assert full.num_kept == len(ref) and full.num_valid == 22000
    assert len(np.unique(full.points, axis=0)) == 256 and full.points[:, 2].max() < 1.03


def test_grouping_by_selection_and_by_sort_agree():
    """Ids spanning fewer than SELECT_MAX_IDS values are grouped by one selection per id, wider
    ranges by a stable sort: the same objects renumbered 1, 2, 3 / 10, 20, 30 / 1000, 2000,
    3000 (and interleaved in raster order: stripes) give the same pixels, in raster order
    within each object, and the same points. Catches a selection that skips the highest id
    (range(lo, hi)), loses raster order, or misnumbers the groups."""
    from posediff_ros.data.points import SELECT_MAX_IDS, ObjectPixels, extract_objects

    depth = np.full((48, 64), 900, np.uint16)
    base = np.zeros((48, 64), np.int32)
    base[4:44, 4:20], base[4:44, 24:40] = 1, 2
    base[4:44, 44:60] = np.where(np.arange(16) % 2 == 0, 3, 1)  # object 1 striped into 3
    results = []
    for scale in (1, 10, 1000):
        mask = base * scale
        assert (3 * scale - scale < SELECT_MAX_IDS) == (scale < 1000)  # both paths are run
        px = ObjectPixels.of(mask, depth, (0.1, 3.0), background=0)
        assert px.ids.tolist() == [scale, 2 * scale, 3 * scale]
        starts = np.r_[0, np.cumsum(px.num_mask)]
        for k, inst in enumerate(px.ids):
            group = px.index[starts[k]:starts[k + 1]]
            assert np.array_equal(group, np.flatnonzero(mask.ravel() == inst))  # raster order
        found = extract_objects(px, REAL275_K, px.ids, 64, np.random.default_rng(0))
        results.append(found.points)
    assert all(np.array_equal(results[0], r) for r in results[1:])
