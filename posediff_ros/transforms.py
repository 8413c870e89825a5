"""Poses in another frame (ROS-free): rigid transforms, a small TF buffer with interpolation,
and moving a frame's detected objects into, say, the robot's base frame.

The node uses tf2_ros's Buffer where tf2_ros is importable (a ROS distro); elsewhere it feeds
this buffer from /tf and /tf_static (ros/tf_listener.py). Same semantics as tf2 where it
matters here: frames form a tree (each child has one parent), a lookup chains the edges
through the common ancestor, a dynamic edge is interpolated between its two stamps around the
requested one (slerp + lerp) and never extrapolated, a static edge holds at every stamp,
stamp 0 means "the latest time all edges of the chain have", and a dynamic edge keeps
`cache_s` seconds of history.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
import time
from dataclasses import dataclass

import numpy as np

from posediff_ros.geometry import matrix_to_quaternion, quaternion_to_matrix


@dataclass(frozen=True)
class Rigid:
    """x_parent = rotation @ x_child + translation (a parent-from-child transform)."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    # (x, y, z, w) of rotation when it came as one (TF messages): interpolation needs it, and
    # recomputing it from the matrix is most of a lookup's time
    quaternion: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def identity(cls) -> Rigid:
        return cls(np.eye(3), np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    @classmethod
    def from_quaternion(cls, q_xyzw, translation) -> Rigid:
        q = np.asarray(q_xyzw, np.float64)
        q = q / np.linalg.norm(q)
        return cls(quaternion_to_matrix(q), np.asarray(translation, np.float64), q)

    def as_quaternion(self) -> np.ndarray:
        return matrix_to_quaternion(self.rotation) if self.quaternion is None else self.quaternion

    def __matmul__(self, other: Rigid) -> Rigid:
        return Rigid(self.rotation @ other.rotation,
                     self.rotation @ other.translation + self.translation)

    def inverse(self) -> Rigid:
        rt = self.rotation.T
        return Rigid(rt, -rt @ self.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) points -> the same points in the parent frame."""
        return np.asarray(points) @ self.rotation.T + self.translation


def interpolate(a: Rigid, b: Rigid, alpha: float) -> Rigid:
    """alpha = 0 -> a, 1 -> b: rotation by slerp (shortest way), translation linearly."""
    qa, qb = a.as_quaternion(), b.as_quaternion()
    dot = float(qa @ qb)
    if dot < 0:  # q and -q are one rotation: take the shorter arc
        qb, dot = -qb, -dot
    theta = np.arccos(min(dot, 1.0))
    if theta < 1e-9:
        q = qa + alpha * (qb - qa)
    else:
        q = (np.sin((1 - alpha) * theta) * qa + np.sin(alpha * theta) * qb) / np.sin(theta)
    t = (1 - alpha) * a.translation + alpha * b.translation
    return Rigid.from_quaternion(q, t)


class TransformUnavailable(LookupError):
    """No transform between two frames at a stamp; the text says why. `may_arrive`: waiting
    can help (the frame is not known yet, or the stamp is newer than the newest data)."""

    def __init__(self, text: str, may_arrive: bool = True):
        super().__init__(text)
        self.may_arrive = may_arrive


@dataclass
class _Edge:
    parent: str
    static: Rigid | None = None
    stamps: list[int] = dataclasses.field(default_factory=list)  # sorted, nanoseconds
    values: list[Rigid] = dataclasses.field(default_factory=list)


class TransformBuffer:
    """Parent-from-child transforms over time; thread-safe (callbacks add, a worker looks up,
    `wait` blocks the worker until the data arrives or a timeout)."""

    def __init__(self, cache_s: float = 10.0, max_frames: int = 10000):
        self.cache_ns = int(cache_s * 1e9)
        self.max_frames = max_frames  # frame names come from the wire: keep the table bounded
        self._edges: dict[str, _Edge] = {}  # child -> its edge to its parent
        self._changed = threading.Condition()

    def set(self, parent: str, child: str, stamp_ns: int, transform: Rigid,
            static: bool = False) -> None:
        """Add parent_from_child at a stamp. A new parent or a switch between static and
        dynamic replaces the child's history (as tf2 does on re-parenting)."""
        if not parent or not child or parent == child:
            raise ValueError(f"invalid transform {parent!r} -> {child!r}")
        with self._changed:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or (edge.static is not None) != static:
                if edge is None and len(self._edges) >= self.max_frames:
                    raise ValueError(f"more than {self.max_frames} frames: {child!r} ignored")
                edge = self._edges[child] = _Edge(parent)
            if static:
                edge.static = transform
            else:
                self._insert(edge, int(stamp_ns), transform)
            self._changed.notify_all()

    def _insert(self, edge: _Edge, stamp_ns: int, transform: Rigid) -> None:
        i = bisect.bisect_left(edge.stamps, stamp_ns)  # messages may come out of order
        if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
            edge.values[i] = transform
        else:
            edge.stamps.insert(i, stamp_ns)
            edge.values.insert(i, transform)
        old = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
        del edge.stamps[:old], edge.values[:old]

    def frames(self) -> set[str]:
        with self._changed:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    # --- lookup -----------------------------------------------------------------------------

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> Rigid:
        """target_from_source at stamp_ns (0 = the latest common time); raises
        TransformUnavailable saying why."""
        with self._changed:
            return self._lookup(target, source, int(stamp_ns))

    def wait(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> Rigid:
        """lookup, waiting up to timeout_s for transforms that may still arrive (a transform
        published a little after the image it belongs to)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                try:
                    return self._lookup(target, source, int(stamp_ns))
                except TransformUnavailable as err:
                    left = deadline - time.monotonic()
                    if not err.may_arrive or left <= 0:
                        raise
                    self._changed.wait(left)

    def _chain(self, frame: str) -> list[str]:
        """frame, its parent, ..., the root."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > len(self._edges) + 1:
                raise TransformUnavailable(f"the frames above {frame!r} form a loop", False)
        return chain

    def _lookup(self, target: str, source: str, stamp_ns: int) -> Rigid:
        if target == source:
            return Rigid.identity()
        known = set(self._edges) | {e.parent for e in self._edges.values()}
        for frame in (target, source):
            if frame not in known:
                raise TransformUnavailable(f"frame {frame!r} does not exist (no transform "
                                           f"names it; known: {_some(known)})")
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((f for f in up_source if f in set(up_target)), None)
        if common is None:
            raise TransformUnavailable(f"{target!r} and {source!r} are not connected (trees "
                                       f"rooted at {up_target[-1]!r} and {up_source[-1]!r})")
        path_s = up_source[:up_source.index(common)]
        path_t = up_target[:up_target.index(common)]
        if stamp_ns == 0:
            stamp_ns = self._latest_common(path_s + path_t)
        common_from_source = self._compose(path_s, stamp_ns)
        common_from_target = self._compose(path_t, stamp_ns)
        return common_from_target.inverse() @ common_from_source

    def _latest_common(self, children: list[str]) -> int:
        newest = [self._edges[c].stamps[-1] for c in children if self._edges[c].static is None]
        return min(newest) if newest else 0

    def _compose(self, children: list[str], stamp_ns: int) -> Rigid:
        """ancestor_from_children[0] along the chain (children[k+1] is children[k]'s parent)."""
        out = Rigid.identity()
        for child in reversed(children):
            out = out @ self._edge_at(child, stamp_ns)
        return out

    def _edge_at(self, child: str, stamp_ns: int) -> Rigid:
        edge = self._edges[child]
        if edge.static is not None:
            return edge.static
        stamps = edge.stamps
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return edge.values[i]
        if i == 0 or i == len(stamps):
            newer = i == len(stamps)
            gap = (stamp_ns - stamps[-1]) if newer else (stamps[0] - stamp_ns)
            raise TransformUnavailable(
                f"{edge.parent!r} -> {child!r} would need extrapolation: the stamp is "
                f"{gap / 1e9:.3f} s {'after the newest' if newer else 'before the oldest'} "
                f"transform ({len(stamps)} kept, {self.cache_ns / 1e9:g} s of history)",
                may_arrive=newer)
        alpha = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        return interpolate(edge.values[i - 1], edge.values[i], alpha)


def _some(names: set[str], n: int = 8) -> str:
    listed = sorted(names)
    more = f", ... ({len(listed)} in all)" if len(listed) > n else ""
    return (", ".join(listed[:n]) + more) if listed else "none"


# --- detected objects into another frame ---------------------------------------------------


def move_pose(transform: Rigid, rotation: np.ndarray, translation: np.ndarray,
              covariance: np.ndarray | None):
    """A pose and its (x, y, z, rot x, rot y, rot z) covariance, both about the old frame's
    axes, into the new frame: the rotation block and the translation block turn with the
    frame, C' = J C J^T with J = diag(A, A)."""
    a = transform.rotation
    cov = None
    if covariance is not None:
        j = np.zeros((6, 6))
        j[:3, :3] = j[3:, 3:] = a
        cov = j @ np.asarray(covariance, np.float64) @ j.T
    return a @ rotation, a @ translation + transform.translation, cov


def transform_object(obj, transform: Rigid):
    """A copy of a pipeline.DetectedObject (pose, covariance, hypotheses, points) with
    everything expressed in the frame transform maps into (target_from_camera)."""
    rotation, translation, covariance = move_pose(transform, obj.rotation, obj.translation,
                                                  obj.covariance)
    hypotheses = [dataclasses.replace(h, **dict(zip(
        ("rotation", "translation", "covariance"),
        move_pose(transform, h.rotation, h.translation, h.covariance), strict=True)))
        for h in obj.hypotheses]
    points = transform.apply(obj.points).astype(obj.points.dtype)
    return dataclasses.replace(obj, rotation=rotation, translation=translation,
                               covariance=covariance, hypotheses=hypotheses, points=points)
