"""posediff_node: depth + instance mask + classes -> 6D poses, TF, markers.

Subscribes (relative names, remap freely; sensor-data QoS):
  depth (Image 16UC1 mm | 32FC1 m), camera_info (CameraInfo), mask (Image mono8 | mono16 |
  32SC1 instance ids, `mask_background` = none; rgb8/bgr8 class colours when class_source is
  color_mask; not with segmentation=boxes), detections (vision_msgs/Detection2DArray: id = mask
  id, or the boxes themselves with segmentation=boxes; only when class_source is detections),
  color (Image, optional, for the overlay).
Publishes: object_poses (Detection3DArray, see ros/messages.py), /tf, markers (MarkerArray),
  debug/points (PointCloud2, publish_debug), overlay (Image rgb8, publish_overlay),
  object_poses_raw (the unsmoothed estimates, publish_raw).
Service: ~/reset (std_srvs/Trigger): forget every track (ids start again at 1).

Tracking (`tracking`, on by default; tracking/): the same physical object keeps its id
(Detection3D.id, TF frame <frame_prefix><class>_<id>, markers) from frame to frame and its
pose is smoothed; every track is moved by the camera's motion (ICP on the depth image,
`camera_odometry`); a still, confidently tracked object is estimated only every
`estimate_every`-th frame (3), its filtered pose published in between; with `warm_start` its
sampler starts from its previous pose (2 steps instead of 8). The ROS-free Tracker does all
of it, the node only feeds it frames.

Depth, mask (and detections) are paired by header stamp (sync.py: `sync` exact, or
approximate within `slop`); camera_info is the one valid at the frame's stamp, colour the
nearest. Only the newest complete frame is processed: a worker thread takes it from a one-slot
buffer, so nothing queues when inference is slow. A frame that cannot be processed gets an
empty object_poses and its markers deleted, so nothing stale stays on screen.


Parameters are read into one frozen NodeParams (ros/params.py). The sampler's can change
while running: the on-set callback only checks a change; the worker applies it between frames
(a backend may export a graph for new settings), so the executor never waits for inference.

A lifecycle node: with `managed` false (the default) it configures and activates itself at
start; with `managed` true it waits for a lifecycle manager (ros2 lifecycle set ...):
configure = parameters read, model + backend loaded and warmed up, TF listener (target_frame);
activate = subscriptions, publishers, worker, diagnostics; deactivate = those removed, no more
processing; cleanup = the model freed. A failed transition says why in one log line.
"""

import dataclasses
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass

import rclpy
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from posediff_ros.categories import ClassNames
from posediff_ros.data.boxes import Box, BoxCutConfig, instances_from_boxes
from posediff_ros.frame_checks import frame_problems
from posediff_ros.pipeline import (
    FallbackOnFailure,
    Pipeline,
    PipelineConfig,
    instances_from_color_mask,
    object_names,
)
from posediff_ros.ros import convert, messages
from posediff_ros.ros.diagnostics import DiagnosticsPublisher, Health, Laps, StageTimes
from posediff_ros.ros.log_bridge import forward_core_logs
from posediff_ros.ros.overlay import draw_overlay
from posediff_ros.ros.params import SAMPLER_PARAMS, TRACKING_PARAMS, NodeParams
from posediff_ros.ros.run import run_node
from posediff_ros.runtime.base import SamplerSettings
from posediff_ros.sync import LatestSlot, StampHistory, make_sync
from posediff_ros.threads import limit_threads
from posediff_ros.tracking import Tracker, TrackerConfig
from posediff_ros.transforms import TransformUnavailable, transform_object

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)


def _describe(text: str, read_only: bool = True, **ranges) -> ParameterDescriptor:
    d = ParameterDescriptor(description=text, read_only=read_only)
    if "int_range" in ranges:
        lo, hi = ranges["int_range"]
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    if "float_range" in ranges:
        lo, hi = ranges["float_range"]
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return d


