"""ONNX export of the whole fixed-step inference graph (runtime/graph.py) into its on-disk
cache (graph_cache.py, torch-free: graphs named by weights + sampler settings, exported once,
found again on the next start without importing torch).

Exporter: the TorchScript one (`dynamo=False`). The pipeline is a pure trace (the sampler loop
has a fixed length per export, no data-dependent control flow), it needs no extra package
(the dynamo exporter needs `onnxscript`), and it exports in well under a second.

Every .onnx gets a sidecar <name>.json: the settings, sigmas and w_t actually baked in, the
sha256 of the weights, input/output names, and the parity error measured at export time.
posediff-export (cli/export.py) is the command-line program over this module.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..model.posenet import RANDOM, PoseNet
from ..model.sampler import SamplerSettings, make_schedule
from .graph import ENC_OUTPUTS, INPUTS, OUTPUTS, InferenceGraph, example_inputs
from .graph_cache import (  # noqa: F401 - the cache's names, re-exported for the export CLI
    EXPORT_VERSION,
    OPSET,
    PARTS,
    default_cache_dir,
    find_graph,
    graph_dir,
    graph_path,
    model_graph_dir,
    sidecar,
    weights_hash,
)

log = logging.getLogger("posediff_ros.export")


# --- export ---------------------------------------------------------------------------------


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


def export_graph(model: PoseNet, settings: SamplerSettings, path: Path, part: str = "full",
                 model_path=None) -> dict:
    """export_onnx into a cache path that graph_cache.find_graph named, with a log line."""
    log.info("exporting %s graph for %s to %s", part, settings.tag(), path)
    return export_onnx(model, settings, path, part,
                       None if model_path is None or str(model_path) == RANDOM else str(model_path))


def ensure_graph(model: PoseNet, settings: SamplerSettings, model_path=None, part: str = "full",
                 directory: Path | None = None, whash: str | None = None) -> Path:
    """The graph for these weights + settings: a matching one beside the model (shipped by
    posediff-export) or in `directory` (default: the cache dir), else exported there now."""
    whash = whash or weights_hash(model)
    stem = Path(model_path).stem if model_path and str(model_path) != RANDOM else RANDOM
    path, found = find_graph(stem, model_path, whash, settings, part, directory)
    if not found:
        export_graph(model, settings, path, part, model_path)
    return path
