"""One frame in, poses out (ROS-free): masked depth -> per-object points -> one batched
inference call -> per-object pose, size, score, covariance.

The ROS node, the bag tool and the demo all call `Pipeline.process`, so what is measured
offline is what runs on the robot. Input problems are reported as strings (never raised), so
a caller can log them and keep going.
"""

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from posediff_ros.averaging import Averaged, AveragingConfig, predict_averaged, subset_groups
from posediff_ros.categories import BY_ID
from posediff_ros.hypotheses import ClusterConfig, Hypothesis, object_hypotheses
from posediff_ros.runtime.base import Backend, PoseBatch, SamplerSettings
from posediff_ros.validation import any_pixel, limit_objects

log = logging.getLogger("posediff_ros.runtime")


@dataclass
class PipelineConfig:
    min_points: int = 50  # objects with fewer valid depth points are skipped
    depth_range: tuple[float, float] = (0.1, 5.0)  # metres; points outside are dropped
    seed: int | None = 0  # a frame's point subsets come from this alone; None: new ones
    max_objects: int = 0  # objects per frame (first ids kept); 0 = no limit
    # num_samples > 1: the heaviest modes of each object's samples kept (0 = all)
    max_hypotheses: int = 3
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    # test-time averaging (averaging.py): > 1 = K point subsets per object, each with the
    # sampler's samples, the largest agreeing mode averaged; 1 = off
    subsets: int = 1
    reject_outliers: bool = True  # averaging: keep the largest mode (False: mean of all)

    def __post_init__(self):
        if self.subsets < 1:
            raise ValueError(f"subsets must be >= 1, got {self.subsets}")

    @property
    def averaging(self) -> AveragingConfig | None:
        if self.subsets == 1:
            return None
        return AveragingConfig(self.subsets, self.reject_outliers, self.clusters)


@dataclass
class DetectedObject:
    instance_id: int
    class_id: int
    rotation: np.ndarray  # (3, 3) camera-from-object
    translation: np.ndarray  # (3,) metres
    size: np.ndarray  # (3,) box extents, metres
    score: float
    covariance: np.ndarray | None  # (6, 6) or None (single sample)
    points: np.ndarray  # (P, 3) the points the model saw (averaging: K x P, its K subsets)
    # num_samples > 1: the modes of the samples, heaviest first; rotation, translation and
    # covariance above are then those of the heaviest mode (the best single pose)
    hypotheses: list[Hypothesis] = field(default_factory=list)


@dataclass
class FrameResult:
    objects: list[DetectedObject] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (instance id, why)
    timings_ms: dict[str, float] = field(default_factory=dict)


def check_frame(depth: np.ndarray, mask: np.ndarray, K: np.ndarray | None) -> str | None:
    """Why a frame cannot be processed at all, or None. depth: float metres or uint16 mm."""
    if K is None:
        return "no camera_info received yet"
    if depth.ndim != 2 or mask.ndim != 2:
        return f"depth {depth.shape} and mask {mask.shape} must be single-channel images"
    if depth.shape != mask.shape:
        return f"size mismatch: depth {depth.shape[::-1]} vs mask {mask.shape[::-1]} (w, h)"
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        return "camera_info intrinsics are invalid"
    valid = (lambda d: d) if depth.dtype.kind in "ui" else (lambda d: np.isfinite(d) & (d > 0))
    if not any_pixel(valid, depth):
        return "depth image has no valid pixels (all zero or NaN)"
    return None


def instance_ids(mask: np.ndarray, background: int) -> list[int]:
    """Sorted ids present in the mask, background excluded."""
    if mask.size and mask.min() >= 0 and mask.max() <= 65535:
        ids = np.flatnonzero(np.bincount(mask.ravel()))  # a counting pass, no sort
    else:
        ids = np.unique(mask)
    return [int(i) for i in ids if i != background]


def instances_from_color_mask(
    rgb: np.ndarray, palette: dict[tuple[int, int, int], int], min_pixels: int = 1
) -> tuple[np.ndarray, dict[int, int]]:
    """Colour-coded class mask (each class one colour) -> instance mask and {instance: class}.

    Instances of one class are split into connected components. Colours not in the palette
    are background (0).
    """
    from scipy import ndimage

    mask = np.zeros(rgb.shape[:2], np.int32)
    classes: dict[int, int] = {}
    for colour, cls in palette.items():
        labels, n = ndimage.label(np.all(rgb == np.asarray(colour, rgb.dtype), axis=-1))
        for k in range(1, n + 1):
            region = labels == k
            if region.sum() < min_pixels:
                continue
            new_id = len(classes) + 1
            mask[region] = new_id
            classes[new_id] = cls
    return mask, classes


