"""posediff-bench --node: the real posediff_node over DDS, fed by synthetic_camera.

For every object count and camera rate, synthetic_camera runs as its own process (scenes
rendered before the clock starts); each node variant (this checkout, and others given with
--compare NAME=DIR, e.g. a checkout of an older commit, for ratios in the same run) then runs
in the camera's namespace as its own process, gets --warmup-s seconds and is measured for
--seconds:
  - latency: the camera's stamp to the arrival of object_poses in this process (the node
    publishes with the input stamp): what a subscriber waits, p50 / p90 / p99;
  - frames answered vs sent (camera_info stamps seen here, one per frame);
  - CPU of the node process and of the camera (user + system time from /proc over the window,
    % of one core: 200 % = both cores of a 2-core machine);
  - the node's own per-stage timers (p50 / p99 per stage, from its /diagnostics), when it has
    them (older nodes do not).
Only object_poses (and /diagnostics) have a subscriber unless --subscribe-all adds markers,
/tf and debug/points, as RViz would. Writes JSON and Markdown, prints the Markdown.

  posediff-bench --node --compare old=../old-checkout --markdown /tmp/node.md
"""

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posediff_ros.ros.soak import REPO, _start, _stop, cpu_seconds, percentiles

STAGE_KEY = re.compile(r"^stage (.+) (p50|p99) \(ms\)$")  # the node's /diagnostics timers


@dataclass
class Variant:
    name: str
    root: Path | None = None  # a checkout to run the node from; None = this package
    params: list[str] = field(default_factory=list)  # node parameters on top of the common


def variants(args) -> list[Variant]:
    """This checkout's node, then --compare NAME=DIR (other checkouts), then --variant
    NAME=param:=value,... (this checkout with other parameters)."""
    out = [Variant(args.name)]
    for item in args.compare:
        name, root = item.split("=", 1)
        out.append(Variant(name, Path(root).resolve()))
    for item in args.variant:
        name, params = item.split("=", 1)
        out.append(Variant(name, None, params.split(",")))
    return out


