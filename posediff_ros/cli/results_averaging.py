"""`posediff-results averaging` (cmd_averaging in results.py): accuracy vs cost of test-time
averaging (averaging.py) on the held-out test cache; results_report.averaging_section writes
it into RESULTS.md.

Per setting (K point subsets x S samples, outlier rejection on or off) and per repeat r (a
new draw of the subsets and of the sampler noise, as two runs of the node on the same
objects): each object's K subsets of the model's point count are drawn without replacement
from its cached points, predicted by the torch backend (the node's default), and averaged
as the pipeline averages them. Reported: the class-mean 10d5cm and 5d2cm over the repeats
(mean, min and max: how far two runs can differ), the share of objects whose 10d5cm verdict
changes between repeats, and the cost per object (batch 1: the K x S predictions and the
averaging; all settings timed in interleaved rounds).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ..averaging import AveragingConfig, average_batch
from ..metrics import accuracy_table, object_errors
from ..runtime.torch_backend import TorchBackend

# (subsets K, samples S, reject outliers): one subset and one sample first (no averaging)
SETTINGS = ((1, 1, True), (2, 1, True), (4, 1, True), (8, 1, True), (8, 1, False),
            (1, 4, True), (1, 8, True), (4, 4, True), (4, 4, False))
COLUMNS = ("10d5cm", "5d2cm", "camera 10d5cm")  # class means, and the hardest class


def draw_subsets(points: np.ndarray, k: int, n: int, seed: int, first: int = 0) -> np.ndarray:
    """(M, P0, 3) cached points of objects first.. -> (M * k, n, 3): object i's k subsets of n
    points (without replacement) in rows i*k .. i*k+k-1, from seed (seed, first + i) alone."""
    out = np.empty((len(points) * k, n, 3), np.float32)
    for i, pts in enumerate(points):
        rng = np.random.default_rng([seed, first + i])
        for j in range(k):
            out[i * k + j] = pts[rng.choice(len(pts), n, replace=False)]
    return out


def predict(backend: TorchBackend, points: np.ndarray, class_ids: np.ndarray,
            config: AveragingConfig, seed: int, batch: int = 32):
    """Averaged rotation (M, 3, 3), translation (M, 3), size (M, 3) of every object."""
    rot, trans, size = [], [], []
    for s in range(0, len(points), batch):
        cls = class_ids[s:s + batch]
        rows = draw_subsets(points[s:s + batch], config.subsets, backend.num_points, seed, s)
        poses = backend.predict(rows, np.repeat(cls, config.subsets))
        for a in average_batch(poses, cls, config):
            rot.append(a.rotation), trans.append(a.translation), size.append(a.size)
    return np.stack(rot), np.stack(trans), np.stack(size)


def costs_ms(backend: TorchBackend, test: dict, settings, rounds: int = 40) -> list[float]:
    """Median ms for one object (batch 1: subsets, the K x S predictions, the averaging) per
    setting, measured in interleaved rounds (one object per setting per round), so that the
    load of a shared machine drifts over all settings alike."""
    stored, times = backend.settings, [[] for _ in settings]
    points, cls = test["points"], test["class_ids"]
    for r in range(rounds + 1):  # round 0 warms up
        i = r % len(points)
        for j, (k, s, reject) in enumerate(settings):
            backend.configure(stored.override(num_samples=s, seed=r))
            config = AveragingConfig(subsets=k, reject_outliers=reject)
            t0 = time.perf_counter()
            predict(backend, points[i:i + 1], cls[i:i + 1], config, seed=r)
            if r:
                times[j].append((time.perf_counter() - t0) * 1e3)
    backend.configure(stored)
    return [statistics.median(t) for t in times]


def setting_row(backend: TorchBackend, test: dict, k: int, s: int, reject: bool,
                repeats: int) -> dict:
    points, cls = test["points"], test["class_ids"]
    config = AveragingConfig(subsets=k, reject_outliers=reject)
    means, passed = {c: [] for c in COLUMNS}, []
    for r in range(repeats):
        backend.configure(backend.settings.override(num_samples=s, seed=r))
        rot, trans, size = predict(backend, points, cls, config, seed=r)
        err = object_errors(rot, trans, test["rotations"], test["translations"], cls,
                            test["handle_visible"], size, test["sizes"])
        table = accuracy_table(err)
        for c in COLUMNS:
            row_name, _, col = c.rpartition(" ")  # "camera 10d5cm" or "10d5cm" (the mean)
            row_name = row_name or "mean"
            means[c].append(table[row_name][col] if row_name in table else float("nan"))
        passed.append((err.rot_deg <= 10.0) & (err.trans_cm <= 5.0))
    passed = np.stack(passed)
    row = {"subsets": k, "samples": s, "reject_outliers": reject,
           "flip_pct": float(100 * (passed.any(0) & ~passed.all(0)).mean())}
    for c in COLUMNS:
        row[c] = {"mean": float(np.mean(means[c])), "min": float(np.min(means[c])),
                  "max": float(np.max(means[c])), "runs": [float(v) for v in means[c]]}
    return row


def measure(model, test: dict, repeats: int = 5, settings=SETTINGS) -> dict:
    """What docs/results/averaging.json holds besides its provenance. test: the cache's
    points (M, P0, 3) float32, class_ids, rotations, translations, sizes, handle_visible."""
    backend = TorchBackend(model)
    stored = backend.settings
    rows = []
    for k, s, reject in settings:
        backend.configure(stored)
        rows.append(setting_row(backend, test, k, s, reject, repeats))
    backend.configure(stored)
    for row, ms in zip(rows, costs_ms(backend, test, settings), strict=True):
        row["ms"] = ms
    shown = {f: getattr(stored, f) for f in ("steps", "solver", "w_schedule", "w_max", "init")}
    return {"repeats": repeats, "sampler": shown, "num_points": backend.num_points,
            "cached_points": int(test["points"].shape[1]), "rows": rows}
