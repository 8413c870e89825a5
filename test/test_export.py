"""ONNX export of the whole pipeline: parity with torch (fp32), dynamic object count, the
sidecar JSON, the on-disk cache and the posediff-export CLI. Real onnxruntime, real files."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fp32 import parity_tolerance

from posediff_ros.cli.export import main
from posediff_ros.model.posenet import PoseNet, PoseNetConfig, save_model
from posediff_ros.model.sampler import SamplerSettings
from posediff_ros.runtime.graph import INPUTS, OUTPUTS, InferenceGraph, example_inputs
from posediff_ros.runtime.onnx_export import PARTS, ensure_graph, export_onnx, weights_hash

torch.set_num_threads(1)


def trained_like(seed: int = 0) -> PoseNet:
    """A fresh network whose zero-initialised score outputs are made non-zero, so the
    sampler really moves the poses (a fresh one returns its start point)."""
    torch.manual_seed(seed)
    model = PoseNet(PoseNetConfig())
    for head in (model.score_head.rot_head, model.score_head.trans_head):
        torch.nn.init.normal_(head[-1].weight, std=0.05)
        torch.nn.init.normal_(head[-1].bias, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> PoseNet:
    return trained_like()


def tolerance(model: PoseNet, settings: SamplerSettings, points) -> dict[str, float]:
    """fp32.py's bound for onnxruntime vs torch, per output (metres for translations and
    the point scale, rotation entries, score)."""
    pts = np.asarray(points, np.float64)
    centroid = pts.mean(1)
    radius = float(np.sqrt(((pts - centroid[:, None]) ** 2).sum(-1).mean(-1)).max())
    tol = parity_tolerance(model, settings.steps, settings.solver, pts.shape[1], radius,
                           float(np.linalg.norm(centroid, axis=-1).max()))
    return {"rotation": tol.normalised, "samples_rotation": tol.normalised,
            "reg_rotation": tol.normalised, "translation": tol.translation,
            "samples_translation": tol.translation, "reg_translation": tol.translation,
            "size": tol.size, "score": tol.score, "point_scale": tol.size}


def assert_outputs_close(want, got, tol: dict[str, float], what: str = "") -> None:
    for name, w, g in zip(OUTPUTS, want, got, strict=True):
        err = float(np.abs(np.asarray(w, np.float64) - g).max())
        assert err <= tol[name], f"{what}{name}: max |onnx - torch| {err:.2e} > {tol[name]:.2e}"


def run_onnx(path, feed: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


SETTINGS = [SamplerSettings(),
            SamplerSettings(steps=3, solver="heun", w_schedule="linear", num_samples=4,
                          init="regression"),
            SamplerSettings(steps=2, solver="dpm2", w_schedule="tsr", w_max=3.0)]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.tag())
def test_full_graph_matches_torch_in_fp32(model, settings, tmp_path):
    path = tmp_path / "g.onnx"
    meta = export_onnx(model, settings, path)
    pts = example_inputs(model.cfg.num_points, settings.num_samples, 5)[0]
    assert meta["parity_max_abs_err"] < tolerance(model, settings, pts)["rotation"]
    graph = InferenceGraph(model, settings).eval()
    for b in (1, 7, 12):  # dynamic object count, none of them the traced batch (2)
        points, class_ids, noise = example_inputs(model.cfg.num_points, settings.num_samples,
                                                  b, seed=b)
        got = run_onnx(path, {"points": points.numpy(), "class_ids": class_ids.numpy(),
                              "noise": noise.numpy()})
        with torch.no_grad():
            want = graph(points, class_ids, noise)
        assert [g.shape[0] for g in got] == [b] * len(OUTPUTS)
        assert_outputs_close(want, got, tolerance(model, settings, points), f"B={b}: ")


def test_noise_is_an_input_and_moves_the_poses(model, tmp_path):
    path = tmp_path / "g.onnx"
    export_onnx(model, SamplerSettings(), path, check=False)
    points, class_ids, noise = example_inputs(model.cfg.num_points, 1, 3)
    feed = {"points": points.numpy(), "class_ids": class_ids.numpy()}
    a = run_onnx(path, {**feed, "noise": noise.numpy()})
    b = run_onnx(path, {**feed, "noise": noise.numpy()})
    c = run_onnx(path, {**feed, "noise": (noise + 0.5).numpy()})
    np.testing.assert_array_equal(a[0], b[0])  # reproducible
    assert np.abs(a[1] - c[1]).max() > 1e-4  # another noise, another sample
    rot = a[0]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-5)


def test_graph_is_one_unrolled_graph_with_named_io(model, tmp_path):
    import onnx  # here, not at collection: 0.5 s (ml_dtypes) in every xdist worker

    path = tmp_path / "g.onnx"
    export_onnx(model, SamplerSettings(steps=5), path, check=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"Loop", "If", "Scan"}  # the sampler is unrolled, shapes are static
    assert [i.name for i in proto.graph.input] == list(INPUTS)
    assert [o.name for o in proto.graph.output] == list(OUTPUTS)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "objects"


def test_split_parts_compose_to_the_full_graph(model, tmp_path):
    settings = SamplerSettings(steps=3)
    paths = {p: tmp_path / f"{p}.onnx" for p in PARTS}
    tol = tolerance(model, settings, example_inputs(model.cfg.num_points, 1, 5)[0])
    for part, path in paths.items():
        assert export_onnx(model, settings, path, part)["parity_max_abs_err"] < tol["rotation"]
    points, class_ids, noise = example_inputs(model.cfg.num_points, 1, 4, seed=3)
    feed = {"points": points.numpy(), "class_ids": class_ids.numpy()}
    full = run_onnx(paths["full"], {**feed, "noise": noise.numpy()})
    enc = run_onnx(paths["encoder"], feed)
    sess = ort.InferenceSession(str(paths["sampler"]), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    split = sess.run(None, dict(zip(names, [*enc, noise.numpy()], strict=True)))
    # the same onnxruntime kernels on the same inputs, only partitioned differently
    assert_outputs_close(full, split, tolerance(model, settings, points), "split vs full: ")


def test_sidecar_records_what_is_baked(model, tmp_path):
    settings = SamplerSettings(steps=6, solver="heun", w_schedule="constant", w_max=2.5)
    path = tmp_path / "g.onnx"
    export_onnx(model, settings, path, model_path="models/x.json")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["settings"]["steps"] == 6 and meta["settings"]["solver"] == "heun"
    assert len(meta["baked"]["sigmas"]) == 7 and meta["baked"]["w"] == [2.5] * 6
    assert meta["weights_sha256"] == weights_hash(model)
    assert meta["num_points"] == model.cfg.num_points and meta["opset"] >= 17
    assert meta["inputs"] == list(INPUTS) and meta["outputs"] == list(OUTPUTS)


def test_cache_reuses_and_keys_by_weights_and_settings(model, tmp_path):
    first = ensure_graph(model, SamplerSettings(), None, directory=tmp_path)
    stamp = first.stat().st_mtime_ns
    assert ensure_graph(model, SamplerSettings(), None, directory=tmp_path) == first
    assert first.stat().st_mtime_ns == stamp  # not exported again
    other_steps = ensure_graph(model, SamplerSettings(steps=8), None, directory=tmp_path)
    other_weights = ensure_graph(trained_like(seed=1), SamplerSettings(), None,
                                 directory=tmp_path)
    assert len({first, other_steps, other_weights}) == 3
    assert weights_hash(model) != weights_hash(trained_like(seed=1))
    assert weights_hash(model) == weights_hash(trained_like(seed=0))


def test_cli_exports_a_saved_model(model, tmp_path, capsys):
    stored = model.cfg.sampler
    model.cfg.sampler = stored.override(init="regression")  # what the CLI bakes unless told
    try:
        model_json = save_model(model, tmp_path / "m.json")
    finally:
        model.cfg.sampler = stored
    out = tmp_path / "out" / "m.onnx"
    main(["--model", str(model_json), "--out", str(out), "--steps", "3", "--split"])
    printed = capsys.readouterr().out
    assert out.is_file() and (tmp_path / "out" / "m.encoder.onnx").is_file()
    assert "max |onnx - torch|" in printed
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"] == str(model_json) and meta["settings"]["steps"] == 3
    assert meta["settings"]["init"] == "regression"
    # the default location: models/onnx/ beside the model, named by weights + settings
    main(["--model", str(model_json)])
    assert len(list((tmp_path / "onnx").glob("m.euler*.onnx"))) == 1


def test_pointnet2_encoder_exports_too(tmp_path):
    """The other encoder choice (k-NN grouping: cdist + topk + gather) exports with the same
    dynamic object count and parity."""
    torch.manual_seed(0)
    model = PoseNet(PoseNetConfig(encoder="pointnet2")).eval()
    meta = export_onnx(model, SamplerSettings(steps=2), tmp_path / "p2.onnx")
    tol = tolerance(model, SamplerSettings(steps=2), example_inputs(model.cfg.num_points, 1, 5)[0])
    assert meta["parity_max_abs_err"] < tol["rotation"] and meta["encoder"] == "pointnet2"
    graph = InferenceGraph(model, SamplerSettings(steps=2)).eval()
    points, class_ids, noise = example_inputs(model.cfg.num_points, 1, 7, seed=7)
    got = run_onnx(tmp_path / "p2.onnx", {"points": points.numpy(),
                                          "class_ids": class_ids.numpy(),
                                          "noise": noise.numpy()})
    with torch.no_grad():
        want = graph(points, class_ids, noise)
    assert_outputs_close(want, got, tolerance(model, SamplerSettings(steps=2), points))


def test_cli_names_a_missing_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--model", str(tmp_path / "absent.json")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
