"""Projected boxes and axes drawn on a colour image (numpy + Pillow, no ROS, no OpenCV)."""

import numpy as np
from PIL import Image, ImageDraw

from posediff_ros.categories import BY_ID
from posediff_ros.geometry import box_corners

BOX_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7),
             (0, 4), (1, 5), (2, 6), (3, 7)]
CLASS_RGB = {1: (31, 119, 180), 2: (255, 127, 14), 3: (44, 160, 44), 4: (214, 39, 40),
             5: (148, 103, 189), 6: (140, 86, 75)}


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    if np.any(points[:, 2] <= 1e-3):
        return None  # behind or at the camera: skip rather than draw nonsense
    uvw = points @ np.asarray(K, np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def draw_overlay(rgb: np.ndarray, K: np.ndarray, objects, names: list[str] | None = None,
                 width: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 copy of rgb with each object's box (class colour), axes and label."""
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    for i, obj in enumerate(objects):
        colour = CLASS_RGB.get(obj.class_id, (255, 255, 255))
        uv = _project(box_corners(obj.size, obj.rotation, obj.translation), K)
        if uv is not None:
            for a, b in BOX_EDGES:
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=colour, width=width)
        length = 0.6 * float(np.max(obj.size))
        axes = obj.translation + np.concatenate([np.zeros((1, 3)), length * obj.rotation.T])
        uv = _project(axes, K)
        if uv is not None:
            for k, axis_colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
                draw.line([tuple(uv[0]), tuple(uv[k + 1])], fill=axis_colour, width=width)
            label = names[i] if names else BY_ID[obj.class_id].name
            draw.text((float(uv[0][0]) + 4, float(uv[0][1]) + 4),
                      f"{label} {obj.score:.2f}", fill=(255, 255, 255))
    return np.asarray(image)
