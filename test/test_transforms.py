"""The ROS-free TF buffer (chains, interpolation, errors, waiting) and moving detected objects
into another frame."""

import threading

import numpy as np
import pytest

from posediff_ros.geometry import (
    axis_angle_to_matrix,
    box_corners,
    random_rotations,
    rotation_angle_deg,
)
from posediff_ros.hypotheses import cluster_poses
from posediff_ros.pipeline import DetectedObject
from posediff_ros.transforms import (
    Rigid,
    TransformBuffer,
    TransformUnavailable,
    interpolate,
    transform_object,
)

S = 1_000_000_000  # ns per second
Z = np.array([0.0, 0.0, 1.0])


def random_rigid(rng) -> Rigid:
    return Rigid(random_rotations(1, rng)[0], rng.uniform(-1, 1, 3))


def assert_rigid_close(a: Rigid, b: Rigid, atol=1e-9):
    np.testing.assert_allclose(a.rotation, b.rotation, atol=atol)
    np.testing.assert_allclose(a.translation, b.translation, atol=atol)


def turning(t_s: float) -> Rigid:
    """base_from_camera of a camera on a turntable: 0.5 rad/s about z, moving 0.2 m/s along
    x. Constant rate about a fixed axis and constant velocity: slerp + lerp are exact."""
    return Rigid(axis_angle_to_matrix(Z, 0.5 * t_s), np.array([0.2 * t_s, 0.1, 0.6]))


def test_rigid_algebra():
    rng = np.random.default_rng(0)
    a, b = random_rigid(rng), random_rigid(rng)
    p = rng.normal(size=(5, 3))
    np.testing.assert_allclose((a @ b).apply(p), a.apply(b.apply(p)), atol=1e-12)
    assert_rigid_close(a.inverse() @ a, Rigid.identity(), atol=1e-12)


def test_interpolation_slerp_and_lerp():
    a, b = turning(0.0), turning(2.0)
    for alpha in (0.0, 0.25, 0.5, 1.0):
        assert_rigid_close(interpolate(a, b, alpha), turning(2.0 * alpha), atol=1e-12)
    # the short way round: +170 deg to -170 deg passes 180, not 0
    r1 = Rigid(axis_angle_to_matrix(Z, np.deg2rad(170)), np.zeros(3))
    r2 = Rigid(axis_angle_to_matrix(Z, np.deg2rad(-170)), np.zeros(3))
    mid = interpolate(r1, r2, 0.5)
    assert rotation_angle_deg(mid.rotation) == pytest.approx(180.0, abs=1e-6)


