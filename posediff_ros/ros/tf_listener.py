"""Transforms for `target_frame`: tf2_ros's Buffer and TransformListener where tf2_ros is
importable (a ROS distro), else transforms.TransformBuffer fed by subscriptions to /tf and
/tf_static with tf2's own QoS. Both answer `lookup(target, source, stamp_ns, timeout_s)` with
a transforms.Rigid, or raise transforms.TransformUnavailable saying why."""

from __future__ import annotations

from geometry_msgs.msg import Transform
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from posediff_ros.ros.convert import stamp_to_ns
from posediff_ros.transforms import Rigid, TransformBuffer, TransformUnavailable

# tf2_ros's listener QoS: /tf like its broadcaster; /tf_static latched (transient local), so
# static transforms sent before this node started still arrive
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def rigid_from_msg(t: Transform) -> Rigid:
    r, p = t.rotation, t.translation
    return Rigid.from_quaternion([r.x, r.y, r.z, r.w], [p.x, p.y, p.z])


class BufferListener:
    """TransformBuffer + /tf and /tf_static subscriptions on `node` (no tf2_ros needed)."""

    kind = "posediff_ros TransformBuffer (/tf, /tf_static)"

    def __init__(self, node: Node, cache_s: float = 10.0):
        from tf2_msgs.msg import TFMessage

        self.node = node
        self.buffer = TransformBuffer(cache_s)
        self.subscriptions = [
            node.create_subscription(TFMessage, "/tf", lambda m: self._add(m, False), TF_QOS),
            node.create_subscription(TFMessage, "/tf_static", lambda m: self._add(m, True),
                                     TF_STATIC_QOS)]
        self.rejected = 0  # transforms from the wire that made no sense (counted, not raised)

    def _add(self, msg, static: bool) -> None:
        for tf in msg.transforms:
            try:
                self.buffer.set(tf.header.frame_id, tf.child_frame_id,
                                stamp_to_ns(tf.header.stamp), rigid_from_msg(tf.transform),
                                static)
            except ValueError:
                self.rejected += 1

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> Rigid:
        return self.buffer.wait(target, source, stamp_ns, timeout_s)

    def destroy(self) -> None:
        for sub in self.subscriptions:
            self.node.destroy_subscription(sub)
        self.subscriptions = []


class Tf2Listener:
    """tf2_ros.Buffer + tf2_ros.TransformListener (a ROS distro)."""

    kind = "tf2_ros Buffer"

    def __init__(self, node: Node, cache_s: float = 10.0):
        from rclpy.duration import Duration
        from tf2_ros import Buffer, TransformListener

        self.buffer = Buffer(cache_time=Duration(seconds=cache_s), node=node)
        self.listener = TransformListener(self.buffer, node, spin_thread=False)

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> Rigid:
        from rclpy.duration import Duration
        from rclpy.time import Time
        from tf2_ros import TransformException

        try:
            msg = self.buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns),
                                               timeout=Duration(seconds=timeout_s))
        except TransformException as err:
            raise TransformUnavailable(str(err)) from None
        return rigid_from_msg(msg.transform)

    def destroy(self) -> None:
        self.listener.unregister()


def make_listener(node: Node, cache_s: float = 10.0, use_tf2: bool | None = None):
    """tf2_ros's when importable (or use_tf2=True), this package's buffer otherwise."""
    if use_tf2 is None:
        try:
            import tf2_ros  # noqa: F401

            use_tf2 = True
        except ImportError:
            use_tf2 = False
    return Tf2Listener(node, cache_s) if use_tf2 else BufferListener(node, cache_s)
