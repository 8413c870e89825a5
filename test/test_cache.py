"""Training cache: round trip, formats, per-shard seeding, resumable builds, plausible points."""

import json
import os

import numpy as np
import pytest

from posediff_ros.data.cache import (
    SegmentationErrors,
    build_cache,
    build_shard,
    load_cache,
    perturb_mask,
)
from posediff_ros.data.synthetic import GENERATOR_VERSION


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cache"))
    meta = build_cache(out, objects=30, seed=500, workers=1, shard_size=15, n_points=256,
                       progress=False)
    return out, meta


def test_round_trip_formats(small_cache):
    out, meta = small_cache
    c = load_cache(out)
    assert len(c) == 30 == meta["num_objects"]
    assert c.points.shape == (30, 256, 3) and c.points.dtype == np.float16
    assert c.class_ids.dtype == np.int64 and set(c.class_ids) <= set(range(1, 7))
    assert c.rotations.shape == (30, 3, 3) and c.rotations.dtype == np.float32
    assert c.translations.shape == (30, 3) and c.translations.dtype == np.float32
    assert c.sizes.shape == (30, 3) and c.sizes.dtype == np.float32
    assert c.handle_visible.shape == (30,) and c.handle_visible.dtype == bool
    on_disk = json.load(open(os.path.join(out, "meta.json")))
    assert on_disk == c.meta
    assert on_disk["num_points"] == 256 and on_disk["seed_range"] == [500, 501]
    assert sum(on_disk["class_counts"].values()) == 30
    # the shard on disk is exactly what its seed generates
    again = build_shard(501, 15, 256)
    with np.load(os.path.join(out, "shard_00001.npz")) as z:
        for k, v in again.items():
            np.testing.assert_array_equal(z[k], v)


def test_points_look_like_masked_depth_of_the_object(small_cache):
    c = load_cache(small_cache[0])
    np.testing.assert_allclose(c.rotations @ c.rotations.transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), (len(c), 3, 3)), atol=1e-5)
    pts = c.points.astype(np.float32)
    # the points lie around the object: median distance to the box centre within the box's
    # half diagonal (+ segmentation bleed), and they are a partial view (facing the camera).
    # Not every object: the cache's segmentation errors dilate some masks onto the
    # background on purpose (a far, small mug: the median 2.7 cm beyond; 1 of 180 objects
    # over seeds 500-511). Wrong units, frames or back-projection move all of them.
    d = np.linalg.norm(pts - c.translations[:, None], axis=-1)
    half_diag = 0.5 * np.linalg.norm(c.sizes, axis=1)
    assert (np.median(d, axis=1) < half_diag + 0.02).mean() >= 0.9
    # closed shapes show their camera-facing side (bowls show their inside, laptops the lid);
    # as above, a mask dilated onto the background can put the median of a small object's
    # points behind its centre (a mug at 1.17 m here: 2.5 mm beyond), so 90 %, not all: a
    # mirrored depth axis or a back-facing view puts all of them behind
    closed = np.isin(c.class_ids, [1, 3, 4, 6])
    assert closed.sum() >= 10
    assert (np.median(pts[closed, :, 2], axis=1) < c.translations[closed, 2]).mean() >= 0.9
    # not all points are exactly on a noise-free surface: depth noise is there
    assert (pts[..., 2].std(axis=1) > 0).all()
    assert np.isfinite(pts).all() and (pts[..., 2] > 0.2).all()


def test_resume_skips_existing_shards_and_seeds_are_per_shard(tmp_path):
    out = str(tmp_path / "c")
    build_cache(out, objects=8, seed=7, workers=1, shard_size=4, n_points=64, progress=False)
    first = os.path.join(out, "shard_00000.npz")
    mtime = os.stat(first).st_mtime_ns
    meta = build_cache(out, objects=12, seed=7, workers=2, shard_size=4, n_points=64,
                       progress=False)
    assert os.stat(first).st_mtime_ns == mtime  # not rebuilt
    assert meta["num_objects"] == 12 and meta["seed_range"] == [7, 9]
    with np.load(os.path.join(out, "shard_00002.npz")) as z:
        assert int(z["seed"]) == 9
        np.testing.assert_array_equal(z["points"], build_shard(9, 4, 64)["points"])
    with pytest.raises(ValueError):
        build_cache(out, objects=12, seed=8, workers=1, shard_size=4, n_points=64,
                    progress=False)


