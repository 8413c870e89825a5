"""Accuracy of the bundled model on a fixed held-out set: 300 objects rendered at test time
from the test seed range (2000000+, never used for training), ground-truth masks with the
same segmentation errors as training, one prediction per object with the model's stored
sampler defaults through the torch backend, NOCS metrics (mean over classes).

Thresholds are not tuned on this set: they are the documented per-class accuracies of the
1500-object test cache of this generator (docs/RESULTS.md g) minus 3 standard errors of a
mean-over-classes accuracy measured on this set's per-class counts:
    se = sqrt(sum_c p_c (1 - p_c) / n_c) / C.
A model as good as documented passes with probability > 99.8 %; one that lost ~3 se
(about 6 points of 10d5cm, 8 of 5d2cm here) fails. The generated objects are cached
($POSEDIFF_CACHE or ~/.cache/posediff_ros) by generator version, so only a cold run renders.
"""

import math

import numpy as np
import pytest

from posediff_ros.categories import BY_NAME
from posediff_ros.metrics import accuracy_table, object_errors
from posediff_ros.runtime import DEFAULT_MODEL, load_backend

pytestmark = pytest.mark.slow  # ~30 s of rendering on a cold run, 3-5 s warm

SEEDS = range(2_000_000, 2_000_005)  # the test range of README's posediff-cache commands
PER_SEED = 60
NUM_POINTS = 256
# docs/RESULTS.md (g), the bundled model (v2) on "new generator, in distribution"
# (data/cache_test_v2, the same generator and seed range as this set), per class: 10d5cm,
# 5d2cm in %. (Section (a) is the previous generator's test split, which this test can no
# longer render.)
DOCUMENTED = {"bottle": (95.7, 79.9), "bowl": (97.1, 89.6), "camera": (46.8, 24.2),
              "can": (98.3, 90.3), "laptop": (78.6, 43.2), "mug": (78.8, 57.6)}


def held_out_objects() -> dict[str, np.ndarray]:
    from posediff_ros.data.cache import build_shard
    from posediff_ros.data.synthetic import GENERATOR_VERSION
    from posediff_ros.runtime.onnx_export import default_cache_dir

    path = (default_cache_dir() / "test_heldout"
            / f"{GENERATOR_VERSION}-{SEEDS[0]}-{len(SEEDS)}x{PER_SEED}-{NUM_POINTS}.npz")
    if path.is_file():
        with np.load(path) as f:
            return dict(f)
    shards = [build_shard(seed, PER_SEED, NUM_POINTS) for seed in SEEDS]
    data = {k: np.concatenate([s[k] for s in shards]) for k in shards[0] if k != "seed"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez(tmp, **data)
    tmp.replace(path)  # complete files only, also with parallel workers
    return data


def threshold(column: int, counts: dict[str, int]) -> float:
    """Documented mean-over-classes accuracy minus 3 standard errors at these counts (%)."""
    p = {c: DOCUMENTED[c][column] / 100 for c in counts}
    se = math.sqrt(sum(p[c] * (1 - p[c]) / counts[c] for c in counts)) / len(counts)
    return 100 * (sum(p.values()) / len(p) - 3 * se)


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="bundled model not present")
@pytest.mark.parametrize("backend", ["torch", "onnxruntime-int8"])  # int8: encoder quantized
def test_bundled_model_accuracy_on_held_out_objects(backend):
    d = held_out_objects()
    assert len(d["class_ids"]) == len(SEEDS) * PER_SEED
    be = load_backend(backend, DEFAULT_MODEL)  # the stored sampler defaults, seed 0
    assert be.name == backend  # no silent fallback
    out = be.predict(d["points"].astype(np.float32), d["class_ids"])
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    errors = object_errors(f64(out.rotation), f64(out.translation), f64(d["rotations"]),
                           f64(d["translations"]), d["class_ids"], d["handle_visible"],
                           f64(out.size), f64(d["sizes"]))
    table = accuracy_table(errors)
    counts = {name: int(table[name]["n"]) for name in DOCUMENTED if name in table}
    assert set(counts) == set(DOCUMENTED) and all(BY_NAME[c] for c in counts)
    got = {"10d5cm": table["mean"]["10d5cm"], "5d2cm": table["mean"]["5d2cm"]}
    want = {"10d5cm": threshold(0, counts), "5d2cm": threshold(1, counts)}
    print(f"held-out {len(errors.class_ids)} objects: {got} (thresholds {want}), "
          f"IoU50 {table['mean']['IoU50']:.1f}, median rot {table['all']['rot_median_deg']:.2f} "
          f"deg, trans {table['all']['trans_median_cm']:.2f} cm")
    for column in got:
        assert got[column] >= want[column], (column, got, want)
