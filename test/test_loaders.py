"""Loaders read back frames written in each data set's layout (tiny fixtures made here)."""

import pickle

import numpy as np
import pytest
from PIL import Image

from posediff_ros.data import housecat6d, nocs
from posediff_ros.geometry import CAMERA25_K, REAL275_K, axis_angle_to_matrix

H, W = 48, 64


def _objects(K):
    """Two objects: a mug (class 6) left, a bottle (class 1) right; t projects into its box."""
    objs = []
    for inst_id, cid, (u0, u1), z, hv in ((3, 6, (5, 25), 0.8, False), (5, 1, (35, 60), 0.9, True)):
        R = axis_angle_to_matrix([0.2, 1, 0.1], 0.3 * inst_id)
        uv1 = np.array([(u0 + u1) / 2, 24, 1.0])
        t = z * np.linalg.inv(K) @ uv1
        size = np.array([0.08, 0.1, 0.12]) * (1 + 0.1 * inst_id)
        objs.append(dict(id=inst_id, cid=cid, cols=(u0, u1), z=z, R=R, t=t, size=size, hv=hv))
    return objs


def _images(objs):
    depth = np.full((H, W), 1500, np.uint16)
    mask = np.full((H, W), 255, np.uint8)
    for o in objs:
        depth[10:40, o["cols"][0] : o["cols"][1]] = int(o["z"] * 1000)
        mask[10:40, o["cols"][0] : o["cols"][1]] = o["id"]
    return depth, mask


def _gt(objs, with_ids):
    s = np.array([np.linalg.norm(o["size"]) for o in objs])
    RTs = np.tile(np.eye(4), (len(objs), 1, 1))
    for k, o in enumerate(objs):
        RTs[k, :3, :3] = s[k] * o["R"]
        RTs[k, :3, 3] = o["t"]
    gt = {
        "gt_class_ids": np.array([o["cid"] for o in objs]),
        "gt_RTs": RTs,
        "gt_scales": np.stack([o["size"] for o in objs]) / s[:, None],
        "gt_handle_visibility": np.array([int(o["hv"]) for o in objs]),
    }
    if with_ids:
        gt["gt_instance_ids"] = np.array([o["id"] for o in objs])
    return gt


