"""`posediff-results hypotheses` (cmd_hypotheses in results.py): top-1 vs top-k accuracy of
the pose hypotheses (the modes of num_samples samples, hypotheses.py) on the held-out test
cache, and what they cost; results_report.hypotheses_section writes it into RESULTS.md.

Per object, from the same N samples: one sample (what num_samples = 1 gives), the mean of
the N samples (what the node published for num_samples > 1 before hypotheses), the heaviest
mode (results[0]) and "any of the k heaviest modes" (results[0..k-1]: a planner that can
check k candidates). Clustering as in the node: the mug's handle visibility unknown.
Errors: the NOCS rules for all classes (a mug with a hidden handle counts its up axis only);
for hidden-handle mugs also with the yaw counted (the handle's direction, what a grasp needs).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from ..categories import BY_NAME
from ..hypotheses import ClusterConfig, object_hypotheses
from ..metrics import symmetric_mask
from ..model.posenet import camera_samples_in_batches
from ..model.rotation import mean_rotation
from ..model.sampler import SamplerSettings

COLUMNS = ("10d5cm", "5d2cm")
THRESHOLDS = {"10d5cm": (10.0, 5.0), "5d2cm": (5.0, 2.0)}


@torch.no_grad()
def sample_all(model, cond, cent, scale, reg, settings: SamplerSettings, seed: int = 0,
               batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Every one of settings.num_samples samples: rotations (M, N, 3, 3), translations
    (M, N, 3), float64."""
    rots, transs = [], []
    for r, t in camera_samples_in_batches(model, cond, cent, scale, reg, settings, seed, batch):
        rots.append(r.double().numpy()), transs.append(t.double().numpy())
    return np.concatenate(rots), np.concatenate(transs)


def errors(rot, trans, gt_rot, gt_trans, symmetric) -> tuple[np.ndarray, np.ndarray]:
    """Rotation error (deg; symmetric: up axes only) and translation error (cm), batched over
    leading axes of rot/trans against gt broadcast along them."""
    from ..geometry import rotation_error_deg, translation_error_cm

    return rotation_error_deg(rot, gt_rot, symmetric), translation_error_cm(trans, gt_trans)


def within(rot_err, trans_err, column: str) -> np.ndarray:
    deg, cm = THRESHOLDS[column]
    return (rot_err <= deg) & (trans_err <= cm)


def candidates(rots, transs, class_ids, max_k: int, config: ClusterConfig):
    """Per object: the k heaviest modes padded to max_k by repeating the last (so "any of the
    first k" is a plain any over an axis), the mode counts and the clustering time (ms)."""
    m = len(rots)
    cand_r = np.zeros((m, max_k, 3, 3))
    cand_t = np.zeros((m, max_k, 3))
    modes = np.zeros(m, np.int64)
    ms = []
    for i in range(m):
        t0 = time.perf_counter()
        hyps = object_hypotheses(rots[i], transs[i], int(class_ids[i]), config=config)
        ms.append((time.perf_counter() - t0) * 1e3)
        modes[i] = len(hyps)
        for k in range(max_k):
            h = hyps[min(k, len(hyps) - 1)]
            cand_r[i, k], cand_t[i, k] = h.rotation, h.translation
    return cand_r, cand_t, modes, ms


