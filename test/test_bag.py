"""posediff-bag on bags this test writes (mcap and sqlite3) from rendered scenes."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rosbags")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402

from posediff_ros.ros import bag, convert  # noqa: E402
from posediff_ros.ros.synthetic_camera import camera_info, detections_2d  # noqa: E402

FRAMES = 3


@pytest.fixture(scope="module")
def scenes():
    from posediff_ros.data.synthetic import render_scene

    rng = np.random.default_rng(5)
    return [render_scene(rng, num_objects=2) for _ in range(2)]


def write_input_bag(path, scenes, storage, mask_offset_ns=0):
    """Depth, mask, camera_info and detections of FRAMES frames, one stamp per frame (the
    mask `mask_offset_ns` later: a segmenter that re-stamps)."""
    store = bag.typestore_with()
    start = 1_700_000_000_000_000_000
    with Writer(path, version=8, storage_plugin=storage) as writer:
        conns = {
            name: writer.add_connection(f"/cam/{name}", msgtype, typestore=store)
            for name, msgtype in [("depth", "sensor_msgs/msg/Image"),
                                  ("mask", "sensor_msgs/msg/Image"),
                                  ("camera_info", "sensor_msgs/msg/CameraInfo"),
                                  ("detections", "vision_msgs/msg/Detection2DArray")]}
        stamps = []
        for i in range(FRAMES):
            frame = scenes[i % len(scenes)]
            t = start + i * 100_000_000
            stamps.append(t)
            header = Header(stamp=convert.ns_to_stamp(t), frame_id="cam")
            mask = np.where(frame.mask == 255, 0, frame.mask).astype(np.uint8)
            h, w = mask.shape
            msgs = {
                "camera_info": camera_info(frame.K, w, h, header),
                "depth": convert.numpy_to_image(frame.depth, "16UC1", header=header),
                "mask": convert.numpy_to_image(mask, "mono8", header=Header(
                    stamp=convert.ns_to_stamp(t + mask_offset_ns), frame_id="cam")),
                "detections": detections_2d(header, mask, frame.instances),
            }
            for k, (name, msg) in enumerate(msgs.items()):
                writer.write(conns[name], t + k * 1000, serialize_message(msg))
    return stamps


@pytest.mark.parametrize("storage, options", [
    ("mcap", []),  # exact stamps
    ("sqlite3", ["--sync", "approximate", "--slop", "0.01"]),  # the mask re-stamped 3 ms later
    ("mcap", ["--segmentation", "boxes"]),  # no mask: the objects cut out inside the boxes
])
def test_bag_round_trip(tmp_path, scenes, storage, options):
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    offset = 3_000_000 if "approximate" in options else 0
    stamps = write_input_bag(tmp_path / "in", scenes, plugin, mask_offset_ns=offset)
    out = tmp_path / "out"
    mask = [] if "boxes" in options else ["--mask", "/cam/mask"]
    rc = bag.main([str(tmp_path / "in"), str(out), "--depth", "/cam/depth", *mask,
                   "--camera-info", "/cam/camera_info", "--detections", "/cam/detections",
                   "--model", "random", "--min-points", "30", "--storage", storage, *options,
                   "--no-tracking"])  # ids = the mask ids, checked against the truth below
    assert rc == 0
    results = []
    tf_count = 0
    with Reader(out) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {"/object_poses": "vision_msgs/msg/Detection3DArray",
                          "/tf": "tf2_msgs/msg/TFMessage"}
        for conn, _, raw in reader.messages():
            if conn.topic == "/object_poses":
                results.append(deserialize_message(raw, Detection3DArray))
            else:
                tf_count += 1
    assert [convert.stamp_to_ns(r.header.stamp) for r in results] == stamps
    truth = [{str(g.instance_id): g.class_id for g in scenes[i % len(scenes)].instances}
             for i in range(FRAMES)]
    names = {1: "bottle", 2: "bowl", 3: "camera", 4: "can", 5: "laptop", 6: "mug"}
    for result, gt in zip(results, truth, strict=True):
        assert result.detections and result.header.frame_id == "cam"
        for det in result.detections:
            assert det.results[0].hypothesis.class_id == names[gt[det.id]]
    assert tf_count == FRAMES
    with open(f"{out}.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(r.detections) for r in results)
    assert rows[0].keys() == set(bag.CSV_COLUMNS)
    q = np.array([[float(r[k]) for k in ("qx", "qy", "qz", "qw")] for r in rows])
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
    report = json.loads((tmp_path / "out.json").read_text())
    assert [f["stamp_ns"] for f in report["frames"]] == stamps
    if storage == "mcap" and not options:  # tracking (the default): the node's ids
        rc = bag.main([str(tmp_path / "in"), str(tmp_path / "tracked"), "--depth", "/cam/depth",
                       *mask, "--camera-info", "/cam/camera_info", "--detections",
                       "/cam/detections", "--model", "random", "--min-points", "30"])
        tracked = json.loads((tmp_path / "tracked.json").read_text())["frames"]
        assert rc == 0 and [len(f["objects"]) for f in tracked] == [
            len(f["objects"]) for f in report["frames"]]
        for f in tracked:
            assert all(o["tf_frame"] == f"{o['class']}_{o['instance_id']}" for o in f["objects"])


def test_missing_topic_is_a_clear_error(tmp_path, scenes):
    write_input_bag(tmp_path / "in", scenes, StoragePlugin.MCAP)
    proc = subprocess.run(
        [sys.executable, "-m", "posediff_ros.ros.bag", str(tmp_path / "in"), str(tmp_path / "o"),
         "--depth", "/nope", "--mask", "/cam/mask", "--camera-info", "/cam/camera_info",
         "--class-map", "1:mug", "--model", "random"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "topics not in the bag: ['/nope']" in proc.stderr + proc.stdout


def test_exact_pairing_refuses_re_stamped_masks(tmp_path, scenes, capsys):
    """A mask stamped 3 ms after its depth never pairs exactly: no frame, and the summary
    says which topic the frames were missing."""
    write_input_bag(tmp_path / "in", scenes, StoragePlugin.MCAP, mask_offset_ns=3_000_000)
    rc = bag.main([str(tmp_path / "in"), str(tmp_path / "out"), "--depth", "/cam/depth",
                   "--mask", "/cam/mask", "--camera-info", "/cam/camera_info",
                   "--detections", "/cam/detections", "--model", "random"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 1 and summary["frames"] == 0
    assert summary["sync"]["frames dropped, missing topic"] == \
        "/cam/depth 3, /cam/detections 3, /cam/mask 3"  # mask alone; depth + detections
