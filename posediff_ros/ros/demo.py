"""posediff-demo: synthetic camera -> posediff_node -> a listener, over real DDS.

Starts `ros2 launch posediff_ros demo.launch.py` where the launch stack exists (else the two
nodes as plain processes), listens for --duration seconds, then prints per-object errors
against the ground truth, the achieved rate and latency, the ids the node gave each true
object (tracking: one each), and writes an overlay PNG.
Exit code 0 when results arrived.
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def ros2_launch_command() -> list[str] | None:
    """`ros2 launch` of this environment, when it has the launch stack."""
    local = Path(sys.executable).parent / "ros2"
    cli = str(local) if local.exists() else shutil.which("ros2")
    try:
        import launch_ros  # noqa: F401
        import ros2launch  # noqa: F401
    except ImportError:
        return None
    return [cli, "launch"] if cli else None


def share_file(*parts: str) -> Path:
    """A file of the package's share dir (installed), else of the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory("posediff_ros"), *parts)
        if path.exists():
            return path
    except Exception:  # noqa: BLE001 - not installed in an ament prefix
        pass
    return REPO.joinpath(*parts)


def start_nodes(args, model: str) -> tuple[list[subprocess.Popen], str]:
    launch = None if args.no_launch else ros2_launch_command()
    kw = dict(start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
              text=True)
    if launch:
        # the launch file by path: ros2 launch's package lookup skips symlinked share dirs
        cmd = launch + [str(share_file("launch", "demo.launch.py")), f"model:={model}",
                        f"rate:={args.rate}", f"num_objects:={args.num_objects}",
                        f"seed:={args.seed}", f"sequence:={args.sequence}",
                        f"sequence_frames:={args.sequence_frames}", "publish_overlay:=true"]
        return [subprocess.Popen(cmd, **kw)], "ros2 launch demo.launch.py"
    py = [sys.executable, "-m"]
    camera = py + ["posediff_ros.ros.synthetic_camera", "--ros-args", "-p", f"rate:={args.rate}",
                   "-p", f"num_objects:={args.num_objects}", "-p", f"seed:={args.seed}",
                   "-p", f"sequence:={args.sequence}",
                   "-p", f"sequence_frames:={args.sequence_frames}"]
    node = py + ["posediff_ros.ros.node", "--ros-args", "--params-file",
                 str(share_file("config", "pose.yaml")), "-p", f"model_path:={model}",
                 "-p", "publish_overlay:=true"]
    return [subprocess.Popen(camera, **kw), subprocess.Popen(node, **kw)], "separate processes"


def stop_all(procs: list[subprocess.Popen]) -> str:
    out = []
    for proc in procs:
        if proc.poll() is None:  # only the leader: ros2 launch forwards it to its nodes
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            text, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            text, _ = proc.communicate()
        out.append(text or "")
    return "\n".join(out)


def wait_first_result(collector, executor, procs, timeout: float) -> bool:
    """Spin until the first result arrives (True) or a started process ends (False), or
    the timeout passes (False). A process that ends is noticed within 0.1 s."""
    return collector.spin_until(
        executor, lambda: bool(collector.poses) or any(p.poll() is not None for p in procs),
        timeout) and bool(collector.poses)


def start_and_wait(args, model: str, collector, executor):
    """Start the nodes and wait for the first result. When `ros2 launch` ends before any
    result (a broken install: executables or the package not found), say why and start the
    same nodes as plain processes. -> (processes, how they were started, earlier output)"""
    start = time.monotonic()
    procs, started = start_nodes(args, model)
    print(f"started synthetic_camera + posediff_node ({started}), ROS_DOMAIN_ID="
          f"{os.environ['ROS_DOMAIN_ID']}, model {model}", flush=True)
    if wait_first_result(collector, executor, procs, args.startup_timeout):
        return procs, started, ""
    dead = [p for p in procs if p.poll() is not None]
    if not dead or args.no_launch:
        return procs, started, ""
    logs = stop_all(procs)
    print(f"{started} ended (exit code {dead[0].returncode}) after "
          f"{time.monotonic() - start:.1f} s without a result; its output ends:\n"
          f"{logs[-1500:]}\nfalling back to separate processes", flush=True)
    args.no_launch = True
    procs, started = start_nodes(args, model)
    wait_first_result(collector, executor, procs, args.startup_timeout)
    return procs, started, logs


