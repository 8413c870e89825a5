"""Image / CameraInfo / PointCloud2 <-> numpy, messages built from pose results, parameter
parsing: real rclpy message types, no DDS needed."""

from types import SimpleNamespace

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from posediff_ros.geometry import quaternion_to_matrix, random_rotations
from posediff_ros.ros import convert, messages
from posediff_ros.ros.params import parse_class_map, parse_palette

ALL = [("mono8", np.uint8, 1), ("16UC1", np.uint16, 1), ("mono16", np.uint16, 1),
       ("32SC1", np.int32, 1), ("32FC1", np.float32, 1), ("64FC1", np.float64, 1),
       ("rgb8", np.uint8, 3), ("bgra8", np.uint8, 4), ("16SC1", np.int16, 1)]


def _random(dtype, shape, rng):
    if np.issubdtype(dtype, np.floating):
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("encoding,dtype,channels", ALL)
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 7])
def test_image_round_trip(encoding, dtype, channels, bigendian, padding):
    rng = np.random.default_rng(0)
    shape = (5, 3) if channels == 1 else (5, 3, channels)
    array = _random(dtype, shape, rng)
    msg = convert.numpy_to_image(array, encoding, bigendian=bigendian, row_padding=padding)
    assert isinstance(msg, Image)
    assert msg.step == 3 * channels * np.dtype(dtype).itemsize + padding
    assert len(msg.data) == msg.step * 5
    back = convert.image_to_numpy(msg)
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_step_padding_and_endianness_by_hand():
    # 2x2 16UC1 big-endian, each row padded with 3 junk bytes: values written byte by byte
    values = [[1, 258], [65535, 4096]]
    rows = [b"".join(v.to_bytes(2, "big") for v in row) + b"\xaa\xbb\xcc" for row in values]
    msg = Image(height=2, width=2, encoding="16UC1", is_bigendian=1, step=7, data=b"".join(rows))
    np.testing.assert_array_equal(convert.image_to_numpy(msg), values)
    np.testing.assert_allclose(convert.depth_to_metres(msg), np.array(values) / 1000, rtol=1e-6)
    msg.is_bigendian = 0  # the same bytes read little-endian are different numbers
    assert convert.image_to_numpy(msg)[0, 1] == int.from_bytes((258).to_bytes(2, "big"), "little")


def test_depth_and_mask_are_views_of_the_message():
    """No copy of a 640x480 image per frame: the arrays share the message's buffer."""
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4)
    mask = np.array([[0, 1, 2, 300]] * 3, np.uint16)
    for msg, read in ((convert.numpy_to_image(depth, "16UC1"), convert.depth_image),
                      (convert.numpy_to_image(mask, "mono16"), convert.mask_to_numpy),
                      (convert.numpy_to_image(depth.astype(np.float32), "32FC1"),
                       convert.depth_image)):
        out = read(msg)
        assert np.shares_memory(out, np.frombuffer(memoryview(msg.data).cast("B"), np.uint8))
        np.testing.assert_array_equal(out, depth if read is convert.depth_image else mask)
    assert convert.depth_image(convert.numpy_to_image(depth, "16UC1")).dtype == np.uint16
    padded = convert.numpy_to_image(depth, "16UC1", row_padding=2)  # padding: a copy, right
    np.testing.assert_array_equal(convert.depth_image(padded), depth)


def test_depth_32fc1_invalid_pixels_become_zero():
    depth = np.array([[0.5, np.nan], [np.inf, -0.0]], np.float32)
    out = convert.depth_to_metres(convert.numpy_to_image(depth, "32FC1"))
    np.testing.assert_array_equal(out, [[0.5, 0.0], [0.0, 0.0]])


def test_bgr_and_mono_to_rgb():
    rgb = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    bgr = convert.numpy_to_image(rgb[..., ::-1], "bgr8")
    np.testing.assert_array_equal(convert.color_to_rgb(bgr), rgb)
    mono = convert.color_to_rgb(convert.numpy_to_image(rgb[..., 0], "mono8"))
    np.testing.assert_array_equal(mono, np.repeat(rgb[..., :1], 3, axis=2))


@pytest.mark.parametrize("change,error", [
    (dict(encoding="yuv422"), "unsupported image encoding"),
    (dict(step=2), "step 2 <"),
    (dict(data=b"\x00" * 5), "data has 5 bytes"),
    (dict(width=0), "empty image"),
])
def test_bad_images_raise_clear_errors(change, error):
    msg = convert.numpy_to_image(np.zeros((2, 2), np.uint16), "16UC1")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ValueError, match=error):
        convert.image_to_numpy(msg)


def test_wrong_kind_of_image_is_rejected():
    rgb = convert.numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="depth encoding 'rgb8'"):
        convert.depth_to_metres(rgb)
    with pytest.raises(ValueError, match="mask encoding 'rgb8'"):
        convert.mask_to_numpy(rgb)


def test_duck_typed_messages_work_too():
    # rosbags gives numpy arrays for data: the same functions read them
    msg = SimpleNamespace(height=1, width=2, encoding="mono16", is_bigendian=0, step=4,
                          data=np.array([1, 0, 2, 0], np.uint8))
    np.testing.assert_array_equal(convert.mask_to_numpy(msg), [[1, 2]])


