"""Tracking against per-frame estimation on image sequences (the core of
`posediff-eval --sequence`): per-frame NOCS accuracies, jitter, id switches,
re-initialisations and the model's cost per object.

Definitions (docs/RESULTS.md repeats them):
- accuracy: per-object NOCS accuracies of the published poses over all frames (mean over
  classes), objects cut with the ground-truth masks;
- jitter: for an object that did not move in the world between two consecutive frames, the
  change of its pose error from one frame to the next: |e_t(k) - e_t(k-1)| in mm with
  e_t = t_est - t_true, and the angle of E(k) E(k-1)^T in degrees with E = R_est R_true^T
  (rotation about the symmetry axis ignored for symmetric objects). A still camera makes it
  the plain frame-to-frame change of the estimate; a moving one subtracts the true change;
- id switches: over each true object's frames, how often its published id differs from the
  id it had the last time it was published;
- re-initialisations: how often a known track was started cold again (tracker counters);
- cost: model-stage milliseconds per object (all predictor calls of a frame, per object
  published) and score-network evaluations per object.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from posediff_ros.data.sequences import Sequence, SequenceFrame, shuffle_mask_ids
from posediff_ros.data.synthetic import BACKGROUND
from posediff_ros.geometry import align_symmetric_rotation
from posediff_ros.metrics import accuracy_table, object_errors, symmetric_mask
from posediff_ros.pipeline import Pipeline
from posediff_ros.tracking.smoothing import so3_log
from posediff_ros.tracking.tracker import Observation, PredictFn, Tracker, observations

# tracking: ids + smoothing with the model's own (cold) start, the node's defaults (still,
# confident tracks estimated every TrackerConfig.estimate_every-th frame); tracking-every-K:
# the same with estimate_every = K (1: every object every frame); tracking-warm: also warm
# starts from the previous pose (TrackerConfig.warm_*)
MODES = ("per-frame", "tracking", "tracking-every-1", "tracking-warm")


@dataclass
class Record:
    """One published object of one frame, with its ground truth."""

    sequence: str
    kind: str
    frame: int
    identity: int  # the true object (its index in the scene + 1)
    published_id: int
    class_id: int
    R: np.ndarray
    t: np.ndarray
    size: np.ndarray
    R_gt: np.ndarray
    t_gt: np.ndarray
    size_gt: np.ndarray
    handle_visible: bool
    moving: bool  # moved in the world since the previous frame


@dataclass
class ModeRun:
    mode: str
    records: list[Record] = field(default_factory=list)
    model_ms: float = 0.0  # all predictor calls
    total_ms: float = 0.0  # extraction excluded: association + model + filter
    reinit: Counter = field(default_factory=Counter)
    new_tracks: int = 0
    warm: int = 0
    cold: int = 0
    model_objects: int = 0
    coasted: int = 0  # published from the filter alone (TrackerConfig.estimate_every)
    reanchored: int = 0  # filters reset to agreeing estimates (TrackerConfig.reanchor)
    forced: Counter = field(default_factory=Counter)  # why one due to coast was estimated
    network_evaluations: int = 0  # score-network calls summed over objects
    model_objects_by_kind: Counter = field(default_factory=Counter)  # sequence kind -> passes


def frame_inputs(frame: SequenceFrame, mask_ids: str, rng: np.random.Generator):
    """(mask with 0 = background, {mask id: class}, {mask id: identity}) of a frame;
    mask_ids 'shuffled' renumbers the ids at random (a segmenter that does not track)."""
    if mask_ids == "shuffled":
        mask, identity = shuffle_mask_ids(frame, rng)
    else:
        mask, identity = frame.mask, {g.instance_id: g.instance_id for g in frame.instances}
    classes = {m: next(g.class_id for g in frame.instances if g.instance_id == i)
               for m, i in identity.items()}
    return np.where(mask == BACKGROUND, 0, mask).astype(np.int32), classes, identity


def run_sequence(seq: Sequence, pipeline: Pipeline, predict: PredictFn, run: ModeRun,
                 tracker: Tracker | None, mask_ids: str = "shuffled", seed: int = 0,
                 cold_steps: int = 8) -> None:
    """Play one sequence through per-frame estimation (tracker None) or a tracker."""
    rng = np.random.default_rng(seed)
    if tracker is not None:
        tracker.reset()

    def timed(points, classes, warm):
        start = time.perf_counter()
        out = predict(points, classes, warm)
        run.model_ms += 1e3 * (time.perf_counter() - start)
        return out

    passes_before = run.model_objects
    for frame in seq.frames:
        mask, classes, identity = frame_inputs(frame, mask_ids, rng)
        depth = frame.depth.astype(np.float32) / 1000.0
        usable, _, centres = pipeline.extract_centred(depth, mask, seq.K, classes, background=0)
        obs = observations(usable, centres)
        start = time.perf_counter()
        if tracker is None:
            published = _per_frame(obs, timed, run, cold_steps)
        else:
            published = tracker.step(obs, timed, frame.stamp, cold_steps, depth, seq.K)
        run.total_ms += 1e3 * (time.perf_counter() - start)
        gts = {g.instance_id: g for g in frame.instances}
        for o in published:
            g = gts[identity[o.mask_id]]
            run.records.append(Record(
                seq.name, seq.kind, frame.index, g.instance_id, o.instance_id, o.class_id,
                o.rotation, o.translation, o.size, g.rotation, g.translation, g.size,
                g.handle_visible, frame.moving[g.instance_id]))
    if tracker is not None:
        s = tracker.stats
        run.reinit.update(s.reinit)
        run.new_tracks += s.new_tracks
        run.warm += s.warm
        run.cold += s.cold
        run.model_objects += s.model_objects
        run.coasted += s.coasted
        run.reanchored += s.reanchored
        run.forced.update(s.forced)
        run.network_evaluations += s.model_steps
    # per kind as well, from both modes' counts (per-frame counts in _per_frame): the cost
    # target is set on static scenes; a moving camera may cost more
    run.model_objects_by_kind[seq.kind] += run.model_objects - passes_before


@dataclass
class _Published:  # what per-frame mode publishes: the pose, id = the mask id
    instance_id: int
    mask_id: int
    class_id: int
    rotation: np.ndarray
    translation: np.ndarray
    size: np.ndarray


def _per_frame(obs: list[Observation], predict, run: ModeRun, steps: int) -> list[_Published]:
    if not obs:
        return []
    batch = predict(np.stack([o.points for o in obs]),
                    np.array([o.class_id for o in obs], np.int64), None)
    run.model_objects += len(obs)
    run.network_evaluations += len(obs) * steps
    run.cold += len(obs)
    return [_Published(o.mask_id, o.mask_id, o.class_id,
                       np.asarray(batch.rotation[k], np.float64),
                       np.asarray(batch.translation[k], np.float64),
                       np.asarray(batch.size[k], np.float64)) for k, o in enumerate(obs)]


# --- metrics ------------------------------------------------------------------------------


def accuracy(records: list[Record]) -> dict:
    """NOCS per-object accuracy table (percent) of the records."""
    if not records:
        return {}
    a = lambda name: np.stack([getattr(r, name) for r in records])  # noqa: E731
    errs = object_errors(a("R"), a("t"), a("R_gt"), a("t_gt"), a("class_id"),
                         a("handle_visible"), a("size"), a("size_gt"))
    return accuracy_table(errs)


def _error(r: Record) -> tuple[np.ndarray, np.ndarray]:
    """Translation error (m) and rotation error E = R_est R_true^T, symmetry-aligned."""
    R = r.R
    if symmetric_mask(np.array([r.class_id]), np.array([r.handle_visible]))[0]:
        R = align_symmetric_rotation(R, r.R_gt)
    return r.t - r.t_gt, R @ r.R_gt.T


def jitter(records: list[Record]) -> tuple[np.ndarray, np.ndarray]:
    """(mm, deg) per pair of consecutive frames in which a still object was published."""
    by_object: dict[tuple[str, int], dict[int, Record]] = {}
    for r in records:
        by_object.setdefault((r.sequence, r.identity), {})[r.frame] = r
    mm, deg = [], []
    for frames in by_object.values():
        for k, r in frames.items():
            prev = frames.get(k - 1)
            if prev is None or r.moving:
                continue
            (t1, E1), (t0, E0) = _error(r), _error(prev)
            mm.append(1e3 * np.linalg.norm(t1 - t0))
            deg.append(np.degrees(np.linalg.norm(so3_log(E1 @ E0.T))))
    return np.array(mm), np.array(deg)


def id_switches(records: list[Record]) -> int:
    """Changes of the published id of each true object between its published frames."""
    last: dict[tuple[str, int], int] = {}
    switches = 0
    for r in sorted(records, key=lambda r: (r.sequence, r.frame)):
        key = (r.sequence, r.identity)
        if key in last and last[key] != r.published_id:
            switches += 1
        last[key] = r.published_id
    return switches


def summary(run: ModeRun) -> dict:
    """The figures of one mode over its records (overall and per sequence kind)."""
    mm, deg = jitter(run.records)
    n = max(len(run.records), 1)
    out = {
        "mode": run.mode, "objects": len(run.records),
        "frames": len({(r.sequence, r.frame) for r in run.records}),
        "accuracy": accuracy(run.records).get("mean", {}),
        "jitter_mm_p50": _pct(mm, 50), "jitter_mm_p95": _pct(mm, 95),
        "jitter_deg_p50": _pct(deg, 50), "jitter_deg_p95": _pct(deg, 95),
        "jitter_pairs": len(mm), "id_switches": id_switches(run.records),
        "reinit": dict(run.reinit), "reinit_total": sum(run.reinit.values()),
        "new_tracks": run.new_tracks, "warm": run.warm, "cold": run.cold,
        "coasted": run.coasted, "forced": dict(run.forced), "reanchored": run.reanchored,
        "model_ms_per_object": run.model_ms / n, "total_ms_per_object": run.total_ms / n,
        "network_evaluations_per_object": run.network_evaluations / n,
        "model_objects_per_object": run.model_objects / n,
    }
    kinds = sorted({r.kind for r in run.records})
    out["by_kind"] = {}
    for kind in kinds:
        recs = [r for r in run.records if r.kind == kind]
        mm, deg = jitter(recs)
        out["by_kind"][kind] = {
            "objects": len(recs), "accuracy": accuracy(recs).get("mean", {}),
            "jitter_mm_p50": _pct(mm, 50), "jitter_mm_p95": _pct(mm, 95),
            "jitter_deg_p50": _pct(deg, 50), "jitter_deg_p95": _pct(deg, 95),
            "id_switches": id_switches(recs),
            "model_objects_per_object": run.model_objects_by_kind[kind] / max(len(recs), 1)}
    return out


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")
