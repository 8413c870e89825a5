"""posediff-soak: synthetic camera -> posediff_node for M minutes; is memory flat, does it keep up?

Starts synthetic_camera (at --rate Hz) and posediff_node as separate processes (real DDS, own
namespace), listens to object_poses and /diagnostics in this process, and every --sample-s
seconds records the node's RSS (from /proc), the output rate, latency percentiles (stamp to
arrival here) and the node's own counters (input rates, frames skipped while busy, unsynced
messages dropped). Writes soak.csv (one row per sample) and soak.json (summary) to --out and
prints a short summary. Exit code 0 when both processes ran to the end and stopped cleanly.

  posediff-soak --minutes 10 --rate 30
"""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def rss_mb(pid: int) -> float:
    """Resident set size of a process (MB), from /proc (Linux); nan when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc (Linux); nan when
    gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    p = np.percentile(np.asarray(values), [50, 90, 99])
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2])}


@dataclass
class Sample:
    t_s: float
    node_rss_mb: float
    camera_rss_mb: float
    node_cpu_pct: float  # CPU of the node process over the interval, % of one core
    outputs: int  # object_poses messages in this interval
    output_hz: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    depth_hz: float  # as the node counts it (diagnostics)
    processed_hz: float
    skipped_busy: int  # cumulative, node's count
    unsynced_dropped: int  # cumulative, node's count
    queued: int  # messages waiting in the node's sync queues (bounded by queue_size)
    diag_level: str


def _start(module: str, params: list[str], namespace: str, log: Path,
           env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """`python -m module` as its own process in `namespace`, output to `log`; `env` adds
    variables, `cwd` (with PYTHONPATH) runs another checkout's package."""
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:=/{namespace}"]
    for p in params:
        args += ["-p", p]
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", **(env or {}))
    profile = REPO / "config" / "fastdds_shm.xml"
    if profile.is_file():
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    # output to a file: a pipe nobody reads would block the process after 64 KB
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            cwd=cwd)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


