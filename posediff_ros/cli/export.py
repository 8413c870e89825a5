"""ONNX export of the whole fixed-step inference pipeline, and its on-disk cache.

One graph: points (B, P, 3) camera metres, class_ids (B,) int64, noise (B, N, 9) standard
normal -> centring/normalisation -> encoder -> regression head -> the few-step score-scaled
sampler unrolled (step count, solver, w schedule and w_max baked in as constants) -> pose,
size, agreement score and the per-sample poses. B (objects per frame) is a dynamic axis; the
noise is an input so results are reproducible and comparable with the torch model bit for bit.

Exporter: the TorchScript one (`dynamo=False`). The pipeline is a pure trace (the sampler loop
has a fixed length per export, no data-dependent control flow), it needs no extra package
(the dynamo exporter needs `onnxscript`), and it exports in well under a second.

Every .onnx gets a sidecar <name>.json: the settings, sigmas and w_t actually baked in, the
sha256 of the weights, input/output names, and the parity error measured at export time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..model.posenet import PoseNet, load_model, pose_to_camera
from ..model.rotation import rot6d_to_matrix
from ..model.sampler import SamplerSettings, get_solver, make_schedule, start_point
from ..runtime.torch_backend import agreement_score

log = logging.getLogger("posediff_ros.export")

EXPORT_VERSION = 2  # bump when the graph (its inputs, outputs or their computation) changes
OPSET = 17
INPUTS = ("points", "class_ids", "noise")
OUTPUTS = ("rotation", "translation", "size", "score", "samples_rotation",
           "samples_translation", "reg_rotation", "reg_translation", "point_scale")
# the split graphs (per-stage timing in the benchmark): encoder -> ENC_OUTPUTS -> sampler
ENC_OUTPUTS = ("cond", "centroid", "scale", "reg_rot6d", "reg_offset", "reg_size")
PARTS = ("full", "encoder", "sampler")


# --- the graph ------------------------------------------------------------------------------


class EncoderPart(nn.Module):
    """points, class_ids -> conditioning + regression (the encoder stage)."""

    def __init__(self, model: PoseNet):
        super().__init__()
        self.model = model

    def forward(self, points: torch.Tensor, class_ids: torch.Tensor):
        cond, centroid, scale = self.model.condition(points, class_ids)
        reg = self.model.regress(cond)
        return cond, centroid, scale, reg["rot6d"], reg["offset"], reg["size"]


class SamplerPart(nn.Module):
    """Encoder outputs + noise -> poses (the sampler stage, the loop unrolled).

    Same maths as PoseNet.sample_poses (the backend parity tests hold it to that), but the
    noise levels and w_t are buffers made once here: the graph then has no host-to-device
    copies, which a CUDA graph capture forbids, and the ONNX graph stores them as constants."""

    def __init__(self, model: PoseNet, settings: SamplerSettings):
        super().__init__()
        self.model, self.settings = model, settings
        schedule = make_schedule(model.sde, settings)
        self.register_buffer("sigmas", schedule.sigmas, persistent=False)
        self.register_buffer("w", schedule.w, persistent=False)
        self.solver = get_solver(settings.solver)

    def forward(self, cond, centroid, scale, reg_rot6d, reg_offset, reg_size, noise):
        reg_pose = torch.cat([reg_rot6d, reg_offset], -1)
        x = start_point(self.settings.init, noise, self.sigmas[0], reg_pose)
        x = self.solver(self.model.denoiser(cond), x, self.sigmas, self.w)
        rot, trans = pose_to_camera(x, centroid, scale)
        r_reg = rot6d_to_matrix(reg_rot6d)
        t_reg = centroid + scale[:, None] * reg_offset
        score = agreement_score(rot[:, 0], trans[:, 0], r_reg, t_reg, scale)
        size = (scale[:, None] * reg_size).clamp_min(1e-4)
        return rot[:, 0], trans[:, 0], size, score, rot, trans, r_reg, t_reg, scale


class InferenceGraph(nn.Module):
    """The whole pipeline as one module: (points, class_ids, noise) -> OUTPUTS. Also what the
    fused torch backend runs (and captures in CUDA graphs)."""

    def __init__(self, model: PoseNet, settings: SamplerSettings):
        super().__init__()
        self.encoder = EncoderPart(model)
        self.sampler = SamplerPart(model, settings)

    def forward(self, points: torch.Tensor, class_ids: torch.Tensor, noise: torch.Tensor):
        return self.sampler(*self.encoder(points, class_ids), noise)


# --- hashing and cache paths ----------------------------------------------------------------


def weights_hash(model: PoseNet) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): identifies the weights
    whether they came from a file or from a seeded initialisation."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(whash: str, settings: SamplerSettings, part: str = "full") -> str:
    """Names a graph: weights, settings, part, and the export format version."""
    body = json.dumps([whash, asdict(settings.graph_key()), part, EXPORT_VERSION, OPSET],
                      sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """$POSEDIFF_CACHE, else $XDG_CACHE_HOME/posediff_ros, else ~/.cache/posediff_ros."""
    if os.environ.get("POSEDIFF_CACHE"):
        return Path(os.environ["POSEDIFF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "posediff_ros"


def model_graph_dir(model_path: str | os.PathLike | None) -> Path | None:
    """models/onnx/ beside a model JSON: where posediff-export puts graphs to ship."""
    if model_path is None or str(model_path) == "random":
        return None
    return Path(model_path).resolve().parent / "onnx"


def graph_dir() -> Path:
    """Where graphs exported on the fly go: the cache dir (never the source tree)."""
    return default_cache_dir() / "onnx"


def graph_path(directory: Path, stem: str, whash: str, settings: SamplerSettings,
               part: str = "full") -> Path:
    suffix = "" if part == "full" else f".{part}"
    return directory / f"{stem}.{settings.tag()}.{cache_key(whash, settings, part)}{suffix}.onnx"


# --- export ---------------------------------------------------------------------------------


def example_inputs(num_points: int, num_samples: int, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(batch, num_points, 3, generator=g) * 0.05 + torch.tensor([0, 0, 0.8])
    class_ids = torch.arange(batch, dtype=torch.int64) % 6 + 1
    noise = torch.randn(batch, num_samples, 9, generator=g)
    return points, class_ids, noise


def _module_and_io(model: PoseNet, settings: SamplerSettings, part: str, batch: int):
    points, class_ids, noise = example_inputs(model.cfg.num_points, settings.num_samples, batch)
    full = InferenceGraph(model, settings).eval()
    if part == "full":
        return full, (points, class_ids, noise), INPUTS, OUTPUTS
    if part == "encoder":
        return full.encoder, (points, class_ids), INPUTS[:2], ENC_OUTPUTS
    if part == "sampler":
        with torch.no_grad():
            enc = full.encoder(points, class_ids)
        return full.sampler, (*enc, noise), ENC_OUTPUTS + ("noise",), OUTPUTS
    raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")


def export_onnx(model: PoseNet, settings: SamplerSettings, path: str | os.PathLike,
                part: str = "full", model_path: str | None = None, check: bool = True) -> dict:
    """Write `path` (.onnx) and its sidecar JSON; returns the sidecar dict. With `check`, runs
    the graph in onnxruntime (CPU) on B = 1 and 5 objects and records the max abs difference
    from the torch module (outputs in metres / rotation entries / [0, 1] scores)."""
    model = model.cpu().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module, args, in_names, out_names = _module_and_io(model, settings, part, batch=2)
    dyn = {n: {0: "objects"} for n in (*in_names, *out_names)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about constants: intended (baked)
        torch.onnx.export(module, args, str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=list(in_names), output_names=list(out_names),
                          dynamic_axes=dyn, do_constant_folding=True)
    export_s = time.perf_counter() - t0
    schedule = make_schedule(model.sde, settings)
    meta = {
        "format": "posediff-onnx",
        "export_version": EXPORT_VERSION,
        "part": part,
        "opset": OPSET,
        "exporter": f"torch.onnx TorchScript (dynamo=False), torch {torch.__version__}",
        "model": str(model_path) if model_path else None,
        "weights_sha256": weights_hash(model),
        "num_points": model.cfg.num_points,
        "encoder": model.cfg.encoder,
        "settings": asdict(settings.graph_key()),
        "baked": {"t_start": settings.start_time, "t_end": settings.t_end,
                  "sigmas": schedule.sigmas.tolist(), "w": schedule.w.tolist()},
        "inputs": list(in_names),
        "outputs": list(out_names),
        "dynamic_axes": "dim 0 of every input and output = objects",
        "export_seconds": round(export_s, 3),
    }
    if check:
        meta["parity_max_abs_err"] = parity_error(module, tmp, in_names, model, settings, part)
    os.replace(tmp, path)  # atomic: a cached graph is complete or absent
    sidecar(path).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def sidecar(onnx_path: str | os.PathLike) -> Path:
    return Path(onnx_path).with_suffix(".json")


def parity_error(module: nn.Module, onnx_path, in_names, model: PoseNet,
                 settings: SamplerSettings, part: str, batches=(1, 5)) -> float:
    """Max abs difference between the torch module and onnxruntime (CPU), over all outputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for b in batches:
        args = _module_and_io(model, settings, part, b)[1]
        with torch.no_grad():
            want = [t.numpy() for t in module(*args)]
        got = sess.run(None, {n: a.numpy() for n, a in zip(in_names, args, strict=True)})
        for w, g in zip(want, got, strict=True):
            worst = max(worst, float(np.abs(w.astype(np.float64) - g).max()))
    return worst


