"""/diagnostics: the ROS-free Health bookkeeping (levels and reasons, rates, bounded memory)
and the running node's DiagnosticArray on the standard absolute topic over real DDS."""

import time

import pytest
from conftest import start_ros_module

from posediff_ros.ros.diagnostics import ERROR, OK, WARN, Health, HealthLimits, RateWindow

SYNCED = ["depth", "mask"]


def status(health: Health, now: float):
    return health.status(SYNCED, {"frames skipped while busy": 3}, {"backend": "torch"}, now)


def feed(health: Health, start: float, seconds: float, rate: float, info: bool = True):
    t = start
    while t < start + seconds:
        for topic in SYNCED + (["camera_info"] if info else []):
            health.input(topic, t)
        health.output(40.0, t)
        t += 1.0 / rate
    return t


def test_silence_at_start_is_an_error_naming_the_topics():
    health = Health(started=0.0)
    assert status(health, 1.0)[0] == OK  # within the grace period
    level, message, values = status(health, 10.0)
    assert level == ERROR and "no input on depth, mask" in message
    assert values["processed frames"] == "0" and values["backend"] == "torch"
    assert values["frames skipped while busy"] == "3"


def test_healthy_stream_is_ok_with_rates():
    health = Health(started=0.0)
    end = feed(health, 0.0, 10.0, rate=30.0)
    level, message, values = status(health, end)
    assert (level, message) == (OK, "running")
    assert abs(float(values["depth rate (Hz)"]) - 30.0) < 1.0
    assert abs(float(values["processed rate (Hz)"]) - 30.0) < 1.0
    assert values["last latency (ms)"] == "40.0"
    assert values["stamp to paired (ms, median of last 100)"] == "n/a"
    for ms in (5.0, 70.0, 60.0, 65.0, 900.0):  # partners 60-70 ms late, one outlier
        health.paired(ms)
    assert status(health, end)[2]["stamp to paired (ms, median of last 100)"] == "65.0"


def test_stale_or_missing_camera_info_warns():
    health = Health(started=0.0)
    end = feed(health, 0.0, 10.0, rate=10.0, info=False)
    level, message, _ = status(health, end)
    assert level == WARN and "no camera_info" in message
    health.input("camera_info", end)
    end2 = feed(health, end, 8.0, rate=10.0, info=False)
    level, message, _ = status(health, end2)
    assert level == WARN and "camera_info stale (8 s old)" in message


def test_stream_stopping_becomes_an_error():
    health = Health(started=0.0)
    end = feed(health, 0.0, 5.0, rate=10.0)
    assert status(health, end)[0] == OK
    level, message, values = status(health, end + 10.0)
    assert level == ERROR and "no input on depth, mask" in message
    assert values["depth rate (Hz)"] == "0.00"


def test_slow_inference_and_rejections_warn():
    health = Health(limits=HealthLimits(slow_inference_ms=200.0), started=0.0)
    end = feed(health, 0.0, 3.0, rate=10.0)
    health.inference(450.0)
    level, message, _ = status(health, end)
    assert level == WARN and "slow inference (450 ms > 200 ms)" in message
    health.inference(50.0)
    health.problem("frame skipped: depth image has no valid pixels", end)
    level, message, values = status(health, end)
    assert level == WARN and "depth image has no valid pixels" in message
    assert values["rejected inputs"] == "1"
    feed(health, end, 7.0, rate=10.0)
    assert status(health, end + 6.9)[0] == OK  # the warning fades after the window


def test_rate_window_memory_is_bounded():
    window = RateWindow(5.0, maxlen=100)
    for i in range(10_000):
        window.tick(i * 1e-4)
    assert len(window.times) == 100 and window.total == 10_000


@pytest.mark.ros
def test_node_publishes_diagnostics(rclpy_context):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    proc = start_ros_module("posediff_ros.ros.node", "model_path:=random", namespace="diag")
    try:
        node = Node("diag_listener", context=rclpy_context)
        got = []
        node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        deadline = time.monotonic() + 60
        mine = []
        # no camera: after the grace period the node reports ERROR "no input"
        while time.monotonic() < deadline and not any(s.level == ERROR for s in mine):
            executor.spin_once(timeout_sec=0.1)
            mine = [s for d in got for s in d.status if s.hardware_id == "/diag/posediff_node"]
            assert proc.poll() is None, proc.communicate()[0]
        assert mine, "no /diagnostics from the node"
        last = mine[-1]
        assert last.level == ERROR and "no input on depth, mask" in last.message
        assert last.name == "/diag/posediff_node: pose estimation"
        values = {kv.key: kv.value for kv in last.values}
        assert values["backend"] == "onnxruntime-int8" and values["model"] == "random"
        assert values["processed frames"] == "0"
        assert {"unsynced messages dropped", "frames skipped while busy",
                "last latency (ms)"} <= set(values)
        node.destroy_node()
    finally:
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=30)  # a loaded machine exits slowly
    assert proc.returncode == 0 and "Traceback" not in out, out


def test_stage_times_percentiles_in_stage_order_and_bounded():
    from posediff_ros.ros.diagnostics import Laps, StageTimes

    times = StageTimes(window=100)
    for i in range(1000):  # the last 100 frames: extraction 900..999 ms, model 1 ms
        times.add({"extraction": float(i), "model": 1.0})
    values = times.values()
    assert list(values) == ["stage extraction p50 (ms)", "stage extraction p99 (ms)",
                            "stage model p50 (ms)", "stage model p99 (ms)"]
    assert values["stage extraction p50 (ms)"] == "949.50"  # median of 900..999
    assert values["stage extraction p99 (ms)"] == "998.01"  # numpy's linear interpolation
    assert values["stage model p99 (ms)"] == "1.00"
    laps = Laps()
    time.sleep(0.02)
    laps.lap("a")
    laps.lap("b")
    laps.lap("a")
    assert list(laps.ms) == ["a", "b"] and laps.ms["a"] >= 20.0 > laps.ms["b"]
