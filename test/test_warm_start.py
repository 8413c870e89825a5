"""Warm start (sampler init=warm, torch backend predict(..., warm)): the bundled model started
from a given pose, on rendered objects with known poses."""

import numpy as np
import pytest
import torch

from posediff_ros.data.points import frame_objects
from posediff_ros.data.synthetic import render_scene
from posediff_ros.metrics import object_errors
from posediff_ros.model.sampler import start_point
from posediff_ros.runtime import DEFAULT_MODEL, load_backend
from posediff_ros.runtime.base import WarmStart
from posediff_ros.tracking.smoothing import so3_exp

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="no bundled model")


def test_start_point_adds_noise_to_the_given_pose():
    noise, pose = torch.randn(2, 3, 9), torch.randn(2, 9)
    x = start_point("warm", noise, torch.tensor(0.1), start_pose=pose)
    assert torch.allclose(x, pose[:, None] + 0.1 * noise)
    with pytest.raises(ValueError, match="start pose"):
        start_point("warm", noise, torch.tensor(0.1))


@pytest.fixture(scope="module")
def objects():
    # scenes and point sampling draw from separate streams: the objects do not depend on how
    # many random numbers the extraction takes
    rng, points_rng = np.random.default_rng(7), np.random.default_rng(107)
    backend = load_backend("torch", DEFAULT_MODEL)
    pts, cls, R, t, hv = [], [], [], [], []
    for _ in range(6):
        frame = render_scene(rng, num_objects=4)
        insts = {g.instance_id: g for g in frame.instances}
        objs = frame_objects(frame.depth, frame.mask, frame.K, list(insts), backend.num_points,
                             points_rng, min_points=100)
        for k, i in enumerate(objs.ids.tolist()):
            g = insts[i]
            pts.append(objs.points[k]), cls.append(g.class_id), R.append(g.rotation)
            t.append(g.translation), hv.append(g.handle_visible)
    return backend, np.stack(pts), np.array(cls), np.stack(R), np.stack(t), np.array(hv)


def _errors(objects, batch):
    _, _, cls, R, t, hv = objects
    e = object_errors(batch.rotation.astype(np.float64), batch.translation.astype(np.float64),
                      R, t, cls, hv)
    return e.rot_deg, e.trans_cm


def test_a_warm_start_from_the_true_pose_stays_there(objects):
    """From the true pose at a small t0 with one step the result is the true pose within
    millimetres; ignoring the start (the configured regression start) or a wrong frame
    (camera instead of normalised) gives centimetres and degrees."""
    backend, pts, cls, R, t, _ = objects
    rot, trans = _errors(objects, backend.predict(pts, cls, WarmStart(R, t, 0.05, 1)))
    assert np.median(trans) < 0.2 and np.median(rot) < 2.0, (np.median(trans), np.median(rot))
    cold_rot, cold_trans = _errors(objects, backend.predict(pts, cls))
    assert np.median(cold_trans) > 2 * np.median(trans)


def test_a_warm_start_corrects_an_offset_prior(objects):
    """Started 2 cm / 10 deg off the truth at t0 0.25 with two steps, the result is closer to
    the truth than the start (the score pulls it back): what lets a track recover."""
    backend, pts, cls, R, t, _ = objects
    rng = np.random.default_rng(0)
    R0 = np.stack([so3_exp(v / np.linalg.norm(v) * np.deg2rad(10)) @ r
                   for v, r in zip(rng.normal(size=(len(R), 3)), R, strict=True)])
    d = rng.normal(size=t.shape)
    t0 = t + 0.02 * d / np.linalg.norm(d, axis=1, keepdims=True)
    rot, trans = _errors(objects, backend.predict(pts, cls, WarmStart(R0, t0, 0.25, 2)))
    # started at 2.0 cm; over ~20 objects the median lands at 1.0-1.3 cm depending on the
    # scenes drawn (seeds 7-11), a start left uncorrected stays at 2.0
    assert np.median(trans) < 1.5, np.median(trans)
    assert np.median(rot) < 7.0, np.median(rot)  # started at 10 deg (symmetric: less)
