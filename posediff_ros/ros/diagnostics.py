"""/diagnostics for posediff_node: input and output rates, dropped frames, latency, backend.

Health is ROS-free bookkeeping (bounded: fixed-size windows, a handful of counters) that the
node's callbacks feed; DiagnosticsPublisher turns it into one diagnostic_msgs/DiagnosticStatus
on the standard absolute topic /diagnostics once per `period` seconds, OK / WARN / ERROR with
the reasons in the message (no input, stale camera_info, slow inference, rejected frames).
StageTimes keeps the node's own per-stage timers of its recent frames (p50 / p99 per stage
on /diagnostics, so a user sees where the time goes on their machine).
"""

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

OK, WARN, ERROR = b"\x00", b"\x01", b"\x02"  # diagnostic_msgs/DiagnosticStatus levels
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}


@dataclass
class HealthLimits:
    no_input_s: float = 3.0  # depth/mask silent this long: ERROR
    stale_camera_info_s: float = 5.0  # camera_info silent this long while images come: WARN
    slow_inference_ms: float = 1000.0  # last inference slower than this: WARN
    rate_window_s: float = 5.0  # rates are averaged over this window


class RateWindow:
    """Events per second over the last `window` seconds; memory bounded by `maxlen`."""

    def __init__(self, window: float, maxlen: int = 4096):
        self.window = window
        self.times: deque[float] = deque(maxlen=maxlen)
        self.total = 0

    def tick(self, now: float) -> None:
        self.times.append(now)
        self.total += 1

    def rate(self, now: float) -> float:
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        return len(self.times) / self.window

    def last(self) -> float | None:
        return self.times[-1] if self.times else None


class Laps:
    """Consecutive stages of one frame: lap(stage) ends the stage that ran since the last
    lap (or since creation); a stage lapped twice adds up."""

    def __init__(self, before: dict[str, float] | None = None):
        self.ms: dict[str, float] = dict(before or {})  # stages timed elsewhere come first
        self._t = time.perf_counter()

    def lap(self, stage: str, parts: dict[str, float] | None = None) -> None:
        """End `stage`; with `parts` ({name: ms}, timed inside the stage), report those
        instead of the stage as a whole."""
        now = time.perf_counter()
        for name, ms in (parts or {stage: 1e3 * (now - self._t)}).items():
            self.ms[name] = self.ms.get(name, 0.0) + ms
        self._t = now


class StageTimes:
    """Milliseconds per stage over the last `window` frames that had the stage; thread-safe
    (the worker adds, the diagnostics timer reads), memory bounded."""

    def __init__(self, window: int = 300):
        self.window = window
        self._ms: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, ms: dict[str, float]) -> None:
        with self._lock:
            for stage, value in ms.items():
                self._ms.setdefault(stage, deque(maxlen=self.window)).append(value)

    def values(self) -> dict[str, str]:
        """{'stage <name> p50 (ms)': ..., 'stage <name> p99 (ms)': ...} in stage order."""
        with self._lock:
            stages = {k: np.array(v) for k, v in self._ms.items()}
        out = {}
        for stage, ms in stages.items():
            p50, p99 = np.percentile(ms, [50, 99])
            out[f"stage {stage} p50 (ms)"] = f"{p50:.2f}"
            out[f"stage {stage} p99 (ms)"] = f"{p99:.2f}"
        return out


