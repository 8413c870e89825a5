"""A node slower than its camera over DDS: it skips frames instead of queueing them,
parameter changes are answered while it is busy (issue 15), and the core's log lines reach
/rosout (issue 11). Real processes: synthetic camera -> posediff_node -> this test.

A set of sampler parameters is only checked in the executor and applied by the worker between
frames, so `ros2 param set` is answered at once although inference holds the pipeline for
seconds; the new settings are in effect on the frames after that.
"""

import re
import time

import numpy as np
import pytest
from conftest import start_ros_module, stop

pytestmark = pytest.mark.ros

# ~0.3 s per frame of 3 objects (2-core VM), every frame estimated (no tracking), one sample;
# torch: its cost grows with the steps (onnxruntime, the default, would first export a
# 1000-step graph). 1000 is the parameter's maximum.
SLOW = ("steps:=1000", "backend:=torch", "tracking:=false", "log_period:=1.0")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def busy():
    import rclpy
    from rcl_interfaces.msg import Log
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from posediff_ros.ros.collector import Collector

    context = rclpy.Context()
    rclpy.init(context=context)
    collector = Collector(namespace="/params", context=context)
    rosout: list = []
    collector.create_subscription(
        Log, "/rosout", rosout.append,
        QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(collector)
    camera = start_ros_module("posediff_ros.ros.synthetic_camera", "rate:=10.0",
                              "num_objects:=3", "ring_size:=2", namespace="params")
    # device cuda on a machine without one: the backend falls back to the CPU with a notice
    node = start_ros_module("posediff_ros.ros.node", "model_path:=random", "device:=cuda",
                            "min_points:=30", *SLOW, namespace="params")
    yield collector, executor, rosout
    executor.shutdown()
    collector.destroy_node()
    rclpy.try_shutdown(context=context)
    stop(camera)
    print(stop(node))


def _arrivals(collector) -> list[float]:
    return sorted(collector.received_ns.values())


def _set(collector, executor, **values) -> tuple[float, list]:
    """Seconds from the request to the answer, and the results."""
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(collector, "/params/posediff_node")
    assert client.wait_for_services(timeout_sec=10.0)
    start = time.monotonic()
    future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    executor.spin_until_future_complete(future, timeout_sec=30.0)
    assert future.done()
    return time.monotonic() - start, future.result().results


def test_slow_inference_skips_frames_instead_of_queueing(busy):
    """First in the module: the later tests make the node fast again."""
    collector, executor, rosout = busy
    assert collector.spin_until(executor, lambda: len(collector.poses) >= 1, 120.0)
    before = set(collector.poses)
    # four results: ~1.2 s here, 3 s and more under the suite's load (0.3-0.8 s an inference)
    assert collector.spin_until(executor, lambda: len(set(collector.poses) - before) >= 4,
                                60.0)
    window = sorted(set(collector.poses) - before)
    arrivals = np.array([collector.received_ns[s] for s in window]) / 1e9
    inference_s = float(np.median(np.diff(arrivals)))  # the node's pace: one inference
    latency_s = arrivals - np.array(window) / 1e9
    # each result is of a frame that came in during the inference before it: one inference
    # in progress + one waiting + transport. A queue would add the frames it holds
    # (camera 10 Hz, ~0.3 s an inference: +0.2 s a result, ~2 s after 10 results)
    assert np.all(latency_s < 3 * inference_s + 0.3), (latency_s, inference_s)

    def skipped() -> int:  # the rate line, every log_period
        lines = [m.msg for m in rosout if "posediff_node" in m.name]
        counts = [int(x) for line in lines
                  for x in re.findall(r"(\d+) frames skipped while busy", line)]
        return max(counts, default=0)

    assert collector.spin_until(executor, lambda: skipped() > 0, 5.0), \
        [m.msg for m in rosout]


def test_param_set_is_answered_at_once_while_busy_and_applies_to_later_frames(busy):
    collector, executor, _ = busy
    assert collector.spin_until(executor, lambda: len(collector.poses) >= 3, 120.0)
    arrivals = _arrivals(collector)
    frame_s = float(np.min(np.diff(arrivals))) / 1e9  # >= one inference (the node is busy)
    # just after a result the worker is inside the next inference (the camera is faster
    # than the node): waiting for the pipeline would take most of frame_s every time (a set
    # that waits for the lock: 158-266 ms of 260-270), so the quickest of three answers is
    # under a third of a frame (answered at once: 1-3 ms; a DDS round trip on a loaded CI
    # machine ~85 ms, now and then 300). The first two change only the seed, so the node
    # stays busy; the third changes what the later frames show.
    answers = []
    for values in ({"seed": 1}, {"seed": 2}, {"steps": 2, "num_samples": 4}):
        n = len(collector.poses)
        assert collector.spin_until(executor, lambda n=n: len(collector.poses) > n, 30.0)
        collector.spin_until(executor, lambda: False, frame_s / 10)
        answer_s, results = _set(collector, executor, **values)
        assert all(r.successful for r in results), results
        answers.append(answer_s)
    print(f"answered in {[round(a * 1e3) for a in answers]} ms; one busy frame takes "
          f"{frame_s:.2f} s")
    assert min(answers) < frame_s / 3, (answers, frame_s)
    # the frame in progress finishes with the old settings; the ones after use the new
    stamp_at_set = max(collector.poses)
    assert collector.spin_until(
        executor, lambda: sum(s > stamp_at_set for s in collector.poses) >= 3, 60.0)
    later = [collector.poses[s] for s in sorted(collector.poses) if s > stamp_at_set][1:]
    def sampled(det) -> bool:  # several samples: a covariance (one sample: -1 first, "not
        # estimated"), or several hypotheses
        cov = np.array(det.results[0].pose.covariance)
        return len(det.results) > 1 or (cov[0] >= 0 and np.abs(cov).max() > 0)

    dets = [d for m in later for d in m.detections]
    assert dets and all(sampled(d) for d in dets)  # num_samples 4
    assert not any(sampled(d) for s in sorted(collector.poses)[:2]
                   for d in collector.poses[s].detections)


@pytest.mark.skipif(_has_cuda(), reason="a CUDA device is present: no fallback to the CPU")
def test_backend_fallback_notice_reaches_rosout_as_a_warning(busy):
    from rcl_interfaces.msg import Log

    collector, executor, rosout = busy

    def notice():
        return [m for m in rosout if "posediff_node" in m.name and "asked for" in m.msg]

    assert collector.spin_until(executor, lambda: bool(notice()), 60.0), \
        [m.msg for m in rosout]
    (line,) = notice()
    assert line.level == Log.WARN[0] if isinstance(Log.WARN, bytes) else Log.WARN
    assert "no CUDA device" in line.msg
