"""posediff-export: write the whole few-step pipeline as one ONNX graph (+ sidecar JSON) for a
model, where the onnxruntime and TensorRT backends look first (onnx/ beside the model).

The graph, its export and its cache are runtime/graph.py and runtime/onnx_export.py; this is
only their command line.
"""

import argparse
from pathlib import Path

from ..model.posenet import RANDOM, ModelFileError, load_any
from ..runtime import DEFAULT_MODEL
from ..runtime.onnx_export import (
    PARTS,
    export_onnx,
    graph_dir,
    graph_path,
    model_graph_dir,
    weights_hash,
)


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
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
    return ap, ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    ap, a = parse_args(argv)
    try:
        model = load_any(a.model)
    except ModelFileError as e:
        ap.error(str(e))  # exits 2 with the reason, no traceback
    settings = model.cfg.sampler.override(  # the model's stored settings unless given
        steps=a.steps, solver=a.solver, w_schedule=a.w_schedule, w_max=a.w_max,
        num_samples=a.num_samples, init=a.init).graph_key()
    for part in PARTS if a.split else ("full",):
        if a.out:
            out = Path(a.out)
            path = out if part == "full" else out.with_name(f"{out.stem}.{part}.onnx")
        else:
            path = graph_path(model_graph_dir(a.model) or graph_dir(), Path(a.model).stem,
                              weights_hash(model), settings, part)
        meta = export_onnx(model, settings, path, part,
                           None if a.model == RANDOM else str(a.model))
        print(f"{path}  ({part}, {settings.tag()}, {path.stat().st_size / 1e6:.2f} MB, "
              f"export {meta['export_seconds']:.2f} s, max |onnx - torch| = "
              f"{meta['parity_max_abs_err']:.2e})")


if __name__ == "__main__":
    main()
