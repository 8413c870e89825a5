"""The GPU check of scripts/gpu_check.sh: environment, the GPU tests (test/gpu_checks.py, no
pytest needed), then posediff-bench on the device for fp32 / bf16 / fp16 with accuracy beside
speed, all written into one folder (Markdown + JSON). Needs only python3 with torch, numpy,
onnx, onnxruntime, safetensors and scipy; runs from the source tree (PYTHONPATH).

usage: python3 scripts/gpu_check.py OUT_DIR [--device cuda|cpu] [--quick]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OBJECTS = "1,3,6,12,50"
HELD_OUT_SEED = 2_000_000  # the test seed range (never trained on)


def environment(device: str) -> dict:
    import numpy
    import onnxruntime
    import torch

    info = {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "numpy": numpy.__version__,
            "onnxruntime": onnxruntime.__version__,
            "onnxruntime_providers": onnxruntime.get_available_providers(),
            "cuda_available": torch.cuda.is_available(), "device": device}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    compute_capability=f"{p.major}.{p.minor}")
    return info


def run_gpu_checks(scratch: Path) -> list[dict]:
    """Every check of test/gpu_checks.py: passed, failed (with the assertion) or skipped."""
    sys.path.insert(0, str(REPO / "test"))
    import gpu_checks

    model_json = gpu_checks.moving_model(scratch)
    results = []
    for name, check in gpu_checks.all_checks(model_json, scratch).items():
        t0 = time.perf_counter()
        try:
            check()
            status, detail = "passed", ""
        except gpu_checks.Skip as why:
            status, detail = "skipped", str(why)
        except Exception as err:  # noqa: BLE001 - record every failure, go on with the rest
            status, detail = "failed", "".join(traceback.format_exception_only(err)).strip()
        results.append({"check": name, "status": status, "detail": detail,
                        "seconds": round(time.perf_counter() - t0, 2)})
        print(f"  {status:7} {name} {detail}", flush=True)
    return results


def held_out_set(out: Path, objects: int) -> Path:
    """Test-range objects rendered once (all CPU cores) for every bench run's accuracy."""
    from multiprocessing import Pool

    from posediff_ros.data.cache import _build_one, write_meta

    path = out / "heldout_cache"
    path.mkdir(exist_ok=True)
    shards = 8 if objects >= 64 else 1
    size = -(-objects // shards)
    jobs = [(str(path), k, HELD_OUT_SEED + k, size, 256) for k in range(shards)]
    with Pool(min(shards, os.cpu_count() or 1)) as pool:
        pool.map(_build_one, jobs)
    write_meta(str(path), HELD_OUT_SEED, size, 256)
    return path


def bench_args(precision: str, device: str, quick: bool, cache: Path, out: Path) -> list[str]:
    """posediff-bench for one precision: fp32 = torch and the fused module (CUDA graphs on a
    GPU); bf16 / fp16 = the fused module under autocast."""
    args = ["--device", device, "--test-cache", str(cache), "--no-progress",
            "--json", str(out / f"bench_{precision}.json"),
            "--markdown", str(out / f"bench_{precision}.md")]
    args += ["--backends", "torch,torch-fused" if precision == "fp32" else "torch-fused"]
    if precision != "fp32":
        args += ["--amp", precision]
    if device.startswith("cuda"):
        args += ["--cuda-graphs"]
    if quick:
        return args + ["--quick", "--accuracy-objects", "12"]
    return args + ["--objects", OBJECTS, "--steps", "2,4,8", "--accuracy-objects", "300"]


def summary(out: Path, env: dict, checks: list[dict], benches: dict[str, str],
            seconds: float) -> str:
    lines = [f"# GPU check ({env.get('gpu', env['device'])})", "",
             f"torch {env['torch']} (CUDA {env['torch_cuda']}), onnxruntime {env['onnxruntime']}"
             f" ({', '.join(env['onnxruntime_providers'])}), Python {env['python']}; "
             f"{seconds:.0f} s in all.", "", "## GPU tests", "",
             "| check | result | s | detail |", "|---|---|---|---|"]
    lines += [f"| {c['check']} | {c['status']} | {c['seconds']} | {c['detail'][:200]} |"
              for c in checks]
    lines += ["", "TensorRT and onnxruntime-gpu are not installed on such a machine (their wheels "
              "are too large to carry there): their checks skip, and the bench has no rows "
              "for them.", ""]
    for precision, status in benches.items():
        md = out / f"bench_{precision}.md"
        lines += [f"## posediff-bench, {precision}", ""]
        lines += [md.read_text() if md.is_file() else f"failed: {status}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="seconds: the CPU path for CI")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(args.device)
    (args.out / "environment.json").write_text(json.dumps(env, indent=2) + "\n")
    print(f"== GPU tests ({env.get('gpu', 'no GPU')})", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        checks = run_gpu_checks(Path(scratch))
    (args.out / "gpu_tests.json").write_text(json.dumps(checks, indent=2) + "\n")
    print("== held-out objects for the accuracy columns", flush=True)
    cache = held_out_set(args.out, 12 if args.quick else 300)
    from posediff_ros.cli.bench import main as bench

    benches = {}
    for precision in ("fp32", "bf16", "fp16"):
        print(f"== posediff-bench {precision}", flush=True)
        try:
            bench(bench_args(precision, args.device, args.quick, cache, args.out))
            benches[precision] = "ok"
        except Exception as err:  # noqa: BLE001 - one precision failing keeps the others
            benches[precision] = f"{type(err).__name__}: {err}"
            traceback.print_exc()
    seconds = time.perf_counter() - start
    text = summary(args.out, env, checks, benches, seconds)
    (args.out / "SUMMARY.md").write_text(text + "\n")
    (args.out / "summary.json").write_text(json.dumps(
        {"environment": env, "gpu_tests": checks, "bench": benches,
         "seconds": round(seconds, 1)}, indent=2) + "\n")
    failed = [c["check"] for c in checks if c["status"] == "failed"]
    failed += [p for p, s in benches.items() if s != "ok"]
    print(f"== done in {seconds:.0f} s; results in {args.out}" +
          (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
