"""ROS-free input checks of posediff_node that pipeline.check_frame does not cover.

Each check returns None (fine) or one readable sentence saying what is wrong; the node logs it
(throttled) and skips the frame or object, never raising.
"""

import numpy as np


def any_pixel(test, image: np.ndarray) -> bool:
    """Whether test(pixels) holds for some pixel: first on every 8th pixel of every 8th row
    (a usual frame answers there, at 1/64 of the cost), else on the whole image."""
    return bool(test(image[::8, ::8]).any() or test(image).any())


def check_depth_range(depth: np.ndarray, depth_range: tuple[float, float]) -> str | None:
    """Why no pixel of a depth image (float metres, or integer millimetres as
    geometry.depth_to_metres) lies inside `depth_range` (metres), or None. One pass when
    some pixel does (the usual case); the message's figures only when none does."""
    scale = 0.001 if depth.dtype.kind in "ui" else 1.0
    lo, hi = depth_range
    if any_pixel(lambda d: (d >= lo / scale) & (d <= hi / scale), depth):
        return None
    valid = depth[np.isfinite(depth) & (depth > 0)] * scale
    if valid.size == 0:
        return None  # an all-invalid image is check_frame's message
    return (f"depth out of range: no pixel within {lo:g}-{hi:g} m (nearest {valid.min():.3g} m, "
            f"farthest {valid.max():.3g} m; wrong units or depth_min/depth_max?)")


def limit_objects(ids: list[int], max_objects: int) -> tuple[list[int], list[int]]:
    """(ids kept, ids dropped): at most `max_objects` per frame (0 = no limit), the first ids
    kept so that the choice is stable from frame to frame."""
    if max_objects <= 0 or len(ids) <= max_objects:
        return list(ids), []
    return list(ids[:max_objects]), list(ids[max_objects:])
