"""2D boxes -> instance mask: each object cut out of the depth inside its box (ROS-free).

For detectors that give boxes and class names only (YOLO, RT-DETR, Grounding DINO). Per box:
1. the supporting plane (the table, or a wall behind) is fitted with RANSAC to the depth in a
   ring around the box; what lies on it or behind it is removed (if the ring has such a
   plane: at least `min_plane_fraction` of its points on one);
2. the depth mode of what remains inside the box is the object; the pixels within a band of
   the box's metric size around that depth that are connected to the mode without a depth
   jump are kept (a nearer occluder or the background inside the box fall away);
3. a pixel claimed by several boxes goes to the box whose object depth is nearest to it.
The result is an instance-id image like a segmenter's, so the points come out of the same code
as with a mask (data/points.py): the node, the bag tool and `posediff-eval --segmentation
boxes` share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """Pixel bounds [x0, x1) x [y0, y1) (column, row) of one detection, and its class."""

    x0: float
    y0: float
    x1: float
    y1: float
    class_id: int

    @classmethod
    def from_center(cls, cx: float, cy: float, width: float, height: float,
                    class_id: int) -> Box:
        """vision_msgs/BoundingBox2D convention: centre and full size in pixels."""
        return cls(cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2, class_id)

    def slices(self, shape: tuple[int, int], grow: float = 0.0) -> tuple[slice, slice]:
        """(rows, cols) of the box grown by `grow` x its size on each side, clipped."""
        gx, gy = grow * (self.x1 - self.x0), grow * (self.y1 - self.y0)
        r0, r1 = int(np.floor(self.y0 - gy)), int(np.ceil(self.y1 + gy))
        c0, c1 = int(np.floor(self.x0 - gx)), int(np.ceil(self.x1 + gx))
        return (slice(max(r0, 0), max(min(r1, shape[0]), 0)),
                slice(max(c0, 0), max(min(c1, shape[1]), 0)))


@dataclass
class BoxCutConfig:
    margin: float = 0.3  # ring around the box for the plane fit, fraction of the box size
    plane_threshold: float = 0.008  # m: nearer to the plane than this is the plane
    plane_iterations: int = 64  # RANSAC hypotheses
    min_plane_fraction: float = 0.3  # share of the ring's points on the plane to remove it
    mode_bin: float = 0.01  # m: depth histogram bin for the object's depth mode
    depth_jump: float = 0.02  # m: neighbours further apart are not connected
    depth_range: tuple[float, float] = (0.1, 5.0)  # m: valid depth
    seed: int = 0  # RANSAC


def box_from_mask(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight pixel bounds (x0, y0, x1, y1) of a bool mask, x1/y1 exclusive; None if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def boxes_from_instance_mask(mask: np.ndarray, ids: list[int],
                             class_ids: list[int]) -> list[Box]:
    """The tight box of each instance of an instance-id mask (what a perfect detector would
    give): how posediff-eval --segmentation boxes makes its boxes from the ground truth."""
    boxes = []
    for inst, cls in zip(ids, class_ids, strict=True):
        bounds = box_from_mask(mask == inst)
        boxes.append(Box(*bounds, cls) if bounds else Box(0, 0, 0, 0, cls))
    return boxes


def instances_from_boxes(depth: np.ndarray, K: np.ndarray, boxes: list[Box], ids: list[str],
                         config: BoxCutConfig | None = None
                         ) -> tuple[np.ndarray, dict[int, int]]:
    """(instance mask, {instance id: class id}) of a detector's boxes. The instance id is the
    detection's id where all are distinct positive integers (a tracker's), else the box's
    position + 1; 0 = no object. (The node and the bag tool: segmentation boxes.)"""
    use_ids = len(set(ids)) == len(ids) and all(i.isdigit() and int(i) > 0 for i in ids)
    lookup = [0] + [int(i) if use_ids else k + 1 for k, i in enumerate(ids)]
    cut = masks_from_boxes(depth, K, boxes, config)
    return np.asarray(lookup, np.int64)[cut], {lookup[k + 1]: b.class_id
                                               for k, b in enumerate(boxes)}


def masks_from_boxes(depth: np.ndarray, K: np.ndarray, boxes: list[Box],
                     config: BoxCutConfig | None = None) -> np.ndarray:
    """(H, W) int32 instance ids: box k (0-based) -> k + 1, 0 = no object. depth in metres."""
    cfg = config or BoxCutConfig()
    rng = np.random.default_rng(cfg.seed)
    depth = np.asarray(depth, dtype=np.float32)
    owner = np.zeros(depth.shape, np.int32)
    owner_err = np.full(depth.shape, np.inf, np.float32)
    for k, box in enumerate(boxes):
        rows, cols = box.slices(depth.shape)
        cut, z_mode = cut_object(depth, K, box, cfg, rng)
        if z_mode is None:
            continue
        err = np.where(cut, np.abs(depth[rows, cols] - z_mode), np.inf)
        mine = err < owner_err[rows, cols]
        owner[rows, cols][mine] = k + 1
        owner_err[rows, cols][mine] = err[mine]
    return owner


def cut_object(depth: np.ndarray, K: np.ndarray, box: Box, cfg: BoxCutConfig,
               rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """(bool mask over the box's pixels, the object's depth mode), or (empty, None)."""
    rows, cols = box.slices(depth.shape)
    z = depth[rows, cols]
    lo, hi = cfg.depth_range
    keep = np.isfinite(z) & (z >= lo) & (z <= hi)
    if not keep.any():
        return keep, None
    plane = support_plane(depth, K, box, cfg, rng)
    if plane is not None:
        keep &= ~_plane_pixels(depth, K, box, plane, cfg)
    if not keep.any():
        return keep, None
    zs = z[keep]
    bins = np.floor((zs - zs.min()) / cfg.mode_bin).astype(np.int64)
    z_mode = zs.min() + (np.argmax(np.bincount(bins)) + 0.5) * cfg.mode_bin
    # the object is about as deep as it is wide: a band of the box's metric size
    size = max((box.x1 - box.x0) / K[0, 0], (box.y1 - box.y0) / K[1, 1]) * z_mode
    keep &= np.abs(z - z_mode) <= max(size, 3 * cfg.mode_bin)
    return _connected_to_mode(z, keep, z_mode, cfg), float(z_mode)


def _plane_pixels(depth: np.ndarray, K: np.ndarray, box: Box, plane: np.ndarray,
                  cfg: BoxCutConfig) -> np.ndarray:
    """Pixels of the box that are the support: behind the plane, or on it and connected to
    the plane around the box (a bowl's or mug's inside floor, on the table's height but
    enclosed by the rim, stays)."""
    from scipy import ndimage  # box mode only: the node starts without scipy
    rows, cols = box.slices(depth.shape, grow=cfg.margin)
    inner_r, inner_c = box.slices(depth.shape)
    z = depth[rows, cols]
    height = plane_height(z, K, rows, cols, plane)
    valid = np.isfinite(z) & (z > 0)
    on = valid & (np.abs(height) <= cfg.plane_threshold)
    labels, _ = ndimage.label(on, structure=np.ones((3, 3), bool))
    ring = np.ones(z.shape, bool)
    box_part = (slice(inner_r.start - rows.start, inner_r.stop - rows.start),
                slice(inner_c.start - cols.start, inner_c.stop - cols.start))
    ring[box_part] = False
    table = np.isin(labels, np.unique(labels[ring & on]))
    support = (table & on) | (valid & (height < -cfg.plane_threshold))
    return support[box_part]


def _connected_to_mode(z: np.ndarray, keep: np.ndarray, z_mode: float,
                       cfg: BoxCutConfig) -> np.ndarray:
    """The 8-connected part of `keep` (split at depth jumps) holding most mode pixels."""
    from scipy import ndimage  # box mode only: the node starts without scipy
    zf = np.where(keep, z, 0.0)
    edge = np.zeros_like(keep)  # both pixels of a neighbour pair a depth jump apart
    for axis in (0, 1):
        both = np.diff(keep.astype(np.int8), axis=axis) == 0
        jump = (np.abs(np.diff(zf, axis=axis)) > cfg.depth_jump) & both
        for side in (slice(1, None), slice(None, -1)):
            index = [slice(None)] * 2
            index[axis] = side
            edge[tuple(index)] |= jump
    cross = np.ones((3, 3), bool)
    labels, n = ndimage.label(keep & ~edge, structure=cross)
    if n == 0:
        return np.zeros_like(keep)
    at_mode = (np.abs(z - z_mode) <= cfg.mode_bin) & (labels > 0)
    votes = np.bincount(labels[at_mode], minlength=n + 1)
    votes[0] = 0
    if votes.max() == 0:
        return np.zeros_like(keep)
    part = labels == np.argmax(votes)
    # give back the rim lost at the jumps: pixels continuous with a neighbour in the part
    near_max = ndimage.grey_dilation(np.where(part, z, -np.inf), footprint=cross)
    near_min = -ndimage.grey_dilation(np.where(part, -z, -np.inf), footprint=cross)
    rim = edge & keep & (z <= near_max + cfg.depth_jump) & (z >= near_min - cfg.depth_jump)
    return part | rim


def support_plane(depth: np.ndarray, K: np.ndarray, box: Box, cfg: BoxCutConfig,
                  rng: np.random.Generator) -> np.ndarray | None:
    """(a, b, c, d) of the plane a x + b y + c z + d = 0 that most of the ring around the box
    lies on, normal toward the camera (d > 0); None without such a plane."""
    rows, cols = box.slices(depth.shape, grow=cfg.margin)
    inner_r, inner_c = box.slices(depth.shape)
    ring = np.ones((rows.stop - rows.start, cols.stop - cols.start), bool)
    ring[inner_r.start - rows.start:inner_r.stop - rows.start,
         inner_c.start - cols.start:inner_c.stop - cols.start] = False
    z = depth[rows, cols]
    lo, hi = cfg.depth_range
    ring &= np.isfinite(z) & (z >= lo) & (z <= hi)
    v, u = np.nonzero(ring)
    if len(v) < 30:
        return None
    if len(v) > 3000:
        pick = rng.choice(len(v), 3000, replace=False)
        v, u = v[pick], u[pick]
    zz = z[v, u].astype(np.float64)
    pts = np.stack([(u + cols.start - K[0, 2]) / K[0, 0] * zz,
                    (v + rows.start - K[1, 2]) / K[1, 1] * zz, zz], axis=1)
    tri = pts[rng.integers(0, len(pts), (cfg.plane_iterations, 3))]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-9
    if not ok.any():
        return None
    normals = normals[ok] / norm[ok, None]
    offsets = -np.einsum("ij,ij->i", normals, tri[ok, 0])
    inliers = np.abs(pts @ normals.T + offsets) < cfg.plane_threshold  # (N, hypotheses)
    best = np.argmax(inliers.sum(axis=0))
    on = inliers[:, best]
    if on.mean() < cfg.min_plane_fraction or on.sum() < 3:
        return None
    centre = pts[on].mean(axis=0)  # least squares refit on the inliers
    normal = np.linalg.eigh(np.cov((pts[on] - centre).T))[1][:, 0]  # least variance
    plane = np.append(normal, -normal @ centre)
    return plane if plane[3] > 0 else -plane


def plane_height(z: np.ndarray, K: np.ndarray, rows: slice, cols: slice,
                 plane: np.ndarray) -> np.ndarray:
    """Signed distance (m) of each pixel's point from the plane, positive toward the camera."""
    v, u = np.mgrid[rows, cols]
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    return plane[0] * x + plane[1] * y + plane[2] * z + plane[3]
