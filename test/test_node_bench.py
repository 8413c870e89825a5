"""posediff-bench --node over real DDS, tiny grid: the node of this checkout and the same
package run as a second checkout (--compare, the path an older commit takes), both on one
camera stream. Checks that every figure is measured and reported; no timing asserts."""

import json

import pytest

from posediff_ros.cli.bench import main as bench_main
from posediff_ros.ros.node_bench import REPO, cpu_seconds

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_node_bench_measures_both_variants(tmp_path, capsys):
    out_md, out_json = tmp_path / "node.md", tmp_path / "node.json"
    rc = bench_main(["--node", "--objects", "2", "--rates", "20", "--seconds", "3",
                     "--warmup-s", "1", "--model", "random", "--ring-size", "2",
                     "--width", "320", "--height", "240", "--compare", f"copy={REPO}",
                     "--out", str(tmp_path / "run"), "--json", str(out_json),
                     "--markdown", str(out_md)])
    printed = capsys.readouterr().out
    res = json.loads(out_json.read_text())
    assert rc == 0, printed
    assert [r["variant"] for r in res["rows"]] == ["this", "copy"]
    for r in res["rows"]:
        assert r["exit_code"] == 0 and r["objects"] == 2 and r["rate_hz"] == 20
        assert 0 < r["answered"] <= r["sent"] and r["sent"] >= 20  # ~60 sent in 3 s
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
        assert r["objects_per_frame"] > 0 and r["node_cpu_pct"] > 0
        stages = r["stages_ms"]  # the node's own timers, read from its /diagnostics
        assert {"conversion", "extraction", "model", "poses", "stamp to poses"} <= set(stages)
        assert all(0 <= s["p50"] <= s["p99"] for s in stages.values())
    md = out_md.read_text()
    assert "| objects | camera Hz | node |" in md and "this / copy" in md
    assert "The node's own timers" in md and "| extraction |" in md.replace(" p50", "")
    assert md in printed


def test_cpu_seconds_of_this_process_grow_with_work():
    import os

    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds(os.getpid()) > before
    assert cpu_seconds(2**22 + 12345) != cpu_seconds(2**22 + 12345)  # gone: nan