def test_camera_info_intrinsics():
    info = CameraInfo(k=[500.0, 0, 320, 0, 510, 240, 0, 0, 1])
    K = convert.camera_info_to_k(info)
    assert K[0, 0] == 500 and K[1, 1] == 510 and K[0, 2] == 320
    with pytest.raises(ValueError, match="no valid intrinsics"):
        convert.camera_info_to_k(CameraInfo())


def test_stamp_round_trip():
    ns = 1_700_000_000_123_456_789
    assert convert.stamp_to_ns(convert.ns_to_stamp(ns)) == ns


def test_point_cloud_round_trip():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(50, 3)).astype(np.float32)
    labels = rng.integers(1, 5, size=50)
    msg = convert.points_to_cloud(points, labels, header=Header(frame_id="cam"))
    assert isinstance(msg, PointCloud2) and msg.width == 50 and msg.point_step == 16
    out = convert.cloud_to_numpy(msg, ("x", "y", "z", "label"))
    np.testing.assert_array_equal(out[:, :3], points)
    np.testing.assert_array_equal(out[:, 3], labels)
    try:  # an independent reader where it exists (wheelhouse / distro)
        from sensor_msgs_py import point_cloud2
    except ImportError:
        return
    read = point_cloud2.read_points_numpy(msg, field_names=("x", "y", "z"))
    np.testing.assert_array_equal(read, points)


def _objects(n, rng, covariance=False):
    R = random_rotations(n, rng)
    return [SimpleNamespace(instance_id=i + 1, class_id=(i % 6) + 1, rotation=R[i],
                            translation=rng.uniform(-0.3, 0.3, 3) + [0, 0, 1],
                            size=rng.uniform(0.05, 0.2, 3), score=0.5 + 0.1 * i,
                            covariance=np.diag(np.arange(1, 7) * 1e-4) if covariance else None,
                            points=np.zeros((4, 3), np.float32)) for i in range(n)]


def test_detections_from_pose_results():
    rng = np.random.default_rng(2)
    objects = _objects(3, rng, covariance=True)
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = messages.detections_msg(header, objects)
    assert len(msg.detections) == 3 and msg.header.frame_id == "camera"
    for det, obj in zip(msg.detections, objects, strict=True):
        assert det.header.stamp.sec == 12 and det.header.stamp.nanosec == 345
        assert det.id == str(obj.instance_id)
        hyp = det.results[0]
        assert hyp.hypothesis.class_id == ["bottle", "bowl", "camera"][obj.class_id - 1]
        assert hyp.hypothesis.score == pytest.approx(obj.score)
        p, q = hyp.pose.pose.position, hyp.pose.pose.orientation
        np.testing.assert_allclose([p.x, p.y, p.z], obj.translation)
        np.testing.assert_allclose(quaternion_to_matrix([q.x, q.y, q.z, q.w]), obj.rotation,
                                   atol=1e-9)
        np.testing.assert_allclose(np.reshape(hyp.pose.covariance, (6, 6)), obj.covariance)
        np.testing.assert_allclose([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z], obj.size)
        assert det.bbox.center == hyp.pose.pose


def test_single_sample_covariance_is_marked_not_estimated():
    """No spread estimated: -1 in the first element (sensor_msgs/Imu's convention), not zeros,
    which a fusion node would read as a perfectly known pose."""
    det = messages.detections_msg(Header(), _objects(1, np.random.default_rng(3)))
    cov = np.asarray(det.detections[0].results[0].pose.covariance)
    assert cov[0] == -1 and not np.any(cov[1:])


def test_transforms_and_markers():
    rng = np.random.default_rng(4)
    objects = _objects(2, rng)
    header = Header(frame_id="camera")
    tfs = messages.transforms(header, objects, ["bottle_0", "bowl_0"])
    assert [t.child_frame_id for t in tfs] == ["bottle_0", "bowl_0"]
    assert all(t.header.frame_id == "camera" for t in tfs)
    assert tfs[1].transform.translation.z == pytest.approx(objects[1].translation[2])

    tracker = messages.MarkerTracker()
    first = tracker.update(header, objects, ["a", "b"])
    assert len(first.markers) == 6  # box, axes, label per object
    box = next(m for m in first.markers if m.ns == "box" and m.id == 1)
    assert len(box.points) == 24  # 12 edges
    second = tracker.update(header, objects[:1], ["a"])
    deletes = [m for m in second.markers if m.action == m.DELETE]
    assert sorted((m.ns, m.id) for m in deletes) == [("axes", 2), ("box", 2), ("label", 2)]
    assert not [m for m in tracker.update(header, objects[:1], ["a"]).markers
                if m.action == m.DELETE]


def test_parameter_parsing():
    assert parse_class_map(["1:mug", "2: 2", ""]) == {1: 6, 2: 2}
    assert parse_palette(["mug:#ff0000", "bowl:0,255,0"]) == {(255, 0, 0): 6, (0, 255, 0): 2}
    for bad in (["x:mug"], ["1:teapot"], ["1:9"], ["mug"]):
        with pytest.raises(ValueError):
            parse_class_map(bad)
    with pytest.raises(ValueError, match="bad colour"):
        parse_palette(["mug:#gg0000"])
