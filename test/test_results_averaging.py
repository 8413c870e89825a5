"""posediff-results averaging: the subsets it draws and the RESULTS.md section it feeds (the
bundled model on a few real generated test objects)."""

import numpy as np
import pytest
import torch

from posediff_ros.cli.results_averaging import draw_subsets, measure
from posediff_ros.cli.results_report import averaging_section
from posediff_ros.data.cache import build_shard
from posediff_ros.model.posenet import load_model
from posediff_ros.runtime import DEFAULT_MODEL

torch.set_num_threads(1)


def test_subsets_are_distinct_points_of_their_own_object_and_repeatable():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(3, 40, 3)).astype(np.float32)
    rows = draw_subsets(pts, k=2, n=16, seed=5)
    assert rows.shape == (6, 16, 3)
    for r in range(6):
        own = {tuple(p) for p in pts[r // 2]}
        assert {tuple(p) for p in rows[r]} <= own and len({tuple(p) for p in rows[r]}) == 16
    assert not np.array_equal(rows[0], rows[1])  # two subsets of one object differ
    np.testing.assert_array_equal(rows, draw_subsets(pts, 2, 16, seed=5))
    # object 2's subsets do not depend on which chunk it is drawn in
    np.testing.assert_array_equal(rows[4:], draw_subsets(pts[2:], 2, 16, seed=5, first=2))


@pytest.fixture(scope="module")
def test_objects():
    shard = build_shard(2_500_000, 12, n_points=1024)
    return {"points": shard["points"].astype(np.float32), "class_ids": shard["class_ids"],
            "rotations": shard["rotations"].astype(np.float64),
            "translations": shard["translations"].astype(np.float64),
            "sizes": shard["sizes"].astype(np.float64),
            "handle_visible": shard["handle_visible"]}


def test_measure_rows_and_section(test_objects):
    out = measure(load_model(DEFAULT_MODEL), test_objects, repeats=2,
                  settings=((1, 1, True), (2, 2, True), (2, 2, False)))
    rows = out["rows"]
    assert [(r["subsets"], r["samples"], r["reject_outliers"]) for r in rows] == [
        (1, 1, True), (2, 2, True), (2, 2, False)]
    for r in rows:
        for c in ("10d5cm", "5d2cm"):
            cell = r[c]
            assert len(cell["runs"]) == 2 and cell["min"] <= cell["mean"] <= cell["max"]
            assert cell["mean"] == pytest.approx(np.mean(cell["runs"]))
        assert 0.0 <= r["flip_pct"] <= 100.0 and r["ms"] > 0
    # the bundled model gets most of these easy generated objects right
    assert rows[0]["10d5cm"]["mean"] > 50.0
    split = {"objects": 12, "test_cache": "test", "test_seeds": [2_500_000], **out}
    lines = averaging_section({"model": "m.json", "model_name": "bundled", "weights_sha256":
                               "ab" * 32, "environment": {"date_utc": "now"},
                               "splits": {"a": split, "b": split}})
    assert "Model: bundled, `m.json`, weights sha256 abababababab," in lines[2]
    assert [ln for ln in lines if ln.startswith("**")] == [
        "**a**: `test`, 12 objects, seeds [2500000]", "**b**: `test`, 12 objects, seeds [2500000]"]
    table = [ln for ln in lines if ln.startswith("| 2 | 2 |")]
    assert len(table) == 4 and "largest agreeing mode" in table[0] and "plain" in table[1]
    assert table[0].count("|") == 9  # K, S, averaging, 10d5cm, 5d2cm, camera, flips, ms
    assert sum(ln.startswith("Best here: K = 2 subsets x S = 2 samples") for ln in lines) == 2