class Listener:
    """object_poses (latency per message) and the node's /diagnostics, in this process."""

    def __init__(self, namespace: str, context):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from vision_msgs.msg import Detection3DArray

        self.node = Node("soak_listener", namespace=f"/{namespace}", context=context)
        self.latencies_ms: list[float] = []  # since the last sample
        self.all_latencies_ms: list[tuple[float, float]] = []  # (t, ms), whole run
        self.diag: dict[str, str] = {}
        self.diag_level = "none"
        self.node.create_subscription(Detection3DArray, "object_poses", self._on_poses, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.prefix = f"/{namespace}/posediff_node"

    def _on_poses(self, msg) -> None:
        stamp = msg.header.stamp.sec * 1e9 + msg.header.stamp.nanosec
        ms = (self.node.get_clock().now().nanoseconds - stamp) / 1e6
        self.latencies_ms.append(ms)
        self.all_latencies_ms.append((time.monotonic(), ms))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.hardware_id == self.prefix:
                self.diag = {kv.key: kv.value for kv in status.values}
                self.diag_level = {0: "OK", 1: "WARN", 2: "ERROR"}.get(
                    status.level[0] if isinstance(status.level, bytes) else status.level,
                    "STALE")
                self.diag_message = status.message


def _num(diag: dict[str, str], key: str) -> float:
    try:
        return float(diag.get(key, "nan"))
    except ValueError:
        return float("nan")


def _int(diag: dict[str, str], key: str) -> int:
    value = _num(diag, key)
    return 0 if np.isnan(value) else int(value)


def run(args) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ns = args.namespace
    camera = _start("posediff_ros.ros.synthetic_camera",
                    [f"rate:={args.rate}", f"num_objects:={args.num_objects}",
                     f"ring_size:={args.ring_size}", f"width:={args.width}",
                     f"height:={args.height}"], ns, out / "camera.log")
    node = _start("posediff_ros.ros.node",
                  [f"model_path:={args.model}", f"backend:={args.backend}", "log_period:=30.0"],
                  ns, out / "node.log")
    context = rclpy.Context()
    rclpy.init(context=context)
    listener = Listener(ns, context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener.node)

    samples: list[Sample] = []
    duration = 60.0 * args.minutes
    start = time.monotonic()
    next_sample = start + args.sample_s
    # the clock starts at the first output: model loading and rendering are not the soak
    first_output = None
    last_cpu = last_t = 0.0  # node CPU seconds at the last sample, and when
    try:
        while True:
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if node.poll() is not None or camera.poll() is not None:
                print("a process exited early", file=sys.stderr)
                break
            if first_output is None:
                if listener.all_latencies_ms:
                    first_output = now
                    start, next_sample = now, now + args.sample_s
                    listener.latencies_ms.clear()
                    last_cpu, last_t = cpu_seconds(node.pid), now
                elif now - start > args.start_timeout_s:
                    print("no output from the node", file=sys.stderr)
                    break
                continue
            if now >= next_sample:
                lat = listener.latencies_ms
                pct = percentiles(lat)
                d = listener.diag
                cpu = cpu_seconds(node.pid)
                samples.append(Sample(
                    t_s=round(now - start, 2), node_rss_mb=round(rss_mb(node.pid), 1),
                    camera_rss_mb=round(rss_mb(camera.pid), 1),
                    node_cpu_pct=round(100 * (cpu - last_cpu) / max(now - last_t, 1e-9), 1),
                    outputs=len(lat),
                    output_hz=round(len(lat) / args.sample_s, 2),
                    latency_p50_ms=round(pct["p50"], 1), latency_p90_ms=round(pct["p90"], 1),
                    latency_p99_ms=round(pct["p99"], 1),
                    depth_hz=_num(d, "depth rate (Hz)"),
                    processed_hz=_num(d, "processed rate (Hz)"),
                    skipped_busy=_int(d, "frames skipped while busy"),
                    unsynced_dropped=_int(d, "unsynced messages dropped"),
                    queued=_int(d, "queued messages"),
                    diag_level=listener.diag_level))
                listener.latencies_ms = []
                last_cpu, last_t = cpu, now
                next_sample += args.sample_s
                if args.verbose:
                    print(asdict(samples[-1]), flush=True)
            if now - start >= duration:
                break
    finally:
        final_diag = dict(listener.diag)
        executor.shutdown()
        listener.node.destroy_node()
        rclpy.try_shutdown(context=context)
        node_rc = _stop(node)
        camera_rc = _stop(camera)
    node_log = (out / "node.log").read_text(errors="replace")
    summary = summarise(samples, listener.all_latencies_ms, first_output, args)
    summary.update(node_exit_code=node_rc, camera_exit_code=camera_rc,
                   traceback_in_node_log="Traceback" in node_log,
                   final_diagnostics=final_diag, out=str(out))
    with (out / "soak.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
    (out / "soak.json").write_text(json.dumps(summary, indent=2))
    return summary


def summarise(samples: list[Sample], latencies: list[tuple[float, float]],
              first_output: float | None, args) -> dict:
    summary: dict = {"minutes": args.minutes, "rate_hz": args.rate, "model": args.model,
                     "backend": args.backend, "image": f"{args.width}x{args.height}",
                     "num_objects": args.num_objects, "samples": len(samples)}
    if not samples:
        return summary
    warm = next((s for s in samples if s.t_s >= args.warmup_s), samples[-1])
    after = [s for s in samples if s.t_s >= warm.t_s]
    end = samples[-1]
    lat_after = [ms for t, ms in latencies if first_output and t - first_output >= warm.t_s]
    # an unbounded queue shows as latency climbing: compare the first and last quarter
    quarter = max(1, len(after) // 4)
    summary.update(
        rss_start_mb=samples[0].node_rss_mb, rss_after_warmup_mb=warm.node_rss_mb,
        rss_end_mb=end.node_rss_mb, rss_max_mb=max(s.node_rss_mb for s in samples),
        rss_growth_after_warmup_pct=round(100 * (end.node_rss_mb / warm.node_rss_mb - 1), 2),
        node_cpu_pct=round(float(np.mean([s.node_cpu_pct for s in after[1:] or after])), 1),
        warmup_s=warm.t_s, measured_s=round(end.t_s - warm.t_s, 1),
        camera_rate_hz=round(float(np.nanmean([s.depth_hz for s in after])), 2),
        output_rate_hz=round(sum(s.outputs for s in after[1:]) / max(end.t_s - warm.t_s, 1e-9),
                             2),
        latency_ms={k: round(v, 1) for k, v in percentiles(lat_after).items()},
        latency_p50_first_quarter_ms=round(float(np.median(
            [s.latency_p50_ms for s in after[:quarter]])), 1),
        latency_p50_last_quarter_ms=round(float(np.median(
            [s.latency_p50_ms for s in after[-quarter:]])), 1),
        frames_skipped_while_busy=end.skipped_busy,
        unsynced_messages_dropped=end.unsynced_dropped,
        frames_processed=int(sum(s.outputs for s in samples)),
        max_queued_messages=max(s.queued for s in samples),
        diagnostics_levels=sorted({s.diag_level for s in samples}),
    )
    return summary


def print_summary(s: dict) -> None:
    if "rss_start_mb" not in s:
        print(f"soak: no samples ({s.get('out')})")
        return
    lat = s["latency_ms"]
    print(f"soak {s['minutes']} min at {s['rate_hz']} Hz ({s['image']}, {s['num_objects']} "
          f"objects, model {s['model']}, backend {s['backend']}): {s['samples']} samples")
    print(f"  node RSS: start {s['rss_start_mb']} MB, after warm-up ({s['warmup_s']} s) "
          f"{s['rss_after_warmup_mb']} MB, end {s['rss_end_mb']} MB, max {s['rss_max_mb']} MB "
          f"-> growth after warm-up {s['rss_growth_after_warmup_pct']} %")
    print(f"  camera {s['camera_rate_hz']} Hz in, {s['output_rate_hz']} Hz out; latency "
          f"p50 {lat['p50']} / p90 {lat['p90']} / p99 {lat['p99']} ms (stamp to arrival); "
          f"p50 first/last quarter {s['latency_p50_first_quarter_ms']} / "
          f"{s['latency_p50_last_quarter_ms']} ms; node CPU {s['node_cpu_pct']} % of one core")
    print(f"  frames processed {s['frames_processed']}, skipped while busy "
          f"{s['frames_skipped_while_busy']}, unsynced messages dropped "
          f"{s['unsynced_messages_dropped']}, max queued messages {s['max_queued_messages']}; "
          f"diagnostics {s['diagnostics_levels']}")
    print(f"  exit codes node {s['node_exit_code']} camera {s['camera_exit_code']}, traceback "
          f"in node log: {s['traceback_in_node_log']}; files in {s['out']}")


def markdown(s: dict, samples_csv: Path, command: str) -> str:
    """docs/SOAK.md body: the summary and one row per minute, from the soak's own output."""
    rows = list(csv.DictReader(samples_csv.open()))
    lat = s["latency_ms"]
    lines = [
        "# Soak test: synthetic camera -> posediff_node", "",
        f"Command: `{command}`  ",
        f"Written by posediff-soak at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"from its own measurements ({s['out']}/soak.csv, soak.json).", "",
        f"Setup: {s['minutes']} min, camera at {s['rate_hz']} Hz, {s['image']}, "
        f"{s['num_objects']} objects, model `{s['model']}`, backend {s['backend']}; the node "
        "and the camera are separate processes talking real DDS (Fast DDS shared memory).", "",
        "| figure | value |", "|---|---|",
        f"| node RSS at start (first sample) | {s['rss_start_mb']} MB |",
        f"| node RSS after warm-up ({s['warmup_s']} s) | {s['rss_after_warmup_mb']} MB |",
        f"| node RSS at the end | {s['rss_end_mb']} MB (max {s['rss_max_mb']} MB) |",
        f"| RSS growth after warm-up | {s['rss_growth_after_warmup_pct']} % |",
        f"| camera rate (as the node counts it) | {s['camera_rate_hz']} Hz |",
        f"| output rate (object_poses) | {s['output_rate_hz']} Hz |",
        f"| node CPU after warm-up (user + system, % of one core) | {s['node_cpu_pct']} % |",
        f"| latency p50 / p90 / p99 (stamp to arrival) | {lat['p50']} / {lat['p90']} / "
        f"{lat['p99']} ms |",
        f"| latency p50, first / last quarter | {s['latency_p50_first_quarter_ms']} / "
        f"{s['latency_p50_last_quarter_ms']} ms |",
        f"| frames processed | {s['frames_processed']} |",
        f"| frames skipped while busy (one-slot buffer) | {s['frames_skipped_while_busy']} |",
        f"| unsynced messages dropped | {s['unsynced_messages_dropped']} |",
        f"| max messages queued in the node's sync queues | {s['max_queued_messages']} |",
        f"| /diagnostics levels seen | {', '.join(s['diagnostics_levels'])} |",
        f"| exit codes node / camera (SIGINT) | {s['node_exit_code']} / "
        f"{s['camera_exit_code']} |",
        f"| traceback in the node's log | {s['traceback_in_node_log']} |", "",
        "Per minute (the sample closest to each full minute):", "",
        "| t (s) | node RSS (MB) | node CPU (%) | output (Hz) | latency p50 / p99 (ms) | "
        "skipped while busy | unsynced dropped | queued | diagnostics |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    marks, next_mark = [], 0.0
    for row in rows:
        if float(row["t_s"]) >= next_mark:
            marks.append(row)
            next_mark = (int(float(row["t_s"]) // 60) + 1) * 60.0
    if rows and marks[-1] is not rows[-1]:
        marks.append(rows[-1])
    for r in marks:
        lines.append(f"| {r['t_s']} | {r['node_rss_mb']} | {r['node_cpu_pct']} | "
                     f"{r['output_hz']} | "
                     f"{r['latency_p50_ms']} / {r['latency_p99_ms']} | {r['skipped_busy']} | "
                     f"{r['unsynced_dropped']} | {r['queued']} | {r['diag_level']} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from posediff_ros.runtime import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    ap.add_argument("--model", default=str(DEFAULT_MODEL) if DEFAULT_MODEL.is_file()
                    else "random", help="model JSON, or 'random' (default: the bundled one)")
    ap.add_argument("--backend", default="onnxruntime-int8",
                    help="the node's (default: %(default)s)")
    ap.add_argument("--num-objects", type=int, default=3)
    ap.add_argument("--ring-size", type=int, default=4)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--warmup-s", type=float, default=60.0,
                    help="RSS growth is measured from the first sample after this")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--start-timeout-s", type=float, default=120.0)
    ap.add_argument("--namespace", default=f"soak_{os.getpid()}")
    ap.add_argument("--out", default=f"runs/soak/{time.strftime('%Y%m%d_%H%M%S')}")
    ap.add_argument("--verbose", action="store_true", help="print every sample")
    ap.add_argument("--report", default="", help="also write a markdown report here "
                    "(e.g. docs/SOAK.md)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = run(args)
    print_summary(summary)
    if args.report and "rss_start_mb" in summary:
        command = "posediff-soak " + " ".join(argv if argv is not None else sys.argv[1:])
        Path(args.report).write_text(markdown(summary, Path(args.out) / "soak.csv", command))
        print(f"report written to {args.report}")
    ok = ("rss_start_mb" in summary and summary["node_exit_code"] == 0
          and summary["camera_exit_code"] == 0 and not summary["traceback_in_node_log"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
