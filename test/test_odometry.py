"""The camera's motion from two depth images (tracking/odometry.py: point-to-plane ICP) and
the moved-object check, on frames of the real renderer (data/sequences.py) with their true
camera poses."""

import numpy as np
import pytest

from posediff_ros.data.points import ObjectPixels, extract_objects
from posediff_ros.data.sequences import generate_sequence
from posediff_ros.data.synthetic import BACKGROUND
from posediff_ros.tracking.odometry import OdometryConfig, icp, off_surface, prepare


@pytest.fixture(scope="module")
def orbit():
    """Frames 0 and 2 of an orbiting camera (1-1.5 cm apart at the objects) and their motion
    p_2 = R p_0 + t."""
    seq = generate_sequence("orbit", 11, frames=3)
    a, b = seq.frames[0], seq.frames[2]
    T = np.linalg.inv(b.world_from_camera) @ a.world_from_camera
    return seq.K, a, b, T[:3, :3], T[:3, 3]


def _metres(frame):
    return frame.depth.astype(np.float32) / 1000.0


def test_icp_finds_the_cameras_motion(orbit):
    """At the objects (where tracks are), the found motion is within 3 mm of the true one;
    the true motion there is 1-1.5 cm, so no motion (identity), R^T, or a linearisation
    with the wrong sign (which diverges) is far off."""
    K, a, b, R, t = orbit
    cfg = OdometryConfig()
    found = icp(prepare(_metres(a), K, cfg), prepare(_metres(b), K, cfg), None, cfg)
    assert found is not None
    R_icp, t_icp, pairs = found
    centres = np.stack([g.translation for g in a.instances])  # camera frame of frame 0
    true = centres @ R.T + t
    assert np.linalg.norm(true - centres, axis=1).min() > 0.01  # the test can fail
    err = np.linalg.norm(centres @ R_icp.T + t_icp - true, axis=1)
    assert err.max() < 0.003, err
    assert pairs > 1000


def _motion_error_at_objects(found, frame_before, T) -> np.ndarray:
    """How far (m) the found motion puts the objects of `frame_before` from where the true
    motion T (4x4, p_now = T p_before) does."""
    centres = np.stack([g.translation for g in frame_before.instances])
    R, t = found[0], found[1]
    return np.linalg.norm(centres @ R.T + t - (centres @ T[:3, :3].T + T[:3, 3]), axis=1)


def test_icp_finds_the_motion_of_a_camera_that_turned_back():
    """The camera moved 4.4 cm at the objects and comes back in one frame: ICP started from
    the last motion only (8.8 cm off) ended 14 cm off; from it and from no motion, the closer
    fit kept, within 3 mm."""
    seq = generate_sequence("orbit", 11, frames=2, rate=2.5)  # 6 frames of 15 Hz apart
    a, b = seq.frames
    T = np.linalg.inv(a.world_from_camera) @ b.world_from_camera  # back: p_a = T p_b
    cfg = OdometryConfig()
    last = np.linalg.inv(T)  # the motion a -> b, the one before
    found = icp(prepare(_metres(b), seq.K, cfg), prepare(_metres(a), seq.K, cfg),
                (last[:3, :3], last[:3, 3]), cfg)
    assert found is not None
    assert _motion_error_at_objects(found, b, T).max() < 0.003
    assert _motion_error_at_objects((np.eye(3), np.zeros(3)), b, T).min() > 0.03  # can fail


def test_icp_at_320x240_as_at_640x480():
    """The levels scale with the image: at 320x240 the (8, 4) levels of a 640-wide image
    (40x30 pixels) held too few pairs and ICP found nothing (the tracker fell back to the
    objects' centroids); scaled to (4, 2), the motion within 3 mm."""
    from posediff_ros.ros.synthetic_camera import scaled_k

    K = scaled_k(320, 240)
    seq = generate_sequence("orbit", 11, frames=2, rate=7.5, K=K, width=320, height=240)
    a, b = seq.frames
    T = np.linalg.inv(b.world_from_camera) @ a.world_from_camera
    cfg = OdometryConfig()
    found = icp(prepare(_metres(a), K, cfg), prepare(_metres(b), K, cfg), None, cfg)
    assert found is not None
    assert _motion_error_at_objects(found, a, T).max() < 0.003
    assert found[2] > 300


