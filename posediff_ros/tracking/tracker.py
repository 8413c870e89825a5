"""Multi-object tracker (ROS-free): stable ids, warm-started sampling, SE(3) smoothing.

Each frame (`Tracker.step`):
1. associate the frame's objects with the tracks (association.py: class, centre distance,
   box overlap, mask id; gated Hungarian); unmatched objects start new tracks (new ids);
2. the camera's motion since the previous frame: ICP of the two depth images
   (odometry.py), else a rigid fit of the objects' centroids (egomotion.py); objects it does
   not explain moved on their own; every track's filter is moved by it (or, for an object
   that moved on its own, by the shift of its centroid);
3. choose each object's sampler start: a track seen in the previous frame starts from its
   previous pose, so moved, noised to a small t0 with a few steps (`WarmStart`); new, lost
   or flagged tracks start cold (the sampler's own start); with `estimate_every` > 1 a
   still, confident track skips the model between its estimates (its prediction is
   published);
4. call the predictor (one batched call per start kind); a warm result whose agreement score
   is low or which jumped beyond the gate is redone cold at once (a re-initialisation);
5. fuse each result into its track's filter (smoothing.py); a cold result that jumped resets
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
from posediff_ros.tracking.egomotion import CameraMotion, camera_motion
from posediff_ros.tracking.odometry import OdometryConfig, icp, off_surface, prepare
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
    # with a depth image: the camera's motion from ICP on the whole image (odometry.py), the
    # centroid fit only deciding which objects moved on their own; without: the centroid fit
    depth_odometry: bool = True
    odometry: OdometryConfig = field(default_factory=OdometryConfig)
    # the warm start's pose: the last estimate moved by the camera's motion ("raw"), or the
    # filtered pose ("filtered"; smoother, but the estimate then leans on the filter, which
    # leans on the estimate: errors stay)
    warm_from: str = "raw"
    # a cold start every this many warm ones (0 = never): bounds what a chain of warm starts
    # can carry along (the estimate of a warm start leans on the previous one)
    reinit_period: int = 15
    # re-estimate a still, confidently tracked object only every this many frames (all such
    # tracks in the same frames) and publish its filtered pose moved by the camera's motion in
    # between (1 = every frame). Still: the
    # camera-motion fit explains it and its centroid is within `coast_max_shift` of where it
    # was at its last estimate (moved along); confident: its last score >= reinit_score and
    # at least `estimate_every` estimates so far. Anything else is estimated at once.
    # 3: on the validation sequences (data/sequences_val_v2 / _v3, 2026-12-07, re-anchor on)
    # 0.42 / 0.40 model passes per object, 10d5cm 87.5 / 87.4 (every frame, no re-anchor,
    # 89.1 / 87.2; per-frame estimation 86.0 / 86.8), jitter p95 7.4 / 6.6 mm (every frame
    # 6.0 / 5.1, per frame 25.7 / 14.4); 2 left 0.54 passes (new tracks, moved objects and
    # low scores are estimated anyway)
    estimate_every: int = 3
    coast_max_shift: float = 0.01  # m
    # re-anchor: this many estimates running (0 = off), each beyond the re-anchor gate from
    # the filter's pose but within it from the one before (moved along with the camera),
    # reset the filter to the last one. The robust filter weighs an estimate far from its
    # pose down, so once a burst of wild estimates has turned it away, good estimates pull it
    # back only slowly; estimates that agree with each other and not with the filter say the
    # filter is the one that is wrong. A single wild estimate stays a robust update.
    # 2 at the jump gate (0.04 m / 25 deg), on the validation sequences (issue 14,
    # 2026-12-07): 10d5cm 86.8 -> 87.5 (data/sequences_val_v2; pick_place 72.8 -> 76.4) and
    # 87.1 -> 87.4 (_v3; pick_place 81.2 -> 83.3) at the same model passes per object, the
    # same jitter, 0 id switches on static scenes; a tight gate (0.02 m / 10 deg) with
    # estimate_every 1 raised the static rotation jitter p95 from 2.2 to 10 deg
    reanchor: int = 2
    reanchor_translation: float = 0.04  # m
    reanchor_rotation_deg: float = 25.0
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
    score: float = 1.0  # of the last estimate
    anchor: np.ndarray | None = None  # the centroid at the last estimate, moved along
    coasted: int = 0  # frames published from the filter alone since the last estimate
    calibrated: bool = False  # the estimates come with a covariance
    away: bool = False  # its centroid was beyond coast_max_shift from the anchor last frame
    off: int = 0  # estimates running beyond the re-anchor gate from the filter (reanchor)


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
    estimated: bool = True  # false: not estimated this frame (estimate_every), the filter's pose
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
    coasted: int = 0  # objects published without a model call (estimate_every)
    forced: Counter = field(default_factory=Counter)  # why a track due to coast was estimated
    model_steps: int = 0  # sampler steps summed over those objects
    reanchored: int = 0  # filters reset to agreeing estimates (TrackerConfig.reanchor)


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
        self.depth_levels = None  # the previous frame's depth, prepared for ICP
        self.previous_levels = None  # the one before (what this frame's ICP matched against)
        self.last_motion: tuple[np.ndarray, np.ndarray] | None = None  # (R, t) of the last ICP

    # --- one frame -------------------------------------------------------------------------

    def step(self, observations: list[Observation], predict: PredictFn, stamp: float,
             cold_steps: int = 0, depth: np.ndarray | None = None,
             K: np.ndarray | None = None) -> list[TrackedObject]:
        """Track one frame (stamp in seconds; `cold_steps` only feeds the cost counters;
        depth (H, W) metres with its intrinsics K: the camera's motion by ICP)."""
        if self.last_stamp is not None and stamp < self.last_stamp:
            self.reset()  # time went back (a bag restarted, a simulation reset)
        matches = self._associate(observations, stamp)
        odometry = self._odometry(depth, K)
        motion = self._camera_motion(matches, observations, odometry)
        starts = [self._start(obs, matches.get(j), stamp, motion.get(j, False))
                  for j, obs in enumerate(observations)]
        todo = [j for j, obs in enumerate(observations)
                if not self._coasting(obs, matches.get(j), starts[j], motion.get(j))]
        poses = self._infer_some(observations, starts, todo, predict, cold_steps)
        out = [self._fuse(obs, matches.get(j), starts[j], poses[j], stamp, bool(motion.get(j)))
               if j in poses else self._coast(obs, matches[j], stamp)
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

    def _odometry(self, depth, K) -> tuple[np.ndarray, np.ndarray] | None:
        """The camera's motion since the previous frame by ICP of the two depth images, or
        None (no depth, no previous frame, off, or ICP found too few pairs)."""
        cfg = self.config
        if depth is None or K is None or not (cfg.camera_motion and cfg.depth_odometry):
            self.depth_levels = None
            return None
        levels = prepare(depth, K, cfg.odometry)
        found = None
        if self.depth_levels is not None:
            found = icp(self.depth_levels, levels, self.last_motion, cfg.odometry)
        self.previous_levels, self.depth_levels = self.depth_levels, levels
        self.last_motion = None if found is None else found[:2]
        return self.last_motion

    def _camera_motion(self, matches: dict[int, Track], observations, odometry=None) -> dict:
        """{observation index: CameraMotion, or None where the object moved on its own} for
        the objects seen in the previous frame; empty without an estimate. `odometry`: the
        ICP motion (R, t), which replaces the centroid fit's where there is one."""
        cfg = self.config
        if not cfg.camera_motion or self.last_stamp is None:
            return {}
        seen = [j for j, t in matches.items() if t.last_seen == self.last_stamp]
        before = np.array([matches[j].centroid for j in seen]).reshape(-1, 3)
        now = np.array([observations[j].centroid for j in seen]).reshape(-1, 3)
        if odometry is not None:
            motion = _odometry_motion(*odometry, before, now, cfg.odometry)
            for k, j in enumerate(seen):  # a centroid that jumped: a moved object, or a mask
                if not motion.inliers[k]:  # that changed (then its points are where it was)
                    motion.inliers[k] = off_surface(
                        observations[j].points, *odometry, self.previous_levels[-1],
                        cfg.odometry.max_distance[-1] / 2) < cfg.odometry.moved_fraction
        else:
            motion = camera_motion(before, now)
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
            track.anchor = motion.R @ track.anchor + motion.t
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

    def _coasting(self, obs: Observation, track: Track | None, start, motion) -> bool:
        """Whether this frame publishes the track's filtered pose without a model call
        (`estimate_every`): only a still, confidently tracked object between its estimates.
        Counts why a track due to coast was estimated (stats.forced)."""
        cfg = self.config
        if cfg.estimate_every <= 1 or track is None:
            return False
        # every estimate_every-th frame all tracks are estimated together: one batch, the
        # model's cost per object a full batch's (turns spread over the frames would be evener
        # but smaller batches, which cost more per object: 0.74 instead of 0.5 of the
        # per-frame cost for 3 objects and K = 2, torch on a CPU)
        if self.stats.frames % cfg.estimate_every == 0:
            return False
        # its centroid away from where it was at its last estimate (moved along) in this and
        # the previous frame: a drift (a mask that changed for one frame moves it too)
        away = bool(np.linalg.norm(obs.centroid - track.anchor) > cfg.coast_max_shift)
        drifted, track.away = away and track.away, away
        why = ("cold" if not (isinstance(start, tuple) or start == "off")  # new, moved, ...
               else "motion" if not motion  # no camera motion that explains it
               else "young" if track.hits < cfg.estimate_every
               else "score" if track.score < cfg.reinit_score
               else "drift" if drifted else "")
        if why:
            self.stats.forced[why] += 1
        return not why

    def _coast(self, obs: Observation, track: Track, stamp: float) -> TrackedObject:
        """Publish the track's prediction (moved by the camera's motion) as this frame's."""
        track.mask_id, track.box, track.last_seen = obs.mask_id, obs.box, stamp
        track.centroid = obs.centroid
        track.coasted += 1
        self.stats.coasted += 1
        R, t = track.filter.R.copy(), track.filter.t.copy()
        cov = track.filter.covariance if track.calibrated else None
        return TrackedObject(
            instance_id=track.id, class_id=obs.class_id, rotation=R, translation=t,
            size=track.size.copy(), score=track.score, covariance=cov, points=obs.points,
            mask_id=obs.mask_id, raw_rotation=R, raw_translation=t, raw_covariance=cov,
            warm=False, estimated=False)

    def _infer_some(self, observations, starts, todo: list[int], predict: PredictFn,
                    cold_steps: int) -> dict[int, tuple]:
        """_infer over the observations `todo` only: {index: pose}; their starts updated."""
        sub = [starts[j] for j in todo]
        poses = self._infer([observations[j] for j in todo], sub, predict, cold_steps)
        for j, start in zip(todo, sub, strict=True):
            starts[j] = start
        return dict(zip(todo, poses, strict=True))

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
                track.off = 0
            elif self._reanchor(track, R, t, obs.class_id):
                track.filter.reset(R, t, meas_cov)  # the filter went astray: start again
                self.stats.reanchored += 1
            else:
                track.filter.update(R, t, meas_cov)
            track.size = track.size + (size - track.size) / min(track.hits + 1, 10)
            track.hits += 1
        track.mask_id, track.centroid, track.box = obs.mask_id, obs.centroid, obs.box
        track.raw, track.score, track.anchor, track.coasted = (R, t), score, obs.centroid, 0
        track.away = False
        track.calibrated = cov is not None
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

    def _reanchor(self, track: Track, R, t, class_id: int) -> bool:
        """Count this estimate into the track's run of estimates off the filter (before the
        fusion; track.raw still the previous estimate, moved along); whether the run is long
        enough to reset the filter to it (TrackerConfig.reanchor)."""
        cfg = self.config
        if cfg.reanchor <= 0:
            return False
        gate = (cfg.reanchor_translation, cfg.reanchor_rotation_deg)
        if not _beyond(R, t, (track.filter.R, track.filter.t), class_id, *gate):
            track.off = 0  # it agrees with the filter
            return False
        # off the filter: it continues the run if it agrees with the previous estimate
        agrees = track.off > 0 and not _beyond(R, t, track.raw, class_id, *gate)
        track.off = track.off + 1 if agrees else 1
        if track.off < cfg.reanchor:
            return False
        track.off = 0
        return True

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


def _odometry_motion(R, t, before, now, config: OdometryConfig) -> CameraMotion:
    """The ICP motion as a CameraMotion; an object whose centroid it does not explain (beyond
    `config.moved`, and beyond 3 times the median over the objects: mask noise) moved on
    its own."""
    residual = np.linalg.norm(before @ R.T + t - now, axis=1)
    limit = max(config.moved, 3 * float(np.median(residual))) if len(residual) else 0.0
    return CameraMotion(R, t, residual < limit, config.sigma_translation, config.sigma_rotation)


def _row(batch: PoseBatch, k: int):
    cov = None if batch.covariance is None else np.asarray(batch.covariance[k], np.float64)
    if cov is not None and cov[0, 0] < 0:  # calibration.NOT_ESTIMATED
        cov = None
    return (np.asarray(batch.rotation[k], np.float64),
            np.asarray(batch.translation[k], np.float64),
            np.asarray(batch.size[k], np.float64), float(batch.score[k]), cov)


def _jumped(R, t, prior, class_id: int, cfg: TrackerConfig) -> bool:
    """Whether (R, t) is beyond the jump gate from the prior pose (symmetry-aware)."""
    return _beyond(R, t, prior, class_id, cfg.jump_translation, cfg.jump_rotation_deg)


def _beyond(R, t, prior, class_id: int, translation: float, rotation_deg: float) -> bool:
    """Whether (R, t) is further than `translation` (m) or `rotation_deg` from the prior
    pose (R, t) (symmetry-aware)."""
    R_prior, t_prior = prior
    if np.linalg.norm(np.asarray(t) - t_prior) > translation:
        return True
    angle = rotation_error_deg(R, R_prior, BY_ID[class_id].y_symmetric)
    return bool(angle > rotation_deg)