@dataclass
class Health:
    """What the node has seen; every method is cheap and thread-safe (worker + executor)."""

    limits: HealthLimits = field(default_factory=HealthLimits)
    started: float = field(default_factory=time.monotonic)
    inputs: dict[str, RateWindow] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    processed: RateWindow | None = None
    last_latency_ms: float | None = None
    last_inference_ms: float | None = None
    # stamp -> set complete of the last frames paired: what waiting for late partners costs
    pairing_ms: deque = field(default_factory=lambda: deque(maxlen=100))
    rejected: int = 0
    last_problem: str = ""
    last_problem_at: float = -1e9
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.processed = RateWindow(self.limits.rate_window_s)

    def input(self, topic: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if topic not in self.inputs:
                self.inputs[topic] = RateWindow(self.limits.rate_window_s)
            self.inputs[topic].tick(now)
            self.last_seen[topic] = now

    def output(self, latency_ms: float, now: float | None = None) -> None:
        with self._lock:
            self.processed.tick(time.monotonic() if now is None else now)
            self.last_latency_ms = latency_ms

    def inference(self, ms: float) -> None:
        self.last_inference_ms = ms

    def paired(self, ms: float) -> None:
        """A frame's messages are all there, `ms` after its stamp."""
        with self._lock:
            self.pairing_ms.append(ms)

    def problem(self, text: str, now: float | None = None) -> None:
        """A frame or object was rejected (the text is the node's log line)."""
        with self._lock:
            self.rejected += 1
            self.last_problem = text
            self.last_problem_at = time.monotonic() if now is None else now

    def status(self, required: list[str], dropped: dict[str, int | str], extra: dict[str, str],
               now: float | None = None) -> tuple[bytes, str, dict[str, str]]:
        """(level, message, key/values). `required`: the synced image topics."""
        now = time.monotonic() if now is None else now
        lim = self.limits
        with self._lock:
            values = {}
            for t in sorted(self.inputs):
                values[f"{t} rate (Hz)"] = f"{self.inputs[t].rate(now):.2f}"
                values[f"{t} messages"] = str(self.inputs[t].total)
            values["processed rate (Hz)"] = f"{self.processed.rate(now):.2f}"
            values["processed frames"] = str(self.processed.total)
            values.update({k: str(v) for k, v in dropped.items()})
            values["rejected inputs"] = str(self.rejected)
            values["last latency (ms)"] = _fmt(self.last_latency_ms)
            values["last inference (ms)"] = _fmt(self.last_inference_ms)
            values["stamp to paired (ms, median of last 100)"] = _fmt(
                statistics.median(self.pairing_ms) if self.pairing_ms else None)
            values.update(extra)
            errors, warnings = [], []
            silent = [t for t in required
                      if now - self.last_seen.get(t, self.started) > lim.no_input_s]
            if silent:
                errors.append(f"no input on {', '.join(silent)} for > {lim.no_input_s:g} s")
            images_flow = any(t in self.last_seen and now - self.last_seen[t] <= lim.no_input_s
                              for t in required)
            info_age = now - self.last_seen.get("camera_info", self.started)
            if images_flow and info_age > lim.stale_camera_info_s:
                warnings.append(f"camera_info stale ({info_age:.0f} s old)"
                                if "camera_info" in self.last_seen else "no camera_info")
            if (self.last_inference_ms or 0.0) > lim.slow_inference_ms:
                warnings.append(f"slow inference ({self.last_inference_ms:.0f} ms > "
                                f"{lim.slow_inference_ms:g} ms)")
            if now - self.last_problem_at <= lim.rate_window_s:
                warnings.append(f"input rejected: {self.last_problem}")
        if errors:
            return ERROR, "; ".join(errors + warnings), values
        if warnings:
            return WARN, "; ".join(warnings), values
        return OK, "running", values


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


class DiagnosticsPublisher:
    """Publishes the node's Health on /diagnostics every `period` seconds (a node timer)."""

    def __init__(self, node, health: Health, period: float = 1.0):
        from diagnostic_msgs.msg import DiagnosticArray

        self.node, self.health = node, health
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # the fully qualified name: aggregators and rqt_robot_monitor group by status name,
        # so two cameras' nodes (same node name, other namespaces) must not share one
        self.name = f"{node.get_fully_qualified_name()}: pose estimation"
        self.timer = node.create_timer(period, self.publish)

    def snapshot(self) -> tuple[bytes, str, dict[str, str]]:
        node = self.node
        unknown = node.class_names.unknown.copy()  # written by the worker
        dropped = {**node.sync.stats.values(),
                   "frames skipped while busy": node.slot.replaced,
                   # bounded by queue_size per topic + the one-slot frame buffer
                   "queued messages": node.sync.pending(),
                   "unknown classes skipped": ", ".join(
                       f"{name} {n}" for name, n in sorted(unknown.items())) or "0"}
        backend = node.pipeline.backend
        extra = {"backend": getattr(backend, "name", type(backend).__name__),
                 "model": node.params.model_path or "bundled default",
                 # outputs are built only for subscribers: what went out, per output
                 **{f"published {k}": str(v) for k, v in node.published.items()},
                 **node.stage_times.values()}
        return self.health.status(list(node.sync.topics), dropped, extra)

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        level, message, values = self.snapshot()
        status = DiagnosticStatus(level=level, name=self.name, message=message,
                                  hardware_id=self.node.get_fully_qualified_name())
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