# name -> (default, descriptor)
PARAMETERS = {
    "model_path": ("", _describe("model JSON (+ .safetensors beside it), .onnx, or 'random'; "
                                 "empty = the bundled default model")),
    "backend": ("onnxruntime-int8", _describe(
        "inference backend: onnxruntime-int8 (default: the exported graph, its point encoder "
        "in int8; the fastest on a CPU at equal accuracy, docs/BENCHMARKS.md; float32 on a "
        "GPU) | onnxruntime | torch | torch-fused | tensorrt")),
    "device": ("cpu", _describe("torch device (cpu, cuda, cuda:0)")),
    "threads": (1, _describe("threads of every math library in the node (torch, onnxruntime, "
                             "OpenBLAS/OpenMP); 0 = the libraries' defaults (all cores). 1 is "
                             "fastest on a busy CPU: small batches gain little from more, idle "
                             "BLAS threads spin, oversubscribed ones cost 10-50x",
                             int_range=(0, 256))),
    # sampler: 0 / "" / negative = the value stored with the model (what it was tuned with)
    "steps": (0, _describe("sampler steps (PF-ODE); 0 = the model's", False,
                           int_range=(0, 1000))),
    "solver": ("", _describe("ODE solver: euler | heun | dpm2; empty = the model's", False)),
    "w_schedule": ("", _describe(
        "score-scaling schedule w_t: exponential | linear | constant | none | tsr; "
        "empty = the model's", False)),
    "w_max": (-1.0, _describe("final score-scaling factor; < 0 = the model's", False,
                              float_range=(-1.0, 100.0))),
    "num_samples": (1, _describe("pose samples per object; >1 gives pose hypotheses with "
                                 "covariances (max_hypotheses)", False,
                                 int_range=(1, 256))),
    "init": ("", _describe("ODE start: noise | regression; empty = the model's", False)),
    "seed": (0, _describe("seed of each frame's sampler noise and point subsets: the same "
                          "frame gives the same estimate (tracking filters it over frames); "
                          "-1 = new ones every frame", False,
                          int_range=(-1, 2**31 - 1))),
    "max_hypotheses": (3, _describe("num_samples > 1: pose modes per object in results[], "
                                    "heaviest first; 0 = all", int_range=(0, 256))),
    "average_subsets": (1, _describe(
        "test-time averaging: K > 1 point subsets per object, each predicted (with "
        "num_samples samples), the largest agreeing mode averaged; steadier poses for more "
        "cost (K = 8: ~2x per object on a CPU, docs/RESULTS.md h); 1 = off",
        int_range=(1, 64))),
    "average_reject_outliers": (True, _describe(
        "averaging: keep only the largest agreeing mode of the K x num_samples poses; false "
        "= the plain mean of all of them")),
    "num_points": (0, _describe("points per object; 0 = what the model was trained with",
                                int_range=(0, 100000))),
    "max_objects": (20, _describe("objects per frame at most (first mask ids kept); 0 = all",
                                  int_range=(0, 10000))),
    "min_points": (50, _describe("objects with fewer valid depth points are skipped",
                                 int_range=(1, 100000))),
    "depth_min": (0.1, _describe("nearest valid depth (m)", float_range=(0.0, 100.0))),
    "depth_max": (5.0, _describe("farthest valid depth (m)", float_range=(0.0, 100.0))),
    "class_source": ("detections", _describe(
        "where object classes come from: detections (Detection2DArray, id = mask id) | "
        "parameter (mask_classes) | color_mask (mask is a colour-coded class image)")),
    "mask_classes": ([""], _describe("class_source=parameter: ['<mask id>:<class name or id>']")),
    "class_colors": ([""], _describe("class_source=color_mask: ['<class>:#rrggbb']")),
    "mask_background": (0, _describe("mask value meaning no object (REAL275 uses 255)",
                                     int_range=(-1, 2**31 - 1))),
    "segmentation": ("mask", _describe(
        "mask: an instance mask topic | boxes: no mask, each object cut out of the depth "
        "inside its Detection2D box (YOLO-style detectors)")),
    "class_aliases": ([""], _describe(
        "detector class names -> NOCS classes on top of the defaults (cup -> mug, tin can -> "
        "can, ...): ['<detector class>:<class name or id>']; case does not matter")),
    "sync": ("exact", _describe(
        "pairing of depth, mask and detections: exact (identical header stamps, as "
        "segmenters copy them) | approximate (message_filters ApproximateTime within slop)")),
    "slop": (0.02, _describe("approximate sync: max stamp difference (s) within a set",
                             float_range=(0.0, 10.0))),
    "queue_size": (30, _describe("messages of each input waiting for their partners",
                                 int_range=(1, 1000))),
    "max_age": (1.0, _describe(
        "exact sync: seconds (of stamp time) a frame waits for late partners before it is "
        "dropped and counted", float_range=(0.0, 1.9))),
    "camera_frame": ("", _describe("frame of the outputs; empty = the depth image's frame_id")),
    "target_frame": ("", _describe("frame to publish in, e.g. base_link (the camera -> target "
                                   "transform at the input stamp, from TF); empty = camera")),
    "transform_timeout": (0.1, _describe("seconds to wait for that transform; then the frame's "
                                         "outputs are dropped", float_range=(0.0, 10.0))),
    "tracking": (True, _describe(
        "track objects: ids per physical object (association over frames), smoothing, warm "
        "starts (warm_start); false = every frame on its own, ids = mask ids", False)),
    "smoothing": (True, _describe("tracking: publish the filtered pose (SE(3) filter weighing "
                                  "each estimate by its uncertainty); false = the raw one",
                                  False)),
    "warm_start": (False, _describe(
        "tracking: start a tracked object's sampler from its previous pose (warm_t0, "
        "warm_steps): ~0.7 of the model's cost per object, but less accurate on the held-out "
        "sequences (docs/RESULTS.md); false = the model's own start every frame", False)),
    "warm_t0": (-1.0, _describe("tracking: diffusion time the warm start noises the previous "
                                "pose to; < 0 = the model's (t_start_warm)", False,
                                float_range=(-1.0, 1.0))),
    "warm_steps": (0, _describe("tracking: sampler steps of a warm start; 0 = 2", False,
                                int_range=(0, 100))),
    "track_max_age": (1.0, _describe("tracking: seconds an unseen object keeps its id",
                                     False, float_range=(0.0, 3600.0))),
    "estimate_every": (TrackerConfig.estimate_every, _describe(
        "tracking: re-estimate a still, confidently tracked object only every N frames and "
        "publish its filtered pose, moved by the camera's motion, in between (the model's "
        "work per tracked object ~1/N); an object that moved, drifted 1 cm from its last "
        "estimate, scored low or is new is estimated at once. 1 = every frame",
        False, int_range=(1, 100))),
    "camera_odometry": (True, _describe(
        "tracking: the camera's motion between frames by ICP on the whole depth image "
        "(robust to mask changes); false = a rigid fit of the objects' centroids (needs 3 "
        "objects spread out, follows every change of a mask)", False)),
    "publish_raw": (False, _describe("tracking: also publish the unsmoothed estimates on "
                                     "object_poses_raw")),
    "frame_prefix": ("auto", _describe(
        "prefix of the object TF frames (<prefix><class>_<id>); auto = the node's fully "
        "qualified name + '/' (unique per node), empty = none")),
    "publish_tf": (True, _describe("publish one TF frame per object")),
    "publish_markers": (True, _describe("publish a MarkerArray (boxes, axes, labels)")),
    "publish_debug": (False, _describe("publish the segmented object points (debug/points)")),
    "publish_overlay": (False, _describe("publish boxes drawn on the colour image (overlay)")),
    "log_period": (10.0, _describe("seconds between rate / latency log lines",
                                   float_range=(0.0, 3600.0))),
    "managed": (False, _describe("true: wait for lifecycle configure / activate (a lifecycle "
                                 "manager); false: configure and activate at start")),
}
OK, FAILED = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
# The worker runs Python and small numpy operations for milliseconds at a stretch; with
# CPython's default 5 ms switch interval the executor thread can wait that long for the GIL
# before it takes the next frame's messages. 0.5 ms bounds that wait (docs/BENCHMARKS.md).
GIL_SWITCH_INTERVAL_S = 0.0005


