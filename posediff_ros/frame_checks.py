"""Everything checked about a frame before its objects are extracted (ROS-free).

The node converts the messages (ros/convert.py) and hands the arrays here; each problem comes
back as one readable sentence with a kind (what a caller throttles its log line by) and
whether the frame is skipped or only warned about. Nothing raises: bad input is reported.
"""

from dataclasses import dataclass

import numpy as np

from posediff_ros.pipeline import check_frame
from posediff_ros.validation import any_pixel, check_depth_range


@dataclass(frozen=True)
class Problem:
    kind: str  # one kind of problem, one (throttled) log line
    text: str
    skip: bool = True  # True: the frame is not processed; False: a warning, processed anyway
    period_s: float = 5.0  # at most one log line of this kind per period


def frame_problems(depth: np.ndarray, mask: np.ndarray, K: np.ndarray | None, *,
                   camera_size: tuple[int, int] | None, depth_range: tuple[float, float],
                   background: int, camera_info_age_s: float,
                   stale_after_s: float) -> list[Problem]:
    """[] for a good frame; [one skipping problem]; or warnings the frame is processed with.

    depth: (H, W) float metres or uint16 millimetres; mask: (H, W) instance ids; K and
    camera_size (width, height) from the camera_info in use (None: none received yet);
    camera_info_age_s: since it arrived."""
    if K is not None and camera_size is not None and camera_size != depth.shape[::-1]:
        (w, h), (dw, dh) = camera_size, depth.shape[::-1]
        return [Problem("camera_info", f"camera_info is {w}x{h} but depth is {dw}x{dh}")]
    problem = check_frame(depth, mask, K) or check_depth_range(depth, depth_range)
    if problem:
        return [Problem(f"frame:{problem[:12]}", f"frame skipped: {problem}")]
    warnings = []
    if camera_info_age_s > stale_after_s:
        warnings.append(Problem("stale_info", f"camera_info is stale ({camera_info_age_s:.0f} s "
                                "old): using the last one", skip=False))
    if not any_pixel(lambda m: m != background, mask):  # extraction finds the ids itself
        warnings.append(Problem("empty", "mask has no objects (all pixels = background "
                                f"{background})", skip=False, period_s=30.0))
    return warnings
