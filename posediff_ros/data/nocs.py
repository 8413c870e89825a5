"""Readers for REAL275 / CAMERA25 (NOCS layout), also used for our synthetic frames.

Layout (Wang et al. 2019; our generator writes the same):
    <root>/[Real|CAMERA/<subset>/]<scene>/<ffff>_{color,depth,mask,coord}.png, <ffff>_meta.txt
    <root>/gts/[<subset>/]results_[<prefix>_]<scene>_<ffff>.pkl   ground truth per frame
    <root>/obj_models/[<subset>/]<model_name>.txt                  box extents
    <root>/camera_full_depths/<subset>/<scene>/<ffff>_composed.png CAMERA25 depth (with table)
- depth: uint16 millimetres (CAMERA25's composed depth: 8-bit RGB, depth = G * 256 + R);
- mask: instance id per pixel, 255 background (3-channel files: the first channel is used);
- meta: "inst_id class_id model_name" (REAL275) or "inst_id class_id synset model_id" (CAMERA);
- gt pickle: gt_class_ids (G,), gt_RTs (G, 4, 4) camera-from-object with the 3x3 block
  s * R (s = NOCS scale, the box diagonal), gt_scales (G, 3) = extents / s,
  gt_handle_visibility (G,), optionally gt_instance_ids (G,) (our generator writes them).
- coord: NOCS map, RGB = canonical coordinates / NOCS scale + 0.5, the z channel stored as
  1 - z (every NOCS loader flips it back; our generator writes it the same way).
Intrinsics: REAL275_K, or CAMERA25_K for paths under a "CAMERA" folder, or an
`intrinsics.txt` (3x3) in the scene folder or the root, or the K passed in.

Frames without a gt pickle (the REAL275 and CAMERA25 training sets have none) get their poses
from the NOCS map: a robust Umeyama similarity fit of the map's coordinates to the
back-projected depth gives s, R, t (as the NOCS authors made their test ground truth); box
extents = s * the model's unit box from obj_models/, else the map's own extent.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from posediff_ros.categories import BY_ID
from posediff_ros.geometry import (
    CAMERA25_K,
    REAL275_K,
    backproject,
    project,
    project_to_so3,
    similarity_transform,
)

log = logging.getLogger(__name__)


@dataclass
class GTInstance:
    """Ground truth of one object instance (same field names as synthetic.InstanceGT)."""

    instance_id: int  # value of its pixels in the mask
    class_id: int  # NOCS 1..6 (HouseCat6D: its own ids unless mapped)
    rotation: np.ndarray  # (3, 3) camera-from-object
    translation: np.ndarray  # (3,) metres
    size: np.ndarray  # (3,) box extents, metres
    handle_visible: bool = True
    model_name: str = ""


@dataclass
class Frame:
    name: str  # "<scene>/<frame>"
    depth: np.ndarray  # (H, W) uint16 millimetres
    mask: np.ndarray  # (H, W) int32 instance ids, 255 (REAL275) or 0 (HouseCat6D) background
    K: np.ndarray  # (3, 3)
    instances: list[GTInstance] = field(default_factory=list)
    color_path: Path | None = None

    def color(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, read on demand."""
        return np.asarray(Image.open(self.color_path).convert("RGB"))


# --- image files --------------------------------------------------------------------------


def read_depth(path: Path) -> np.ndarray:
    """uint16 millimetres from a 16-bit PNG or an 8-bit RGB-encoded one (CAMERA25)."""
    a = np.asarray(Image.open(path))
    if a.ndim == 3:  # encoded: high byte in G, low byte in R (cv2's BGR channels 1 and 2)
        a = a[..., 1].astype(np.uint32) * 256 + a[..., 0]
    return a.astype(np.uint16)


def read_mask(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path))
    return (a[..., 0] if a.ndim == 3 else a).astype(np.int32)


def read_meta(path: Path) -> list[tuple[int, int, str]]:
    """(instance id, class id, model name) per line; CAMERA's "synset model_id" joined by /."""
    rows = []
    for line in Path(path).read_text().splitlines():
        words = line.split()
        if len(words) >= 3:
            rows.append((int(words[0]), int(words[1]), "/".join(words[2:])))
    return rows


