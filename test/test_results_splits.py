"""posediff-results splits: every model on every split, per class, into RESULTS.md (e)."""

import json

import torch
from test_train import tiny

from posediff_ros.cli import results
from posediff_ros.cli.train import train

torch.set_num_threads(1)


def test_splits_table_per_model_split_and_class(tmp_path, monkeypatch):
    short = tiny(tmp_path / "a", max_steps=2, eval_every=0)
    longer = tiny(tmp_path / "b", max_steps=20, eval_every=0)
    train(short)
    train(longer)
    monkeypatch.chdir(tmp_path)
    results.main(["splits", "--models", f"short={short.out_dir}/model.json",
                  f"long={longer.out_dir}/model.json",
                  "--splits", f"first={short.val_cache}", f"second={short.train_cache}",
                  "--note", "tiny note"])
    sp = json.loads((tmp_path / "docs" / "results" / "splits.json").read_text())
    assert list(sp["splits"]) == ["first", "second"]
    first = sp["splits"]["first"]
    assert first["objects"] == 12 and set(first["results"]) == {"short", "long"}
    table = first["results"]["short"]["sample"]
    assert sum(table[c]["n"] for c in table if c not in ("mean", "all")) == 12
    results.main(["report", "--out", "RESULTS.md"])
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## (g)" in text and "tiny note" in text
    assert "| short 10d5cm | short 5d2cm | short IoU50 | long 10d5cm" in text
    mean = first["results"]["long"]["sample"]["mean"]
    assert f"{mean['10d5cm']:.1f} (" in text.split("**first**")[1].split("| mean |")[1]
