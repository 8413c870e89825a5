"""The ROS-free frame pipeline on a rendered scene with a real (untrained) torch model."""

import numpy as np
import pytest

from posediff_ros.pipeline import (
    Pipeline,
    PipelineConfig,
    check_frame,
    instance_ids,
    instances_from_color_mask,
    object_names,
)
from posediff_ros.runtime import SamplerSettings, load_backend


@pytest.fixture(scope="module")
def scene():
    from posediff_ros.data.synthetic import render_scene

    frame = render_scene(np.random.default_rng(3), num_objects=3)
    depth = frame.depth.astype(np.float32) / 1000
    mask = np.where(frame.mask == 255, 0, frame.mask).astype(np.int32)
    classes = {g.instance_id: g.class_id for g in frame.instances}
    return frame, depth, mask, classes


@pytest.fixture(scope="module")
def pipeline():
    import torch

    torch.set_num_threads(1)
    return Pipeline(load_backend("torch", "random"), PipelineConfig(min_points=30))


def test_one_batched_call_for_all_objects(scene, pipeline):
    frame, depth, mask, classes = scene
    calls = []
    predict = pipeline.backend.predict

    def counting(points, class_ids):
        calls.append((points.shape, list(class_ids)))
        return predict(points, class_ids)

    pipeline.backend.predict = counting
    try:
        result = pipeline.process(depth, mask, frame.K, classes)
    finally:
        pipeline.backend.predict = predict
    visible = instance_ids(mask, 0)
    assert len(calls) == 1
    assert calls[0][0] == (len(result.objects), pipeline.backend.num_points, 3)
    assert len(result.objects) + len(result.skipped) == len(visible)
    assert len(result.objects) >= 1
    for obj in result.objects:
        assert obj.class_id == classes[obj.instance_id]
        np.testing.assert_allclose(obj.rotation @ obj.rotation.T, np.eye(3), atol=1e-5)
        assert obj.size.shape == (3,) and 0 <= obj.score <= 1 and obj.covariance is None
        # the points the model saw are the object's own: near its true centre
        gt = next(g for g in frame.instances if g.instance_id == obj.instance_id)
        assert np.linalg.norm(obj.points.mean(0) - gt.translation) < 0.5 * np.linalg.norm(gt.size)
    assert {"points", "inference"} <= set(result.timings_ms)


def test_several_samples_give_weighted_modes(scene):
    """num_samples > 1: each object's samples become modes (hypotheses.py), heaviest first;
    the object's pose and covariance are the heaviest mode's. The bundled (trained) model,
    so the samples of an object agree closely enough to form modes of several members."""
    frame, depth, mask, classes = scene
    backend = load_backend("torch", settings=SamplerSettings(num_samples=16, seed=3))
    for max_hypotheses in (3, 1):
        pipeline = Pipeline(backend, PipelineConfig(min_points=30, max_hypotheses=max_hypotheses))
        result = pipeline.process(depth, mask, frame.K, classes)
        assert result.objects and "hypotheses" in result.timings_ms
        for obj in result.objects:
            hyps = obj.hypotheses
            assert 1 <= len(hyps) <= max_hypotheses
            assert [h.weight for h in hyps] == sorted((h.weight for h in hyps), reverse=True)
            assert sum(h.count for h in hyps) <= 16
            assert sum(h.weight for h in hyps) <= 1.0 + 1e-12
            assert obj.rotation is hyps[0].rotation and obj.covariance is hyps[0].covariance
            assert hyps[0].count >= 2  # trained: samples agree, the top mode has members
            cov = hyps[0].covariance
            np.testing.assert_allclose(cov, cov.T, atol=1e-12)
            assert np.linalg.eigvalsh(cov).min() > -1e-12
    single = Pipeline(backend, PipelineConfig(min_points=30))
    backend.configure(SamplerSettings(num_samples=1))
    assert all(not o.hypotheses for o in single.process(depth, mask, frame.K, classes).objects)


