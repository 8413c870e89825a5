"""posediff_node's parameters as one frozen value (ros/params.NodeParams), ROS-free: the
shipped config/pose.yaml parses, "not set" (0 / "" / -1 on the ROS side) becomes None, bad
combinations are refused with the reason, and only set sampler fields override the model's."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from posediff_ros.ros.params import NodeParams

POSE_YAML = Path(__file__).resolve().parents[1] / "config" / "pose.yaml"


@pytest.fixture
def values() -> dict:
    return dict(yaml.safe_load(POSE_YAML.read_text())["/**"]["ros__parameters"])


def test_the_shipped_parameters_leave_the_model_in_charge(values):
    p = NodeParams.from_ros(values)
    assert (p.steps, p.solver, p.w_schedule, p.w_max, p.init) == (None,) * 5
    assert (p.model_path, p.num_points, p.camera_frame, p.threads) == (None, None, None, 1)
    assert p.seed == 0 and p.num_samples == 1
    assert p.sampler_overrides() == {"num_samples": 1, "seed": 0}
    assert p.sync_topics == ["depth", "mask", "detections"]
    assert p.depth_range == (0.1, 5.0)
    assert (p.average_subsets, p.average_reject_outliers) == (1, True)  # averaging off
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.steps = 3


def test_set_values_override_and_minus_one_seed_is_new_noise(values):
    values.update(steps=6, solver="heun", w_max=0.0, seed=-1, init="regression",
                  class_source="parameter", mask_classes=["1:mug", "2:bowl"])
    p = NodeParams.from_ros(values)
    assert p.sampler_overrides() == {"steps": 6, "solver": "heun", "w_max": 0.0,
                                     "num_samples": 1, "init": "regression", "seed": None}
    assert p.mask_classes == {1: 6, 2: 2} and p.sync_topics == ["depth", "mask"]


@pytest.mark.parametrize("change,message", [
    ({"class_source": "yolo"}, "class_source 'yolo' not in"),
    ({"depth_min": 5.0}, "depth_min 5.0 must be < depth_max 5.0"),
    ({"class_source": "parameter"}, "class_source=parameter needs mask_classes"),
    ({"class_source": "color_mask"}, "class_source=color_mask needs class_colors"),
    ({"mask_classes": ["mug"]}, "is not '<mask id>:<class>'"),
    ({"average_subsets": 0}, "average_subsets 0 must be >= 1"),
])
def test_bad_combinations_are_refused_with_the_reason(values, change, message):
    values.update(change)
    with pytest.raises(ValueError, match=message):
        NodeParams.from_ros(values)
