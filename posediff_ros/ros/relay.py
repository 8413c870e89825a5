"""lossy_relay: passes a camera's topics on the way a real system delivers them, for tests and
demos of the pairing: chosen topics late by a random 30-80 ms (a segmentation network on the
colour image), every topic losing messages at random (best-effort transport), stamps kept.

Subscribes in/<topic> and publishes <topic> (relative names) for each of `topics`; the message
type comes from the topic's name (TYPES). Each message of a `delayed` topic is held back by a
delay drawn uniformly from [delay_min, delay_max] s, each of `lossy` is dropped with probability
`drop`, independently per topic and message; `seed` makes a run repeatable. Delays are timed by
one thread with a heap, so a later message can overtake an earlier one (as over a network).
"""

import heapq
import random
import sys
import threading
import time

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray

from posediff_ros.ros.run import run_node

TYPES = {"depth": Image, "mask": Image, "color": Image, "camera_info": CameraInfo,
         "detections": Detection2DArray, "ground_truth": Detection3DArray}
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

PARAMETERS = {
    "topics": (["depth", "mask", "detections", "camera_info", "ground_truth"],
               f"topics passed on, of {sorted(TYPES)}"),
    "delayed": (["mask", "detections"], "topics held back by delay_min..delay_max"),
    "delay_min": (0.03, "shortest delay (s)"),
    "delay_max": (0.08, "longest delay (s)"),
    "lossy": (["depth", "mask", "detections", "camera_info"], "topics that lose messages"),
    "drop": (0.05, "probability of losing a message of a lossy topic"),
    "seed": (0, "random seed of delays and losses"),
}


class LossyRelay(Node):
    def __init__(self, **kwargs):
        super().__init__("lossy_relay", **kwargs)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text,
                                                                      read_only=True))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        unknown = set(p["topics"]) - set(TYPES)
        if unknown or not 0 <= p["delay_min"] <= p["delay_max"] or not 0 <= p["drop"] <= 1:
            raise ValueError(f"need topics in {sorted(TYPES)} (not {sorted(unknown)}), "
                             "0 <= delay_min <= delay_max, 0 <= drop <= 1")
        self.p = p
        self.rng = random.Random(p["seed"])
        self.heap: list = []  # (due, sequence, publisher, message)
        self.sequence = 0
        self.counts = {t: {"in": 0, "dropped": 0} for t in p["topics"]}
        self.cond = threading.Condition()
        self.closed = False
        for topic in p["topics"]:
            qos = RELIABLE if topic == "ground_truth" else qos_profile_sensor_data
            pub = self.create_publisher(TYPES[topic], topic, qos)
            self.create_subscription(TYPES[topic], f"in/{topic}",
                                     lambda m, t=topic, pub=pub: self._on(t, pub, m), qos)
        self.sender = threading.Thread(target=self._send, name="relay_sender", daemon=True)
        self.sender.start()
        self.get_logger().info(
            f"relaying {p['topics']}: {p['delayed']} delayed {p['delay_min'] * 1e3:.0f}-"
            f"{p['delay_max'] * 1e3:.0f} ms, {p['lossy']} losing {p['drop']:.0%}")

    def _on(self, topic: str, pub, msg) -> None:
        self.counts[topic]["in"] += 1
        if topic in self.p["lossy"] and self.rng.random() < self.p["drop"]:
            self.counts[topic]["dropped"] += 1
            return
        if topic not in self.p["delayed"]:
            pub.publish(msg)
            return
        due = time.monotonic() + self.rng.uniform(self.p["delay_min"], self.p["delay_max"])
        with self.cond:
            heapq.heappush(self.heap, (due, self.sequence, pub, msg))
            self.sequence += 1
            self.cond.notify()

    def _send(self) -> None:
        while True:
            with self.cond:
                while not self.closed and (not self.heap or self.heap[0][0] > time.monotonic()):
                    wait = self.heap[0][0] - time.monotonic() if self.heap else None
                    self.cond.wait(timeout=wait)
                if self.closed:
                    return
                _, _, pub, msg = heapq.heappop(self.heap)
            pub.publish(msg)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.sender.join(timeout=2.0)
        self.get_logger().info(f"relayed (in / dropped): {self.counts}")


def main(args: list[str] | None = None) -> int:
    return run_node(LossyRelay, "lossy_relay", args, cleanup=LossyRelay.close,
                    startup_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