class FallbackOnFailure:
    """A backend that switches once to a fallback (torch on the CPU) when the primary fails at
    run time (GPU lost, execution provider broken); `on_switch` gets one line saying why.
    The inputs are the pipeline's own arrays, so a failing predict is the backend's fault."""

    def __init__(self, primary: Backend, make_fallback, on_switch=None):
        self.current, self.make_fallback = primary, make_fallback
        self.on_switch = on_switch or log.warning  # the node passes its own logger
        self.settings_set: SamplerSettings | None = getattr(primary, "settings", None)
        self.switched = False

    def __getattr__(self, attr: str):  # name, num_points, settings, ... of the current one
        if attr == "current":
            raise AttributeError(attr)
        return getattr(self.current, attr)

    def configure(self, settings: SamplerSettings) -> None:
        self.current.configure(settings)
        self.settings_set = settings

    def predict(self, points: np.ndarray, class_ids: np.ndarray, warm=None):
        try:
            return self.current.predict(points, class_ids, *([] if warm is None else [warm]))
        except Exception as err:  # noqa: BLE001 - any backend fault: switch, say why
            if self.make_fallback is None:
                raise
            failed, make, self.make_fallback = self.current.name, self.make_fallback, None
            self.current = make()
            if self.settings_set is not None:
                self.current.configure(self.settings_set)
            self.switched = True
            self.on_switch(f"backend {failed} failed at run time ({type(err).__name__}: "
                           f"{str(err)[:200]}); switched to {self.current.name} for good")
            return self.current.predict(points, class_ids, *([] if warm is None else [warm]))


