"""Sections of docs/RESULTS.md from docs/results/tracking*.json (posediff-eval --sequence
--results; one section per file) and docs/results/covariance_calibration.json
(posediff-calibrate); listed in cli/results_report.SECTIONS (`posediff-results report`)."""

from __future__ import annotations

import math

from posediff_ros.calibration import GAUSS_COVERAGE

COLUMNS = ("10d5cm", "5d2cm", "10d2cm", "IoU50")


def _f(v, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def tracking_section(data: dict) -> list[str]:
    info, results = data["info"], data["results"]
    lines = [f"## Tracking vs per-frame estimation (image sequences: {info['sequences']})", "",
             f"`{info['command']}`: {info['sequences']}; mask ids {info['mask ids']} (the "
             "segmenter renumbers its masks every frame, so ids come from the tracker alone); "
             f"{info['environment']}.", "",
             "Jitter: for objects that did not move in the world, the frame-to-frame change of "
             "the pose error (estimate minus truth), so a moving camera's true motion is "
             "subtracted. Id switches: changes of a true object's published id. Model cost: "
             "the predictor's milliseconds (rows from separate runs on a shared machine: not "
             "comparable across rows; side by side in docs/BENCHMARKS.md), model passes "
             "(encoder + regression head, once per object and call) and score-network "
             "evaluations per published object. tracking = the node's defaults: ids + "
             "smoothing with the model's own start, every track moved by the camera's motion "
             "(ICP on the depth image) between frames, still and confidently tracked objects "
             "estimated every `estimate_every`-th frame only and the filter's pose published "
             "in between; tracking-every-K = the same with estimate_every K (1: every object "
             "every frame); tracking-warm = also warm starts from the previous pose.", "",
             "| mode | " + " | ".join(COLUMNS) + " | jitter mm p50 / p95 | jitter deg p50 / p95 "
             "| id switches | re-inits | model ms/object | model passes/object "
             "| score-net evals/object | objects |",
             "|---" * (len(COLUMNS) + 9) + "|"]
    for r in results:
        a = r["accuracy"]
        lines.append(f"| {r['mode']} | " + " | ".join(_f(a.get(c)) for c in COLUMNS)
                     + f" | {_f(r['jitter_mm_p50'], 2)} / {_f(r['jitter_mm_p95'], 2)}"
                     f" | {_f(r['jitter_deg_p50'], 2)} / {_f(r['jitter_deg_p95'], 2)}"
                     f" | {r['id_switches']} | {r['reinit_total']}"
                     f" | {_f(r['model_ms_per_object'], 2)}"
                     f" | {_f(r.get('model_objects_per_object'), 2)}"
                     f" | {_f(r['network_evaluations_per_object'], 2)} | {r['objects']} |")
    lines += ["", "Per sequence kind (10d5cm; jitter p95 mm / deg; id switches):", "",
              "| kind | " + " | ".join(r["mode"] for r in results) + " |",
              "|---" * (len(results) + 1) + "|"]
    for kind in results[0]["by_kind"]:
        cells = []
        for r in results:
            k = r["by_kind"].get(kind, {})
            cells.append(f"{_f(k.get('accuracy', {}).get('10d5cm'))}; "
                         f"{_f(k.get('jitter_mm_p95'), 2)} / {_f(k.get('jitter_deg_p95'), 2)}; "
                         f"{k.get('id_switches', '-')}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", *criteria(results)]
    reinit = [f"{r['mode']}: {r['reinit']}" for r in results if r["reinit"]]
    if reinit:
        lines += ["Re-initialisations by reason: " + "; ".join(reinit) + ".", ""]
    reanchored = [f"{r['mode']}: {r['reanchored']}" for r in results if r.get("reanchored")]
    if reanchored:
        lines += ["Filters re-anchored (reset to estimates that agree with each other and not "
                  "with the filter, TrackerConfig.reanchor): " + "; ".join(reanchored) + ".",
                  ""]
    return lines


def criteria(results: list[dict]) -> list[str]:
    """Issue 14's done-when figures: each tracking mode against per-frame."""
    by = {r["mode"]: r for r in results}
    if "per-frame" not in by:
        return []
    p = by["per-frame"]
    lines = []
    for mode in by:
        if mode == "per-frame":
            continue
        t = by[mode]
        static_sw = t["by_kind"].get("static", {}).get("id_switches", "-")
        rows = [
            ("10d5cm tracking >= per-frame",
             t["accuracy"]["10d5cm"] >= p["accuracy"]["10d5cm"],
             f"{_f(t['accuracy']['10d5cm'])} vs {_f(p['accuracy']['10d5cm'])}"),
            ("jitter p95 (mm) <= 1/3 of per-frame",
             t["jitter_mm_p95"] <= p["jitter_mm_p95"] / 3,
             f"{_f(t['jitter_mm_p95'], 2)} vs {_f(p['jitter_mm_p95'] / 3, 2)}"),
            ("jitter p95 (deg) <= 1/3 of per-frame",
             t["jitter_deg_p95"] <= p["jitter_deg_p95"] / 3,
             f"{_f(t['jitter_deg_p95'], 2)} vs {_f(p['jitter_deg_p95'] / 3, 2)}"),
            ("0 id switches on static scenes", static_sw == 0, f"{static_sw}"),
            ("score-net evaluations per object <= 1/2",
             t["network_evaluations_per_object"] <= p["network_evaluations_per_object"] / 2,
             f"{_f(t['network_evaluations_per_object'], 2)} vs "
             f"{_f(p['network_evaluations_per_object'] / 2, 2)}"),
        ]
        if "model_objects_per_object" in t:  # the encoder too: what a model call costs
            rows.append(("model passes per object <= 1/2",
                         t["model_objects_per_object"] <= p["model_objects_per_object"] / 2,
                         f"{_f(t['model_objects_per_object'], 2)} vs "
                         f"{_f(p['model_objects_per_object'] / 2, 2)}"))
        lines += [f"Done-when figures of issue 14, {mode} vs per-frame (same sequences; model "
                  "milliseconds are compared in docs/BENCHMARKS.md, timed side by side, not "
                  "here across runs):", ""]
        lines += [f"- {name}: {'met' if ok else 'NOT met'} ({text})" for name, ok, text in rows]
        lines.append("")
    return lines


def calibration_section(data: dict) -> list[str]:
    lines = ["## Covariance calibration", "",
             f"Fitted on {data['calibration']['data']}, measured on {data['test']} (held out, "
             "seeds disjoint from training and from the fit); model "
             f"`{data['model']}`; `{data['calibration']['notes'].get('command', '')}`. "
             "Coverage: percent of error components (translation along the camera axes, "
             "rotation about the object's axes, a symmetric object's y axis left out) within "
             "k reported sigma; a normal distribution gives "
             + " / ".join(f"{v:g}" for v in GAUSS_COVERAGE.values()) + " %.", "",
             "| covariance | within 1 sigma | 2 sigma | 3 sigma | median translation error "
             "(cm) | median reported sigma (cm) | objects |", "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['name']} | {_f(r['1sigma'])} | {_f(r['2sigma'])} | "
                     f"{_f(r['3sigma'])} | {_f(r['median_translation_error_cm'], 2)} | "
                     f"{_f(r['median_translation_sigma_cm'], 2)} | {r['objects']} |")
    lines += ["", "Per-class prior (the covariance published with one sample; 1 sigma, "
              "translation mm along camera x / y / z, rotation deg about object x / y / z; "
              "y of a symmetric class: unobservable), and the factor on a sample covariance's "
              "std:", "", "| class | translation mm | rotation deg | sample scale | objects |",
              "|---|---|---|---|---|"]
    for name, c in data["calibration"]["classes"].items():
        t = " / ".join(_f(1e3 * v) for v in c["translation_sigma"])
        r = " / ".join(_f(math.degrees(v)) for v in c["rotation_sigma"])
        lines.append(f"| {name} | {t} | {r} | {_f(c['sample_scale'])} | {c['objects']} |")
    return lines + [""]