def test_averaging_predicts_k_subsets_of_each_object_in_one_call(scene):
    """average_subsets K: one backend call on B x K rows, object b's K subsets in rows
    b*K .. b*K+K-1, each a different draw of that object's points; the object's pose is the
    average of its K predictions (averaging.py) and its points all K subsets."""
    from posediff_ros.averaging import AveragingConfig, average_batch

    frame, depth, mask, classes = scene
    backend = load_backend("torch", settings=SamplerSettings(num_samples=1, seed=0))
    pipeline = Pipeline(backend, PipelineConfig(min_points=30, subsets=4))
    calls, predict = [], backend.predict

    def recording(points, class_ids):
        calls.append((points.copy(), np.array(class_ids), predict(points, class_ids)))
        return calls[-1][2]

    backend.predict = recording
    result = pipeline.process(depth, mask, frame.K, classes)
    assert len(calls) == 1 and len(result.objects) >= 2
    points, class_ids, poses = calls[0]
    n = backend.num_points
    assert points.shape == (4 * len(result.objects), n, 3)
    expected = average_batch(poses, class_ids[::4], AveragingConfig(subsets=4))
    for b, obj in enumerate(result.objects):
        rows = points[4 * b:4 * b + 4]
        assert (class_ids[4 * b:4 * b + 4] == obj.class_id).all()
        gt = next(g for g in frame.instances if g.instance_id == obj.instance_id)
        for r in rows:  # the object's own points, ...
            assert np.linalg.norm(r.mean(0) - gt.translation) < 0.5 * np.linalg.norm(gt.size)
        assert all(not np.array_equal(rows[0], r) for r in rows[1:])  # ... other draws
        np.testing.assert_array_equal(obj.points, rows.reshape(4 * n, 3))
        np.testing.assert_allclose(obj.rotation, expected[b].rotation)
        np.testing.assert_allclose(obj.translation, expected[b].translation)


def test_averaging_through_the_tracker_with_warm_starts(scene):
    """The node's default path (tracking) averages too: the tracker's model calls get K rows
    per object, a warm start's prior repeated for each of them, and the second frame's
    warm-started averaged poses stay next to the first frame's cold ones (same frame)."""
    from posediff_ros.geometry import rotation_error_deg
    from posediff_ros.tracking import Tracker, TrackerConfig

    frame, depth, mask, classes = scene
    backend = load_backend("torch", settings=SamplerSettings(num_samples=1, seed=0))
    pipeline = Pipeline(backend, PipelineConfig(min_points=30, subsets=3))
    tracker = Tracker(TrackerConfig(warm_start=True, smoothing=False))
    calls, predict = [], backend.predict

    def recording(points, class_ids, warm=None):
        calls.append((len(points), None if warm is None else len(warm.rotation)))
        return predict(points, class_ids, *([] if warm is None else [warm]))

    backend.predict = recording
    first = pipeline.track(tracker, depth, mask, frame.K, classes, 0, 0.0)
    second = pipeline.track(tracker, depth, mask, frame.K, classes, 0, 0.1)
    b = len(first.objects)
    assert b >= 2 and calls[0] == (3 * b, None)
    assert (3 * b, 3 * b) in calls[1:], calls  # warm: one prior per subset row
    for a, c in zip(first.objects, second.objects, strict=True):
        assert a.instance_id == c.instance_id
        assert np.linalg.norm(a.translation - c.translation) < 0.01
        assert rotation_error_deg(a.rotation, c.rotation) < 5.0


def test_averaging_refuses_points_that_are_not_k_subsets():
    """A caller that hands the averaging pipeline one subset per object gets a clear error,
    not a silent reshape of P points into K subsets of P / K."""
    backend = load_backend("torch", "random")
    pipeline = Pipeline(backend, PipelineConfig(subsets=4))
    pts = np.zeros((2, backend.num_points, 3), np.float32)
    with pytest.raises(ValueError, match="needs 4 x"):
        pipeline.predict(pts, np.array([1, 2]))


def test_unknown_classes_and_tiny_objects_are_skipped_with_reasons(scene, pipeline):
    frame, depth, mask, classes = scene
    ids = instance_ids(mask, 0)
    partial = {ids[0]: 9}  # not a NOCS class; the others have none
    result = pipeline.process(depth, mask, frame.K, partial)
    reasons = dict(result.skipped)
    assert not result.objects and set(reasons) == set(ids)
    assert "not a NOCS class" in reasons[ids[0]]
    assert all("no class" in reasons[i] for i in ids[1:])
    tiny = np.zeros_like(mask)
    tiny[240, 320:330] = 1  # ten pixels
    result = pipeline.process(depth, tiny, frame.K, {1: 6})
    assert not result.objects and "valid depth pixels" in result.skipped[0][1]