def read_intrinsics(path: Path) -> np.ndarray:
    """3x3 from a text file of 9 numbers (row-major) or 4 (fx fy cx cy)."""
    v = np.loadtxt(path, dtype=np.float64).ravel()
    if v.size == 4:
        return np.array([[v[0], 0, v[2]], [0, v[1], v[3]], [0, 0, 1.0]])
    return v[:9].reshape(3, 3)


def load_gt_pickle(path: Path) -> dict:
    # The data set's own ground truth format (REAL275 gts/*.pkl: dicts of numpy arrays), read
    # with pickle only for these gt files of a data set the user points us at; model weights
    # are never pickled in this project (safetensors + JSON).
    with open(path, "rb") as f:
        try:
            return pickle.load(f)
        except UnicodeDecodeError:  # Python 2 pickles of the original release
            f.seek(0)
            return pickle.load(f, encoding="latin1")


def poses_from_gt(gt: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(class_ids, R, t, extents in metres, handle_visible) from a REAL275 gt dict:
    s = cbrt(det(RT[:3, :3])), R = RT[:3, :3] / s, extents = gt_scales * s."""
    cids = np.asarray(gt["gt_class_ids"], dtype=np.int64).reshape(-1)
    n = len(cids)
    RTs = np.asarray(gt["gt_RTs"], dtype=np.float64).reshape(n, 4, 4)
    s = np.cbrt(np.linalg.det(RTs[:, :3, :3]))
    R = project_to_so3(RTs[:, :3, :3] / s[:, None, None]) if n else np.zeros((0, 3, 3))
    t = RTs[:, :3, 3]
    sizes = np.asarray(gt["gt_scales"], dtype=np.float64).reshape(n, 3) * s[:, None]
    hv = np.asarray(gt.get("gt_handle_visibility", np.ones(n)), dtype=np.int64).reshape(-1) != 0
    return cids, R, t, sizes, hv


# --- gt instance <-> mask id --------------------------------------------------------------


def match_gt_to_mask(
    gt_class_ids: np.ndarray,
    gt_t: np.ndarray,
    meta: list[tuple[int, int, str]],
    mask: np.ndarray,
    K: np.ndarray,
) -> list[int | None]:
    """Mask instance id of each gt entry (REAL275 pickles carry no instance ids).

    1. The NOCS tools list instances in meta order (those present in the mask, class 1..);
       when those class ids equal gt_class_ids, pair them in order.
    2. Otherwise, per class, pair by the distance between the projected gt centre and the
       mask's pixel centroid (optimal assignment). None where nothing is left.
    """
    present = set(np.unique(mask).tolist())
    listed = [(i, c) for i, c, _ in meta if i in present and c > 0]
    if [c for _, c in listed] == [int(c) for c in gt_class_ids]:
        return [i for i, _ in listed]
    from scipy.optimize import linear_sum_assignment

    out: list[int | None] = [None] * len(gt_class_ids)
    for cid in np.unique(gt_class_ids):
        g = np.nonzero(gt_class_ids == cid)[0]
        cands = [i for i, c in listed if c == cid]
        if not cands:
            continue
        uv = project(gt_t[g], K)
        cents = []
        for i in cands:
            v, u = np.nonzero(mask == i)
            cents.append((u.mean(), v.mean()))
        cost = np.linalg.norm(uv[:, None] - np.asarray(cents)[None], axis=-1)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            out[g[r]] = cands[c]
    return out


# --- frames -------------------------------------------------------------------------------


def _gts_index(root: Path) -> dict[str, Path]:
    """stem -> path of every results_*.pkl under the nearest gts/ folder at or above root."""
    for d in (root, *root.parents[:3]):
        if (d / "gts").is_dir():
            return {p.stem: p for p in (d / "gts").rglob("results_*.pkl")}
    return {}


def _find_gt(index: dict[str, Path], scene_dir: Path, frame: str) -> Path | None:
    scene, subset = scene_dir.name, scene_dir.parent.name
    for stem in (
        f"results_{scene}_{frame}",
        f"results_real_{subset}_{scene}_{frame}",
        f"results_{subset}_{scene}_{frame}",
    ):
        if stem in index:
            return index[stem]
    hits = [p for s, p in index.items() if s.endswith(f"_{scene}_{frame}")]
    return hits[0] if len(hits) == 1 else None


def _find_depth(root: Path, scene_dir: Path, frame: str, camera: bool) -> Path:
    if camera:  # composed depth (objects + real table) lives in camera_full_depths/
        rel = Path(scene_dir.parent.name, scene_dir.name, f"{frame}_composed.png")
        for d in (root, *root.parents[:3], *scene_dir.parents[:4]):
            if (d / "camera_full_depths" / rel).is_file():
                return d / "camera_full_depths" / rel
    return scene_dir / f"{frame}_depth.png"


def _frame_K(root: Path, scene_dir: Path, camera: bool, K: np.ndarray | None) -> np.ndarray:
    if K is not None:
        return np.asarray(K, dtype=np.float64)
    for d in (scene_dir, root):
        if (d / "intrinsics.txt").is_file():
            return read_intrinsics(d / "intrinsics.txt")
    return CAMERA25_K.copy() if camera else REAL275_K.copy()


def list_frames(root: str | Path) -> list[tuple[Path, str]]:
    """(scene folder, frame id) of every <ffff>_meta.txt under root, sorted."""
    root = Path(root)
    skip = {"gts", "obj_models", "camera_full_depths"}
    metas = [p for p in root.rglob("*_meta.txt") if not skip & set(p.relative_to(root).parts)]
    return sorted((p.parent, p.name[: -len("_meta.txt")]) for p in metas)


def _instances_from_gt(gt_path: Path, meta: list[tuple[int, int, str]], mask: np.ndarray,
                       K: np.ndarray, name: str) -> list[GTInstance]:
    gt = load_gt_pickle(gt_path)
    cids, R, t, sizes, hv = poses_from_gt(gt)
    ids = gt.get("gt_instance_ids")
    if ids is not None and len(ids) == len(cids):
        inst_ids: list[int | None] = [int(i) for i in ids]
    else:
        inst_ids = match_gt_to_mask(cids, t, meta, mask, K)
    models = {i: m for i, _, m in meta}
    instances = []
    for k, iid in enumerate(inst_ids):
        if iid is None:
            log.warning("%s: gt object %d (class %d) has no mask; left out", name, k, cids[k])
            continue
        instances.append(
            GTInstance(iid, int(cids[k]), R[k], t[k], sizes[k], bool(hv[k]), models.get(iid, ""))
        )
    return instances


def load_frame(
    root: str | Path,
    scene_dir: Path,
    frame: str,
    gt_index: dict[str, Path] | None = None,
    K: np.ndarray | None = None,
    poses_from_nocs: bool = True,
) -> Frame | None:
    """One frame with its ground truth: from its gt pickle, or (`poses_from_nocs`) fitted to
    its NOCS map when there is no pickle; None (logged) when it has neither."""
    root = Path(root)
    gt_index = _gts_index(root) if gt_index is None else gt_index
    name = f"{scene_dir.name}/{frame}"
    gt_path = _find_gt(gt_index, scene_dir, frame)
    coord_path = scene_dir / f"{frame}_coord.png"
    if gt_path is None and not (poses_from_nocs and coord_path.is_file()):
        log.warning("no ground truth pickle for %s under %s/gts%s; frame skipped", name, root,
                    " and no NOCS map" if poses_from_nocs else "")
        return None
    camera = "CAMERA" in scene_dir.parts
    K = _frame_K(root, scene_dir, camera, K)
    depth = read_depth(_find_depth(root, scene_dir, frame, camera))
    mask = read_mask(scene_dir / f"{frame}_mask.png")
    meta = read_meta(scene_dir / f"{frame}_meta.txt")
    if gt_path is not None:
        instances = _instances_from_gt(gt_path, meta, mask, K, name)
    else:
        instances = instances_from_nocs(root, read_coord(coord_path), depth, mask, K, meta)
    color = scene_dir / f"{frame}_color.png"
    return Frame(name, depth, mask, K, instances, color if color.is_file() else None)


def iter_frames(
    root: str | Path, max_frames: int | None = None, K: np.ndarray | None = None,
    poses_from_nocs: bool = True,
) -> Iterator[Frame]:
    """Frames of a REAL275 / CAMERA25 / synthetic data set folder, in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    index = _gts_index(root)
    count = 0
    for scene_dir, frame in list_frames(root):
        if max_frames is not None and count >= max_frames:
            return
        f = load_frame(root, scene_dir, frame, index, K, poses_from_nocs)
        if f is not None:
            count += 1
            yield f


def read_model_extents(path: str | Path) -> np.ndarray:
    """Box extents (3,) from an obj_models/<model>.txt (3 numbers, or NOCS bbox.txt rows
    max/min whose difference is taken)."""
    v = np.loadtxt(path, dtype=np.float64)
    return v[0] - v[1] if v.ndim == 2 and v.shape[0] == 2 else v.reshape(-1)[:3]


def class_name(cid: int) -> str:
    return BY_ID[cid].name if cid in BY_ID else str(cid)


# --- poses from NOCS maps (frames without a gt pickle) ------------------------------------

MIN_NOCS_PIXELS = 64  # fewer mask pixels with depth: no pose fitted (as the NOCS tools)


def read_coord(path: Path) -> np.ndarray:
    """(H, W, 3) float64 canonical coordinates / NOCS scale, in [-0.5, 0.5], from a
    _coord.png (its z channel is stored as 1 - z)."""
    c = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    c[..., 2] = 1.0 - c[..., 2]
    return c - 0.5


def fit_nocs_pose(nocs_pts: np.ndarray, points: np.ndarray, rounds: int = 4,
                  min_points: int = 16) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(s, R, t, used) with points ~= s R nocs + t: a Umeyama fit, refitted on the points
    within max(3 x median residual, 3 mm) of the last fit (flying pixels, edge pixels mixed
    with the background and depth holes have no NOCS counterpart). For a Gaussian 3-D
    residual 3 x the median is ~4.6 sigma, so good points are kept."""
    used = np.ones(len(points), dtype=bool)
    s, R, t = similarity_transform(nocs_pts, points)
    for _ in range(rounds):
        res = np.linalg.norm(points - (s * nocs_pts @ R.T + t), axis=1)
        keep = res <= max(3.0 * float(np.median(res[used])), 0.003)
        if keep.sum() < min_points or (keep == used).all():
            break
        used = keep
        s, R, t = similarity_transform(nocs_pts[used], points[used])
    return s, R, t, used


def _model_box(root: Path, model: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(extents, box centre) in NOCS units (box diagonal 1) of a model from obj_models/: <model>.txt
    (REAL275, ours: extents, any unit) or <synset>/<id>/bbox.txt (CAMERA25: max and min
    rows, NOCS units); None when there is no such file."""
    for d in (root, *root.parents[:3]):
        base = d / "obj_models"
        if not base.is_dir():
            continue
        for p in (base / f"{model}.txt", *base.glob(f"*/{model}.txt"),
                  *base.glob(f"*/{model}/bbox.txt")):
            if p.is_file():
                v = np.loadtxt(p, dtype=np.float64)
                if v.ndim == 2 and v.shape[0] == 2:
                    ext, centre = v[0] - v[1], 0.5 * (v[0] + v[1])
                else:
                    ext, centre = v.reshape(-1)[:3], np.zeros(3)
                return ext / np.linalg.norm(ext), centre / np.linalg.norm(ext)
    return None


def instances_from_nocs(root: Path, coord: np.ndarray, depth: np.ndarray, mask: np.ndarray,
                        K: np.ndarray, meta: list[tuple[int, int, str]]) -> list[GTInstance]:
    """Ground truth of each meta instance (class > 0) fitted to the NOCS map `coord`
    (read_coord) and the depth under its mask. Handle visibility is unknown there: True."""
    instances = []
    for iid, cid, model in meta:
        sel = (mask == iid) & (depth > 0)
        if cid <= 0 or sel.sum() < MIN_NOCS_PIXELS:
            continue
        nocs_pts = coord[sel]
        s, R, t, used = fit_nocs_pose(nocs_pts, backproject(depth, sel, K).astype(np.float64))
        box = _model_box(Path(root), model)
        if box is None:  # the visible part's extent about the NOCS origin (the box centre)
            box = 2.0 * np.abs(nocs_pts[used]).max(axis=0), np.zeros(3)
        extents, centre = box  # NOCS units
        instances.append(GTInstance(iid, cid, R, t + s * R @ centre, s * extents, True, model))
    return instances
