"""Masked depth -> object point sets (data/points.py)."""

import numpy as np

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
    assert res.num_valid == 400 and res.num_kept == 400


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
