"""Box input (data/boxes.py): objects cut out of the depth inside their 2D boxes, on scenes
built by hand (exact expected pixels) and on rendered tabletop scenes (against the ground-truth
masks)."""

import numpy as np
import pytest

from posediff_ros.data.boxes import (
    Box,
    BoxCutConfig,
    box_from_mask,
    boxes_from_instance_mask,
    masks_from_boxes,
)
from posediff_ros.geometry import intrinsics_matrix

H, W = 240, 320
K = intrinsics_matrix(300.0, 300.0, 160.0, 120.0)


def table_scene(height: float = 0.5, pitch_deg: float = 40.0) -> np.ndarray:
    """Depth (m) of a camera `height` above an infinite table, looking down `pitch_deg`."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    p = np.deg2rad(pitch_deg)
    up = np.array([0.0, -np.cos(p), -np.sin(p)])  # world up in the camera frame
    along = ray @ up  # the ray's height change per metre of depth
    depth = np.where(along < -1e-6, height / -along, 0.0)  # above the horizon: no return
    return np.where(depth < 4.0, depth, 0.0)


def put_block(depth, rows, cols, z):
    """A fronto-parallel face at depth z, where it is in front of what is there."""
    region = depth[rows, cols]
    depth[rows, cols] = np.where((region == 0) | (region > z), z, region)
    return depth


def test_object_on_a_table_with_background_and_occluder_is_cut_exactly():
    depth = table_scene()
    obj = (slice(100, 160), slice(140, 180))
    z_obj = float(depth[160, 160]) - 0.02  # standing on the table at its foot
    put_block(depth, *obj, z_obj)
    put_block(depth, slice(70, 100), slice(120, 200), 2.5)  # far background above it
    put_block(depth, slice(90, 120), slice(120, 145), z_obj - 0.08)  # nearer occluder
    box = Box(125.0, 80.0, 195.0, 170.0, 6)  # a detector's loose box around the object
    cut = masks_from_boxes(depth, K, [box]) == 1
    want = np.zeros((H, W), bool)
    want[obj] = True
    want[90:120, 120:145] = False  # hidden behind the occluder
    assert (cut & ~want).sum() == 0, "table, background or occluder pixels kept"
    assert (want & ~cut).sum() <= 0.02 * want.sum()


def test_without_plane_removal_the_table_would_stay():
    """The check above can fail: with the plane threshold at 0 the table in the box stays."""
    depth = table_scene()
    obj = (slice(100, 160), slice(140, 180))
    put_block(depth, *obj, float(depth[160, 160]) - 0.02)
    box = Box(125.0, 80.0, 195.0, 170.0, 6)
    cut = masks_from_boxes(depth, K, [box], BoxCutConfig(plane_threshold=0.0)) == 1
    assert cut.sum() > 1.3 * 60 * 40


def test_a_bowl_keeps_its_inside_floor_at_table_height():
    """The inside floor of a bowl is (nearly) on the table plane but enclosed by the rim: it
    is the object, not the support."""
    depth = table_scene()
    rim = (slice(100, 150), slice(130, 190))
    z_rim = float(depth[150, 160]) - 0.05
    put_block(depth, *rim, z_rim)
    inside = (slice(110, 140), slice(140, 180))
    depth[inside] = table_scene()[inside] - 0.004  # 4 mm above the table
    cut = masks_from_boxes(depth, K, [Box(120.0, 90.0, 200.0, 160.0, 2)],
                           BoxCutConfig(depth_jump=0.2)) == 1
    assert cut[inside].mean() > 0.95 and cut[rim].mean() > 0.95
    assert cut.sum() <= 50 * 60


@pytest.mark.parametrize("front_first", [False, True])
def test_overlapping_boxes_give_each_pixel_to_the_nearest_object(front_first):
    depth = table_scene()
    put_block(depth, slice(90, 150), slice(120, 190), float(depth[150, 150]) - 0.005)  # behind
    # in front, overlapping, 1.5 cm nearer: no depth jump, both boxes' cuts hold the overlap
    put_block(depth, slice(110, 156), slice(170, 230), float(depth[156, 200]) - 0.005)
    boxes = [Box(115.0, 85.0, 195.0, 155.0, 1), Box(165.0, 105.0, 235.0, 160.0, 4)]
    back, front = (2, 1) if front_first else (1, 2)
    ids = masks_from_boxes(depth, K, boxes[::-1] if front_first else boxes)
    assert (ids[110:140, 170:190] == front).all()  # the overlap: the nearer object's
    assert (ids[95:105, 125:165] == back).all()
    assert (ids[150:154, 196:225] == front).all()  # (its foot, on the table, is the table)


@pytest.mark.parametrize("box", [Box(-50, -50, -10, -10, 1), Box(100, 100, 100, 100, 1),
                                 Box(300, 200, 400, 300, 1), Box(0, 0, W, H, 1)])
def test_degenerate_boxes_and_empty_depth_are_handled(box):
    assert masks_from_boxes(np.zeros((H, W), np.float32), K, [box]).max() == 0
    ids = masks_from_boxes(table_scene(), K, [box])
    assert ids.shape == (H, W)


def test_boxes_of_instance_masks():
    mask = np.zeros((10, 12), np.int32)
    mask[2:5, 3:7] = 4
    assert box_from_mask(mask == 4) == (3, 2, 7, 5)
    assert box_from_mask(mask == 1) is None
    assert boxes_from_instance_mask(mask, [4, 9], [6, 1]) == [Box(3, 2, 7, 5, 6),
                                                               Box(0, 0, 0, 0, 1)]
    assert Box.from_center(5.0, 3.5, 4.0, 3.0, 6) == Box(3.0, 2.0, 7.0, 5.0, 6)


@pytest.mark.slow
def test_rendered_scenes_are_cut_like_their_ground_truth_masks():
    """Boxes from the ground-truth masks of rendered tabletop scenes (sensor noise, holes,
    touching objects): the cut-out matches the mask (pixels with depth) closely."""
    from posediff_ros.data.synthetic import render_scene

    rng = np.random.default_rng(11)
    ious, precisions = [], []
    for _ in range(4):
        frame = render_scene(rng, width=320, height=240, K=frame_k())
        depth = frame.depth.astype(np.float32) / 1000
        ids = [i.instance_id for i in frame.instances]
        boxes = boxes_from_instance_mask(frame.mask, ids, [i.class_id for i in frame.instances])
        cut = masks_from_boxes(depth, frame.K, boxes)
        for k, inst in enumerate(ids):
            gt, got = (frame.mask == inst) & (depth > 0), cut == k + 1
            ious.append((gt & got).sum() / max((gt | got).sum(), 1))
            precisions.append((gt & got).sum() / max(got.sum(), 1))
    assert np.mean(ious) > 0.85 and np.median(ious) > 0.9, ious
    assert np.mean(precisions) > 0.9, precisions


def frame_k() -> np.ndarray:
    from posediff_ros.geometry import REAL275_K

    k = np.array(REAL275_K, dtype=np.float64)
    k[:2] /= 2  # the REAL275 camera at half resolution
    return k