def _object_points(frame, K, instance, keep=None):
    mask = np.where(frame.mask == BACKGROUND, 0, frame.mask).astype(np.int32)
    if keep is not None:
        mask = np.where(keep, mask, 0)
    pixels = ObjectPixels.of(mask, _metres(frame), (0.1, 3.0), background=0)
    found = extract_objects(pixels, K, [instance], 256, np.random.default_rng(0))
    return found.points[0]


def test_off_surface_tells_a_moved_object_from_a_changed_mask(orbit):
    """An object that stayed: its points (undone by the camera's motion) lie on the previous
    frame's surface, also when its mask lost its left half (a centroid jump of centimetres).
    The same points 3 cm away (it was moved): many of them are off it."""
    K, a, b, R, t = orbit
    cfg = OdometryConfig()
    before = prepare(_metres(a), K, cfg)[-1]
    g = max(b.instances, key=lambda g: (b.mask == g.instance_id).sum())
    pts = _object_points(b, K, g.instance_id)
    assert off_surface(pts, R, t, before, 0.01) < 0.1
    cols = np.nonzero((b.mask == g.instance_id).any(axis=0))[0]
    right = np.arange(b.mask.shape[1])[None, :] >= (cols.min() + cols.max()) // 2
    half = _object_points(b, K, g.instance_id, keep=np.broadcast_to(right, b.mask.shape))
    assert np.linalg.norm(half.mean(0) - pts.mean(0)) > 0.01  # its centroid jumped
    assert off_surface(half, R, t, before, 0.01) < 0.1
    moved = pts + np.array([0.0, -0.03, 0.0])  # lifted 3 cm (camera y points down)
    # about half of them (some land on where the object itself was, within 1 cm): beyond
    # the fraction the tracker calls moved
    assert off_surface(moved, R, t, before, 0.01) > 1.5 * cfg.moved_fraction


def test_tracker_takes_the_cameras_motion_from_the_depth(orbit):
    """One object (no centroid fit possible) seen by the moving camera: with the depth images
    the tracker moves the track by the ICP motion, so the object is still and, with
    estimate_every 2, skips the model every other frame; its published pose follows the
    camera. Without the depth (or with the depth not used) there is no camera motion: the
    object is estimated every frame."""
    from posediff_ros.runtime.base import PoseBatch
    from posediff_ros.tracking import Observation, Tracker, TrackerConfig

    K, a, b, R, t = orbit
    g = max(a.instances, key=lambda g: (a.mask == g.instance_id).sum())
    truth = {0: (g.rotation, g.translation), 1: (R @ g.rotation, R @ g.translation + t)}
    asked = []

    def run(depth_used: bool) -> list:
        tracker, out = Tracker(TrackerConfig(warm_start=False, estimate_every=2)), []
        for k in range(6):  # the camera goes back and forth between the two views
            frame = (a, b)[k % 2]
            obs = [Observation(g.instance_id, g.class_id,
                               _object_points(frame, K, g.instance_id))]

            def predict(points, classes, warm, k=k):
                asked.append(k)
                Rt, tt = truth[k % 2]
                return PoseBatch(Rt[None], tt[None], np.full((1, 3), 0.1), np.array([0.9]))

            out += tracker.step(obs, predict, k / 15, depth=_metres(frame) if depth_used
                                else None, K=K)
        return out

    out = run(True)
    assert asked == [0, 1, 2, 4], asked  # 2 estimates first, then every 2nd frame
    for k, p in enumerate(out):
        assert np.linalg.norm(p.translation - truth[k % 2][1]) < 0.005, (k, p.estimated)
    asked.clear()
    run(False)
    assert asked == list(range(6))