def report(collector, window: tuple[int, int], started: str) -> bool:
    from posediff_ros.ros.collector import compare

    stamps = [s for s in collector.matched() if window[0] <= s <= window[1]]
    seconds = (window[1] - window[0]) / 1e9
    results = [s for s in collector.poses if window[0] <= s <= window[1]]
    sent = [s for s in collector.truth if window[0] <= s <= window[1]]
    print(f"\nposediff demo ({started}): {len(results)} results in {seconds:.1f} s "
          f"= {len(results) / seconds:.2f} frames/s (camera sent {len(sent) / seconds:.2f} "
          "frames/s, counted by its ground-truth messages)")
    lat = np.array([(collector.received_ns[s] - s) / 1e6 for s in results])
    if len(lat):
        print(f"latency (camera stamp -> result received): median {np.median(lat):.0f} ms, "
              f"p90 {np.percentile(lat, 90):.0f} ms")
    if not stamps:
        print("no result could be matched with the ground truth")
        return False
    last = stamps[-1]
    print(f"\nlast frame ({len(collector.truth[last].detections)} objects in the ground truth):")
    print(f"{'id':>3} {'class':8} {'rot err deg':>11} {'trans err cm':>12} {'size err %':>10}")
    for e in compare(collector.poses[last], collector.truth[last]):
        print(f"{e.instance_id:>3} {e.class_name:8} {e.rotation_deg:11.1f} "
              f"{e.translation_cm:12.2f} {100 * e.size_error:10.1f}"
              + ("  (handle hidden: symmetric)" if e.handle_hidden else ""))
    by_class = defaultdict(list)
    for s in stamps:
        for e in compare(collector.poses[s], collector.truth[s]):
            by_class[e.class_name].append(e)
    print(f"\nover {len(stamps)} frames (rotation about the symmetry axis ignored for "
          "bottle, bowl, can and mugs whose handle is hidden), medians:")
    for name, errs in sorted(by_class.items()):
        print(f"  {name:8} n={len(errs):3d}  rot {np.median([e.rotation_deg for e in errs]):6.1f}"
              f" deg  trans {np.median([e.translation_cm for e in errs]):6.2f} cm  "
              f"size {100 * np.median([e.size_error for e in errs]):5.1f} %")
    print_ids(collector, stamps)
    return True


def print_ids(collector, stamps: list[int]) -> None:
    """Which ids the node published for each true object (paired by class and centre)."""
    from posediff_ros.ros.collector import pair_with_truth

    seen: dict[int, list[str]] = defaultdict(list)
    for s in stamps:
        for est, true in pair_with_truth(collector.poses[s], collector.truth[s]):
            seen[true].append(est)
    print(f"\nids over {len(stamps)} frames (true object -> published ids; tracking keeps one):")
    for true, ids in sorted(seen.items()):
        switches = sum(a != b for a, b in zip(ids, ids[1:], strict=False))
        print(f"  object {true}: ids {sorted(set(ids), key=int)}, {switches} id switches")


def save_overlay(collector, path: Path) -> bool:
    from PIL import Image as PILImage

    from posediff_ros.ros.convert import color_to_rgb

    if not collector.overlays:
        print("no overlay image received")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(color_to_rgb(collector.overlays[-1])).save(path)
    print(f"overlay written to {path}")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="posediff-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=8.0, help="seconds of measurement")
    p.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    p.add_argument("--num-objects", type=int, default=3, help="objects per scene (0 = 2-6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sequence", default="handheld",
                   help="camera motion: static | orbit | handheld | pick_place; '' = random "
                        "scenes (objects jump: no tracking to see)")
    p.add_argument("--sequence-frames", type=int, default=45,
                   help="frames of the sequence, all rendered (~0.4 CPU-s each at 640x480) "
                        "before the camera starts; fewer start sooner")
    p.add_argument("--model", default="", help="model JSON or 'random' (default: bundled)")
    p.add_argument("--out", default="out", help="folder for the overlay PNG")
    p.add_argument("--no-launch", action="store_true", help="plain processes, not ros2 launch")
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--verbose", action="store_true", help="print the nodes' output at the end")
    args = p.parse_args(argv)

    # own DDS domain, this machine only, unless the caller chose one
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 199)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # camera-sized messages need a larger Fast DDS shared-memory segment (config/fastdds_shm.xml)
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(share_file("config",
                                                                          "fastdds_shm.xml")))
    from posediff_ros.runtime import DEFAULT_MODEL

    model = args.model
    if not model:
        if Path(DEFAULT_MODEL).exists():
            model = str(DEFAULT_MODEL)
        else:
            print(f"note: bundled model {DEFAULT_MODEL} not found; using an UNTRAINED network "
                  "('random'): the plumbing runs, the errors below are meaningless")
            model = "random"

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from posediff_ros.ros.collector import Collector

    rclpy.init()
    collector = Collector()
    executor = SingleThreadedExecutor()
    executor.add_node(collector)
    ok, logs, procs = False, "", []
    try:
        procs, started, logs = start_and_wait(args, model, collector, executor)
        if not collector.poses:
            print(f"no result: none within {args.startup_timeout:.0f} s, or the nodes ended "
                  "(their output is below)")
        else:
            print("first result received; measuring for "
                  f"{args.duration:.0f} s", flush=True)
            begin = collector.get_clock().now().nanoseconds
            collector.spin_until(executor, lambda: False, args.duration)
            end = collector.get_clock().now().nanoseconds
            collector.spin_until(executor, lambda: False, 0.5)  # late ground truth / overlay
            ok = report(collector, (begin, end), started)
            ok = save_overlay(collector, Path(args.out) / "demo_overlay.png") and ok
    except KeyboardInterrupt:
        pass
    finally:
        logs += stop_all(procs)
        executor.shutdown()
        collector.destroy_node()
        rclpy.try_shutdown()
    if args.verbose or not ok:
        print("\n--- node output ---\n" + logs[-6000:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
