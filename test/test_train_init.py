"""posediff-train --init: fine-tuning starts from a given model's weights (and a resumed run
ignores it). Real training runs on a tiny real cache (test_train's fixture)."""

from dataclasses import replace

import torch
from test_train import tiny

from posediff_ros.cli.train import train
from posediff_ros.model.posenet import load_model

torch.set_num_threads(1)


def _weights(path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def test_init_starts_from_the_given_weights(tmp_path):
    # a first model, trained a few steps (a run writes <out_dir>/model.json)
    first = tiny(tmp_path / "a", max_steps=6, eval_every=0)
    train(first)
    first_json = f"{first.out_dir}/model.json"
    init = _weights(first_json)
    # one step at lr 0 from it: nothing moves, so the model is the init (EMA of equal weights)
    cfg = replace(tiny(tmp_path / "b", max_steps=1, warmup_steps=1, eval_every=0, lr=0.0,
                       min_lr=0.0), init=first_json)
    train(cfg)
    tuned = _weights(f"{cfg.out_dir}/model.json")
    assert all(torch.equal(init[k], tuned[k]) for k in init)
    # without --init the same run starts from fresh weights
    fresh = replace(cfg, init="", out_dir=str(tmp_path / "c" / "run"))
    train(fresh)
    fresh_w = _weights(f"{fresh.out_dir}/model.json")
    assert not all(torch.equal(init[k], fresh_w[k]) for k in init)


def test_class_weights_override_the_asymmetric_oversampling():
    from posediff_ros.cli.train import TrainConfig, draw_weights

    ids = torch.tensor([1, 2, 3, 4, 5, 6])  # bottle bowl camera can laptop mug
    plain = draw_weights(ids, TrainConfig(oversample_asymmetric=2.0))
    assert plain.tolist() == [1.0, 1.0, 2.0, 1.0, 2.0, 2.0]
    custom = draw_weights(ids, TrainConfig(oversample_asymmetric=2.0,
                                           class_weights="camera=4, bottle=0.5"))
    assert custom.tolist() == [0.5, 1.0, 4.0, 1.0, 2.0, 2.0]


def test_several_training_caches_are_joined(tmp_path):
    from test_train import write_cache

    from posediff_ros.cli.train import load_split

    a = write_cache(tmp_path / "a", 5, seed=3)
    b = write_cache(tmp_path / "b", 7, seed=4)
    joined = load_split(f"{a},{b}")
    assert len(joined) == 12 and joined.seeds == [[3, 3], [4, 4]]
    torch.testing.assert_close(joined.points[5:], load_split(str(b)).points)
    assert len(load_split(f"{a},{b}", limit=4)) == 8  # the limit applies to each
