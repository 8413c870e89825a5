"""posediff-bench --quick: every stage, backend and the baseline measured once, JSON and
Markdown written, ratios and targets derived from the rows. No timing asserts."""

import json

import numpy as np
import pytest

from posediff_ros.cli.bench import (
    BenchConfig,
    frame_points,
    main,
    percentiles,
    render_bench_frame,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEDIFF_CACHE", str(tmp_path / "cache"))


def test_quick_bench_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md = tmp_path / "b.json", tmp_path / "B.md"
    main(["--quick", "--model", "random", "--json", str(out_json), "--markdown", str(out_md),
          "--no-progress"])
    res = json.loads(out_json.read_text())
    cfg = res["config"]
    assert cfg["quick"] and cfg["objects"] == [1, 3]
    ours = [r for r in res["rows"] if r["method"] == "ours"]
    base = [r for r in res["rows"] if r["method"] == "baseline"]
    assert len(ours) == len(cfg["backends"]) * len(cfg["steps"]) * len(cfg["objects"])
    assert [r["objects"] for r in base] == cfg["objects"]
    assert {r["backend"] for r in ours} == {"torch", "onnxruntime", "onnxruntime-int8",
                                            "torch-fused"}
    for r in res["rows"]:
        f = r["frame_ms"]
        assert 0 < f["p50"] <= f["p90"] <= f["p99"]
        assert r["peak_rss_mb"] > 0 and r["flops_per_object"] > 0
    # stage split where the backend has stages: torch, and onnxruntime via its split graphs
    for r in ours:
        assert (r["sampler_ms"] is not None) == (r["backend"] in ("torch", "onnxruntime"))
    # the baseline does far more work per object than a few steps of one sample
    fl = res["flops_per_object"]
    assert fl["baseline_sampler"] > 10 * fl[f"sampler_{cfg['steps'][0]}"]
    assert {x["backend"] for x in res["ratios"]} == {"torch", "onnxruntime", "onnxruntime-int8",
                                                   "torch-fused"}
    acc = res["accuracy"]
    assert acc["baseline"]["n"] == cfg["accuracy_objects"]
    assert set(acc["ours"]) == {str(k) for k in cfg["steps"]}
    assert "fps_3_objects" in res["targets"] and "frame_speedup_min" in res["targets"]
    md = out_md.read_text()
    assert "| method | backend | steps | objects |" in md and "Targets" in md
    assert md in capsys.readouterr().out  # printed too


def test_frame_points_are_real_object_points():
    frame = render_bench_frame(0)
    assert len(frame.ids) >= 3
    pts, cls = frame_points(frame, 7, 64, np.random.default_rng(0))  # more than visible
    assert pts.shape == (7, 64, 3) and cls.shape == (7,)
    assert ((pts[..., 2] > 0.1) & (pts[..., 2] < 5)).all()  # in front of the camera
    assert set(cls.tolist()) <= set(range(1, 7))


def test_percentiles_and_config():
    p = percentiles([1.0, 2.0, 3.0, 4.0, 100.0])
    assert p["p50"] == 3.0 and p["p50"] <= p["p90"] <= p["p99"] <= 100.0 and p["n"] == 5
    q = BenchConfig.quick_config(objects=[2])
    assert q.quick and q.objects == [2] and q.repeats < BenchConfig().repeats
    with pytest.raises(TypeError):
        BenchConfig(unknown=1)  # config typos fail loudly