def robot_buffer() -> TransformBuffer:
    """map -> odom (static), odom -> base_link (static), base_link -> camera (moving, 10 Hz
    for 2 s), base_link -> arm -> gripper (static)."""
    rng = np.random.default_rng(1)
    buf = TransformBuffer(cache_s=10.0)
    buf.set("map", "odom", 0, random_rigid(rng), static=True)
    buf.set("odom", "base_link", 0, random_rigid(rng), static=True)
    buf.set("base_link", "arm", 0, random_rigid(rng), static=True)
    buf.set("arm", "gripper", 0, random_rigid(rng), static=True)
    for k in range(21):
        buf.set("base_link", "camera", 100 * S + k * S // 10, turning(k / 10))
    return buf


def test_chain_with_a_moving_edge_is_interpolated_exactly():
    buf = robot_buffer()
    for t in (0.0, 0.05, 0.77, 1.234, 2.0):
        stamp = 100 * S + round(t * S)
        assert_rigid_close(buf.lookup("base_link", "camera", stamp), turning(t))
        base_from_map = buf.lookup("base_link", "map", stamp)
        map_from_camera = buf.lookup("map", "camera", stamp)
        assert_rigid_close(base_from_map @ map_from_camera, turning(t))
        # across branches: through base_link, the common ancestor
        gripper_from_base = buf.lookup("gripper", "base_link", stamp)
        assert_rigid_close(buf.lookup("gripper", "camera", stamp),
                           gripper_from_base @ turning(t))


def test_latest_common_time_and_identity():
    buf = robot_buffer()
    assert_rigid_close(buf.lookup("base_link", "camera", 0), turning(2.0))
    assert_rigid_close(buf.lookup("camera", "camera", 5), Rigid.identity())


def test_out_of_order_insertion_gives_the_same_answers():
    a, b = TransformBuffer(), TransformBuffer()
    stamps = list(range(0, 11))
    for k in stamps:
        a.set("base", "cam", k * S // 10, turning(k / 10))
    for k in np.random.default_rng(2).permutation(stamps):
        b.set("base", "cam", int(k) * S // 10, turning(k / 10))
    for t in (0.03, 0.5, 0.99):
        assert_rigid_close(a.lookup("base", "cam", round(t * S)),
                           b.lookup("base", "cam", round(t * S)), atol=1e-15)


def test_clear_errors():
    buf = robot_buffer()
    buf.set("world", "table", 0, Rigid.identity(), static=True)
    with pytest.raises(TransformUnavailable, match="'nowhere' does not exist") as err:
        buf.lookup("base_link", "nowhere", 100 * S)
    assert err.value.may_arrive
    with pytest.raises(TransformUnavailable, match="not connected"):
        buf.lookup("table", "camera", 100 * S)
    with pytest.raises(TransformUnavailable, match=r"0\.500 s after the newest") as err:
        buf.lookup("base_link", "camera", 102 * S + S // 2)
    assert err.value.may_arrive  # the transform may still come
    with pytest.raises(TransformUnavailable, match=r"1\.000 s before the oldest") as err:
        buf.lookup("base_link", "camera", 99 * S)
    assert not err.value.may_arrive  # gone for good: waiting cannot help


def test_history_is_bounded_by_the_cache_time():
    buf = TransformBuffer(cache_s=1.0)
    for k in range(31):  # 3 s at 10 Hz
        buf.set("base", "cam", k * S // 10, turning(k / 10))
    assert_rigid_close(buf.lookup("base", "cam", 25 * S // 10), turning(2.5))
    with pytest.raises(TransformUnavailable, match="before the oldest"):
        buf.lookup("base", "cam", 15 * S // 10)


def test_reparenting_replaces_the_history():
    buf = TransformBuffer()
    buf.set("a", "cam", 0, turning(0))
    buf.set("b", "cam", S, turning(1))
    assert buf.frames() == {"b", "cam"}  # "a" was only ever cam's old parent
    with pytest.raises(TransformUnavailable, match="'a' does not exist"):
        buf.lookup("a", "cam", S)
    assert_rigid_close(buf.lookup("b", "cam", S), turning(1))


def test_wait_returns_once_the_transform_arrives_and_times_out_otherwise():
    buf = TransformBuffer()
    buf.set("base", "cam", 0, turning(0))
    later = threading.Timer(0.2, lambda: buf.set("base", "cam", S, turning(1.0)))
    later.start()
    try:
        got = buf.wait("base", "cam", S // 2, timeout_s=10.0)
    finally:
        later.cancel()
    assert_rigid_close(got, turning(0.5))
    with pytest.raises(TransformUnavailable, match="after the newest"):
        buf.wait("base", "cam", 5 * S, timeout_s=0.05)


def _object(rng, n=24):
    """A mug in the camera frame with its samples in two yaw groups -> two hypotheses."""
    base = random_rotations(1, rng)[0]
    yaws = np.where(np.arange(n) < 16, 0.0, np.pi / 2) + 0.03 * rng.standard_normal(n)
    rot = np.stack([base @ axis_angle_to_matrix(np.array([0, 1.0, 0]), y) for y in yaws])
    rot = np.stack([axis_angle_to_matrix(rng.normal(size=3), 0.02 * rng.normal()) @ r
                    for r in rot])
    trans = np.array([0.1, -0.05, 0.7]) + 0.004 * rng.normal(size=(n, 3))
    hyps = cluster_poses(rot, trans)
    obj = DetectedObject(3, 6, hyps[0].rotation, hyps[0].translation, np.array([.1, .12, .09]),
                         0.9, hyps[0].covariance, rng.normal(size=(50, 3)).astype(np.float32),
                         hyps)
    return obj, rot, trans


def test_objects_move_into_the_target_frame_with_their_covariance():
    """Moving the clustered result must equal clustering the moved samples: poses, box corners
    and every covariance (rotation and translation blocks turned with the frame)."""
    rng = np.random.default_rng(3)
    obj, rot, trans = _object(rng)
    base_from_cam = random_rigid(rng)
    moved = transform_object(obj, base_from_cam)
    direct = cluster_poses(base_from_cam.rotation @ rot, base_from_cam.apply(trans))
    assert len(moved.hypotheses) == len(direct) == 2
    for h, d in zip(moved.hypotheses, direct, strict=True):
        np.testing.assert_allclose(h.rotation, d.rotation, atol=1e-9)
        np.testing.assert_allclose(h.translation, d.translation, atol=1e-12)
        np.testing.assert_allclose(h.covariance, d.covariance, atol=1e-12)
        assert h.weight == d.weight
    np.testing.assert_allclose(moved.covariance, direct[0].covariance, atol=1e-12)
    np.testing.assert_allclose(box_corners(moved.size, moved.rotation, moved.translation),
                               base_from_cam.apply(box_corners(obj.size, obj.rotation,
                                                               obj.translation)), atol=1e-12)
    np.testing.assert_allclose(moved.points, base_from_cam.apply(obj.points), atol=1e-5)
    assert moved.points.dtype == np.float32 and obj.hypotheses[0].rotation is not None
    # the original is untouched
    np.testing.assert_allclose(obj.translation, [0.1, -0.05, 0.7], atol=0.01)
