"""Frames paired right under real timing, over real DDS: the synthetic camera orbiting the
table at 30 Hz (so a frame paired with another frame's mask is visibly wrong), the lossy relay
holding mask and detections back 30-80 ms and losing 5 % of every input topic, posediff_node
with the bundled model. Every answered frame's poses must match that frame's ground truth
within the end-to-end tolerances (test_node_e2e), and the drops must show in /diagnostics.

The scene (seed 9: mug, bowl, bottle) is one the model itself gets right from every viewpoint
of the orbit, so an error here is a pairing error: offline, over 3 point subsets x 14 views,
the per-frame median error is at most 2.2 deg / 1.1 cm with the right mask, while the mask of
2 or 3 frames earlier (a segmenter 30-80 ms behind at 30 Hz) fails the tolerances in 10 of 12
and 11 of 11 views. (Seed 4 has two mugs whose handle side flips in one view: a model error.)
The node tracks and estimates every object every frame (`estimate_every:=1`), with the camera's
motion from the objects' centroids (`camera_odometry:=false`): this camera turns 8 degrees per
frame and back in one frame, with frames lost, which is beyond the depth odometry (ICP from
the last motion or from none finds wrong minima; offline replay of this orbit at 640x480:
14 of 156 frames > 2 cm off, 32 before ICP also started from no motion), and it is not what
this test is about. (At 320x240 ICP found no motion at all before its levels scaled with the
image, so this test ran on the centroid fit then too.) Checked by hand: pairing each frame's
mask with the newest depth received (what the old sync did) fails 45 of 70 frames here (24 of
67 with `tracking:=false`)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import start_ros_module, stop

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "posediff_default.json"
NS = "lossy"
SHM = {"FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_shm.xml")}


def start(module: str, *params: str, namespace: str) -> subprocess.Popen:
    return start_ros_module(module, *params, namespace=namespace, env=SHM)


class Stamps:
    """The camera's own output (before the relay): the stamps of each topic."""

    def __init__(self, node):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from posediff_ros.ros.convert import stamp_to_ns

        self.seen = {"depth": set(), "mask": set(), "detections": set()}
        for topic, kind in (("depth", Image), ("mask", Image), ("detections", Detection2DArray)):
            node.create_subscription(kind, f"in/{topic}", lambda m, t=topic: self.seen[t].add(
                stamp_to_ns(m.header.stamp)), qos_profile_sensor_data)


def frame_errors(collector, stamp):
    from posediff_ros.ros.collector import compare

    errors = compare(collector.poses[stamp], collector.truth[stamp])
    return (np.median([e.translation_cm for e in errors]),
            np.median([e.rotation_deg for e in errors]),
            np.median([e.size_error for e in errors]), len(errors))


@pytest.mark.slow
@pytest.mark.skipif(not BUNDLED.exists(), reason="models/posediff_default.json not trained yet")
def test_orbiting_camera_through_a_late_lossy_segmenter_pairs_every_frame_right():
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    from posediff_ros.ros.collector import Collector

    camera = start("posediff_ros.ros.synthetic_camera", "rate:=30.0", "orbit_step_deg:=8.0",
                   "ring_size:=14", "num_objects:=3", "width:=320", "height:=240", "seed:=9",
                   namespace=f"{NS}/in")
    relay = start("posediff_ros.ros.relay", "seed:=1", namespace=NS)
    node = start("posediff_ros.ros.node", "min_points:=30", "publish_tf:=false",
                 "log_period:=5.0", "estimate_every:=1", "camera_odometry:=false",
                 namespace=NS)
    context = rclpy.Context()
    rclpy.init(context=context)
    collector = Collector(namespace=f"/{NS}", context=context)
    stamps = Stamps(collector)
    diagnostics = []
    collector.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(collector)
    try:
        assert collector.spin_until(executor, lambda: len(collector.matched()) >= 1, 180), \
            "no answered frame"
        # 40 answered frames, and over 100 of the camera's frames seen here (the count the
        # stamp check below needs; a faster node reaches 40 answers before 100 frames passed)
        collector.spin_until(executor, lambda: len(collector.matched()) >= 40 and min(
            len(stamps.seen[t]) for t in ("mask", "detections")) > 110, 40)
        collector.spin_until(executor, lambda: False, 1.5)  # one more /diagnostics
    finally:
        executor.shutdown()
        collector.destroy_node()
        rclpy.try_shutdown(context=context)
        logs = "\n".join(f"--- {name} ---\n{stop(proc)}" for name, proc in
                         (("node", node), ("relay", relay), ("camera", camera)))
    print(logs[-6000:])
    answered = collector.matched()
    assert len(answered) >= 10, f"only {len(answered)} frames answered"
    wrong = []
    for stamp in answered:
        trans_cm, rot_deg, size, n = frame_errors(collector, stamp)
        if n == 0 or trans_cm > 2.0 or rot_deg > 15.0 or size > 0.15:
            wrong.append((stamp, round(trans_cm, 2), round(rot_deg, 1), round(size, 3), n))
    assert not wrong, f"{len(wrong)} of {len(answered)} frames off their ground truth: {wrong}"
    # the camera stamps depth, mask and detections of a frame alike (exact sync needs it):
    # nearly every mask and detections stamp is a depth stamp (this reader is best-effort too,
    # so a few are missing; a re-stamped copy would match none)
    seen = stamps.seen
    for topic in ("mask", "detections"):
        assert len(seen[topic]) > 100
        assert len(seen[topic] & seen["depth"]) >= 0.9 * len(seen[topic]), topic
    # the relay's losses are counted, by topic, in /diagnostics
    mine = [s for d in diagnostics for s in d.status if s.hardware_id == f"/{NS}/posediff_node"]
    values = {kv.key: kv.value for kv in mine[-1].values}
    assert values["frames dropped, missing topic"] != "0", values
    latency = collector.latencies_ms()
    print(f"answered {len(answered)} frames, all within tolerance; node: sets "
          f"{values['sets emitted']}, frames missing {values['frames dropped, missing topic']}, "
          f"late {values['messages dropped late']}, skipped while busy "
          f"{values['frames skipped while busy']}; latency stamp->poses median "
          f"{np.median(latency):.0f} ms")
