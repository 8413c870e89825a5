"""Synthetic tabletop scenes of NOCS objects, rendered like a depth camera, and written in
the NOCS REAL275 layout so one loader reads ours and the real data.

World (table) frame: table top is the plane y = 0, +y up. Each object stands on it with its
canonical +y up and a random yaw. Camera frame: OpenCV (x right, y down, z forward).
Poses are camera-from-object (p_cam = R p_obj + t), t = bbox centre in the camera frame.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import numpy as np

from posediff_ros.data.render import face_normals, pixel_rays, rasterize
from posediff_ros.data.sensor import SensorSettings, draw_settings, simulate_depth
from posediff_ros.data.shapes import PART_HANDLE, PART_SCREEN, Shape, make_shape
from posediff_ros.geometry import REAL275_K, rotation_about_y

GENERATOR_VERSION = "synthetic-2"  # 2: shape sub-types, sensor model (issue 17)
BACKGROUND = 255  # mask value of pixels without an object (REAL275)
MUG_ID = 6
# a mug's handle counts as visible when at least this fraction of the pixels it covers when
# rendered alone (same view, nothing else in the scene) are visible in the frame, and at
# least HANDLE_MIN_PIXELS of them
HANDLE_MIN_FRACTION = 0.25
HANDLE_MIN_PIXELS = 15


@dataclass
class PlacedObject:
    shape: Shape
    yaw: float  # radians about the table's +y
    position: np.ndarray  # (3,) bbox centre in the world frame
    color: np.ndarray  # (3,) base RGB in [0, 1]

    @property
    def rotation(self) -> np.ndarray:  # world-from-object
        return rotation_about_y(self.yaw)


@dataclass
class Scene:
    objects: list[PlacedObject]
    table_color: np.ndarray  # (3,) RGB [0, 1]
    table_texture: tuple[float, float, float]  # stripe frequency (1/m), direction (rad), phase
    table_half_size: tuple[float, float]  # half extents of the table top along x, z (m)
    floor_drop: float  # m, the floor below the table top


@dataclass
class Camera:
    K: np.ndarray  # (3, 3)
    width: int
    height: int
    R_cw: np.ndarray  # camera-from-world rotation
    t_cw: np.ndarray  # camera-from-world translation (m)


@dataclass
class InstanceGT:
    instance_id: int  # value in the mask, 1..N
    class_id: int  # NOCS 1..6
    rotation: np.ndarray  # (3, 3) camera-from-object
    translation: np.ndarray  # (3,) metres, bbox centre in the camera frame
    size: np.ndarray  # (3,) bbox extents, metres
    handle_visible: bool  # mugs: handle visible (see HANDLE_MIN_FRACTION); True otherwise
    model_name: str = ""
    visible_pixels: int = 0
    handle_fraction: float = 1.0  # mugs: visible fraction of the handle's own silhouette

    @property
    def nocs_scale(self) -> float:
        return float(np.linalg.norm(self.size))


@dataclass
class SceneFrame:
    color: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray  # (H, W) uint16 millimetres, 0 = missing
    mask: np.ndarray  # (H, W) uint8 instance ids, 255 = background
    coord: np.ndarray  # (H, W, 3) uint8 NOCS map: canonical coords / NOCS scale + 0.5
    K: np.ndarray  # (3, 3)
    instances: list[InstanceGT]
    table_pose: np.ndarray = field(default_factory=lambda: np.eye(4))  # camera-from-table
    depth_exact: np.ndarray | None = None  # (H, W) float64 metres before noise (inf = none)
    sensor: SensorSettings | None = None  # the sensor that made `depth` (None: exact depth)


# --- scenes -------------------------------------------------------------------------------


def make_scene(
    rng: np.random.Generator, num_objects: int | None = None,
    class_weights: np.ndarray | None = None, spread: float | None = None, ood: bool = False,
) -> Scene:
    """2-6 new random shapes standing on a table at random yaw, without overlap; `ood`:
    shape parameters from the widened out-of-distribution ranges (shapes.Draw)."""
    n = int(num_objects) if num_objects is not None else int(rng.integers(2, 7))
    spread = spread if spread is not None else rng.uniform(0.18, 0.3)  # placement radius (m)
    p = None if class_weights is None else np.asarray(class_weights) / np.sum(class_weights)
    objects: list[PlacedObject] = []
    for cls in rng.choice(np.arange(1, 7), size=n, p=p):
        shape = make_shape(int(cls), rng, ood=ood)
        r = 0.5 * np.hypot(shape.extents[0], shape.extents[2])  # footprint circle
        for _ in range(100):
            xz = rng.uniform(-spread, spread, size=2)
            if all(
                np.hypot(*(xz - o.position[[0, 2]]))
                > r + 0.5 * np.hypot(o.shape.extents[0], o.shape.extents[2]) + 0.005
                for o in objects
            ):
                break
        else:
            continue  # no room for this one
        pos = np.array([xz[0], 0.5 * shape.extents[1], xz[1]])
        hue = rng.random(3)
        color = 0.15 + 0.8 * hue / max(hue.max(), 1e-6) * rng.uniform(0.4, 1.0)
        objects.append(PlacedObject(shape, float(rng.uniform(0, 2 * np.pi)), pos, color))
    return Scene(
        objects,
        table_color=rng.uniform([0.35, 0.25, 0.15], [0.8, 0.7, 0.6]),
        table_texture=(rng.uniform(20, 90), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)),
        table_half_size=(rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.8)),
        floor_drop=rng.uniform(0.7, 0.8),
    )


def look_at(position: np.ndarray, target: np.ndarray, roll: float = 0.0):
    """Camera-from-world (R, t) of an OpenCV camera at `position` looking at `target`."""
    z = target - position
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    R_cw = np.stack([x, y, z])  # rows: camera axes in world coordinates
    return R_cw, -R_cw @ position


# camera placement (distance m, elevation deg): training, and the out-of-distribution split
CAMERA_RANGES = {False: ((0.45, 1.25), (15.0, 65.0)), True: ((0.35, 1.55), (8.0, 75.0))}


def sample_camera(
    rng: np.random.Generator, K: np.ndarray = REAL275_K, width: int = 640, height: int = 480,
    distance: tuple[float, float] | None = None, elevation_deg: tuple[float, float] | None = None,
    ood: bool = False,
) -> Camera:
    """A camera 0.45-1.25 m from a point near the table centre, looking down 15-65 degrees
    (`ood`: 0.35-1.55 m, 8-75 degrees)."""
    distance = distance or CAMERA_RANGES[ood][0]
    elevation_deg = elevation_deg or CAMERA_RANGES[ood][1]
    d = rng.uniform(*distance)
    el = np.deg2rad(rng.uniform(*elevation_deg))
    az = rng.uniform(0, 2 * np.pi)
    target = np.array([rng.normal(0, 0.04), rng.uniform(0.0, 0.05), rng.normal(0, 0.04)])
    pos = target + d * np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
    R, t = look_at(pos, target, roll=np.deg2rad(rng.normal(0, 3)))
    return Camera(np.asarray(K, dtype=np.float64), width, height, R, t)


# --- rendering ----------------------------------------------------------------------------


def _table_depth(scene: Scene, cam: Camera, rays: np.ndarray):
    """Exact depth (inf = no hit), world hit points and a surface id (0 table, 1 floor)."""
    H, W = rays.shape[:2]
    rays_w = rays.reshape(-1, 3) @ cam.R_cw  # ray directions (z component 1 in the camera)
    origin = -cam.R_cw.T @ cam.t_cw  # camera centre, world frame
    dy = rays_w[:, 1]
    down = dy < -1e-9  # only rays going down meet a plane below the camera
    safe_dy = np.where(down, dy, -1.0)
    depth = np.full(H * W, np.inf)
    surface = np.full(H * W, -1, dtype=np.int8)
    for sid, height in ((1, -scene.floor_drop), (0, 0.0)):  # the table is always nearer
        zt = (height - origin[1]) / safe_dy  # p = origin + z * ray_w has y = height
        ok = down & (zt > 0.05)
        if sid == 0:
            hx, hz = scene.table_half_size
            ok &= (np.abs(origin[0] + zt * rays_w[:, 0]) < hx)
            ok &= (np.abs(origin[2] + zt * rays_w[:, 2]) < hz)
        depth = np.where(ok, zt, depth)
        surface[ok] = sid
    hits = origin + np.where(np.isfinite(depth), depth, 0.0)[:, None] * rays_w
    return depth.reshape(H, W), hits.reshape(H, W, 3), surface.reshape(H, W)


def render_frame(
    scene: Scene, cam: Camera, rng: np.random.Generator, noise: bool | SensorSettings = True,
    with_color: bool = True, with_coord: bool = True, noise_rng: np.random.Generator | None = None,
) -> SceneFrame:
    """Render one view of a scene: colour, depth (mm), instance mask, NOCS map, ground truth.
    Depth goes through the sensor model (data/sensor.py): `noise` True draws the frame's
    sensor from the training ranges, a SensorSettings uses that one, False keeps exact depth.
    Instances with no visible pixel are left out of `instances` (their id is not reused)."""
    H, W, K = cam.height, cam.width, cam.K
    rays = pixel_rays(K, W, H)
    # all objects in one vertex/face soup, in the camera frame
    verts, faces, obj_of_face, part_of_face, poses, offsets = [], [], [], [], [], []
    offset = 0
    for i, obj in enumerate(scene.objects):
        offsets.append(offset)
        R_co = cam.R_cw @ obj.rotation
        t_co = cam.R_cw @ obj.position + cam.t_cw
        poses.append((R_co, t_co))
        m = obj.shape.mesh
        verts.append(m.vertices @ R_co.T + t_co)
        faces.append(m.faces + offset)
        obj_of_face.append(np.full(len(m.faces), i))
        part_of_face.append(m.parts)
        offset += len(m.vertices)
    if scene.objects:
        V, F = np.concatenate(verts), np.concatenate(faces)
        obj_of_face, part_of_face = np.concatenate(obj_of_face), np.concatenate(part_of_face)
        ras = rasterize(V, F, K, W, H)
    else:
        V, F = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        ras = rasterize(V, F, K, W, H)
    t_depth, t_hits, t_surface = _table_depth(scene, cam, rays)
    on_obj = ras.depth < t_depth
    depth = np.where(on_obj, ras.depth, t_depth)
    fid = np.where(on_obj, ras.face, -1)
    obj_idx = np.where(fid >= 0, obj_of_face[fid] if len(F) else -1, -1)
    mask = np.full((H, W), BACKGROUND, dtype=np.uint8)
    mask[obj_idx >= 0] = obj_idx[obj_idx >= 0] + 1

    # surface normals (camera frame) for shading and for the grazing-angle dropouts
    normals = np.zeros((H, W, 3))
    normals[:] = cam.R_cw[:, 1]  # table / floor
    if len(F):
        fn = face_normals(V, F)
        normals[fid >= 0] = fn[fid[fid >= 0]]
    ray_dir = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    cos_inc = np.abs(np.einsum("hwc,hwc->hw", normals, ray_dir))

    nrng = noise_rng if noise_rng is not None else rng
    sensor = None
    if noise is False:
        depth_m = np.where(np.isfinite(depth) & (depth < 3.0), depth, 0.0)
    else:
        sensor = noise if isinstance(noise, SensorSettings) else draw_settings(nrng)
        # surfaces: objects 0..N-1, table -1, floor -2, nothing -3
        label = np.where(obj_idx >= 0, obj_idx, np.where(t_surface >= 0, -1 - t_surface, -3))
        depth_m = simulate_depth(depth, cos_inc, label, nrng, sensor, fx=float(K[0, 0]))
    depth_mm = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)

    instances = []
    coord = np.zeros((H, W, 3), dtype=np.uint8)
    for i, obj in enumerate(scene.objects):
        sel = obj_idx == i
        n_vis = int(sel.sum())
        if n_vis == 0:
            continue
        R_co, t_co = poses[i]
        frac, visible = 1.0, True
        if obj.shape.class_id == MUG_ID:
            handle = part_of_face[fid[sel]] == PART_HANDLE
            m = obj.shape.mesh
            hf = m.parts == PART_HANDLE
            alone = rasterize(V[offsets[i]:], m.faces[hf], K, W, H)
            n_alone = int(np.isfinite(alone.depth).sum())
            n_hvis = int(handle.sum())
            frac = n_hvis / n_alone if n_alone else 0.0
            visible = frac >= HANDLE_MIN_FRACTION and n_hvis >= HANDLE_MIN_PIXELS
        if with_coord:
            p_cam = depth[sel][:, None] * rays[sel]
            p_obj = (p_cam - t_co) @ R_co
            c = p_obj / obj.shape.nocs_scale + 0.5
            coord[sel] = np.clip(np.round(c * 255.0), 0, 255).astype(np.uint8)
        instances.append(InstanceGT(
            instance_id=i + 1, class_id=obj.shape.class_id, rotation=R_co, translation=t_co,
            size=obj.shape.extents.copy(), handle_visible=bool(visible),
            model_name=f"{obj.shape.category}_{i + 1}", visible_pixels=n_vis,
            handle_fraction=float(frac),
        ))

    color = (_shade(scene, cam, obj_idx, fid, part_of_face, normals, t_hits, t_surface, rng)
             if with_color else np.zeros((H, W, 3), dtype=np.uint8))
    table_pose = np.eye(4)
    table_pose[:3, :3], table_pose[:3, 3] = cam.R_cw, cam.t_cw
    return SceneFrame(color, depth_mm, mask, coord, K.copy(), instances, table_pose, depth,
                      sensor)


def _shade(scene, cam, obj_idx, fid, part_of_face, normals, t_hits, t_surface, rng):
    """Lambert shading, per-object colours, a wood-like striped table, sensor noise."""
    H, W = obj_idx.shape
    light = cam.R_cw @ np.array([0.3, 1.0, 0.2])  # from above, in the camera frame
    light /= np.linalg.norm(light)
    lambert = np.clip(normals @ light, 0.0, 1.0)
    shade = 0.35 + 0.65 * lambert
    albedo = np.full((H, W, 3), 0.18)  # unlit background
    freq, ang, phase = scene.table_texture
    u = t_hits[..., 0] * np.cos(ang) + t_hits[..., 2] * np.sin(ang)
    stripes = 0.85 + 0.1 * np.sin(freq * u + phase + 2.0 * np.sin(7.0 * u)) \
        + 0.05 * np.sin(3.1 * freq * u)
    albedo[t_surface == 0] = scene.table_color * stripes[t_surface == 0, None]
    albedo[t_surface == 1] = np.array([0.45, 0.45, 0.47])
    if scene.objects:
        cols = np.stack([o.color for o in scene.objects])
        sel = obj_idx >= 0
        albedo[sel] = cols[obj_idx[sel]]
        screen = np.zeros_like(sel)
        screen[sel] = part_of_face[fid[sel]] == PART_SCREEN
        albedo[screen] = 0.08
    img = albedo * shade[..., None] + rng.normal(0, 0.012, (H, W, 1))
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def render_scene(
    rng: np.random.Generator, K: np.ndarray = REAL275_K, width: int = 640, height: int = 480,
    num_objects: int | None = None, noise: bool | SensorSettings = True,
) -> SceneFrame:
    """A new random scene seen from one random camera (the ROS synthetic camera's source)."""
    scene = make_scene(rng, num_objects)
    cam = sample_camera(rng, K, width, height)
    return render_frame(scene, cam, rng, noise=noise)


# --- REAL275 layout -----------------------------------------------------------------------


def gt_dict(frame: SceneFrame, image_path: str = "") -> dict:
    """Ground truth in the REAL275 results_*.pkl format: RT = [s R | t], s = NOCS scale
    (bbox diagonal), scales = extents / s."""
    n = len(frame.instances)
    RTs = np.tile(np.eye(4), (n, 1, 1))
    scales = np.zeros((n, 3))
    for k, inst in enumerate(frame.instances):
        s = inst.nocs_scale
        RTs[k, :3, :3] = s * inst.rotation
        RTs[k, :3, 3] = inst.translation
        scales[k] = inst.size / s
    return {
        "image_path": image_path,
        "gt_class_ids": np.array([i.class_id for i in frame.instances], dtype=np.int64),
        "gt_RTs": RTs,
        "gt_scales": scales,
        "gt_handle_visibility": np.array([i.handle_visible for i in frame.instances], np.int64),
        "gt_instance_ids": np.array([i.instance_id for i in frame.instances], dtype=np.int64),
    }


def write_real275_frame(root: str, scene_name: str, frame_idx: int, frame: SceneFrame,
                        model_prefix: str) -> None:
    """Write one frame: <root>/<scene>/<ffff>_{color,depth,mask,coord}.png + _meta.txt,
    <root>/gts/results_<scene>_<ffff>.pkl, <root>/obj_models/<model>.txt (extents)."""
    from PIL import Image  # only for writing: rendering runs without Pillow (GPU check)

    sdir = os.path.join(root, scene_name)
    os.makedirs(sdir, exist_ok=True)
    os.makedirs(os.path.join(root, "gts"), exist_ok=True)
    os.makedirs(os.path.join(root, "obj_models"), exist_ok=True)
    stem = os.path.join(sdir, f"{frame_idx:04d}")
    Image.fromarray(frame.color).save(stem + "_color.png")
    Image.fromarray(frame.depth).save(stem + "_depth.png")  # 16-bit PNG, millimetres
    Image.fromarray(frame.mask).save(stem + "_mask.png")
    coord = frame.coord.copy()  # the NOCS data sets store z as 1 - z (see data/nocs.py)
    obj = frame.mask != BACKGROUND
    coord[obj, 2] = 255 - coord[obj, 2]
    Image.fromarray(coord).save(stem + "_coord.png")
    with open(stem + "_meta.txt", "w") as f:
        for inst in frame.instances:
            name = f"{model_prefix}_{inst.model_name}"
            f.write(f"{inst.instance_id} {inst.class_id} {name}\n")
            np.savetxt(os.path.join(root, "obj_models", name + ".txt"), inst.size[None])
    gt = gt_dict(frame, image_path=f"{scene_name}/{frame_idx:04d}")
    # pickle because REAL275's own ground truth (gts/*.pkl) is pickled dicts of arrays and
    # the NOCS evaluation tools read that format; it holds plain arrays, never model weights
    with open(os.path.join(root, "gts", f"results_{scene_name}_{frame_idx:04d}.pkl"), "wb") as f:
        pickle.dump(gt, f)