def _dump(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _check(frame, objs, K):
    assert np.allclose(frame.K, K)
    assert frame.depth.dtype == np.uint16 and frame.depth.shape == (H, W)
    by_id = {i.instance_id: i for i in frame.instances}
    assert sorted(by_id) == sorted(o["id"] for o in objs)
    for o in objs:
        i = by_id[o["id"]]
        assert i.class_id == o["cid"] and i.handle_visible == o["hv"]
        assert np.allclose(i.rotation, o["R"]) and np.allclose(i.translation, o["t"])
        assert np.allclose(i.size, o["size"])
        assert np.all(frame.mask[frame.depth == int(o["z"] * 1000)] == o["id"])


def _write_nocs_frame(scene_dir, frame, objs, meta_lines, depth_path=None):
    scene_dir.mkdir(parents=True, exist_ok=True)
    depth, mask = _images(objs)
    Image.fromarray(depth).save(depth_path or scene_dir / f"{frame}_depth.png")
    Image.fromarray(np.stack([mask] * 3, -1)).save(scene_dir / f"{frame}_mask.png")  # 3-channel
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(scene_dir / f"{frame}_color.png")
    (scene_dir / f"{frame}_meta.txt").write_text("".join(f"{m}\n" for m in meta_lines))


def test_real275_layout_without_instance_ids(tmp_path):
    root = tmp_path / "NOCS"
    objs = _objects(REAL275_K)
    # meta lists an extra instance that is not in the mask and the bottle first: the gt order
    # (mug, bottle) does not follow meta, so the loader must pair by projection
    meta = ["5 1 bottle_red", "3 6 mug_white", "9 2 bowl_absent"]
    _write_nocs_frame(root / "Real" / "test" / "scene_1", "0000", objs, meta)
    _dump(root / "gts" / "real_test" / "results_real_test_scene_1_0000.pkl", _gt(objs, False))
    # a frame without ground truth is skipped
    _write_nocs_frame(root / "Real" / "test" / "scene_1", "0001", objs, meta)
    frames = list(nocs.iter_frames(root / "Real" / "test"))
    assert len(frames) == 1 and frames[0].name == "scene_1/0000"
    _check(frames[0], objs, REAL275_K)
    assert {i.model_name for i in frames[0].instances} == {"bottle_red", "mug_white"}
    assert frames[0].color().shape == (H, W, 3)


def test_real275_meta_order_pairing(tmp_path):
    objs = _objects(REAL275_K)
    meta = [f"{o['id']} {o['cid']} m{o['id']}" for o in objs]  # same order as gt
    _write_nocs_frame(tmp_path / "scene_2", "0003", objs, meta)
    _dump(tmp_path / "gts" / "results_scene_2_0003.pkl", _gt(objs, False))
    (frame,) = nocs.iter_frames(tmp_path)
    _check(frame, objs, REAL275_K)


def test_synthetic_layout_with_instance_ids_and_intrinsics(tmp_path):
    K = np.array([[80.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]])
    np.savetxt(tmp_path / "intrinsics.txt", K)
    objs = _objects(K)
    for s in range(2):
        for f in range(2):
            _write_nocs_frame(tmp_path / f"scene_{s}", f"{f:04d}", objs, ["3 6 a", "5 1 b"])
            _dump(tmp_path / "gts" / f"results_scene_{s}_{f:04d}.pkl", _gt(objs, True))
    frames = list(nocs.iter_frames(tmp_path))
    assert [f.name for f in frames] == ["scene_0/0000", "scene_0/0001", "scene_1/0000",
                                        "scene_1/0001"]
    for f in frames:
        _check(f, objs, K)
    assert len(list(nocs.iter_frames(tmp_path, max_frames=3))) == 3


def test_camera25_layout_composed_depth(tmp_path):
    objs = _objects(CAMERA25_K)
    scene = tmp_path / "CAMERA" / "val" / "00042"
    depth, _ = _images(objs)
    # composed depth as 8-bit RGB: R = low byte, G = high byte
    enc = np.zeros((H, W, 3), np.uint8)
    enc[..., 0], enc[..., 1] = depth % 256, depth // 256
    composed = tmp_path / "camera_full_depths" / "val" / "00042" / "0007_composed.png"
    composed.parent.mkdir(parents=True)
    Image.fromarray(enc).save(composed)
    meta = ["3 6 03797390 abc", "5 1 02876657 def"]
    _write_nocs_frame(scene, "0007", objs, meta, depth_path=scene / "0007_depth.png")
    Image.fromarray(np.zeros((H, W), np.uint16)).save(scene / "0007_depth.png")  # objects-only
    _dump(tmp_path / "gts" / "val" / "results_val_00042_0007.pkl", _gt(objs, False))
    (frame,) = nocs.iter_frames(tmp_path)
    _check(frame, objs, CAMERA25_K)
    assert {i.model_name for i in frame.instances} == {"03797390/abc", "02876657/def"}


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(nocs.iter_frames(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        list(housecat6d.iter_frames(tmp_path / "nope"))


def test_model_extents(tmp_path):
    np.savetxt(tmp_path / "a.txt", [[0.1, 0.2, 0.3]])
    np.savetxt(tmp_path / "bbox.txt", [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]])
    assert np.allclose(nocs.read_model_extents(tmp_path / "a.txt"), [0.1, 0.2, 0.3])
    assert np.allclose(nocs.read_model_extents(tmp_path / "bbox.txt"), [0.2, 0.4, 0.6])


def test_housecat6d_layout(tmp_path):
    K = np.array([[600.0, 0, 31.5], [0, 600.0, 23.5], [0, 0, 1]])
    scene = tmp_path / "test_scene1"
    for sub in ("rgb", "depth", "instance", "labels"):
        (scene / sub).mkdir(parents=True)
    np.savetxt(scene / "intrinsics.txt", K.reshape(1, 9))
    objs = _objects(K)  # mug -> HouseCat "cup" (4), bottle -> "bottle" (2); plus a shoe (9)
    depth, mask = _images(objs)
    mask = np.where(mask == 255, 0, mask).astype(np.uint8)
    depth[0:5, 0:5] = 700
    mask[0:5, 0:5] = 7
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(scene / "rgb" / "000000.png")
    Image.fromarray(depth).save(scene / "depth" / "000000.png")
    Image.fromarray(np.stack([mask] * 3, -1)).save(scene / "instance" / "000000.png")
    hc_class = {6: 4, 1: 2}
    labels = {
        "instance_ids": np.array([o["id"] for o in objs] + [7]),
        "class_ids": np.array([hc_class[o["cid"]] for o in objs] + [9]),
        "rotations": np.stack([o["R"] for o in objs] + [np.eye(3)]),
        "translations": np.stack([o["t"] for o in objs] + [np.array([0, 0, 0.7])]),
        "gt_scales": np.stack([o["size"] for o in objs] + [np.array([0.3, 0.1, 0.1])]),
        "bboxes": np.zeros((3, 4)),
    }
    _dump(scene / "labels" / "000000_label.pkl", labels)
    assert housecat6d.is_housecat6d(tmp_path) and not housecat6d.is_housecat6d(scene)
    (frame,) = housecat6d.iter_frames(tmp_path)
    for o in objs:
        o["hv"] = True  # HouseCat6D has no handle flag: treated as visible
    _check(frame, objs, K)
    (raw,) = housecat6d.iter_frames(tmp_path, map_to_nocs=False)
    assert sorted(i.class_id for i in raw.instances) == [2, 4, 9]
