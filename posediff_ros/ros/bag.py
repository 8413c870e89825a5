"""posediff-bag: run the pose pipeline over a recorded rosbag2 (mcap or sqlite3), offline.

Reads depth, mask, camera_info and (optionally) Detection2DArray topics with the pure-Python
`rosbags` library (no ROS distro, no rosbag2 CLI needed), pairs them by header stamp with the
node's policy (--sync exact | approximate, sync.py), takes the camera_info valid at each
frame's stamp, processes EVERY complete frame (offline: none skipped for being late; frames
that never completed are counted in the summary) and writes
  OUTPUT/            a new bag: /object_poses (Detection3DArray) and /tf (TFMessage)
  OUTPUT.csv         one row per object
  OUTPUT.json        one entry per frame (objects and the reasons objects were skipped)

  posediff-bag recorded_bag out_bag --depth /camera/depth --mask /seg/mask \
      --camera-info /camera/camera_info --detections /seg/detections --model random
  posediff-bag recorded_bag out_bag --segmentation boxes --detections /yolo/detections ...
"""

import argparse
import csv
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posediff_ros.categories import BY_ID, ClassNames
from posediff_ros.data.boxes import Box, instances_from_boxes
from posediff_ros.geometry import matrix_to_quaternion
from posediff_ros.pipeline import Pipeline, PipelineConfig, check_frame, object_names
from posediff_ros.ros import convert
from posediff_ros.ros.params import parse_class_aliases, parse_class_map
from posediff_ros.sync import StampHistory, make_sync