def ensure_graph(model: PoseNet, settings: SamplerSettings, model_path=None, part: str = "full",
                 directory: Path | None = None, whash: str | None = None) -> Path:
    """The graph for these weights + settings: a matching one beside the model (shipped by
    posediff-export) or in `directory` (default: the cache dir), else exported there now."""
    whash = whash or weights_hash(model)
    directory = Path(directory) if directory else graph_dir()
    stem = Path(model_path).stem if model_path and str(model_path) != "random" else "random"
    shipped = model_graph_dir(model_path)
    for d in ([shipped] if shipped else []) + [directory]:
        path = graph_path(d, stem, whash, settings, part)
        if _matches(path, whash):
            return path
    path = graph_path(directory, stem, whash, settings, part)
    log.info("exporting %s graph for %s to %s", part, settings.tag(), path)
    export_onnx(model, settings, path, part, None if stem == "random" else str(model_path))
    return path


def _matches(path: Path, whash: str) -> bool:
    """A complete graph whose sidecar names these weights and this export version."""
    if not (path.is_file() and sidecar(path).is_file()):
        return False
    try:
        meta = json.loads(sidecar(path).read_text())
    except (json.JSONDecodeError, OSError):
        return False
    return meta.get("weights_sha256") == whash and meta.get("export_version") == EXPORT_VERSION


