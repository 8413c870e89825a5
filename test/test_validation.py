"""ROS-free input checks (validation.py) and the run-time backend fallback (pipeline.py)."""

import numpy as np
import pytest

from posediff_ros.pipeline import FallbackOnFailure, Pipeline, PipelineConfig
from posediff_ros.validation import check_depth_range, limit_objects


def test_depth_range_names_the_problem():
    depth = np.full((4, 4), 800.0, np.float32)  # millimetres sent as metres
    why = check_depth_range(depth, (0.1, 5.0))
    assert "depth out of range: no pixel within 0.1-5 m (nearest 800 m" in why
    depth[0, 0] = 1.0
    assert check_depth_range(depth, (0.1, 5.0)) is None
    assert check_depth_range(np.zeros((4, 4), np.float32), (0.1, 5.0)) is None  # check_frame's


def test_depth_range_of_millimetre_images_as_sent():
    """uint16 depth is millimetres (as the node now reads it, without converting)."""
    depth = np.full((4, 4), 6000, np.uint16)  # 6 m
    assert "nearest 6 m, farthest 6 m" in check_depth_range(depth, (0.1, 5.0))
    depth[1, 1] = 800
    assert check_depth_range(depth, (0.1, 5.0)) is None
    assert check_depth_range(np.zeros((4, 4), np.uint16), (0.1, 5.0)) is None


def test_limit_objects_keeps_the_first_ids():
    assert limit_objects([1, 2, 3, 4], 2) == ([1, 2], [3, 4])
    assert limit_objects([1, 2], 0) == ([1, 2], [])


def _frame():
    depth = np.full((60, 80), 0.8, np.float32)
    mask = np.zeros((60, 80), np.int32)
    mask[20:40, 30:50] = 1
    mask[5:15, 5:15] = 2
    K = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    return depth, mask, K


def test_max_objects_in_the_pipeline():
    from posediff_ros.runtime import load_backend

    backend = load_backend("torch", "random")
    pipe = Pipeline(backend, PipelineConfig(min_points=20, max_objects=1))
    depth, mask, K = _frame()
    result = pipe.process(depth, mask, K, {1: 1, 2: 2})
    assert [o.instance_id for o in result.objects] == [1]
    assert result.skipped == [(2, "more than max_objects=1 objects in the frame")]


def test_backend_failing_at_run_time_falls_back_once():
    import torch

    from posediff_ros.runtime import load_backend

    broken = load_backend("torch", "random")
    broken.model.encoder = torch.nn.Linear(7, 7)  # a fault inside the backend: shape error
    lines = []
    backend = FallbackOnFailure(broken, lambda: load_backend("torch", "random"), lines.append)
    depth, mask, K = _frame()
    result = Pipeline(backend, PipelineConfig(min_points=20)).process(depth, mask, K,
                                                                       {1: 1, 2: 2})
    reference = Pipeline(load_backend("torch", "random"), PipelineConfig(min_points=20))
    expected = reference.process(depth, mask, K, {1: 1, 2: 2})
    assert len(lines) == 1 and "backend torch failed at run time (TypeError" in lines[0]
    assert backend.switched and backend.current is not broken
    assert len(result.objects) == len(expected.objects) == 2
    for got, want in zip(result.objects, expected.objects, strict=True):
        np.testing.assert_allclose(got.translation, want.translation, atol=1e-5)
    # the fallback itself failing is not hidden: it raises (the node logs and skips the frame)
    backend.current.model.encoder = torch.nn.Linear(7, 7)
    with pytest.raises(TypeError):
        backend.predict(np.zeros((1, backend.num_points, 3), np.float32), np.array([1]))
