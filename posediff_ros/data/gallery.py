"""The generator at a glance: docs/images/contact_sheet.png.

    python -m posediff_ros.data.gallery --out docs/images/contact_sheet.png [--ood]

Top: one row per class, one tile per shape sub-type (training ranges; `--ood` the widened
out-of-distribution ranges), each object alone on a table, seen from its front-right (+x, +z)
30 degrees above, with its canonical axes (x red = front, y green = up, z blue). Bottom: whole
generated frames through the sensor model: colour, sensor depth, and where the sensor depth is
wrong (red: off by more than 8 mm, black: no return, grey: within 8 mm).
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from posediff_ros.data.shapes import SUBTYPES, make_shape
from posediff_ros.data.synthetic import (
    Camera,
    PlacedObject,
    Scene,
    look_at,
    make_scene,
    render_frame,
    sample_camera,
)
from posediff_ros.geometry import REAL275_K

TILE = 160


def _project(K: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    q = K @ p
    return float(q[0] / q[2]), float(q[1] / q[2])


def shape_tile(cls_id: int, subtype: str, rng: np.random.Generator, ood: bool = False):
    """One object of a sub-type alone on a table: shaded colour with its axes, TILE px."""
    shape = make_shape(cls_id, rng, ood=ood, subtype=subtype)
    centre = np.array([0.0, shape.extents[1] / 2, 0.0])
    obj = PlacedObject(shape, 0.0, centre, np.array([0.75, 0.72, 0.68]))
    scene = Scene([obj], np.array([0.45, 0.45, 0.5]), (40.0, 0.3, 0.0), (0.6, 0.6), 0.75)
    dist = 3.2 * shape.nocs_scale
    az, el = np.deg2rad(40.0), np.deg2rad(30.0)  # front-right: between +x and +z
    pos = centre + dist * np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
    R, t = look_at(pos, centre)
    frame = render_frame(scene, Camera(REAL275_K, 640, 480, R, t), rng, noise=False,
                         with_coord=False)
    img = Image.fromarray(frame.color)
    draw = ImageDraw.Draw(img)
    o = R @ centre + t
    for k, col in enumerate([(255, 0, 0), (0, 200, 0), (0, 0, 255)]):
        tip = o + R[:, k] * 0.6 * shape.nocs_scale
        draw.line([_project(REAL275_K, o), _project(REAL275_K, tip)], fill=col, width=4)
    u, v = _project(REAL275_K, o)
    half = 150
    img = img.crop((int(u) - half, int(v) - half, int(u) + half, int(v) + half))
    img = img.resize((TILE, TILE), Image.LANCZOS)
    ImageDraw.Draw(img).text((4, 4), f"{shape.category}: {subtype}", fill=(255, 255, 255))
    return img


def _depth_rgb(depth_mm: np.ndarray) -> np.ndarray:
    valid = depth_mm > 0
    lo, hi = np.percentile(depth_mm[valid], [1, 99]) if valid.any() else (0, 1)
    t = np.clip((depth_mm - lo) / max(hi - lo, 1), 0, 1)
    return (np.stack([t, 0.3 + 0.5 * t, 1.0 - t], -1) * 255 * valid[..., None]).astype(np.uint8)


def _error_rgb(depth_mm: np.ndarray, exact_m: np.ndarray) -> np.ndarray:
    err = np.abs(depth_mm / 1000.0 - np.where(np.isfinite(exact_m), exact_m, 0.0))
    out = np.full((*depth_mm.shape, 3), 110, np.uint8)
    out[err > 0.008] = (230, 30, 30)
    out[depth_mm == 0] = 0
    return out


def frame_rows(seed: int, count: int, ood: bool = False) -> list[np.ndarray]:
    """`count` rows: colour | sensor depth | depth error, of generated frames."""
    from posediff_ros.data.sensor import draw_settings

    rows = []
    rng = np.random.default_rng(seed)
    for _ in range(count):
        scene = make_scene(rng, ood=ood)
        frame = render_frame(scene, sample_camera(rng, ood=ood), rng,
                             noise=draw_settings(rng, ood=ood), with_coord=False)
        rows.append(np.concatenate([frame.color, _depth_rgb(frame.depth),
                                    _error_rgb(frame.depth, frame.depth_exact)], 1))
    return rows


def contact_sheet(out: str, seed: int = 0, ood: bool = False, frames: int = 2) -> None:
    rng = np.random.default_rng(seed)
    cols = max(len(t) for t in SUBTYPES.values())
    grid = Image.new("RGB", (cols * TILE, len(SUBTYPES) * TILE), (255, 255, 255))
    for r, (cls_id, types) in enumerate(SUBTYPES.items()):
        for c, name in enumerate(types):
            grid.paste(shape_tile(cls_id, name, rng, ood), (c * TILE, r * TILE))
    parts = [grid]
    for row in frame_rows(seed + 1, frames, ood):
        img = Image.fromarray(row)
        parts.append(img.resize((grid.width, int(img.height * grid.width / img.width))))
    sheet = Image.new("RGB", (grid.width, sum(p.height for p in parts)), (255, 255, 255))
    y = 0
    for p in parts:
        sheet.paste(p, (0, y))
        y += p.height
    sheet.save(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/images/contact_sheet.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ood", action="store_true", help="widened out-of-distribution ranges")
    ap.add_argument("--frames", type=int, default=2, help="rows of whole generated frames")
    a = ap.parse_args(argv)
    contact_sheet(a.out, a.seed, a.ood, a.frames)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
