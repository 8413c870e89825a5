"""Reader for HouseCat6D (Jung et al., CVPR 2024), yielding the same Frame as data/nocs.py.

Assumed layout (as read by the public HouseCat6D toolbox and the VI-Net / AG-Pose loaders;
we have not seen the data set itself here):
    <root>/<scene>/rgb/<nnnnnn>.png              colour, 1096x852
    <root>/<scene>/depth/<nnnnnn>.png            uint16 millimetres (or 8-bit RGB encoded
                                                 as in CAMERA25; 32001 there means no depth)
    <root>/<scene>/instance/<nnnnnn>.png         instance id per pixel (first channel used)
    <root>/<scene>/labels/<nnnnnn>_label.pkl     dict: instance_ids, class_ids (1..10),
                                                 rotations (N,3,3), translations (N,3) metres,
                                                 gt_scales (N,3) box extents in metres, bboxes
    <root>/<scene>/intrinsics.txt                3x3
with <scene> = scene01.. (train), val_scene*, test_scene*.
Categories (ids 1..10): box, bottle, can, cup, remote, teapot, cutlery, glass, shoe, tube.
Our model knows the six NOCS classes; `map_to_nocs=True` keeps bottle -> bottle, can -> can,
cup -> mug (handle assumed visible, i.e. asymmetric: HouseCat6D has no handle flag; many of
its cups have no handle, so the cup row is only a rough proxy) and drops the other classes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from posediff_ros.categories import class_id
from posediff_ros.data.nocs import Frame, GTInstance, load_gt_pickle, read_intrinsics, read_mask
from posediff_ros.geometry import project_to_so3

log = logging.getLogger(__name__)

HOUSECAT_CLASSES: tuple[str, ...] = (
    "box", "bottle", "can", "cup", "remote", "teapot", "cutlery", "glass", "shoe", "tube",
)  # fmt: skip  (ids 1..10)
HOUSECAT_TO_NOCS: dict[int, int] = {
    HOUSECAT_CLASSES.index("bottle") + 1: class_id("bottle"),
    HOUSECAT_CLASSES.index("can") + 1: class_id("can"),
    HOUSECAT_CLASSES.index("cup") + 1: class_id("mug"),
}
INVALID_ENCODED_DEPTH = 32001


def read_housecat_depth(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path))
    if a.ndim == 3:  # encoded like CAMERA25: high byte G, low byte R
        a = a[..., 1].astype(np.uint32) * 256 + a[..., 0]
        a = np.where(a == INVALID_ENCODED_DEPTH, 0, a)
    return a.astype(np.uint16)


def list_frames(root: str | Path) -> list[tuple[Path, str]]:
    """(scene folder, frame id) of every rgb/<id>.png that has a label pickle, sorted."""
    out = []
    for rgb in Path(root).glob("*/rgb/*.png"):
        scene = rgb.parent.parent
        if (scene / "labels" / f"{rgb.stem}_label.pkl").is_file():
            out.append((scene, rgb.stem))
    return sorted(out)


def load_frame(scene: Path, frame: str, map_to_nocs: bool = True) -> Frame:
    gt = load_gt_pickle(scene / "labels" / f"{frame}_label.pkl")  # the data set's own format
    K = read_intrinsics(scene / "intrinsics.txt")
    depth = read_housecat_depth(scene / "depth" / f"{frame}.png")
    mask = read_mask(scene / "instance" / f"{frame}.png")
    ids = np.asarray(gt["instance_ids"], dtype=np.int64).reshape(-1)
    cids = np.asarray(gt["class_ids"], dtype=np.int64).reshape(-1)
    n = len(ids)
    R = project_to_so3(np.asarray(gt["rotations"], dtype=np.float64).reshape(n, 3, 3))
    t = np.asarray(gt["translations"], dtype=np.float64).reshape(n, 3)
    sizes = np.asarray(gt["gt_scales"], dtype=np.float64).reshape(n, 3)
    instances = []
    for k in range(n):
        cid = int(cids[k])
        if map_to_nocs:
            if cid not in HOUSECAT_TO_NOCS:
                continue
            cid = HOUSECAT_TO_NOCS[cid]
        instances.append(GTInstance(int(ids[k]), cid, R[k], t[k], sizes[k], True))
    return Frame(f"{scene.name}/{frame}", depth, mask, K, instances, scene / "rgb" / f"{frame}.png")


def iter_frames(
    root: str | Path, max_frames: int | None = None, map_to_nocs: bool = True
) -> Iterator[Frame]:
    """HouseCat6D frames in sorted order (frames without any kept instance are skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    count = 0
    for scene, frame in list_frames(root):
        if max_frames is not None and count >= max_frames:
            return
        f = load_frame(scene, frame, map_to_nocs)
        if f.instances:
            count += 1
            yield f


def is_housecat6d(root: str | Path) -> bool:
    """True when root looks like HouseCat6D (scene folders with rgb/ and labels/)."""
    return any(Path(root).glob("*/labels/*_label.pkl"))
