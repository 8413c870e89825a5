"""sensor_msgs Image / CameraInfo / PointCloud2 <-> numpy, without cv_bridge.

Functions take any object with the message's fields (rclpy messages, rosbags dataclasses), so the
node and the bag tool share them. Errors are ValueError with a message that says what is wrong.
Images are read without copying (a view of the message's buffer) unless rows are padded or the
byte order is not the machine's; depth_image and mask_to_numpy keep the sent type for that.
"""

import numpy as np

from posediff_ros import geometry

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[str, int]] = {
    "mono8": ("u1", 1),
    "8UC1": ("u1", 1),
    "mono16": ("u2", 1),
    "16UC1": ("u2", 1),
    "16SC1": ("i2", 1),
    "32SC1": ("i4", 1),
    "32FC1": ("f4", 1),
    "64FC1": ("f8", 1),
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "8UC3": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "8UC4": ("u1", 4),
}
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
MASK_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "32SC1")
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


def image_to_numpy(msg) -> np.ndarray:
    """(H, W) or (H, W, C) array in native byte order; honours step padding and endianness.
    A view of msg.data (no copy) when rows are not padded and the byte order is native."""
    if msg.encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}")
    code, channels = ENCODINGS[msg.encoding]
    dtype = np.dtype(code).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height == 0 or width == 0:
        raise ValueError(f"empty image ({width}x{height})")
    if step < row_bytes:
        raise ValueError(f"step {step} < width*channels*itemsize = {row_bytes}")
    data = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if data.size < step * height:
        raise ValueError(f"data has {data.size} bytes, step*height needs {step * height}")
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    image = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    image = image.astype(dtype.newbyteorder("="), copy=False)
    return image[..., 0] if channels == 1 else image


def numpy_to_image(array: np.ndarray, encoding: str, *, msg_type=None, header=None,
                   bigendian: bool = False, row_padding: int = 0):
    """An Image message (sensor_msgs/msg/Image unless msg_type is given) holding array."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}")
    code, channels = ENCODINGS[encoding]
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] != channels:
        raise ValueError(f"{encoding} needs {channels} channel(s), got shape {array.shape}")
    height, width = array.shape[:2]
    dtype = np.dtype(code).newbyteorder(">" if bigendian else "<")
    rows = array.astype(dtype).reshape(height, -1).view(np.uint8)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, row_padding), np.uint8)], axis=1)
    if msg_type is None:
        from sensor_msgs.msg import Image as msg_type
    msg = msg_type()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = int(bigendian)
    msg.step = rows.shape[1]
    msg.data = rows.tobytes()
    return msg


def depth_image(msg) -> np.ndarray:
    """Depth as sent, without a copy: uint16 millimetres (16UC1, mono16) or float32 metres
    (32FC1), the convention of geometry.depth_to_metres and data/points.py (zero, NaN and
    inf are invalid there)."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding {msg.encoding!r} not in {DEPTH_ENCODINGS}")
    return image_to_numpy(msg)


def depth_to_metres(msg) -> np.ndarray:
    """float32 depth in metres from 16UC1/mono16 (mm) or 32FC1 (m); invalid -> 0."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding {msg.encoding!r} not in {DEPTH_ENCODINGS}")
    depth = geometry.depth_to_metres(image_to_numpy(msg))
    depth[~np.isfinite(depth)] = 0.0
    return depth


def mask_to_numpy(msg) -> np.ndarray:
    """Instance mask from mono8/mono16/32SC1, in the sent integer type (uint8, uint16, int32),
    without a copy."""
    if msg.encoding not in MASK_ENCODINGS:
        raise ValueError(f"mask encoding {msg.encoding!r} not in {MASK_ENCODINGS}")
    return image_to_numpy(msg)


def color_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from rgb8/bgr8/rgba8/bgra8/mono8."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise ValueError(f"colour encoding {msg.encoding!r} not in {COLOR_ENCODINGS}")
    image = image_to_numpy(msg)
    if msg.encoding == "mono8":
        return np.repeat(image[..., None], 3, axis=2)
    if msg.encoding.startswith("bgr"):
        image = image[..., 2::-1]
    return np.ascontiguousarray(image[..., :3])


def camera_info_to_k(msg) -> np.ndarray:
    """3x3 intrinsics from CameraInfo.k; raises when it is all zero (uncalibrated), not 3x3,
    not finite or has non-positive focal lengths."""
    k = np.asarray(msg.k, dtype=np.float64).ravel()
    if k.size != 9:
        raise ValueError(f"camera_info k has {k.size} values, needs 9")
    k = k.reshape(3, 3)
    if not np.isfinite(k).all():
        raise ValueError("camera_info intrinsics are not finite (NaN or inf in k)")
    if not (k[0, 0] > 0 and k[1, 1] > 0):
        raise ValueError(f"camera_info has no valid intrinsics (fx={k[0, 0]}, fy={k[1, 1]})")
    return k


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, msg_type=None):
    if msg_type is None:
        from builtin_interfaces.msg import Time as msg_type
    return msg_type(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


def points_to_cloud(points: np.ndarray, labels: np.ndarray | None = None, *, header=None):
    """PointCloud2 of (N, 3) float32 xyz, plus a float32 'label' field (instance id) if given."""
    from sensor_msgs.msg import PointCloud2, PointField

    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    names = ["x", "y", "z"] + (["label"] if labels is not None else [])
    columns = [points]
    if labels is not None:
        columns.append(np.asarray(labels, np.float32).reshape(-1, 1))
    data = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = 1, points.shape[0]
    msg.fields = [PointField(name=n, offset=4 * i, datatype=_FLOAT32, count=1)
                  for i, n in enumerate(names)]
    msg.is_bigendian = False  # data written little-endian above
    msg.point_step = 4 * len(names)
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = data.tobytes()
    return msg


def cloud_to_numpy(msg, fields: tuple[str, ...] = ("x", "y", "z")) -> np.ndarray:
    """(N, len(fields)) float32 from a PointCloud2 whose named fields are FLOAT32."""
    offsets = {f.name: f for f in msg.fields}
    missing = [f for f in fields if f not in offsets]
    if missing:
        raise ValueError(f"point cloud lacks fields {missing}")
    if any(offsets[f].datatype != _FLOAT32 for f in fields):
        raise ValueError("only FLOAT32 point fields are supported")
    width, height, point_step = int(msg.width), int(msg.height), int(msg.point_step)
    row_step = int(msg.row_step)
    if any(offsets[f].offset + 4 > point_step for f in fields):
        raise ValueError(f"point_step {point_step} too small for the fields' offsets")
    if len(set(offsets[f].offset for f in fields)) < len(fields):
        raise ValueError("point fields overlap (same offset)")
    if row_step < point_step * width:
        raise ValueError(f"row_step {row_step} < point_step*width = {point_step * width}")
    raw = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if raw.size < row_step * height:
        raise ValueError(f"data has {raw.size} bytes, row_step*height needs {row_step * height}")
    endian = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": list(fields), "formats": [endian + "f4"] * len(fields),
                      "offsets": [offsets[f].offset for f in fields],
                      "itemsize": point_step})
    n = width * height
    if n == 0:
        return np.zeros((0, len(fields)), np.float32)
    if height > 1 and row_step != point_step * width:
        raw = raw[: row_step * height].reshape(height, row_step)[:, : point_step * width].ravel()
    structured = raw[: n * msg.point_step].view(dtype)
    return np.stack([structured[f].astype(np.float32) for f in fields], axis=1)