@dataclass
class Stats:
    frames: int = 0
    objects: int = 0
    latency_ms_sum: float = 0.0
    transform_ms_sum: float = 0.0
    since: float = 0.0


class PoseNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("posediff_node", **kwargs)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        self._last_log: dict[str, float] = {}
        self.health = Health()  # fed by the callbacks, published on /diagnostics
        self.stage_times = StageTimes()  # the worker's per-stage timers, on /diagnostics too
        self.published = dict.fromkeys(("object_poses", "object_poses_raw", "tf", "markers",
                                        "debug/points", "overlay"), 0)  # messages sent per output
        # the core's log records (backend fallback, graph export) go to this node's logger
        self._log_bridge = forward_core_logs(self.get_logger())
        self.pipeline: Pipeline | None = None  # configured
        self.worker: threading.Thread | None = None  # active
        self._active: list = []  # subscriptions, publishers, timers of the active state
        self.tf_listener = None
        self._reset_tracks = threading.Event()  # set by ~/reset, done by the worker
        from std_srvs.srv import Trigger

        self.create_service(Trigger, "~/reset", self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if not self.get_parameter("managed").value:  # a plain node: up at once, or exit
            if self.trigger_configure() != OK or self.trigger_activate() != OK:
                raise self._failure

    # --- lifecycle ----------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        start = time.monotonic()
        try:
            self.params = NodeParams.from_ros(self._parameter_values())
            self._requested = self._handled = self.params  # the latest accepted change, and
            # the latest the worker has applied (or failed to)
            self.pipeline = self._load_pipeline(self.params)
            self.tracker = Tracker(self._tracker_config(self.params))
            self.frame_prefix = self.params.tf_prefix(self.get_fully_qualified_name())
            warm_ms = self._warm_up()
            if self.params.target_frame:
                from posediff_ros.ros.tf_listener import make_listener

                self.tf_listener = make_listener(self)
        except Exception as err:  # noqa: BLE001 - any failure: say why, stay unconfigured
            self._failure = err
            self._free()
            if self._is_managed():
                self.get_logger().error(f"configure failed: {type(err).__name__}: {err}")
            return FAILED
        tf = f", TF from {self.tf_listener.kind}" if self.tf_listener else ""
        self.get_logger().info(f"configured in {time.monotonic() - start:.2f} s (warm-up "
                               f"{warm_ms:.0f} ms{tf})")
        return OK

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        start = time.monotonic()
        try:
            self._start()
        except Exception as err:  # noqa: BLE001 - say why, stay inactive
            self._failure = err
            self._stop()
            self.get_logger().error(f"activate failed: {type(err).__name__}: {err}")
            return FAILED
        p = self.params
        self.get_logger().info(
            f"ready: backend {self.pipeline.backend.name}, {self.pipeline.backend.num_points} "
            f"points/object, classes from {p.class_source}, segmentation {p.segmentation}, "
            f"{p.sync} sync of {p.sync_topics}"
            + (f", outputs in {p.target_frame}" if p.target_frame else "")
            + f" (activated in {1e3 * (time.monotonic() - start):.0f} ms)")
        return super().on_activate(state)

    def _start(self) -> None:
        """Inactive -> active: fresh input state, subscriptions, publishers, the worker."""
        self.camera_infos = StampHistory()  # a frame uses the one valid at its stamp
        self.colors: list[Image] = []
        p = self.params
        self.sync = make_sync(p.sync, p.sync_topics, p.slop, p.queue_size, p.max_age)
        self._sync_drops: dict[str, int] = {}  # per kind of drop: the count last reported
        self._arrivals: dict[int, int] = {}  # stamp -> arrival (ROS clock ns) of its first input
        self.class_names = ClassNames(p.class_aliases)
        self.box_config = BoxCutConfig(depth_range=p.depth_range)
        self.slot = LatestSlot()
        self.markers = messages.MarkerTracker()
        self.stats = Stats(since=time.monotonic())
        self._create_subscriptions()
        self._create_publishers()
        self.worker = threading.Thread(target=self._work, args=(self.slot,),
                                       name="posediff_worker", daemon=True)
        self.worker.start()
        self.diagnostics = DiagnosticsPublisher(self, self.health)
        self._active += [self.diagnostics.pub, self.diagnostics.timer]

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.get_logger().info("deactivated: inputs unsubscribed, nothing processed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._free()
        self.get_logger().info("cleaned up: model freed")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._free()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in a transition from {state.label}: back to "
                                "unconfigured")
        self._stop()
        self._free()
        return OK

    def _is_managed(self) -> bool:
        return bool(self.get_parameter("managed").value)

    def _warm_up(self) -> float:
        """One inference on a made-up object, so the first real frame is not the slow one
        (allocations, graph optimisation); milliseconds it took."""
        import numpy as np

        backend = self.pipeline.backend
        points = np.random.default_rng(0).normal(0, 0.03, (1, backend.num_points, 3))
        start = time.perf_counter()
        backend.predict((points + [0, 0, 0.8]).astype(np.float32), np.ones(1, np.int64))
        return 1e3 * (time.perf_counter() - start)

    def _stop(self) -> None:
        """Active -> inactive: the worker stopped, subscriptions and publishers removed."""
        if self.worker is not None:
            self.slot.close()
            self.worker.join(timeout=10.0)  # no publishing into a destroyed publisher
            self.worker = None
        for entity in self._active:
            for destroy in (self.destroy_subscription, self.destroy_publisher,
                            self.destroy_timer):
                if destroy(entity):
                    break
        self._active = []

    def _free(self) -> None:
        """Configured -> unconfigured: the model and the TF listener released."""
        if self.tf_listener is not None:
            self.tf_listener.destroy()
            self.tf_listener = None
        self.pipeline = None

    # --- start-up -----------------------------------------------------------------------------

    def _parameter_values(self, changes: dict | None = None) -> dict:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        return {**values, **(changes or {})}

    def _create_subscriptions(self) -> None:
        qos = qos_profile_sensor_data
        subscribe = lambda *args: self._active.append(self.create_subscription(*args))  # noqa: E731
        subscribe(Image, "depth", lambda m: self._on_sync("depth", m), qos)
        if "mask" in self.params.sync_topics:
            subscribe(Image, "mask", lambda m: self._on_sync("mask", m), qos)
        subscribe(CameraInfo, "camera_info", self._on_camera_info, qos)
        if "detections" in self.params.sync_topics:
            subscribe(Detection2DArray, "detections", lambda m: self._on_sync("detections", m),
                      qos)
        if self.params.publish_overlay:
            subscribe(Image, "color", self._on_color, qos)

    def _create_publishers(self) -> None:
        self.poses_pub = self.create_publisher(Detection3DArray, "object_poses", 10)
        self.markers_pub = self.create_publisher(MarkerArray, "markers", 10)
        self.cloud_pub = self.create_publisher(PointCloud2, "debug/points", 2)
        self.overlay_pub = self.create_publisher(Image, "overlay", 2)
        self._active += [self.poses_pub, self.markers_pub, self.cloud_pub, self.overlay_pub]
        if self.params.publish_raw:
            self.raw_pub = self.create_publisher(Detection3DArray, "object_poses_raw", 10)
            self._active.append(self.raw_pub)
        self.tf_broadcaster = None
        if self.params.publish_tf:
            try:  # a real distro: the standard broadcaster
                from tf2_ros import TransformBroadcaster

                self.tf_broadcaster = TransformBroadcaster(self)
                self._active.append(self.tf_broadcaster.pub_tf)
            except ImportError:  # pip-only: the same messages, topic and QoS by hand
                from tf2_msgs.msg import TFMessage

                self.tf_pub = self.create_publisher(TFMessage, "/tf", TF_QOS)
                self._tf_message = TFMessage
                self._active.append(self.tf_pub)

    def _sampler_settings(self, p: NodeParams) -> SamplerSettings:
        """The model's own sampler settings with the parameters that are set on top (replace,
        not override: a seed of None is a setting, new noise every call)."""
        return dataclasses.replace(self.model_sampler, **p.sampler_overrides())

    def _load_pipeline(self, p: NodeParams) -> Pipeline:
        from posediff_ros.runtime import DEFAULT_MODEL, load_backend

        path = p.model_path or str(DEFAULT_MODEL)
        backend = load_backend(p.backend, path, device=p.device, threads=p.threads)
        # after loading, so that the libraries the backend brought are bounded too
        self.get_logger().info(f"threads: {limit_threads(p.threads or 0) or 'library defaults'}")
        # backends start with the sampler settings stored with the model
        self.model_sampler: SamplerSettings = backend.settings
        backend.configure(self._sampler_settings(p))
        if (backend.name, p.device) != ("torch", "cpu"):  # a run-time fault: CPU torch
            backend = FallbackOnFailure(backend, lambda: load_backend("torch", path, "cpu"),
                                        self.get_logger().warning)
        if p.num_points and p.num_points != backend.num_points:
            raise ValueError(f"num_points {p.num_points} != the model's {backend.num_points}"
                             " (set 0 to use the model's)")
        config = PipelineConfig(min_points=p.min_points, max_objects=p.max_objects,
                                depth_range=p.depth_range, max_hypotheses=p.max_hypotheses,
                                subsets=p.average_subsets,
                                reject_outliers=p.average_reject_outliers, seed=p.seed)
        from posediff_ros.calibration import load_for_model

        calibration = None if path == "random" else load_for_model(path)
        self.get_logger().info(f"model {path} loaded; sampler {self._sampler_settings(p)}; "
                               f"covariance {'calibrated' if calibration else 'not calibrated'}")
        if p.tracking and p.warm_start and not getattr(backend, "warm_start", False):
            self.get_logger().warning(f"backend {backend.name} has no warm start: tracking "
                                      "keeps ids and smoothing, every start is cold")
        return Pipeline(backend, config, calibration)

    def _tracker_config(self, p: NodeParams) -> TrackerConfig:
        defaults = TrackerConfig()
        warm = p.warm_start and getattr(self.pipeline.backend, "warm_start", False)
        return dataclasses.replace(
            defaults, warm_start=warm, smoothing=p.smoothing, max_age=p.track_max_age,
            warm_t0=p.warm_t0 if p.warm_t0 is not None else self.model_sampler.t_start_warm,
            warm_steps=p.warm_steps or defaults.warm_steps, estimate_every=p.estimate_every,
            depth_odometry=p.camera_odometry)

    def _on_reset(self, request, response):
        """~/reset: every track is forgotten before the next frame (by the worker)."""
        self._reset_tracks.set()
        response.success, response.message = True, "tracks cleared; ids start again at 1"
        return response

    # --- parameter changes: checked here, applied by the worker between frames ----------------

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Runs in the executor: validates only (fast), never waits for inference. Only the
        sampler's parameters change (the others are declared read-only)."""
        changes = {q.name: q.value for q in params if q.name in SAMPLER_PARAMS + TRACKING_PARAMS}
        if not changes or self.pipeline is None:  # unconfigured: checked at configure
            return SetParametersResult(successful=True)
        try:
            requested = NodeParams.from_ros(self._parameter_values(changes))
            self._sampler_settings(requested).validate()
        except (ValueError, KeyError, TypeError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        self._requested = requested  # one reference swap: the worker picks it up
        return SetParametersResult(successful=True)

    def _apply_requested(self) -> None:
        """In the worker, between frames: configure the backend (which may export a graph)."""
        if self._reset_tracks.is_set():
            self._reset_tracks.clear()
            count = len(self.tracker.tracks)
            self.tracker.reset()
            self.get_logger().info(f"~/reset: {count} tracks cleared, ids start again at 1")
        requested = self._requested
        if requested is self._handled:
            return
        self._handled = requested
        self.tracker.config = self._tracker_config(requested)
        if requested.tracking != self.params.tracking:
            self.tracker.reset()
        settings = self._sampler_settings(requested)
        try:
            self.pipeline.configure(settings)
        except Exception as err:  # noqa: BLE001 - a failed export must not stop the node
            self.get_logger().error(f"sampler settings {settings} not applied: {err}")
            return
        # one seed for a frame's sampler noise and its point subsets
        self.pipeline.config = dataclasses.replace(self.pipeline.config, seed=requested.seed)
        changed = {k: getattr(requested, k) for k in SAMPLER_PARAMS + TRACKING_PARAMS
                   if getattr(requested, k) != getattr(self.params, k)}
        self.params = requested
        self.get_logger().info(f"settings changed: {changed}")

    # --- inputs ---------------------------------------------------------------------------

    def _warn(self, key: str, text: str, period: float = 5.0) -> None:
        """One log line per kind of problem per `period` seconds; the kind is `key` plus the
        text without its numbers, so different problems of one input each get their line."""
        now = time.monotonic()
        self.health.problem(text, now)
        key = f"{key}|{re.sub(r'[0-9]+', '#', text)[:80]}"
        if len(self._last_log) > 256:  # texts come from the wire: keep the table bounded
            self._last_log = {k: t for k, t in self._last_log.items() if now - t < period}
        if now - self._last_log.get(key, -1e9) >= period:
            self._last_log[key] = now
            self.get_logger().warning(text)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.health.input("camera_info")
        self.camera_infos.add(convert.stamp_to_ns(msg.header.stamp), msg)

    def _on_color(self, msg: Image) -> None:
        self.colors = (self.colors + [msg])[-5:]

    def _on_sync(self, topic: str, msg) -> None:
        self.health.input(topic)
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        self._note_arrival(stamp_ns)
        for frame in self.sync.add(topic, stamp_ns, msg):
            now_ns = self.get_clock().now().nanoseconds
            frame["_paired_ns"] = now_ns
            self.health.paired((now_ns - frame["_stamp_ns"]) / 1e6)
            self.slot.put(frame)  # several at once: the newest is processed, older skipped
        self._report_sync_drops()

    def _report_sync_drops(self) -> None:
        """One throttled line per kind of drop whose count grew."""
        s, p = self.sync.stats, self.params
        values = s.values()
        texts = {
            "unmatched": f"{sum(s.unmatched.values())} input messages dropped so far without "
                         f"a partner ({values['messages dropped unpaired']}; frames missing "
                         f"{values['frames dropped, missing topic']}): lost on best-effort "
                         f"transport, or stamps that never pair ({p.sync} sync of "
                         f"{self.sync.topics})",
            "late": f"late messages dropped: {values['messages dropped late']} (their frame "
                    f"was older than one already answered, or {p.max_age} s behind)",
            "duplicates": f"duplicate stamps dropped: {values['duplicate stamps dropped']}",
            "resets": f"stamps jumped back more than 2 s ({s.resets} times so far: bag looped, "
                      "camera restarted or simulated time reset): the pairing started over"}
        for kind, text in texts.items():
            counts = getattr(s, kind)
            count = counts if isinstance(counts, int) else sum(counts.values())
            if count > self._sync_drops.get(kind, 0):
                self._sync_drops[kind] = count
                self._warn(f"sync:{kind}", text)

    def _note_arrival(self, stamp_ns: int) -> None:
        """When the first input of a stamp arrived (for the pairing wait); bounded."""
        if stamp_ns not in self._arrivals:
            if len(self._arrivals) >= 64:
                self._arrivals.pop(next(iter(self._arrivals)))
            self._arrivals[stamp_ns] = self.get_clock().now().nanoseconds

    # --- worker ---------------------------------------------------------------------------

    def _work(self, slot: LatestSlot) -> None:
        while rclpy.ok(context=self.context) and not slot.closed:
            self._apply_requested()
            frame = slot.take(timeout=0.5)
            if frame is None:
                continue
            try:
                self._process(frame)
            except Exception as err:  # noqa: BLE001 - bad input must never stop the node
                name = type(err).__name__
                self._warn(f"error:{name}", f"frame skipped: {name}: {err}")

    def _class_of(self, det) -> int | None:
        """NOCS class of a Detection2D, or None (no hypothesis, not a NOCS category)."""
        if not det.results:
            return None
        name = det.results[0].hypothesis.class_id
        cls = self.class_names.resolve(name)
        if cls is None:
            self._warn("class", f"detection class {name!r} is not a NOCS category: skipped "
                       "(class_aliases maps detector names, e.g. ['tumbler:mug'])", period=30.0)
        return cls

    def _classes(self, frame: dict) -> dict[int, int]:
        if self.params.class_source == "parameter":
            return self.params.mask_classes
        classes = {}
        for det in frame["detections"].detections:
            cls = self._class_of(det)
            if cls is None:
                continue
            try:
                classes[int(det.id)] = cls
            except ValueError:
                self._warn("detections", f"detection id {det.id!r} is not a mask id: ignored")
        return classes

    def _input_laps(self, frame: dict) -> Laps:
        """The frame's stages before the worker: receive (its stamp to the arrival of its
        first input), pairing wait (to the arrival of the last), queue (until the worker took
        it; includes waiting for the frame before)."""
        stamp, paired = frame["_stamp_ns"], frame["_paired_ns"]
        first = min(self._arrivals.get(stamp, paired), paired)
        return Laps({"receive": (first - stamp) / 1e6, "pairing wait": (paired - first) / 1e6,
                     "queue": (self.get_clock().now().nanoseconds - paired) / 1e6})

    def _cut_boxes(self, frame: dict, depth, K) -> tuple:
        """segmentation=boxes: (instance mask, classes), each object cut out of the depth
        inside its box (data/boxes.py)."""
        boxes, ids = [], []
        for det in frame["detections"].detections:
            cls = self._class_of(det)
            if cls is not None:
                box = det.bbox
                boxes.append(Box.from_center(box.center.position.x, box.center.position.y,
                                             box.size_x, box.size_y, cls))
                ids.append(det.id)
        return instances_from_boxes(depth, K, boxes, ids, self.box_config)

    def _inputs(self, frame: dict, depth, K) -> tuple:
        """(instance mask, {instance: class}, background) of a frame; ValueError if bad."""
        p = self.params
        if p.segmentation == "boxes":
            if K is None:
                raise ValueError("no camera_info received yet")
            return (*self._cut_boxes(frame, depth, K), 0)
        if p.class_source == "color_mask":
            mask, classes = instances_from_color_mask(convert.color_to_rgb(frame["mask"]),
                                                      p.class_colors)
            return mask, classes, 0
        return convert.mask_to_numpy(frame["mask"]), self._classes(frame), p.mask_background

    def _process(self, frame: dict) -> None:
        p = self.params
        laps = self._input_laps(frame)
        info = self.camera_infos.pick(frame["_stamp_ns"])
        try:  # boxes: metres for the cut; else as sent (uint16 mm or float32 m), not copied
            depth = (convert.depth_to_metres(frame["depth"]) if p.segmentation == "boxes"
                     else convert.depth_image(frame["depth"]))
        except ValueError as err:
            return self._reject(frame, "depth", f"depth image rejected: {err}")
        try:
            K = None if info is None else convert.camera_info_to_k(info)
        except ValueError as err:
            return self._reject(frame, "camera_info", f"camera_info rejected: {err}")
        try:
            mask, classes, background = self._inputs(frame, depth, K)
        except ValueError as err:
            what = "mask image" if p.segmentation == "mask" else "box input"
            return self._reject(frame, "mask", f"{what} rejected: {err}")
        laps.lap("conversion")
        problems = frame_problems(
            depth, mask, K, camera_size=None if info is None else (info.width, info.height),
            depth_range=p.depth_range, background=background,
            camera_info_age_s=time.monotonic() - self.health.last_seen.get("camera_info", 0.0),
            stale_after_s=self.health.limits.stale_camera_info_s)
        for problem in problems:
            self._warn(problem.kind, problem.text, period=problem.period_s)
        if any(problem.skip for problem in problems):
            return self._reject(frame)
        laps.lap("checks")
        if p.tracking:
            result = self.pipeline.track(self.tracker, depth, mask, K, classes, background,
                                         frame["_stamp_ns"] * 1e-9)
        else:
            result = self.pipeline.process(depth, mask, K, classes, background)
        t = result.timings_ms
        laps.lap("pipeline", {"extraction": t.get("points", 0.0), "model": t.get("inference", 0.0),
                              **{k: t[k] for k in ("tracking", "hypotheses") if k in t}})
        self.health.inference(t.get("inference", 0.0))
        for inst, why in result.skipped:
            self._warn(f"object:{why[:20]}", f"object {inst} skipped: {why}")
        self._publish(frame, K, result, laps)

    def _reject(self, frame: dict, kind: str = "", text: str = "") -> None:
        """A frame that cannot be processed: say why, and clear the outputs (an empty
        object_poses, the markers deleted) so no stale pose stays on screen."""
        if text:
            self._warn(kind, text)
        header = self._header(frame)
        header.frame_id = self.params.target_frame or header.frame_id  # where the markers are
        self.poses_pub.publish(messages.detections_msg(header, []))
        if self.params.publish_markers:
            self.markers_pub.publish(self.markers.update(header, [], []))

    # --- outputs --------------------------------------------------------------------------

    def _header(self, frame: dict) -> Header:
        depth = frame["depth"]
        return Header(stamp=depth.header.stamp,
                      frame_id=self.params.camera_frame or depth.header.frame_id)

    def _publish(self, frame: dict, K, result, laps: Laps) -> None:
        """Every output is built only when enabled and someone subscribes to it."""
        header = self._header(frame)
        objects = camera_objects = result.objects
        camera_header = header
        names = object_names(objects, self.frame_prefix)
        raw = [dataclasses.replace(o, rotation=o.raw_rotation, translation=o.raw_translation,
                                   covariance=o.raw_covariance) for o in objects
               if hasattr(o, "raw_rotation")] if self._raw_wanted() else []
        if self.params.target_frame:
            moved = self._to_target_frame(header, objects + raw, frame["_stamp_ns"])
            if moved is None:
                return
            header, moved_objects = moved
            objects, raw = moved_objects[:len(objects)], moved_objects[len(objects):]
            laps.lap("target frame")
        if self.poses_pub.get_subscription_count():
            self.poses_pub.publish(messages.detections_msg(header, objects))
            self.published["object_poses"] += 1
        if self._raw_wanted():
            self.raw_pub.publish(messages.detections_msg(header, raw))
            self.published["object_poses_raw"] += 1
        laps.lap("poses")
        stamp_ns = frame["_stamp_ns"]
        laps.ms["stamp to poses"] = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
        if self.params.publish_tf:
            if objects and self._tf_subscribed():
                tfs = messages.transforms(header, objects, names)
                if self.tf_broadcaster is not None:
                    self.tf_broadcaster.sendTransform(tfs)
                else:
                    self.tf_pub.publish(self._tf_message(transforms=tfs))
                self.published["tf"] += 1
            laps.lap("tf")
        if self.params.publish_markers:
            if self.markers_pub.get_subscription_count():
                self.markers_pub.publish(self.markers.update(header, objects, names))
                self.published["markers"] += 1
            laps.lap("markers")
        if self.params.publish_debug:
            if objects and self.cloud_pub.get_subscription_count():
                self._publish_cloud(header, objects)
                self.published["debug/points"] += 1
            laps.lap("debug")
        if self.params.publish_overlay:  # drawn in the image: camera-frame poses
            if self.overlay_pub.get_subscription_count():
                self._publish_overlay(camera_header, stamp_ns, K, camera_objects, names)
            laps.lap("overlay")
        self.stage_times.add(laps.ms)
        self._count(stamp_ns, len(objects))

    def _raw_wanted(self) -> bool:
        return self.params.publish_raw and self.raw_pub.get_subscription_count() > 0

    def _tf_subscribed(self) -> bool:
        pub = self.tf_broadcaster.pub_tf if self.tf_broadcaster is not None else self.tf_pub
        return pub.get_subscription_count() > 0

    def _publish_cloud(self, header: Header, objects) -> None:
        import numpy as np

        points = np.concatenate([o.points for o in objects])
        labels = np.repeat([o.instance_id for o in objects], [len(o.points) for o in objects])
        self.cloud_pub.publish(convert.points_to_cloud(points, labels, header=header))

    def _to_target_frame(self, header: Header, objects, stamp_ns: int):
        """(header, objects) in target_frame, with the transform at the input stamp; None
        (and one throttled line) when it is not there within transform_timeout."""
        target = self.params.target_frame
        start = time.perf_counter()
        try:
            transform = self.tf_listener.lookup(target, header.frame_id, stamp_ns,
                                                self.params.transform_timeout)
        except TransformUnavailable as err:
            return self._warn("tf", f"outputs not published: no transform {header.frame_id} -> "
                              f"{target} at the input stamp within {self.params.transform_timeout}"
                              f" s: {err}")
        objects = [transform_object(o, transform) for o in objects]
        self.stats.transform_ms_sum += 1e3 * (time.perf_counter() - start)
        return Header(stamp=header.stamp, frame_id=target), objects

    def _publish_overlay(self, header: Header, stamp_ns: int, K, objects, names) -> None:
        near = [c for c in self.colors
                if abs(convert.stamp_to_ns(c.header.stamp) - stamp_ns) <= self.params.slop * 1e9]
        if not near:
            return self._warn("overlay", "no colour image near the frame's stamp: no overlay")
        try:
            rgb = convert.color_to_rgb(near[-1])
        except ValueError as err:
            return self._warn("color", f"colour image rejected: {err}")
        image = draw_overlay(rgb, K, objects, names)
        self.overlay_pub.publish(convert.numpy_to_image(image, "rgb8", header=header))
        self.published["overlay"] += 1

    def _count(self, stamp_ns: int, num_objects: int) -> None:
        s = self.stats
        s.frames += 1
        s.objects += num_objects
        latency_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
        s.latency_ms_sum += latency_ms
        self.health.output(latency_ms)
        elapsed = time.monotonic() - s.since
        if self.params.log_period > 0 and elapsed >= self.params.log_period:
            tf = (f", transform to {self.params.target_frame} {s.transform_ms_sum / s.frames:.2f}"
                  " ms" if self.params.target_frame else "")
            self.get_logger().info(
                f"{s.frames / elapsed:.1f} frames/s, {s.objects / s.frames:.1f} objects/frame, "
                f"latency {s.latency_ms_sum / s.frames:.0f} ms (stamp to output){tf}, "
                f"{self.slot.replaced} frames skipped while busy")
            self.stats = Stats(since=time.monotonic())


def _stop_worker(node: PoseNode) -> None:
    node._stop()  # whatever state the node is in: no publishing into a destroyed node
    logging.getLogger("posediff_ros").removeHandler(node._log_bridge)


def main(args: list[str] | None = None) -> int:
    return run_node(PoseNode, "posediff_node", args, cleanup=_stop_worker)


if __name__ == "__main__":
    sys.exit(main())