@pytest.mark.parametrize("change,reason", [
    ("no_info", "no camera_info"),
    ("size", "size mismatch"),
    ("zero", "no valid pixels"),
    ("nan", "no valid pixels"),
    ("bad_k", "intrinsics are invalid"),
])
def test_frame_checks(scene, change, reason):
    frame, depth, mask, _ = scene
    K = frame.K.copy()
    if change == "no_info":
        K = None
    elif change == "size":
        mask = mask[:-1]
    elif change == "zero":
        depth = np.zeros_like(depth)
    elif change == "nan":
        depth = np.full_like(depth, np.nan)
    elif change == "bad_k":
        K[0, 0] = 0
    assert reason in check_frame(depth, mask, K)


def test_good_frame_passes_checks(scene):
    frame, depth, mask, _ = scene
    assert check_frame(depth, mask, frame.K) is None


def test_colour_coded_class_masks():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[2:5, 2:5] = (255, 0, 0)  # two separate mugs
    rgb[10:14, 10:14] = (255, 0, 0)
    rgb[2:5, 12:18] = (0, 255, 0)  # a bowl
    rgb[18, 18] = (1, 2, 3)  # unknown colour: background
    mask, classes = instances_from_color_mask(rgb, {(255, 0, 0): 6, (0, 255, 0): 2})
    assert sorted(classes.values()) == [2, 6, 6] and len(instance_ids(mask, 0)) == 3
    assert mask[18, 18] == 0 and mask[3, 3] != mask[11, 11]


def test_object_names_follow_the_id():
    from types import SimpleNamespace

    objs = [SimpleNamespace(instance_id=i, class_id=c) for i, c in [(5, 6), (2, 6), (3, 1)]]
    assert object_names(objs, "cam/") == ["cam/mug_5", "cam/mug_2", "cam/bottle_3"]


def test_node_extraction_equals_the_evaluators(scene):
    """The node's path (background given, uint16 millimetres as sent, classes filtered) gives
    the same points as posediff-eval's (id list, float metres), same random stream."""
    from posediff_ros.data.points import frame_objects

    frame, depth, mask, classes = scene
    backend = load_backend("torch", "random")
    depth_mm = frame.depth  # uint16 millimetres, as the camera sends it
    found, _ = Pipeline(backend, PipelineConfig(seed=7, min_points=30)).extract(
        depth_mm, mask.astype(np.uint8), frame.K, classes)
    full = frame_objects(depth, mask, frame.K, [i for i, _, _ in found], backend.num_points,
                         np.random.default_rng(7), depth_range=PipelineConfig().depth_range,
                         min_points=30)
    assert [i for i, _, _ in found] == list(full.ids) and len(found) >= 2
    np.testing.assert_allclose(np.stack([p for _, _, p in found]), full.points, atol=1e-6)


def test_a_frames_points_come_from_the_seed_alone(scene):
    """Pipeline keeps one generator and rewinds it to the seed each frame (cheaper than
    seeding anew): the same frame gives the same points after other frames and across a
    seed change, and a new seed gives other points. Catches a generator not rewound (the
    second frame drawing on from the first) and a stale seed kept after config.seed
    changed."""
    frame, _, mask, classes = scene
    other = np.where(mask == mask.max(), 0, mask).astype(np.uint8)  # one object fewer
    pipe = Pipeline(load_backend("torch", "random"), PipelineConfig(seed=7, min_points=30))

    def points() -> np.ndarray:
        found, _ = pipe.extract(frame.depth, mask.astype(np.uint8), frame.K, classes)
        return np.stack([p for _, _, p in found])

    first = points()
    pipe.extract(frame.depth, other, frame.K, classes)
    assert np.array_equal(points(), first)
    pipe.config.seed = 8
    reseeded = points()
    assert not np.array_equal(reseeded, first)
    pipe.config.seed = 7
    assert np.array_equal(points(), first)
    pipe.config.seed = 8
    assert np.array_equal(points(), reseeded)
