"""Image sequences (data/sequences.py) and the sequence metrics (tracking/evaluation.py)."""

import numpy as np
import pytest

from posediff_ros.data.sequences import (
    KINDS,
    generate_sequence,
    read_sequence,
    shuffle_mask_ids,
    write_sequence,
)
from posediff_ros.geometry import REAL275_K, rotation_about_y
from posediff_ros.tracking.evaluation import Record, id_switches, jitter
from posediff_ros.tracking.smoothing import so3_exp

SMALL = {"K": REAL275_K * [[0.25], [0.25], [1]], "width": 160, "height": 120}


def _world_poses(frame):
    """{object: world-from-object 4x4} from the frame's camera pose and ground truth."""
    out = {}
    for g in frame.instances:
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = g.rotation, g.translation
        out[g.instance_id] = frame.world_from_camera @ T
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_still_objects_stay_put_in_the_world(kind):
    """Ground truth per frame is consistent: a still object's world pose (camera pose x its
    camera-frame pose) is the same in every frame, whatever the camera does; only the picked
    object moves, and only while it is carried. A camera pose stored inverted, or ground truth
    of another frame, breaks this by centimetres."""
    seq = generate_sequence(kind, seed=11, frames=12, rate=15.0, num_objects=3, **SMALL)
    first = _world_poses(seq.frames[0])
    moved = set()
    cams = [f.world_from_camera[:3, 3] for f in seq.frames]
    for f in seq.frames[1:]:
        for oid, T in _world_poses(f).items():
            if oid not in first:
                continue
            if np.allclose(T, first[oid], atol=1e-6):
                assert not f.moving[oid]
            else:
                moved.add(oid)
        assert set(f.moving) == {g.instance_id for g in f.instances}
    steps = np.linalg.norm(np.diff(cams, axis=0), axis=1)
    if kind == "static":
        assert not moved and not steps.any()
    elif kind == "pick_place":
        assert len(moved) == 1
        assert any(f.moving[o] for f in seq.frames for o in moved if o in f.moving)
    else:
        assert not moved and steps.min() > 0  # the camera moves every frame
    if kind == "orbit":  # 15-30 deg/s around the table at 0.6-1 m: 1-3.5 cm per frame
        assert 0.005 < np.median(steps) < 0.04


def test_write_read_round_trip_and_shuffled_ids(tmp_path):
    seq = generate_sequence("pick_place", seed=3, frames=4, num_objects=3, **SMALL)
    back = read_sequence(write_sequence(seq, tmp_path))
    assert (back.kind, back.rate, len(back.frames)) == ("pick_place", 15.0, 4)
    for a, b in zip(seq.frames, back.frames, strict=True):
        assert np.array_equal(a.depth, b.depth) and np.array_equal(a.mask, b.mask)
        assert a.moving == b.moving
        assert [g.instance_id for g in a.instances] == [g.instance_id for g in b.instances]
        assert np.allclose(a.instances[0].rotation, b.instances[0].rotation)
    f = seq.frames[0]
    mask, identity = shuffle_mask_ids(f, np.random.default_rng(0))
    for new, old in identity.items():
        assert np.array_equal(mask == new, f.mask == old)


# --- metrics on constructed records ------------------------------------------------------


def _record(frame, identity, R_gt, t_gt, R, t, published_id=1, moving=False, class_id=3):
    return Record("s", "orbit", frame, identity, published_id, class_id, R, t, np.ones(3),
                  R_gt, t_gt, np.ones(3), True, moving)


def test_jitter_is_the_change_of_the_error_not_of_the_pose():
    """The camera turns 5 deg and moves 2 cm per frame; the estimate is the truth plus a
    fixed offset, except one frame 3 mm / 1 deg further off: jitter = 0 everywhere but the
    two pairs around that frame (3 mm, 1 deg). Plain frame-to-frame change would give
    centimetres and 5 degrees on every pair."""
    recs = []
    offset_R, offset_t = so3_exp([0.02, 0, 0]), np.array([0.01, 0, 0])
    for k in range(6):
        R_gt, t_gt = rotation_about_y(np.deg2rad(5 * k)), np.array([0.02 * k, 0, 0.8])
        R, t = offset_R @ R_gt, t_gt + offset_t
        if k == 3:
            R, t = so3_exp([0, 0, np.deg2rad(1)]) @ R, t + [0, 0.003, 0]
        recs.append(_record(k, 1, R_gt, t_gt, R, t))
    mm, deg = jitter(recs)
    assert np.allclose(sorted(mm), [0, 0, 0, 3, 3], atol=1e-6)
    assert np.allclose(sorted(deg), [0, 0, 0, 1, 1], atol=1e-6)
    # frames where the object moved in the world, or gaps, give no pair
    recs[4].moving = True
    del recs[1]
    mm, _ = jitter(recs)
    assert len(mm) == 2


def test_id_switches_count_changes_of_each_objects_id():
    R, t = np.eye(3), np.zeros(3)
    ids = {1: [5, 5, 5, 7, 7, 5], 2: [6, 6, 6, 6, 6, 6]}
    recs = [_record(k, obj, R, t, R, t, published_id=pid)
            for obj, seq in ids.items() for k, pid in enumerate(seq)]
    assert id_switches(recs) == 2
    assert id_switches([r for r in recs if r.identity == 2]) == 0


def test_done_criteria_compare_tracking_with_per_frame():
    from posediff_ros.tracking.report import criteria

    def mode(name, acc, mm, deg, evals, ms, static_switches):
        return {"mode": name, "accuracy": {"10d5cm": acc}, "jitter_mm_p95": mm,
                "jitter_deg_p95": deg, "network_evaluations_per_object": evals,
                "model_ms_per_object": ms, "by_kind": {"static": {"id_switches": static_switches}}}

    lines = criteria([mode("per-frame", 90.0, 9.0, 6.0, 8.0, 10.0, 40),
                      mode("tracking", 90.5, 2.9, 2.1, 2.5, 4.0, 0)])
    met = {line.split(":")[0][2:]: "NOT met" not in line for line in lines[2:-1]}
    assert met == {"10d5cm tracking >= per-frame": True,
                   "jitter p95 (mm) <= 1/3 of per-frame": True,
                   "jitter p95 (deg) <= 1/3 of per-frame": False,
                   "0 id switches on static scenes": True,
                   "score-net evaluations per object <= 1/2": True}
    # with model passes counted (encoder + head once per object and call): that criterion too,
    # for every tracking mode present
    every = mode("tracking-every-2", 90.0, 2.0, 1.0, 4.4, 3.0, 0) | {
        "model_objects_per_object": 0.55}
    lines = criteria([mode("per-frame", 90.0, 9.0, 6.0, 8.0, 10.0, 40) | {
        "model_objects_per_object": 1.0}, every])
    assert lines[0].startswith("Done-when figures of issue 14, tracking-every-2")
    assert "- model passes per object <= 1/2: NOT met (0.55 vs 0.50)" in lines
