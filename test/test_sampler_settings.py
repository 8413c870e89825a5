"""One sampler configuration (model.sampler.SamplerSettings) from the model file to every
consumer: stored settings are the defaults, run-time overrides go on top (None = keep), the
start mode picks the start time, and the torch model and the exported graph run the same
make_schedule."""

import dataclasses
import json

import pytest
import torch

from posediff_ros.model.posenet import PoseNet, PoseNetConfig, load_model, save_model
from posediff_ros.model.sampler import SamplerSettings, make_schedule
from posediff_ros.runtime import load_backend
from posediff_ros.runtime.graph import InferenceGraph
from posediff_ros.runtime.onnx_export import export_onnx

torch.set_num_threads(1)


def test_override_replaces_given_fields_and_none_keeps():
    stored = SamplerSettings(steps=8, w_schedule="constant", w_max=8.0, init="regression")
    run = stored.override(steps=2, solver=None, w_max=None, seed=5)
    assert (run.steps, run.solver, run.w_max, run.init, run.seed) == (2, "euler", 8.0,
                                                                       "regression", 5)
    assert stored.steps == 8  # a new value; the stored one is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        stored.steps = 3
    assert run.graph_key() == run.override(seed=9).graph_key()  # the noise is an input
    assert run.graph_key() != run.override(tsr_sigma_d=0.2).graph_key()  # baked in


def test_start_mode_picks_the_start_time():
    s = SamplerSettings(t_start=0.5, t_start_regression=0.2, t_start_warm=0.3, steps=3)
    model = PoseNet(PoseNetConfig())
    for init, t0 in (("noise", 0.5), ("regression", 0.2), ("warm", 0.3)):
        sched = make_schedule(model.sde, s.override(init=init))
        assert s.override(init=init).start_time == t0
        assert torch.allclose(sched.sigmas[0], model.sde.sigma(torch.tensor(t0)))
        assert sched.sigmas.shape == (4,) and sched.w.shape == (3,)
    with pytest.raises(ValueError, match="unknown init 'hot'"):
        make_schedule(model.sde, s.override(init="hot"))


@pytest.mark.parametrize("bad,field", [({"solver": "rk4"}, "solver"),
                                       ({"w_schedule": "cubic"}, "w_schedule"),
                                       ({"steps": 0}, "steps")])
def test_bad_settings_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        SamplerSettings(**bad).validate()


def test_settings_flow_from_the_model_file_to_backends_and_graph(tmp_path):
    torch.manual_seed(0)
    model = PoseNet(PoseNetConfig())
    stored = SamplerSettings(steps=3, w_schedule="tsr", w_max=3.0, t_start=0.4,
                             tsr_sigma_d=0.2)
    model.cfg.sampler = stored
    path = save_model(model, tmp_path / "m.json")
    raw = json.loads(path.read_text())
    assert raw["sampler"]["t_start"] == 0.4 and raw["sampler"]["tsr_sigma_d"] == 0.2
    assert load_model(path).cfg.sampler == stored
    assert load_backend("torch", path).settings == stored  # no settings given: the stored ones
    # the graph bakes the schedule of the settings it is given, t_start and sigma_d included
    graph = InferenceGraph(model, stored)
    want = make_schedule(model.sde, stored)
    assert torch.equal(graph.sampler.sigmas, want.sigmas) and torch.equal(graph.sampler.w,
                                                                           want.w)
    meta = export_onnx(model, stored, tmp_path / "g.onnx", check=False)
    assert meta["baked"]["t_start"] == 0.4 and meta["baked"]["sigmas"] == want.sigmas.tolist()
    # overrides on the model's stored settings == those settings written out
    cond = model.condition(torch.randn(2, 256, 3) * 0.05 + 0.5, torch.tensor([1, 6]))[0]
    noise = torch.randn(2, 3, 9)
    assert torch.equal(model.sample_poses(cond, noise, steps=5, init="regression"),
                       model.sample_poses(cond, noise, stored.override(steps=5,
                                                                        init="regression")))


def test_model_files_without_run_time_fields_still_load(tmp_path):
    model = PoseNet(PoseNetConfig())
    path = save_model(model, tmp_path / "old.json")
    raw = json.loads(path.read_text())
    for key in ("num_samples", "seed"):  # written by versions before these were stored
        del raw["sampler"][key]
    path.write_text(json.dumps(raw))
    assert load_model(path).cfg.sampler == SamplerSettings()
