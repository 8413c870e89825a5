"""posediff-calibrate: fit the published pose covariance on held-out objects and measure its
coverage on others (posediff_ros/calibration.py says what is fitted).

    posediff-calibrate --model models/posediff_default.json --fit data/cache_calib \
        --test data/cache_calib_test [--num-samples 8] [--max-objects 1500]

Writes <model>.covariance.json (loaded by the node, the bag tool and the evaluator beside the
model) and docs/results/covariance_calibration.json (the coverage table of docs/RESULTS.md,
`posediff-results report`). Re-run it after retraining: the file names the weights' sha256.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from posediff_ros import calibration as cal


def predict_cache(backend, cache, num_samples: int, limit: int, batch: int = 64) -> dict:
    """Estimates of the first `limit` cache objects with `num_samples` samples each."""
    backend.configure(replace(backend.settings, num_samples=num_samples))
    n = min(limit, len(cache))
    P = backend.num_points
    out = {"R": [], "t": [], "cov": []}
    for s in range(0, n, batch):
        b = backend.predict(cache.points[s:s + batch, :P].astype(np.float32),
                            cache.class_ids[s:s + batch])
        out["R"].append(b.rotation)
        out["t"].append(b.translation)
        out["cov"].append(b.covariance)
    est = {"R": np.concatenate(out["R"]).astype(np.float64),
           "t": np.concatenate(out["t"]).astype(np.float64),
           "cov": None if out["cov"][0] is None else np.concatenate(out["cov"]),
           "R_gt": cache.rotations[:n].astype(np.float64),
           "t_gt": cache.translations[:n].astype(np.float64),
           "class_ids": cache.class_ids[:n], "handle_visible": cache.handle_visible[:n]}
    return est


def _errors(est: dict):
    return cal.pose_errors(est["R"], est["t"], est["R_gt"], est["t_gt"], est["class_ids"],
                           est["handle_visible"])


def coverage_rows(calib: cal.CovarianceCalibration, single: dict, multi: dict | None,
                  num_samples: int) -> list[dict]:
    """Coverage on the test objects: raw sample covariance, calibrated prior, calibrated
    sample covariance; with the median translation error and median reported sigma."""
    rows = []
    e_t, e_r, sym = _errors(single)
    z = cal.normalised_errors(e_t, e_r, single["R"], sym, calib, single["class_ids"])
    rows.append(_row("1 sample, calibrated per-class prior", z, e_t, calib, single, None))
    if multi is not None:
        e_t, e_r, sym = _errors(multi)
        z = cal.normalised_errors(e_t, e_r, multi["R"], sym, None, None, multi["cov"])
        rows.append(_row(f"{num_samples} samples, raw sample covariance", z, e_t, None, multi,
                         multi["cov"]))
        z = cal.normalised_errors(e_t, e_r, multi["R"], sym, calib, multi["class_ids"],
                                  multi["cov"])
        rows.append(_row(f"{num_samples} samples, sample covariance x calibrated scale", z, e_t,
                         calib, multi, multi["cov"]))
    return rows


def _row(name: str, z, e_t, calib, est, sample_cov) -> dict:
    sig = []
    for i in range(len(e_t)):
        cov = sample_cov[i] if calib is None else calib.covariance(
            int(est["class_ids"][i]), est["R"][i], None if sample_cov is None else sample_cov[i])
        sig.append(np.sqrt(max(np.trace(cov[:3, :3]), 0.0)))  # 3D translation sigma
    return {"name": name, **cal.coverage(z),
            "median_translation_error_cm": float(100 * np.median(np.linalg.norm(e_t, axis=1))),
            "median_translation_sigma_cm": float(100 * np.median(sig)), "objects": len(e_t)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="posediff-calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--fit", required=True, help="held-out cache to fit on (posediff-cache)")
    ap.add_argument("--test", required=True, help="another held-out cache to measure on")
    ap.add_argument("--num-samples", type=int, default=8)
    ap.add_argument("--max-objects", type=int, default=1500)
    ap.add_argument("--results", default="docs/results/covariance_calibration.json")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from posediff_ros.data.cache import load_cache
    from posediff_ros.model.posenet import read_config
    from posediff_ros.runtime import DEFAULT_MODEL, load_backend

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = args.model or str(DEFAULT_MODEL)
    backend = load_backend("torch", model)
    fit_cache, test_cache = load_cache(args.fit), load_cache(args.test)
    fit1 = predict_cache(backend, fit_cache, 1, args.max_objects)
    fitn = predict_cache(backend, fit_cache, args.num_samples, args.max_objects)
    calib = cal.fit(fit1["R"], fit1["t"], fit1["R_gt"], fit1["t_gt"], fit1["class_ids"],
                    fit1["handle_visible"], data=f"{args.fit} ({len(fit1['R'])} objects)")
    # the sample scale is fitted on the multi-sample estimates of the same objects
    multi_fit = cal.fit(fitn["R"], fitn["t"], fitn["R_gt"], fitn["t_gt"], fitn["class_ids"],
                        fitn["handle_visible"], sample_cov=fitn["cov"])
    for name, c in calib.classes.items():
        c.sample_scale = multi_fit.classes[name].sample_scale
    _, raw = read_config(model)
    calib.model, calib.model_sha256 = Path(model).name, raw.get("weights_sha256", "")
    calib.notes = {"command": "posediff-calibrate " + " ".join(argv or sys.argv[1:]),
                   "sample_scale_fitted_with_num_samples": args.num_samples}
    path = calib.save(cal.calibration_path(model))
    test1 = predict_cache(backend, test_cache, 1, args.max_objects)
    testn = predict_cache(backend, test_cache, args.num_samples, args.max_objects)
    rows = coverage_rows(calib, test1, testn, args.num_samples)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(
        {"model": model, "fit": args.fit, "test": f"{args.test} ({len(test1['R'])} objects)",
         "num_samples": args.num_samples, "rows": rows,
         "calibration": json.loads(path.read_text())}, indent=2) + "\n")
    for r in rows:
        print(f"{r['name']}: within 1/2/3 sigma {r['1sigma']:.1f} / {r['2sigma']:.1f} / "
              f"{r['3sigma']:.1f} % (normal: 68.3 / 95.4 / 99.7); median translation error "
              f"{r['median_translation_error_cm']:.2f} cm, median sigma "
              f"{r['median_translation_sigma_cm']:.2f} cm")
    print(f"wrote {path} and {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