@dataclass
class Listener:
    """Subscribes to what the node answers and to the camera's frames, in this process."""

    node: object
    sent: list[int] = field(default_factory=list)  # camera_info stamps (ns)
    answers: dict[int, tuple[float, int]] = field(default_factory=dict)  # stamp -> (ms, n)
    scenes: set = field(default_factory=set)  # distinct ground-truth scenes seen
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    diagnostics_at: float = 0.0

    @classmethod
    def create(cls, namespace: str, context, subscribe_all: bool):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, PointCloud2
        from vision_msgs.msg import Detection3DArray
        from visualization_msgs.msg import MarkerArray

        node = Node("node_bench_listener", namespace=f"/{namespace}", context=context)
        self = cls(node)
        node.create_subscription(CameraInfo, "camera_info", self._on_info,
                                 qos_profile_sensor_data)
        node.create_subscription(Detection3DArray, "object_poses", self._on_poses, 50)
        node.create_subscription(Detection3DArray, "ground_truth", self._on_truth, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        if subscribe_all:  # what RViz would add
            from tf2_msgs.msg import TFMessage

            from posediff_ros.ros.node import TF_QOS

            node.create_subscription(MarkerArray, "markers", lambda m: None, 10)
            node.create_subscription(TFMessage, "/tf", lambda m: None, TF_QOS)
            node.create_subscription(PointCloud2, "debug/points", lambda m: None, 2)
        self.prefix = f"/{namespace}/posediff_node"
        return self

    def _now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    @staticmethod
    def _stamp(msg) -> int:
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def _on_info(self, msg) -> None:
        self.sent.append(self._stamp(msg))

    def _on_poses(self, msg) -> None:
        self.answers[self._stamp(msg)] = ((self._now_ns() - self._stamp(msg)) / 1e6,
                                          len(msg.detections))

    def _on_truth(self, msg) -> None:
        self.scenes.add(tuple(round(d.bbox.center.position.x, 4) for d in msg.detections))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.hardware_id != self.prefix:
                continue
            stages: dict[str, dict[str, float]] = {}
            for kv in status.values:
                m = STAGE_KEY.match(kv.key)
                if m:
                    stages.setdefault(m.group(1), {})[m.group(2)] = float(kv.value)
            self.stages, self.diagnostics_at = stages, time.monotonic()


@dataclass
class RunConfig:
    objects: int
    rate: float
    seconds: float
    warmup_s: float
    model: str
    backend: str | None
    params: list[str]


def _spin_until(executor, predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
        if predicate():
            return True
    return False


def measure(executor, listener: Listener, node_pid: int, camera_pid: int,
            cfg: RunConfig) -> dict:
    """One measurement window of a running node: latency, answered vs sent, CPU, stages."""
    _spin_until(executor, lambda: False, cfg.warmup_s)
    listener.sent.clear()
    listener.answers.clear()
    t0, start_ns = time.monotonic(), listener._now_ns()
    cpu0 = (cpu_seconds(node_pid), cpu_seconds(camera_pid))
    _spin_until(executor, lambda: False, cfg.seconds)
    t1, end_ns = time.monotonic(), listener._now_ns()
    cpu1 = (cpu_seconds(node_pid), cpu_seconds(camera_pid))
    # late answers to frames sent in the window still count; a fresh /diagnostics after it
    _spin_until(executor, lambda: listener.diagnostics_at > t1, 2.5)
    window = t1 - t0
    sent = [s for s in listener.sent if start_ns <= s < end_ns]
    answered = [listener.answers[s] for s in sent if s in listener.answers]
    latency = percentiles([ms for ms, _ in answered])
    return {
        "objects": cfg.objects, "rate_hz": cfg.rate, "window_s": round(window, 2),
        "sent": len(sent), "answered": len(answered),
        "answered_pct": round(100.0 * len(answered) / max(len(sent), 1), 1),
        "output_fps": round(len(answered) / window, 2),
        "objects_per_frame": round(float(np.mean([n for _, n in answered])), 2)
        if answered else 0.0,
        "latency_ms": {k: round(v, 2) for k, v in latency.items()},
        "node_cpu_pct": round(100.0 * (cpu1[0] - cpu0[0]) / window, 1),
        "camera_cpu_pct": round(100.0 * (cpu1[1] - cpu0[1]) / window, 1),
        "stages_ms": listener.stages if listener.diagnostics_at > t1 else {},
    }


def _node_params(cfg: RunConfig) -> list[str]:
    backend = [f"backend:={cfg.backend}"] if cfg.backend else []  # else each node's default
    return [f"model_path:={cfg.model}", *backend, "log_period:=0.0", *cfg.params]


def run_variant(executor, listener: Listener, variant: Variant, camera, cfg: RunConfig,
                namespace: str, out: Path) -> dict:
    """Start one node variant next to the running camera, measure it, stop it."""
    log = out / f"node_{variant.name}_{cfg.objects}obj_{cfg.rate:g}hz.log"
    env = {"PYTHONPATH": str(variant.root)} if variant.root else None  # that checkout's code
    started_ns = listener._now_ns()  # answers to later stamps come from this node only
    node = _start("posediff_ros.ros.node", _node_params(cfg) + variant.params, namespace, log,
                  env=env,
                  cwd=variant.root or REPO)
    row = {"variant": variant.name}
    try:
        if not _spin_until(executor, lambda: max(listener.answers, default=0) > started_ns
                           or node.poll() is not None, 120.0) or node.poll() is not None:
            return {**row, "error": f"no output from the node (log: {log})"}
        row.update(measure(executor, listener, node.pid, camera.pid, cfg))
    finally:
        row["exit_code"] = _stop(node)
    return row


def run_stream(context, args, objects: int, rate: float, variants: list[Variant],
               out: Path) -> list[dict]:
    """One camera stream (objects, rate) and every node variant on it, one after the other."""
    from rclpy.executors import SingleThreadedExecutor

    ns = f"node_bench_{os.getpid()}_{objects}_{int(rate)}"
    listener = Listener.create(ns, context, args.subscribe_all)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener.node)
    camera = _start("posediff_ros.ros.synthetic_camera",
                    [f"rate:={rate}", f"num_objects:={objects}", f"ring_size:={args.ring_size}",
                     f"seed:={args.seed}", f"width:={args.width}", f"height:={args.height}"],
                    ns, out / f"camera_{objects}obj_{rate:g}hz.log")
    rows = []
    try:  # the camera renders its scenes first: that must be over before any clock starts
        if not _spin_until(executor, lambda: len(listener.scenes) >= args.ring_size
                           or camera.poll() is not None, args.render_timeout_s):
            print(f"camera not ready ({objects} objects)", file=sys.stderr)
        cfg = RunConfig(objects, rate, args.seconds, args.warmup_s, args.model, args.backend,
                        args.param)
        for variant in variants:
            row = {"objects": objects, "rate_hz": rate,
                   **run_variant(executor, listener, variant, camera, cfg, ns, out)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        _stop(camera)
        executor.shutdown()
        listener.node.destroy_node()
    return rows


def run(args) -> dict:
    import rclpy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nodes = variants(args)
    context = rclpy.Context()
    # Ctrl-C raises KeyboardInterrupt here, so the finally blocks stop the processes started
    rclpy.init(context=context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    rows: list[dict] = []
    started, load_start = time.time(), os.getloadavg()
    try:
        for objects in args.objects:
            for rate in args.rates:
                rows += run_stream(context, args, objects, rate, nodes, out)
    finally:
        rclpy.try_shutdown(context=context)
    return {"rows": rows, "variants": [v.name for v in nodes],
            "compare": {v.name: str(v.root) if v.root else ",".join(v.params) for v in nodes[1:]},
            "machine": machine(), "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
            "seconds_total": round(time.time() - started, 1),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "config": {k: v for k, v in vars(args).items() if k not in ("json", "markdown")}}


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count()}


# --- report ---------------------------------------------------------------------------------


def _lat(row: dict) -> str:
    lat = row.get("latency_ms") or {}
    if not row.get("answered"):
        return "-"
    return f"{lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f}"


def markdown(res: dict) -> str:
    rows = res["rows"]
    m = res["machine"]
    cfg = res["config"]
    backend = cfg["backend"] or "each node's default"
    lines = [f"Run {res['date_utc']} UTC, {res['seconds_total']} s, {m['cpu']} ({m['cores']} "
             f"cores); camera {cfg['width']}x{cfg['height']}; load average at start "
             f"{tuple(round(x, 2) for x in res['load_avg_start'])}"
             f", at end {tuple(round(x, 2) for x in res['load_avg_end'])}. Model "
             f"`{Path(cfg['model']).name}`, backend {backend}, {cfg['seconds']:g} s "
             f"measured per row after {cfg['warmup_s']:g} s warm-up; subscribers: "
             + ("object_poses, markers, /tf, debug/points" if cfg["subscribe_all"]
                else "object_poses only") + "."
             + (f" Node variants: {res['compare']}." if res["compare"] else ""), "",
             "Latency = camera stamp to arrival of object_poses here (ms, p50 / p90 / p99); "
             "answered / sent = frames with poses / frames the camera sent in the window; CPU "
             "in % of one core (user + system, whole process).", "",
             "| objects | camera Hz | node | objects/frame | answered / sent | out fps | "
             "latency ms | node CPU % | camera CPU % |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['objects']} | {r['rate_hz']:g} | {r['variant']} | "
                         f"{r['error']} | | | | | |")
            continue
        lines.append(f"| {r['objects']} | {r['rate_hz']:g} | {r['variant']} | "
                     f"{r['objects_per_frame']:.1f} | {r['answered']} / {r['sent']} "
                     f"({r['answered_pct']:.0f} %) | {r['output_fps']:.1f} | {_lat(r)} | "
                     f"{r['node_cpu_pct']:.0f} | {r['camera_cpu_pct']:.0f} |")
    lines += _ratio_lines(rows, res["variants"]) + _stage_lines(rows)
    return "\n".join(lines) + "\n"


def _ratio_lines(rows: list[dict], variants: list[str]) -> list[str]:
    """The first variant over each other one, per stream (< 1: the first is cheaper)."""
    by = {(r["variant"], r["objects"], r["rate_hz"]): r for r in rows
          if "error" not in r and r["answered"]}
    out = []
    for old in variants[1:]:
        out += ["", f"{variants[0]} / {old} (same camera stream, measured back to back):", "",
                "| objects | camera Hz | latency p50 | latency p99 | answered | node CPU |",
                "|---|---|---|---|---|---|"]
        for (name, objects, rate), r in by.items():
            o = by.get((old, objects, rate))
            if name != variants[0] or o is None:
                continue
            lr, lo = r["latency_ms"], o["latency_ms"]
            out.append(f"| {objects} | {rate:g} | {lr['p50'] / lo['p50']:.2f} | "
                       f"{lr['p99'] / lo['p99']:.2f} | {r['answered_pct']:.0f} % vs "
                       f"{o['answered_pct']:.0f} % | "
                       f"{r['node_cpu_pct'] / max(o['node_cpu_pct'], 1e-9):.2f} |")
    return out


def _stage_lines(rows: list[dict]) -> list[str]:
    staged = [r for r in rows if r.get("stages_ms")]
    if not staged:
        return []
    names = list(staged[0]["stages_ms"])
    out = ["", "The node's own timers (from its /diagnostics, ms, p50 / p99 over its recent "
           "frames):", "", "| objects | camera Hz | node | " + " | ".join(names) + " |",
           "|---" * (len(names) + 3) + "|"]
    for r in staged:
        s = r["stages_ms"]
        cells = [f"{s[n]['p50']:.2f} / {s[n]['p99']:.2f}" if n in s else "-" for n in names]
        out.append(f"| {r['objects']} | {r['rate_hz']:g} | {r['variant']} | "
                   + " | ".join(cells) + " |")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from posediff_ros.runtime import DEFAULT_MODEL

    ap = argparse.ArgumentParser(prog="posediff-bench --node",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--objects", default="1,3,6,12", help="objects per scene (comma list)")
    ap.add_argument("--rates", default="15,30,60", help="camera rates, Hz (comma list)")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured per row")
    ap.add_argument("--warmup-s", type=float, default=3.0)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--backend", default=None,
                    help="for every node (default: each node's own default backend)")
    ap.add_argument("--param", action="append", default=[],
                    help="extra node parameter NAME:=VALUE (repeatable)")
    ap.add_argument("--name", default="this", help="label of this checkout's node")
    ap.add_argument("--compare", action="append", default=[],
                    help="NAME=DIR: also run the node of the checkout DIR (repeatable)")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=param:=value,...: also run this node with these parameters")
    ap.add_argument("--subscribe-all", action="store_true",
                    help="also subscribe to markers, /tf and debug/points (as RViz)")
    ap.add_argument("--ring-size", type=int, default=4)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render-timeout-s", type=float, default=180.0)
    ap.add_argument("--out", default=f"runs/node_bench/{time.strftime('%Y%m%d_%H%M%S')}")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)
    args.objects = [int(x) for x in args.objects.split(",")]
    args.rates = [float(x) for x in args.rates.split(",")]
    args.model = str(Path(args.model).resolve()) if args.model != "random" else args.model
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    md = markdown(res)
    print(md)
    out = Path(args.out)
    (out / "node_bench.json").write_text(json.dumps(res, indent=1) + "\n")
    for path, text in ((args.json, json.dumps(res, indent=1) + "\n"), (args.markdown, md)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    return 0 if all("error" not in r for r in res["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