def load_any(model_path: str | os.PathLike) -> PoseNet:
    """A model JSON, or "random" (a seeded fresh network, as runtime.load_backend does)."""
    if str(model_path) == "random":
        from ..model.posenet import PoseNetConfig

        torch.manual_seed(0)
        return PoseNet(PoseNetConfig()).eval()
    return load_model(model_path, "cpu")


# --- CLI ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from ..runtime import DEFAULT_MODEL

    ap = argparse.ArgumentParser(
        prog="posediff-export",
        description="Export the whole few-step pipeline (points -> pose) to one ONNX graph, "
                    "with a sidecar JSON (settings, weight hash, parity error).")
    ap.add_argument("--model", default=str(DEFAULT_MODEL),
                    help="model JSON (weights beside it) or 'random' (default: %(default)s)")
    ap.add_argument("--out", help="output .onnx (default: onnx/ beside the model, named by "
                                  "weights + settings, where the onnxruntime and TensorRT "
                                  "backends look first)")
    ap.add_argument("--steps", type=int, help="(these default to the model's stored settings)")
    ap.add_argument("--solver", choices=["euler", "heun", "dpm2"])
    ap.add_argument("--w-schedule", choices=["exponential", "linear", "constant", "none", "tsr"])
    ap.add_argument("--w-max", type=float)
    ap.add_argument("--num-samples", type=int)
    ap.add_argument("--init", choices=["noise", "regression"])
    ap.add_argument("--split", action="store_true",
                    help="also write the encoder and sampler stages as separate graphs")
    a = ap.parse_args(argv)
    from ..model.posenet import ModelFileError

    try:
        model = load_any(a.model)
    except ModelFileError as e:
        ap.error(str(e))  # exits 2 with the reason, no traceback
    settings = model.cfg.sampler.override(  # the model's stored settings unless given
        steps=a.steps, solver=a.solver, w_schedule=a.w_schedule, w_max=a.w_max,
        num_samples=a.num_samples, init=a.init).graph_key()
    parts = PARTS if a.split else ("full",)
    for part in parts:
        if a.out:
            out = Path(a.out)
            path = out if part == "full" else out.with_name(f"{out.stem}.{part}.onnx")
        else:
            path = graph_path(model_graph_dir(a.model) or graph_dir(), Path(a.model).stem,
                              weights_hash(model), settings, part)
        meta = export_onnx(model, settings, path, part,
                           None if a.model == "random" else str(a.model))
        print(f"{path}  ({part}, {settings.tag()}, {path.stat().st_size / 1e6:.2f} MB, "
              f"export {meta['export_seconds']:.2f} s, max |onnx - torch| = "
              f"{meta['parity_max_abs_err']:.2e})")


if __name__ == "__main__":
    main()