CSV_COLUMNS = ["stamp_ns", "frame_id", "instance_id", "class", "score", "x", "y", "z",
               "qx", "qy", "qz", "qw", "size_x", "size_y", "size_z"]


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def typestore_with(packages: tuple[str, ...] = ("vision_msgs",)):
    """rosbags' Kilted typestore plus the message definitions of `packages` (read from their
    installed share/<pkg>/msg/*.msg), so the writer can store their definitions (mcap)."""
    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    for package in packages:
        types = {}
        for path in sorted((Path(get_package_share_directory(package)) / "msg").glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
        store.register(types)
    return store


@dataclass
class Topics:
    depth: str
    mask: str | None  # None: segmentation boxes
    camera_info: str
    detections: str | None  # None: classes from class_map

    @property
    def synced(self) -> list[str]:
        return [t for t in (self.depth, self.mask, self.detections) if t]


def read_frames(path: Path, topics: Topics, sync):
    """Yield (timestamp_ns, {depth, mask, detections}, camera_info at the frame's stamp) in
    bag order; `sync` (sync.make_sync over topics.synced) pairs them and counts what it drops."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    synced = topics.synced
    infos = StampHistory()
    with Reader(path) as reader:
        wanted = {topics.camera_info, *synced}
        found = {c.topic for c in reader.connections}
        missing = wanted - found
        if missing:
            raise SystemExit(f"posediff-bag: topics not in the bag: {sorted(missing)}; "
                             f"the bag has: {sorted(found)}")
        connections = [c for c in reader.connections if c.topic in wanted]
        for conn, timestamp, raw in reader.messages(connections=connections):
            msg = deserialize_message(raw, message_class(conn.msgtype))
            if conn.topic == topics.camera_info:
                infos.add(convert.stamp_to_ns(msg.header.stamp), msg)
                continue
            for frame in sync.add(conn.topic, convert.stamp_to_ns(msg.header.stamp), msg):
                yield timestamp, _named(frame, topics), infos.pick(frame["_stamp_ns"])
    for frame in sync.flush():  # the end: what waited for more messages is decided
        yield timestamp, _named(frame, topics), infos.pick(frame["_stamp_ns"])


def _named(frame: dict, topics: Topics) -> dict:
    return {name: frame.get(topic) for name, topic in (
        ("depth", topics.depth), ("mask", topics.mask), ("detections", topics.detections))}


def detection_classes(detections, names: ClassNames) -> list[tuple[object, int]]:
    """(Detection2D, NOCS class) of the detections whose class is a NOCS category."""
    out = []
    for det in detections.detections:
        cls = names.resolve(det.results[0].hypothesis.class_id) if det.results else None
        if cls is not None:
            out.append((det, cls))
    return out


def frame_inputs(frame: dict, info, args, names: ClassNames, class_map: dict[int, int]):
    """(depth m, instance mask, K, {instance: class}) of a frame; raises ValueError."""
    depth = convert.depth_to_metres(frame["depth"])
    K = None if info is None else convert.camera_info_to_k(info)
    if args.segmentation == "boxes":
        if K is None:
            raise ValueError("no camera_info before this frame")
        dets = detection_classes(frame["detections"], names)
        boxes = [Box.from_center(d.bbox.center.position.x, d.bbox.center.position.y,
                                 d.bbox.size_x, d.bbox.size_y, c) for d, c in dets]
        mask, classes = instances_from_boxes(depth, K, boxes, [d.id for d, _ in dets])
        return depth, mask, K, classes
    mask = convert.mask_to_numpy(frame["mask"])
    if frame["detections"] is None:
        return depth, mask, K, class_map
    classes = {}
    for det, cls in detection_classes(frame["detections"], names):
        if det.id.strip().isdigit():
            classes[int(det.id)] = cls
    return depth, mask, K, classes


def object_rows(stamp_ns: int, frame_id: str, objects) -> list[dict]:
    rows = []
    for o in objects:
        q = matrix_to_quaternion(o.rotation)
        rows.append(dict(zip(CSV_COLUMNS, [
            stamp_ns, frame_id, o.instance_id, BY_ID[o.class_id].name, round(o.score, 6),
            *(float(v) for v in o.translation), *(float(v) for v in q),
            *(float(v) for v in o.size)], strict=True)))
    return rows


def make_pipeline(args: argparse.Namespace) -> Pipeline:
    from posediff_ros.runtime import DEFAULT_MODEL, load_backend

    backend = load_backend(args.backend, args.model or DEFAULT_MODEL, device=args.device)
    # the sampler settings stored with the model, with the options given on top
    backend.configure(backend.settings.override(
        num_samples=args.num_samples, steps=args.steps, solver=args.solver,
        w_schedule=args.w_schedule, w_max=args.w_max))
    from posediff_ros.calibration import load_for_model

    model = args.model or DEFAULT_MODEL
    return Pipeline(backend, PipelineConfig(min_points=args.min_points,
                                            depth_range=(args.depth_min, args.depth_max)),
                    None if str(model) == "random" else load_for_model(model))


def run(args: argparse.Namespace) -> dict:
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from posediff_ros.ros import messages
    from posediff_ros.tracking import Tracker, TrackerConfig

    pipeline = make_pipeline(args)
    # the node's tracking: ids per physical object, smoothing, (--warm-start) warm starts;
    # --no-tracking: every frame on its own, ids = mask ids
    warm = args.warm_start and getattr(pipeline.backend, "warm_start", False)
    tracker = Tracker(TrackerConfig(warm_start=warm)) if args.tracking else None
    class_names = ClassNames(parse_class_aliases(args.class_aliases))
    class_map = parse_class_map(args.class_map)
    if not args.detections and not class_map:
        raise SystemExit("posediff-bag: give --detections TOPIC or --class-map ID:CLASS ...")
    if args.segmentation == "boxes" and not args.detections:
        raise SystemExit("posediff-bag: --segmentation boxes needs --detections TOPIC")
    topics = Topics(args.depth, args.mask if args.segmentation == "mask" else None,
                    args.camera_info, args.detections)
    sync = make_sync(args.sync, topics.synced, args.slop, queue_size=50, max_age=1.0,
                     drop_older=False)
    output = Path(args.output)
    storage = StoragePlugin.MCAP if args.storage == "mcap" else StoragePlugin.SQLITE3
    store = typestore_with()
    rows, frames, skipped_frames = [], [], 0
    with Writer(output, version=8, storage_plugin=storage) as writer:
        poses_conn = writer.add_connection("/object_poses", "vision_msgs/msg/Detection3DArray",
                                           typestore=store)
        tf_conn = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=store)
        for timestamp, frame, info in read_frames(Path(args.input), topics, sync):
            depth_msg = frame["depth"]
            stamp_ns = convert.stamp_to_ns(depth_msg.header.stamp)
            try:
                depth, mask, K, classes = frame_inputs(frame, info, args, class_names,
                                                       class_map)
                problem = check_frame(depth, mask, K)
            except ValueError as err:
                problem = str(err)
            if problem:
                print(f"frame {stamp_ns} skipped: {problem}", file=sys.stderr)
                skipped_frames += 1
                continue
            background = 0 if args.segmentation == "boxes" else args.mask_background
            if tracker is not None:
                result = pipeline.track(tracker, depth, mask, K, classes, background,
                                        stamp_ns * 1e-9)
            else:
                result = pipeline.process(depth, mask, K, classes, background)
            header = Header(stamp=depth_msg.header.stamp, frame_id=depth_msg.header.frame_id)
            names = object_names(result.objects, args.frame_prefix)
            writer.write(poses_conn, timestamp,
                         serialize_message(messages.detections_msg(header, result.objects)))
            if result.objects:
                tfs = messages.transforms(header, result.objects, names)
                writer.write(tf_conn, timestamp, serialize_message(TFMessage(transforms=tfs)))
            new_rows = object_rows(stamp_ns, header.frame_id, result.objects)
            rows += new_rows
            frames.append({"stamp_ns": stamp_ns, "frame_id": header.frame_id,
                           "objects": [dict(r, tf_frame=n) for r, n in
                                       zip(new_rows, names, strict=True)],
                           "skipped": [{"instance_id": i, "reason": why}
                                       for i, why in result.skipped],
                           "timings_ms": result.timings_ms})
    csv_path = Path(args.csv or f"{output}.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    json_path = Path(args.json or f"{output}.json")
    json_path.write_text(json.dumps({"input": str(args.input), "model": str(args.model),
                                     "frames": frames}, indent=1))
    summary = {"frames": len(frames), "objects": len(rows), "skipped_frames": skipped_frames,
               "sync": sync.stats.values(), "unknown_classes": class_names.unknown,
               "bag": str(output), "csv": str(csv_path), "json": str(json_path)}
    if frames:
        summary["mean_inference_ms"] = float(np.mean(
            [f["timings_ms"].get("inference", 0.0) for f in frames]))
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posediff-bag", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="input bag folder (rosbag2, mcap or sqlite3)")
    p.add_argument("output", help="output bag folder (must not exist)")
    p.add_argument("--depth", default="/camera/depth", help="depth Image topic")
    p.add_argument("--mask", default="/camera/mask", help="instance mask Image topic")
    p.add_argument("--camera-info", default="/camera/camera_info")
    p.add_argument("--detections", default=None, help="Detection2DArray topic (id = mask id)")
    p.add_argument("--class-map", nargs="*", default=[], help="mask id:class, e.g. 1:mug 2:bowl")
    p.add_argument("--mask-background", type=int, default=0)
    p.add_argument("--model", default="", help="model JSON or 'random' (default: bundled)")
    p.add_argument("--backend", default="torch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=None, help="default: the model's")
    p.add_argument("--solver", default=None, help="default: the model's")
    p.add_argument("--w-schedule", default=None, help="default: the model's")
    p.add_argument("--w-max", type=float, default=None, help="default: the model's")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--min-points", type=int, default=50)
    p.add_argument("--depth-min", type=float, default=0.1)
    p.add_argument("--depth-max", type=float, default=5.0)
    p.add_argument("--sync", choices=["exact", "approximate"], default="exact",
                   help="pairing: identical stamps, or message_filters ApproximateTime")
    p.add_argument("--slop", type=float, default=0.02,
                   help="approximate: max stamp difference in a set (s)")
    p.add_argument("--segmentation", choices=["mask", "boxes"], default="mask",
                   help="boxes: no mask topic, objects cut out inside the detections' boxes")
    p.add_argument("--class-aliases", nargs="*", default=[],
                   help="detector class:NOCS class, on top of the defaults (cup:mug, ...)")
    p.add_argument("--frame-prefix", default="")
    p.add_argument("--no-tracking", dest="tracking", action="store_false",
                   help="every frame on its own, ids = mask ids (default: tracking, as the node)")
    p.add_argument("--warm-start", action="store_true",
                   help="tracked objects start from their previous pose (the node's warm_start)")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--csv", default=None, help="default: OUTPUT.csv")
    p.add_argument("--json", default=None, help="default: OUTPUT.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if Path(args.output).exists():
        print(f"posediff-bag: output {args.output} exists; choose a new folder", file=sys.stderr)
        return 2
    summary = run(args)
    print(json.dumps(summary))
    return 0 if summary["frames"] else 1


if __name__ == "__main__":
    sys.exit(main())
