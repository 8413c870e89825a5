"""ROS-free input checks of posediff_node that pipeline.check_frame does not cover.

Each check returns None (fine) or one readable sentence saying what is wrong; the node logs it
(throttled) and skips the frame or object, never raising.
"""

import numpy as np


def check_depth_range(depth: np.ndarray, depth_range: tuple[float, float]) -> str | None:
    """Why no pixel of a depth image (float metres, or integer millimetres as
    geometry.depth_to_metres) lies inside `depth_range` (metres), or None. One pass when
    some pixel does (the usual case); the message's figures only when none does."""
    scale = 0.001 if depth.dtype.kind in "ui" else 1.0
    lo, hi = depth_range
    if ((depth >= lo / scale) & (depth <= hi / scale)).any():
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


class StampOrder:
    """Per-topic stamp monotonicity: a duplicate or older stamp is rejected (it would pair
    with a stale partner and publish poses back in time), unless time jumped back by more
    than `reset_s` (camera restarted, bag looped, simulated time reset): then start over."""

    def __init__(self, reset_s: float = 2.0):
        self.reset_ns = int(reset_s * 1e9)
        self.last: dict[str, int] = {}

    def check(self, topic: str, stamp_ns: int) -> tuple[str | None, bool]:
        """(problem or None, reset): problem set = drop the message; reset = time jumped
        back, the caller should clear what it buffered."""
        last = self.last.get(topic)
        if last is None or stamp_ns > last:
            self.last[topic] = stamp_ns
            return None, False
        if stamp_ns == last:
            return f"duplicate stamp {stamp_ns / 1e9:.6f} s on {topic}: message dropped", False
        if last - stamp_ns > self.reset_ns:
            self.last = {topic: stamp_ns}
            return None, True
        return (f"out-of-order stamp on {topic}: {stamp_ns / 1e9:.6f} s after "
                f"{last / 1e9:.6f} s ({(last - stamp_ns) / 1e6:.1f} ms older): message "
                f"dropped"), False