class Pipeline:
    """A backend plus the point extraction settings; thread-safe (one call at a time).
    `calibration` (calibration.py): the covariance published with each pose; None = the raw
    sample covariance, or none at all with one sample."""

    def __init__(self, backend: Backend, config: PipelineConfig | None = None,
                 calibration=None):
        self.backend = backend
        self.config = config or PipelineConfig()
        self.calibration = calibration
        self._lock = threading.Lock()
        self._rngs = threading.local()  # per thread: (seed, generator, its state at the seed)

    def configure(self, settings: SamplerSettings) -> None:
        with self._lock:
            self.backend.configure(settings)

    def extract(self, depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
                classes: dict[int, int], background: int = 0
                ) -> tuple[list[tuple[int, int, np.ndarray]], list[tuple[int, str]]]:
        """[(instance, class, points (P, 3))] of the usable objects (averaging: (K * P, 3), its
        K subsets in turn), and [(instance, why)] of the rest. One pass over the mask for all
        objects (data/points.py); depth may be uint16 mm."""
        usable, skipped, _ = self._extract(depth, mask, K, classes, background)
        return usable, skipped

    def extract_centred(self, depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
                        classes: dict[int, int], background: int = 0):
        """extract(), plus the mean of ALL the valid depth pixels of each usable object
        (B, 3), from the same pass over the mask (what tracking.observations centres on)."""
        usable, skipped, pixels = self._extract(depth, mask, K, classes, background)
        return usable, skipped, pixels.centroids([inst for inst, _, _ in usable], K)

    def _extract(self, depth, mask, K, classes, background):
        from posediff_ros.data.points import ObjectPixels, extract_objects

        pixels = ObjectPixels.of(mask, depth, self.config.depth_range, background=background)
        ids, extra = limit_objects(pixels.ids.tolist(), self.config.max_objects)
        skipped = [(i, f"more than max_objects={self.config.max_objects} objects in the "
                    "frame") for i in extra]
        wanted = []
        for inst in ids:
            cls = classes.get(inst)
            if cls is None:
                skipped.append((inst, "no class for this mask id"))
            elif cls not in BY_ID:
                skipped.append((inst, f"class id {cls} is not a NOCS class (1..6)"))
            else:
                wanted.append(inst)
        # a frame's points come from the seed alone, not from the frames before it: the same
        # frame gives the same points (and, with the sampler's seed, the same poses)
        rng = self._frame_rng()
        k, n = self.config.subsets, self.backend.num_points  # averaging: each object K times
        found = extract_objects(pixels, K, np.repeat(wanted, k), n, rng,
                                min_points=self.config.min_points)
        skipped += list(found.dropped.items())
        ids, points = subset_groups(found.ids, found.points, k)
        usable = [(inst, classes[inst], points[b * k:(b + 1) * k].reshape(k * n, 3))
                  for b, inst in enumerate(ids.tolist())]
        return usable, skipped, pixels

    def _frame_rng(self) -> np.random.Generator:
        """A generator at the first draw of config.seed (fresh entropy for None). Restoring
        its state costs 1 us; default_rng(seed) hashes the seed anew, 7 us of a frame."""
        seed = self.config.seed
        if seed is None:
            return np.random.default_rng()
        cached = getattr(self._rngs, "cached", None)
        if cached is None or cached[0] != seed:
            rng = np.random.default_rng(seed)
            cached = self._rngs.cached = (seed, rng, rng.bit_generator.state)
        cached[1].bit_generator.state = cached[2]
        return cached[1]

    def process(self, depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
                classes: dict[int, int], background: int = 0) -> FrameResult:
        """depth: (H, W) float metres; mask: (H, W) int instance ids; classes: {id: NOCS id}."""
        start = time.perf_counter()
        usable, skipped = self.extract(depth, mask, K, classes, background)
        result = FrameResult(skipped=skipped)
        result.timings_ms["points"] = 1e3 * (time.perf_counter() - start)
        if not usable:
            return result
        points = np.stack([p for _, _, p in usable])
        class_ids = np.array([c for _, c, _ in usable], np.int64)
        start = time.perf_counter()
        poses, averaged = self._predict(points, class_ids)
        result.timings_ms["inference"] = 1e3 * (time.perf_counter() - start)
        result.timings_ms.update({f"backend_{k}": v for k, v in poses.timings_ms.items()})
        for b, (inst, cls, pts) in enumerate(usable):
            result.objects.append(DetectedObject(
                instance_id=inst, class_id=cls,
                rotation=np.asarray(poses.rotation[b], np.float64),
                translation=np.asarray(poses.translation[b], np.float64),
                size=np.asarray(poses.size[b], np.float64),
                score=float(poses.score[b]),
                covariance=None if poses.covariance is None or poses.covariance[b, 0, 0] < 0
                else poses.covariance[b], points=pts,
            ))
        if averaged is not None:
            self.add_averaged(result.objects, averaged)
        elif poses.samples_rotation is not None:
            start = time.perf_counter()
            self.add_hypotheses(result.objects, poses)
            result.timings_ms["hypotheses"] = 1e3 * (time.perf_counter() - start)
        return result

    def add_averaged(self, objects: list[DetectedObject], averaged: list[Averaged]) -> None:
        """When averaging's hypotheses fell into several modes: those modes as the object's
        hypotheses (the kept one, the object's pose, first; not for the plain mean, whose pose
        is none of them)."""
        limit = self.config.max_hypotheses or None
        for obj, avg in zip(objects, averaged, strict=True):
            if self.config.reject_outliers and len(avg.hypotheses) > 1:
                obj.hypotheses = avg.hypotheses[:limit]

    def add_hypotheses(self, objects: list[DetectedObject], poses: PoseBatch) -> None:
        """Each object's samples -> its modes; its pose becomes the heaviest mode's."""
        for b, obj in enumerate(objects):
            obj.hypotheses = object_hypotheses(
                poses.samples_rotation[b], poses.samples_translation[b], obj.class_id,
                self.config.max_hypotheses, config=self.config.clusters)
            for h in obj.hypotheses:  # a mode's spread is a sample spread: calibrated alike
                h.covariance = self._covariance(obj.class_id, h.rotation, h.covariance)
            best = obj.hypotheses[0]
            obj.rotation, obj.translation = best.rotation, best.translation
            obj.covariance = best.covariance

    def predict(self, points: np.ndarray, class_ids: np.ndarray, warm=None):
        """The backend's poses with the published covariance (calibrated when a calibration is
        loaded; PoseBatch.covariance None when nothing was estimated for any object, an
        object without one marked by -1 in its first element, calibration.NOT_ESTIMATED).
        points: (B, P, 3); with averaging (B, K * P, 3), each object's K subsets in turn,
        as extract() gives them: one pose per object, averaged over its subsets."""
        return self._predict(points, class_ids, warm)[0]

    def _predict(self, points: np.ndarray, class_ids: np.ndarray, warm=None
                 ) -> tuple[PoseBatch, list[Averaged] | None]:
        """predict(), and with averaging each object's Averaged (its modes)."""
        from posediff_ros.calibration import not_estimated

        averaging = self.config.averaging
        with self._lock:
            if averaging is None:
                poses, averaged = self._backend_predict(points, class_ids, warm), None
            else:
                poses, averaged = self._predict_averaged(points, class_ids, warm, averaging)
        # averaging: a calibration covers single predictions (its per-class prior stands, the
        # averaged pose is no worse); without one, the kept hypotheses' spread
        samples = ([a.covariance if self.calibration is None else None for a in averaged]
                   if averaged is not None else poses.covariance)
        covs = [self._covariance(int(class_ids[b]), poses.rotation[b],
                                 None if samples is None else samples[b])
                for b in range(len(class_ids))]
        poses.covariance = None if all(c is None for c in covs) else np.stack(
            [not_estimated() if c is None else c for c in covs])
        return poses, averaged

    def _backend_predict(self, points: np.ndarray, class_ids: np.ndarray, warm=None):
        # (a backend without warm start need not take the argument)
        return self.backend.predict(points, class_ids, *([] if warm is None else [warm]))

    def _predict_averaged(self, points, class_ids, warm, averaging: AveragingConfig):
        """(B, K * P, 3) -> one backend call on (B * K, P, 3) rows, averaged per object."""
        k, n = averaging.subsets, self.backend.num_points
        if points.shape[1] != k * n:
            raise ValueError(f"averaging over {k} subsets needs {k} x {n} points per object, "
                             f"got {points.shape[1]}")
        if warm is not None:  # each subset starts from its object's prior
            warm = dataclasses.replace(warm, rotation=np.repeat(warm.rotation, k, axis=0),
                                       translation=np.repeat(warm.translation, k, axis=0))
        return predict_averaged(lambda p, c: self._backend_predict(p, c, warm),
                                points.reshape(-1, n, 3), class_ids, averaging)

    def _covariance(self, class_id: int, rotation, sample) -> np.ndarray | None:
        if self.calibration is not None:
            cov = self.calibration.covariance(class_id, np.asarray(rotation, np.float64), sample)
            if cov is not None:
                return cov
        return None if sample is None else np.asarray(sample, np.float64)

    def track(self, tracker, depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
              classes: dict[int, int], background: int, stamp: float) -> FrameResult:
        """process() through a tracking.Tracker: objects get track ids (instance_id), warm
        starts and smoothed poses (tracking.TrackedObject); stamp in seconds."""
        from posediff_ros.tracking import observations

        start = time.perf_counter()
        usable, skipped, pixels = self._extract(depth, mask, K, classes, background)
        result = FrameResult(skipped=skipped)
        result.timings_ms["points"] = 1e3 * (time.perf_counter() - start)
        start = time.perf_counter()  # the centres over all pixels are tracking's: timed there
        obs = observations(usable, pixels.centroids([inst for inst, _, _ in usable], K))
        centres_ms = 1e3 * (time.perf_counter() - start)
        model_ms = 0.0

        def predict(*args):  # the model's share of the tracker's step
            nonlocal model_ms
            t0 = time.perf_counter()
            try:
                return self.predict(*args)
            finally:
                model_ms += 1e3 * (time.perf_counter() - t0)

        start = time.perf_counter()
        result.objects = tracker.step(obs, predict, stamp, self.backend.settings.steps, depth, K)
        result.timings_ms["inference"] = model_ms
        result.timings_ms["tracking"] = 1e3 * (time.perf_counter() - start) - model_ms + centres_ms
        return result


def object_names(objects: list[DetectedObject], prefix: str = "") -> list[str]:
    """TF child frames `<prefix><class>_<id>`, id = the object's id (Detection3D.id): the track
    id when tracking, else the mask id."""
    return [f"{prefix}{BY_ID[o.class_id].name}_{o.instance_id}" for o in objects]
