"""docs/images/object_frames.png: one generated object per class in its canonical frame, with
its box and axes (x red = front, y green = up, z blue), drawn by the project's own z-buffer
renderer (data/render.py) and Pillow. Run: .venv/bin/python scripts/outputs_figure.py"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from posediff_ros.categories import BY_ID
from posediff_ros.data.render import face_normals, rasterize
from posediff_ros.data.shapes import PART_HANDLE, PART_LENS, PART_SCREEN, make_shape
from posediff_ros.data.synthetic import look_at
from posediff_ros.geometry import box_corners, intrinsics_matrix

W, H = 360, 300
K = intrinsics_matrix(520.0, 520.0, W / 2, H / 2 + 10)
NOTES = {
    "bottle": "symmetric: any turn about y is the same pose",
    "bowl": "symmetric: any turn about y is the same pose",
    "can": "symmetric: any turn about y is the same pose",
    "camera": "lens along +x, body width along z",
    "laptop": "keyboard toward +x, hinge along z at -x",
    "mug": "handle toward +x; hidden handle: yaw unknown",
}
BOX_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7),
             (0, 4), (1, 5), (2, 6), (3, 7)]
PART_RGB = {PART_HANDLE: (205, 140, 90), PART_LENS: (90, 90, 110), PART_SCREEN: (120, 150, 190)}


def tile(cls_id: int, font) -> Image.Image:
    shape = make_shape(cls_id, np.random.default_rng(cls_id))
    size = shape.extents
    dist = 3.2 * float(np.linalg.norm(size))
    az, el = np.deg2rad(35.0), np.deg2rad(25.0)  # in front (+x), to the right (+z), above
    eye = dist * np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
    R, t = look_at(eye, np.zeros(3))  # camera-from-object
    verts = shape.mesh.vertices @ R.T + t
    raster = rasterize(verts, shape.mesh.faces, K, W, H)
    normals = face_normals(verts, shape.mesh.faces)
    light = np.array([0.3, -0.6, -0.75]) / np.linalg.norm([0.3, -0.6, -0.75])
    hit = raster.face >= 0
    lambert = np.clip(normals[raster.face[hit]] @ light, 0, 1) * 0.7 + 0.3
    base = np.full((hit.sum(), 3), (200.0, 200.0, 205.0))
    parts = shape.mesh.parts[raster.face[hit]]
    for part, rgb in PART_RGB.items():
        base[parts == part] = rgb
    image = np.full((H, W, 3), 255, np.uint8)
    image[hit] = (base * lambert[:, None]).astype(np.uint8)
    img = Image.fromarray(image)
    d = ImageDraw.Draw(img)

    def uv(p):
        q = (np.asarray(p) @ R.T + t) @ K.T
        return tuple(q[..., :2] / q[..., 2:3])

    corners = box_corners(size)
    for a, b in BOX_EDGES:
        d.line([uv(corners[a]), uv(corners[b])], fill=(60, 60, 60), width=1)
    length = 0.75 * float(size.max())
    for k, (rgb, name) in enumerate([((220, 30, 30), "x front"), ((20, 160, 40), "y up"),
                                     ((30, 60, 230), "z")]):
        tip = np.zeros(3)
        tip[k] = length
        d.line([uv(np.zeros(3)), uv(tip)], fill=rgb, width=3)
        d.text(uv(tip * 1.08), name, fill=rgb, font=font)
    name = BY_ID[cls_id].name
    d.text((8, 6), name, fill=(0, 0, 0), font=font)
    d.text((8, H - 22), NOTES[name], fill=(40, 40, 40), font=font)
    return img


def main(out: Path = Path("docs/images/object_frames.png")) -> None:
    font = ImageFont.load_default(size=14)
    tiles = [tile(c, font) for c in sorted(BY_ID)]
    sheet = Image.new("RGB", (3 * W, 2 * H), "white")
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % 3) * W, (k // 3) * H))
    d = ImageDraw.Draw(sheet)
    for k in range(1, 3):
        d.line([(k * W, 0), (k * W, 2 * H)], fill=(180, 180, 180))
    d.line([(0, H), (3 * W, H)], fill=(180, 180, 180))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