def test_perturb_mask_erodes_dilates_and_shifts():
    mask = np.zeros((60, 80), dtype=bool)
    mask[20:40, 30:50] = True
    sizes = [perturb_mask(mask, np.random.default_rng(s)).sum() for s in range(40)]
    assert min(sizes) < mask.sum() < max(sizes)
    assert any((perturb_mask(mask, np.random.default_rng(s)) != mask).any() for s in range(5))


def _only(**on) -> SegmentationErrors:
    """Segmentation errors with every kind off but the ones given."""
    off = dict(p_erode=0.0, p_dilate=0.0, p_ragged=0.0, p_shift=0.0, p_cut=0.0)
    return SegmentationErrors(**{**off, **on})


def test_each_segmentation_error_does_what_it_says():
    mask = np.zeros((80, 100), dtype=bool)
    mask[20:60, 30:70] = True  # 1600 px
    rng = np.random.default_rng(0)
    dil = perturb_mask(mask, rng, _only(p_dilate=1.0, max_dilate=2))
    assert (dil >= mask).all() and mask.sum() < dil.sum() <= (40 + 4) * (40 + 4)
    ero = perturb_mask(mask, rng, _only(p_erode=1.0, max_erode=2))
    assert (ero <= mask).all() and (40 - 4) ** 2 <= ero.sum() < mask.sum()
    # ragged: the boundary moves in and out by at most ragged_px (+1 for rounding)
    outer = np.zeros_like(mask)
    outer[20 - 3:60 + 3, 30 - 3:70 + 3] = True
    inner = np.zeros_like(mask)
    inner[20 + 3:60 - 3, 30 + 3:70 - 3] = True
    moved_out = moved_in = 0
    for seed in range(20):
        rag = perturb_mask(mask, np.random.default_rng(seed), _only(p_ragged=1.0, ragged_px=2.0))
        moved_out += (rag & ~mask).any()
        moved_in += (mask & ~rag).any()
        assert (rag <= outer).all() and (rag >= inner).all(), seed
    assert moved_out > 10 and moved_in > 10
    # cut: a disc removed at the boundary, never more than max_cut (+ the disc's curvature)
    cuts = [perturb_mask(mask, np.random.default_rng(s), _only(p_cut=1.0, max_cut=0.3))
            for s in range(20)]
    lost = np.array([1 - c.sum() / mask.sum() for c in cuts])
    assert all((c <= mask).all() for c in cuts)
    assert (lost > 0).all() and lost.max() < 0.45 and lost.mean() > 0.05


def test_ood_cache_is_marked_and_differs(tmp_path):
    meta = build_cache(str(tmp_path / "ood"), objects=6, seed=5_000_000, workers=1,
                       shard_size=6, n_points=64, progress=False, ood=True)
    assert meta["ood"] is True and meta["generator_version"] == GENERATOR_VERSION
    with pytest.raises(ValueError):  # the same directory cannot be extended in-distribution
        build_cache(str(tmp_path / "ood"), objects=12, seed=5_000_000, workers=1,
                    shard_size=6, n_points=64, progress=False)
    a, b = build_shard(5_000_000, 6, 64, ood=True), build_shard(5_000_000, 6, 64)
    assert not np.array_equal(a["sizes"], b["sizes"])


def test_ood_one_factor_at_a_time():
    """--ood-only sensor keeps the training shapes (same draws) and changes the depth;
    --ood-only shapes changes the shapes."""
    base = build_shard(5_000_001, 3, 64)
    sensor = build_shard(5_000_001, 3, 64, ood="sensor")
    shapes = build_shard(5_000_001, 3, 64, ood="shapes")
    np.testing.assert_array_equal(sensor["sizes"][:1], base["sizes"][:1])
    assert not np.array_equal(sensor["points"][:1], base["points"][:1])
    assert not np.array_equal(shapes["sizes"][:1], base["sizes"][:1])
    with pytest.raises(ValueError):
        build_shard(5_000_001, 3, 64, ood="lighting")
