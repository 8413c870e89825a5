"""A short soak (~10 s at 30 Hz, real DDS, separate processes): no crash, clean exit, memory
bounded (generous margin; the 10-minute figures are in docs/SOAK.md), no backlog."""

import json

import pytest

from posediff_ros.ros import soak

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_short_soak(tmp_path, capsys):
    rc = soak.main(["--minutes", "0.17", "--rate", "30", "--model", "random",
                    "--ring-size", "2", "--width", "320", "--height", "240",
                    "--warmup-s", "3", "--sample-s", "0.5", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert rc == 0, printed
    assert summary["node_exit_code"] == 0 and summary["camera_exit_code"] == 0
    assert not summary["traceback_in_node_log"]
    assert summary["samples"] >= 10
    assert summary["frames_processed"] > 20, "the node hardly answered"
    # memory: generous bound (allocator noise on a short run), not a timing
    assert summary["rss_growth_after_warmup_pct"] < 25.0, summary
    # the node reports on /diagnostics and the soak reads it
    assert summary["final_diagnostics"]["backend"] == "onnxruntime-int8"  # the node's default
    assert float(summary["final_diagnostics"]["depth rate (Hz)"]) > 0
    rows = (tmp_path / "soak.csv").read_text().splitlines()
    assert rows[0].startswith("t_s,node_rss_mb") and len(rows) == summary["samples"] + 1
    assert "growth after warm-up" in printed