def accuracy_rows(test: dict, rots, transs, max_k: int, config: ClusterConfig) -> dict:
    """{group: {row: {column: %}}} for the groups "all classes" (mean over classes),
    "hidden-handle mugs (NOCS)" and "hidden-handle mugs, yaw counted"."""
    cls = test["class_ids"].numpy()
    gt_r, gt_t = test["rotations"], test["translations"]
    sym = symmetric_mask(cls, test["handle_visible"])
    hidden = (cls == BY_NAME["mug"].id) & ~test["handle_visible"]
    cand_r, cand_t, modes, ms = candidates(rots, transs, cls, max_k, config)
    mean_r = mean_rotation(torch.from_numpy(rots), dim=1).numpy()
    poses = {"one sample (num_samples = 1)": (rots[:, :1], transs[:, :1]),
             f"mean of the {rots.shape[1]} samples": (mean_r[:, None], transs.mean(1)[:, None]),
             "top-1 mode (results[0])": (cand_r[:, :1], cand_t[:, :1])}
    for k in range(2, max_k + 1):
        poses[f"any of the top-{k} modes (results[0..{k - 1}])"] = (cand_r[:, :k], cand_t[:, :k])
    groups = {"all classes (mean over classes)": (np.ones(len(cls), bool), sym),
              "hidden-handle mugs (NOCS: up axis only)": (hidden, sym),
              "hidden-handle mugs, yaw counted": (hidden, np.zeros(len(cls), bool))}
    out: dict = {}
    for group, (sel, symmetric) in groups.items():
        out[group] = {}
        for name, (r, t) in poses.items():
            re, te = errors(r, t[..., :], gt_r[:, None], gt_t[:, None], symmetric[:, None])
            row = {}
            for col in COLUMNS:
                ok = within(re, te, col).any(axis=1)
                if group.startswith("all"):
                    row[col] = float(np.mean([100 * ok[sel & (cls == c)].mean()
                                              for c in np.unique(cls[sel])]))
                else:
                    row[col] = float(100 * ok[sel].mean())
            out[group][name] = row
        out[group]["_objects"] = int(sel.sum())
        out[group]["_modes_mean"] = float(modes[sel].mean())
        out[group]["_several_modes_pct"] = float(100 * (modes[sel] > 1).mean())
    out["_cluster_ms_median"] = statistics.median(ms)
    return out


def latency(model, test, settings: SamplerSettings, num_samples: int, config: ClusterConfig,
            n: int = 30) -> dict:
    """Median ms for one object (batch 1): encoder + sampling of num_samples, and the
    clustering of those samples on top."""
    sample_ms, cluster_ms = [], []
    for k in range(n + 2):  # the first two warm up
        i = k % len(test["class_ids"])
        pts, cls = test["points"][i:i + 1], test["class_ids"][i:i + 1]
        t0 = time.perf_counter()
        cond, c, s = model.condition(pts, cls)
        reg = model.regress(cond)
        r, t = sample_all(model, cond, c, s, torch.cat([reg["rot6d"], reg["offset"]], -1),
                          settings.override(num_samples=num_samples), seed=k)
        t1 = time.perf_counter()
        if num_samples > 1:
            object_hypotheses(r[0], t[0], int(cls[0]), config=config)
        t2 = time.perf_counter()
        if k >= 2:
            sample_ms.append((t1 - t0) * 1e3), cluster_ms.append((t2 - t1) * 1e3)
    return {"sample_ms": statistics.median(sample_ms),
            "cluster_ms": statistics.median(cluster_ms)}


def measure(model, test: dict, cond, cent, scale, reg, samples: int, top_k: int) -> dict:
    """Both sampler starts (the model's stored one first, then noise): accuracy rows per group
    and the cost; what docs/results/hypotheses.json holds besides its provenance."""
    sd = model.cfg.sampler
    config = ClusterConfig()
    runs = []
    for init in dict.fromkeys([sd.init, "noise"]):
        settings = sd.override(init=init, num_samples=samples, seed=0)
        rots, transs = sample_all(model, cond, cent, scale, reg, settings)
        with torch.no_grad():
            cost = {n: latency(model, test, settings, n, config) for n in (1, samples)}
        shown = {k: getattr(settings, k) for k in ("steps", "solver", "w_schedule", "w_max",
                                                   "init")}
        runs.append({"settings": shown, "samples": samples,
                     "groups": accuracy_rows(test, rots, transs, top_k, config),
                     "latency": {str(n): v for n, v in cost.items()}})
    return {"top_k": top_k, "runs": runs,
            "cluster": {"rotation_deg": config.rotation_deg,
                        "translation_m": config.translation_m}}
