"""Multi-object tracker (ROS-free): stable ids, warm-started sampling, SE(3) smoothing.

Each frame (`Tracker.step`):
1. associate the frame's objects with the tracks (association.py: class, centre distance,
   box overlap, mask id; gated Hungarian); unmatched objects start new tracks (new ids);
2. choose each object's sampler start: a track seen in the previous frame starts from its
   previous pose, moved by the shift of its point centroid, noised to a small t0 with a few
   steps (`WarmStart`); new, lost or flagged tracks start cold (the sampler's own start);
3. call the predictor (one batched call per start kind); a warm result whose agreement score
   is low or which jumped beyond the gate is redone cold at once (a re-initialisation);
4. fuse each result into its track's filter (smoothing.py); a cold result that jumped resets
   it; tracks unseen for `max_age` seconds are retired.

The node, the bag tool and `posediff-eval --sequence` all call `step` with a predictor over
their backend, so what is measured offline is what runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from posediff_ros.categories import BY_ID
from posediff_ros.geometry import rotation_error_deg
from posediff_ros.runtime.base import PoseBatch, WarmStart
from posediff_ros.tracking.association import AssociationConfig, assign, cost_matrix, point_box
from posediff_ros.tracking.smoothing import FilterNoise, PoseFilter

# (points (B, P, 3), class ids (B,), warm start or None = cold) -> poses
PredictFn = Callable[[np.ndarray, np.ndarray, WarmStart | None], PoseBatch]


@dataclass
class TrackerConfig:
    warm_start: bool = True
    warm_t0: float = 0.25  # VE-SDE time of the noise added to the previous pose
    warm_steps: int = 2
    smoothing: bool = True  # publish the filtered pose (else the raw estimate)
    max_age: float = 1.0  # s: a track unseen this long is retired (its id is not reused)
    max_warm_gap: float = 0.5  # s: a track last seen longer ago restarts cold
    reinit_score: float = 0.5  # agreement score below this: redo cold
    jump_translation: float = 0.04  # m: a result this far from the prediction: redo cold
    jump_rotation_deg: float = 25.0
    # uncertainty of an estimate that comes without a covariance
    sigma_translation: float = 0.01  # m
    sigma_rotation_deg: float = 3.0
    # prediction between frames: the camera's motion fitted to the objects that stayed put
    # (egomotion.py), and for an object that moved on its own the shift of its centroid
    camera_motion: bool = True
    follow_centroid: bool = True
    # the warm start's pose: the last estimate moved by the camera's motion ("raw"), or the
    # filtered pose ("filtered"; smoother, but the estimate then leans on the filter, which
    # leans on the estimate: errors stay)
    warm_from: str = "raw"
    # a cold start every this many warm ones (0 = never): bounds what a chain of warm starts
    # can carry along (the estimate of a warm start leans on the previous one)
    reinit_period: int = 15
    association: AssociationConfig = field(default_factory=AssociationConfig)
    noise: FilterNoise = field(default_factory=FilterNoise)


@dataclass
class Observation:
    """One object of a frame before inference."""

    mask_id: int
    class_id: int
    points: np.ndarray  # (P, 3) camera frame, what the model sees
    centroid: np.ndarray | None = None  # (3,) default: the points' mean
    box: tuple[np.ndarray, np.ndarray] | None = None  # axis-aligned bounds of the points

    def __post_init__(self):
        if self.centroid is None:
            self.centroid = self.points.mean(axis=0).astype(np.float64)
        if self.box is None:
            self.box = point_box(self.points)


@dataclass
class Track:
    id: int
    class_id: int
    mask_id: int
    centroid: np.ndarray
    box: tuple[np.ndarray, np.ndarray]
    last_seen: float
    filter: PoseFilter
    size: np.ndarray
    hits: int = 1
    warm_run: int = 0  # warm starts since the last cold one
    flagged: str = ""  # why the next start must be cold (set by a failed check)
    raw: tuple[np.ndarray, np.ndarray] | None = None  # the last estimate (R, t), moved along


@dataclass
class TrackedObject:
    """A pipeline.DetectedObject with the track's id (`instance_id`), so the same message
    builders take it; the pose is the filtered one when smoothing is on."""

    instance_id: int  # the track id
    class_id: int
    rotation: np.ndarray
    translation: np.ndarray
    size: np.ndarray
    score: float
    covariance: np.ndarray | None
    points: np.ndarray
    mask_id: int
    raw_rotation: np.ndarray
    raw_translation: np.ndarray
    raw_covariance: np.ndarray | None
    warm: bool  # this frame's estimate came from a warm start
    reinit: str = ""  # why a known track was started cold this frame ("" = it was not)
    hypotheses: list = field(default_factory=list)  # (per-frame mode only: pipeline.process)


@dataclass
class TrackerStats:
    frames: int = 0
    objects: int = 0
    warm: int = 0  # objects whose final estimate came from a warm start
    cold: int = 0
    new_tracks: int = 0
    retired: int = 0
    reinit: Counter = field(default_factory=Counter)  # reason -> count
    model_objects: int = 0  # objects passed to the model (a redone object counts twice)
    model_steps: int = 0  # sampler steps summed over those objects


class Tracker:
    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.reset()

    def reset(self) -> None:
        """Forget every track (ids start again at 1)."""
        self.tracks: dict[int, Track] = {}
        self.next_id = 1
        self.last_stamp: float | None = None
        self.stats = TrackerStats()

    # --- one frame -------------------------------------------------------------------------

    def step(self, observations: list[Observation], predict: PredictFn, stamp: float,
             cold_steps: int = 0) -> list[TrackedObject]:
        """Track one frame (stamp in seconds; `cold_steps` only feeds the cost counters)."""
        if self.last_stamp is not None and stamp < self.last_stamp:
            self.reset()  # time went back (a bag restarted, a simulation reset)
        matches = self._associate(observations, stamp)
        motion = self._camera_motion(matches, observations)
        starts = [self._start(obs, matches.get(j), stamp, motion.get(j, False))
                  for j, obs in enumerate(observations)]
        poses = self._infer(observations, starts, predict, cold_steps)
        out = [self._fuse(obs, matches.get(j), starts[j], poses[j], stamp, bool(motion.get(j)))
               for j, obs in enumerate(observations)]
        self._retire(stamp)
        self.last_stamp = stamp
        self.stats.frames += 1
        self.stats.objects += len(out)
        return out

    def _associate(self, observations: list[Observation], stamp: float) -> dict[int, Track]:
        tracks = list(self.tracks.values())
        dts = np.array([stamp - t.last_seen for t in tracks])
        pairs = assign(cost_matrix(tracks, observations, dts, self.config.association))
        return {j: tracks[i] for i, j in pairs}

    def _camera_motion(self, matches: dict[int, Track], observations) -> dict:
        """{observation index: CameraMotion, or None where the object moved on its own} for
        the objects seen in the previous frame; empty without an estimate."""
        from posediff_ros.tracking.egomotion import camera_motion

        if not self.config.camera_motion or self.last_stamp is None:
            return {}
        seen = [j for j, t in matches.items() if t.last_seen == self.last_stamp]
        motion = camera_motion(np.array([matches[j].centroid for j in seen]).reshape(-1, 3),
                               np.array([observations[j].centroid for j in seen]).reshape(-1, 3))
        if motion is None:
            return {}
        return {j: motion if ok else None for j, ok in zip(seen, motion.inliers, strict=True)}

    def _start(self, obs: Observation, track: Track | None, stamp: float, motion=False):
        """(rotation, translation) prior of a warm start, or a string: why it starts cold.
        motion: the camera's (CameraMotion), None for an object that moved on its own, False
        when there is no estimate."""
        cfg = self.config
        if track is None:
            return "new"
        dt = stamp - track.last_seen
        R_raw, t_raw = track.raw
        if motion:
            track.filter.predict(dt, motion=motion)
            track.raw = (motion.R @ R_raw, motion.R @ t_raw + motion.t)
        else:  # no camera motion known, or this object moved on its own (motion None)
            shift = obs.centroid - track.centroid if cfg.follow_centroid else None
            track.filter.predict(dt, shift=shift, moved=motion is None)
            track.raw = (R_raw, t_raw + (0.0 if shift is None else shift))
        if track.flagged:
            return track.flagged
        if motion is None:  # it moved on its own (picked up): its last pose says little
            return "moved"
        if cfg.reinit_period and track.warm_run >= cfg.reinit_period:
            return "period"
        if self.last_stamp is None or track.last_seen < self.last_stamp:
            return "unseen"
        if dt > cfg.max_warm_gap:
            return "gap"
        if not cfg.warm_start:
            return "off"
        if cfg.warm_from == "raw":
            return track.raw[0].copy(), track.raw[1].copy()
        return track.filter.R.copy(), track.filter.t.copy()

    def _infer(self, observations, starts, predict: PredictFn, cold_steps: int) -> list:
        """Per object: (rotation, translation, size, score, covariance, warm)."""
        cfg = self.config
        out: list = [None] * len(observations)
        warm = [j for j, s in enumerate(starts) if isinstance(s, tuple)]
        cold = [j for j, s in enumerate(starts) if not isinstance(s, tuple)]
        if warm:
            ws = WarmStart(np.stack([starts[j][0] for j in warm]),
                           np.stack([starts[j][1] for j in warm]), cfg.warm_t0, cfg.warm_steps)
            batch = self._call(predict, observations, warm, ws, cfg.warm_steps)
            for k, j in enumerate(warm):
                why = self._check(batch, k, starts[j], observations[j].class_id)
                if why:
                    starts[j] = why
                    cold.append(j)
                else:
                    out[j] = (*_row(batch, k), True)
        if cold:
            cold.sort()
            batch = self._call(predict, observations, cold, None, cold_steps)
            for k, j in enumerate(cold):
                out[j] = (*_row(batch, k), False)
        return out

    def _call(self, predict, observations, index: list[int], start, steps: int) -> PoseBatch:
        self.stats.model_objects += len(index)
        self.stats.model_steps += len(index) * steps
        points = np.stack([observations[j].points for j in index])
        classes = np.array([observations[j].class_id for j in index], np.int64)
        return predict(points, classes, start)

    def _check(self, batch: PoseBatch, k: int, prior, class_id: int) -> str:
        """Why a warm result must be redone cold ("" = it is fine)."""
        cfg = self.config
        if float(batch.score[k]) < cfg.reinit_score:
            return "score"
        if _jumped(batch.rotation[k], batch.translation[k], prior, class_id, cfg):
            return "jump"
        return ""

    def _fuse(self, obs: Observation, track: Track | None, start, pose, stamp: float,
              stayed: bool = False):
        """Fold one estimate into its track. `stayed`: the camera-motion fit says the object
        did not move, so a cold estimate far off is the model's error (the robust filter
        weighs it down) rather than a move (which restarts the filter)."""
        R, t, size, score, cov, warm = pose
        cfg = self.config
        meas_cov = cov if cov is not None else self._default_covariance(R)
        if track is None:
            track = self._new_track(obs, R, t, size, meas_cov, stamp)
            reinit = ""
        else:
            reinit = "" if warm or start == "off" else start
            if reinit:
                self.stats.reinit[reinit] += 1
            prior = (track.filter.R, track.filter.t)
            if not warm and not stayed and _jumped(R, t, prior, obs.class_id, cfg):
                track.filter.reset(R, t, meas_cov)  # it really moved: start the filter again
            else:
                track.filter.update(R, t, meas_cov)
            track.size = track.size + (size - track.size) / min(track.hits + 1, 10)
            track.hits += 1
        track.mask_id, track.centroid, track.box = obs.mask_id, obs.centroid, obs.box
        track.raw = (R, t)
        track.last_seen, track.flagged = stamp, ""
        track.warm_run = track.warm_run + 1 if warm else 0
        self.stats.warm += warm
        self.stats.cold += not warm
        smooth = cfg.smoothing
        return TrackedObject(
            instance_id=track.id, class_id=obs.class_id,
            rotation=track.filter.R.copy() if smooth else R,
            translation=track.filter.t.copy() if smooth else t,
            size=track.size.copy() if smooth else size, score=score,
            # the filter's covariance stands on the estimates' (calibrated) ones; without
            # those (no calibration, one sample) nothing was estimated: None
            covariance=(track.filter.covariance if cov is not None else None) if smooth else cov,
            points=obs.points,
            mask_id=obs.mask_id, raw_rotation=R, raw_translation=t, raw_covariance=cov,
            warm=warm, reinit=reinit)

    def _new_track(self, obs: Observation, R, t, size, cov, stamp: float) -> Track:
        symmetric = BY_ID[obs.class_id].y_symmetric
        track = Track(self.next_id, obs.class_id, obs.mask_id, obs.centroid, obs.box, stamp,
                      PoseFilter(R, t, cov, self.config.noise, symmetric), np.asarray(size))
        self.tracks[track.id] = track
        self.next_id += 1
        self.stats.new_tracks += 1
        return track

    def _retire(self, stamp: float) -> None:
        for tid in [t.id for t in self.tracks.values()
                    if stamp - t.last_seen > self.config.max_age]:
            del self.tracks[tid]
            self.stats.retired += 1

    def _default_covariance(self, R: np.ndarray) -> np.ndarray:
        cfg = self.config
        return np.diag([cfg.sigma_translation**2] * 3
                       + [np.deg2rad(cfg.sigma_rotation_deg) ** 2] * 3)


def observations(usable: list[tuple[int, int, np.ndarray]],
                 centres: np.ndarray) -> list[Observation]:
    """Observations of pipeline.extract's (mask id, class, points), each centred on the mean
    of ALL its valid depth pixels (`centres`, Pipeline.extract_centred): the model's few
    hundred subsampled points move their mean by millimetres from frame to frame, which the
    warm start and the filter would inherit."""
    return [Observation(inst, cls, points, np.asarray(centre, np.float64))
            for (inst, cls, points), centre in zip(usable, centres, strict=True)]


def _row(batch: PoseBatch, k: int):
    cov = None if batch.covariance is None else np.asarray(batch.covariance[k], np.float64)
    if cov is not None and cov[0, 0] < 0:  # calibration.NOT_ESTIMATED
        cov = None
    return (np.asarray(batch.rotation[k], np.float64),
            np.asarray(batch.translation[k], np.float64),
            np.asarray(batch.size[k], np.float64), float(batch.score[k]), cov)


def _jumped(R, t, prior, class_id: int, cfg: TrackerConfig) -> bool:
    """Whether (R, t) is beyond the jump gate from the prior pose (symmetry-aware)."""
    R_prior, t_prior = prior
    if np.linalg.norm(np.asarray(t) - t_prior) > cfg.jump_translation:
        return True
    angle = rotation_error_deg(R, R_prior, BY_ID[class_id].y_symmetric)
    return bool(angle > cfg.jump_rotation_deg)
