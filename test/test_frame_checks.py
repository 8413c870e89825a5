"""The node's per-frame checks, ROS-free (frame_checks.frame_problems): which problems skip a
frame, which only warn, and how each is worded (the node logs exactly this text)."""

import numpy as np
import pytest

from posediff_ros.frame_checks import frame_problems


def _frame():
    depth = np.full((60, 80), 0.8, np.float32)
    mask = np.zeros((60, 80), np.int32)
    mask[20:40, 30:50] = 1
    K = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    return depth, mask, K


def check(depth, mask, K, camera_size=(80, 60), age=0.1, depth_range=(0.1, 5.0),
          background=0):
    return frame_problems(depth, mask, K, camera_size=camera_size, depth_range=depth_range,
                          background=background, camera_info_age_s=age, stale_after_s=5.0)


def test_a_good_frame_has_no_problems():
    assert check(*_frame()) == []


def test_camera_info_of_another_size_skips_the_frame():
    depth, mask, K = _frame()
    (problem,) = check(depth, mask, K, camera_size=(1280, 720))
    assert problem.skip and problem.kind == "camera_info"
    assert problem.text == "camera_info is 1280x720 but depth is 80x60"
    # width and height are not swapped: a transposed size is a mismatch too
    assert check(depth, mask, K, camera_size=(60, 80))[0].skip


@pytest.mark.parametrize("change,text", [
    ("no_info", "frame skipped: no camera_info received yet"),
    ("millimetres", "frame skipped: depth out of range: no pixel within 0.1-5 m"),
    ("nan", "frame skipped: depth image has no valid pixels"),
])
def test_unusable_frames_are_skipped_with_the_reason(change, text):
    depth, mask, K = _frame()
    if change == "no_info":
        K = None
    elif change == "millimetres":
        depth = depth * 1000
    elif change == "nan":
        depth[:] = np.nan
    (problem,) = check(depth, mask, K)
    assert problem.skip and problem.text.startswith(text), problem.text


def test_stale_camera_info_and_an_empty_mask_only_warn():
    depth, mask, K = _frame()
    (stale,) = check(depth, mask, K, age=12.0)
    assert not stale.skip and stale.kind == "stale_info"
    assert stale.text == "camera_info is stale (12 s old): using the last one"
    assert check(depth, mask, K, age=4.9) == []
    (empty,) = check(depth, np.zeros_like(mask), K)
    assert not empty.skip and empty.period_s == 30.0
    assert empty.text == "mask has no objects (all pixels = background 0)"
    # the background value is the parameter's: with background 1 this mask is empty too
    assert check(depth, mask * 0 + 1, K, background=1)[0].kind == "empty"
    assert [p.kind for p in check(depth, np.zeros_like(mask), K, age=9.0)] == ["stale_info",
                                                                                "empty"]


@pytest.mark.parametrize("depth_dtype", [np.float32, np.uint16])
def test_one_valid_pixel_off_the_sampling_grid_is_enough(depth_dtype):
    """The checks look at every 8th pixel first, then at the whole image: one valid depth
    pixel (in range) and one object pixel that the coarse grid misses still count (a check
    of the coarse grid alone would skip this frame as empty or out of range)."""
    depth, mask, K = _frame()
    depth = np.zeros(depth.shape, depth_dtype)
    depth[3, 5] = 800 if depth_dtype == np.uint16 else 0.8
    mask[:] = 0
    mask[3, 5] = 1
    assert check(depth, mask, K) == []
    depth[3, 5] = 9000 if depth_dtype == np.uint16 else 9.0  # the only pixel: out of range
    (problem,) = check(depth, mask, K)
    assert problem.skip and "depth out of range" in problem.text
