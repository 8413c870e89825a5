"""Property-based fuzzing of the ROS-free input handling (real sensor_msgs messages, no DDS):
whatever the encoding, size, step, endianness, dtype or values, the only exception is the
documented clear rejection (ValueError with a message), and what passes is well-formed."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posediff_ros.pipeline import check_frame
from posediff_ros.ros import convert
from posediff_ros.sync import make_sync
from posediff_ros.validation import check_depth_range, limit_objects

Image = pytest.importorskip("sensor_msgs.msg").Image
CameraInfo = pytest.importorskip("sensor_msgs.msg").CameraInfo
PointCloud2 = pytest.importorskip("sensor_msgs.msg").PointCloud2
PointField = pytest.importorskip("sensor_msgs.msg").PointField

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
ENCODINGS = list(convert.ENCODINGS) + ["", "16UC3", "yuv422", "bayer_rggb8", "32FC3", "MONO8"]


@st.composite
def images(draw):
    """Images that are mostly nearly right: real sizes with perturbed step/data/encoding."""
    encoding = draw(st.sampled_from(ENCODINGS))
    height, width = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    code, channels = convert.ENCODINGS.get(encoding, ("u1", draw(st.integers(1, 4))))
    row = width * channels * np.dtype(code).itemsize
    step = max(0, row + draw(st.integers(-3, 8)))
    size = max(0, step * height + draw(st.sampled_from([0, 0, 0, -1, -7, 5])))
    msg = Image(height=height, width=width, encoding=encoding, step=step,
                is_bigendian=draw(st.integers(0, 1)))
    msg.data = draw(st.binary(min_size=size, max_size=size))
    return msg


def _rejected(fn, *args):
    """Call fn; a ValueError with a message is the documented rejection."""
    try:
        return fn(*args)
    except ValueError as err:
        assert str(err), f"{fn.__name__} raised an empty ValueError"
        return None


@FUZZ
@given(images())
def test_image_to_numpy_only_clear_rejections(msg):
    image = _rejected(convert.image_to_numpy, msg)
    if image is not None:
        code, channels = convert.ENCODINGS[msg.encoding]
        assert image.shape[:2] == (msg.height, msg.width)
        assert image.dtype == np.dtype(code).newbyteorder("=")
        assert image.ndim == (2 if channels == 1 else 3)


@FUZZ
@given(images())
def test_depth_mask_color_only_clear_rejections(msg):
    depth = _rejected(convert.depth_to_metres, msg)
    if depth is not None:
        assert depth.dtype == np.float32 and np.isfinite(depth).all()
    mask = _rejected(convert.mask_to_numpy, msg)
    if mask is not None:
        assert mask.dtype.kind in "ui" and mask.shape == (msg.height, msg.width)
    raw = _rejected(convert.depth_image, msg)
    if raw is not None:
        assert raw.dtype in (np.uint16, np.float32) and raw.shape == (msg.height, msg.width)
    rgb = _rejected(convert.color_to_rgb, msg)
    if rgb is not None:
        assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8


@FUZZ
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=9,
                max_size=9))
def test_camera_info_only_clear_rejections(k):
    K = _rejected(convert.camera_info_to_k, CameraInfo(k=k))
    if K is not None:
        assert np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0


@FUZZ
@given(st.integers(0, 6), st.integers(0, 3), st.sampled_from([0, 4, 8, 12, 16]),
       st.integers(-8, 8), st.integers(-9, 9), st.booleans(),
       st.lists(st.sampled_from(["x", "y", "z", "label"]), max_size=4, unique=True),
       st.lists(st.integers(0, 20), min_size=4, max_size=4),
       st.lists(st.sampled_from([7, 7, 7, 8, 2]), min_size=4, max_size=4))
def test_cloud_to_numpy_only_clear_rejections(width, height, point_step, row_pad, size_pad,
                                              bigendian, names, offsets, datatypes):
    msg = PointCloud2(width=width, height=height, point_step=point_step,
                      is_bigendian=bigendian)
    msg.row_step = max(0, point_step * width + row_pad)
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=1)
                  for n, o, d in zip(names, offsets, datatypes, strict=False)]
    size = max(0, msg.row_step * height + size_pad)
    msg.data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    xyz = _rejected(convert.cloud_to_numpy, msg)
    if xyz is not None:
        assert xyz.shape == (width * height, 3) and xyz.dtype == np.float32


def test_cloud_round_trip():
    points = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    msg = convert.points_to_cloud(points, np.arange(50))
    np.testing.assert_array_equal(convert.cloud_to_numpy(msg), points)


@st.composite
def frames(draw):
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    values = st.floats(allow_nan=True, allow_infinity=True, width=32)
    depth = np.array(draw(st.lists(values, min_size=h * w, max_size=h * w)),
                     np.float32).reshape(h, w)
    mh, mw = draw(st.sampled_from([(h, w), (h, w), (h + 1, w), (h, max(1, w - 1))]))
    mask = np.array(draw(st.lists(st.integers(-3, 300), min_size=mh * mw, max_size=mh * mw)),
                    np.int32).reshape(mh, mw)
    k = draw(st.one_of(st.none(), st.lists(st.floats(-10, 1000) | st.just(float("nan")),
                                             min_size=9, max_size=9)))
    return depth, mask, None if k is None else np.array(k).reshape(3, 3)


@FUZZ
@given(frames(), st.floats(0, 2), st.floats(0, 10))
def test_frame_checks_return_a_reason_or_none(frame, lo, span):
    depth, mask, K = frame
    problem = check_frame(depth, mask, K)
    assert problem is None or (isinstance(problem, str) and problem)
    if problem is None:
        assert depth.shape == mask.shape and np.isfinite(K).all()
        why = check_depth_range(depth, (lo, lo + span))
        assert why is None or "depth out of range" in why


@FUZZ
@given(st.lists(st.integers(1, 500), unique=True), st.integers(0, 30))
def test_limit_objects(ids, max_objects):
    kept, dropped = limit_objects(ids, max_objects)
    assert kept + dropped == ids
    assert max_objects == 0 or len(kept) <= max_objects


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["depth", "mask"]),
                          st.integers(0, 3_000_000_000)), max_size=200),
       st.integers(1, 10), st.floats(0, 1), st.sampled_from(["exact", "approximate"]))
def test_sync_with_any_stamps(stream, queue_size, slop, policy):
    """Out-of-order, duplicate and never-syncing stamps: no exception, bounded queues, every
    set within slop (exact: identical stamps)."""
    sync = make_sync(policy, ["depth", "mask"], slop=slop, queue_size=queue_size, max_age=0.5)
    for topic, stamp in stream:
        for frame in sync.add(topic, stamp, (topic, stamp)):
            stamps = [frame[t][1] for t in ("depth", "mask")]
            assert max(stamps) - min(stamps) <= (round(slop * 1e9) if policy != "exact" else 0)
        assert sync.pending() <= 2 * queue_size


def test_big_endian_and_padded_rows_decode_like_native():
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    for big in (False, True):
        for pad in (0, 3):
            msg = convert.numpy_to_image(depth, "16UC1", bigendian=big, row_padding=pad)
            np.testing.assert_allclose(convert.depth_to_metres(msg), depth / 1000.0)


def test_huge_claimed_sizes_are_rejected_without_allocating():
    """A header claiming a 4 G-pixel image with a few bytes of data: a clear rejection."""
    msg = Image(height=2**16, width=2**16, encoding="32FC1", step=4 * 2**16, is_bigendian=0)
    msg.data = bytes(64)
    with pytest.raises(ValueError, match="data has 64 bytes"):
        convert.depth_to_metres(msg)
    msg.step = 2**32 - 1  # step larger than any real row, data still tiny
    with pytest.raises(ValueError, match="data has 64 bytes"):
        convert.image_to_numpy(msg)


def test_signalling_nan_depth_is_invalid_without_a_warning():
    """A 32FC1 depth with signalling-NaN bytes (the fuzzing above found them): the node's
    readings count them as invalid depth, and numpy says nothing (a product of a signalling
    NaN warns "invalid value encountered in multiply", once per process, into the node's log).
    """
    import warnings

    from posediff_ros.data.points import frame_objects
    from posediff_ros.geometry import REAL275_K

    depth = np.full((48, 64), 0.8, np.float32)
    depth.view(np.uint32)[10:20, 10:20] = 0x7F800001
    msg = Image(height=48, width=64, encoding="32FC1", step=64 * 4, is_bigendian=0)
    msg.data = depth.tobytes()
    mask = np.zeros((48, 64), np.uint8)
    mask[5:40, 5:40] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metres = convert.depth_to_metres(msg)
        found = frame_objects(convert.depth_image(msg), mask, REAL275_K, [1], 64,
                              np.random.default_rng(0))
    assert (metres[10:20, 10:20] == 0).all() and (metres[20:, 20:] == np.float32(0.8)).all()
    assert found.num_valid.tolist() == [35 * 35 - 100]
