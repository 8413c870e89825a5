"""posediff_node's parameters, ROS-free (so they are unit-tested directly): parsing of the
string-list parameters, and NodeParams, the one frozen value the node reads them from."""

from dataclasses import dataclass
from typing import Any

from posediff_ros.categories import BY_ID, class_id


def parse_class(text: str) -> int:
    """'mug' or '6' -> 6 (NOCS id); raises ValueError."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        cls = int(text)
        if cls not in BY_ID:
            raise ValueError(f"class id {cls} is not a NOCS class (1..6)")
        return cls
    try:
        return class_id(text)
    except KeyError as err:
        raise ValueError(str(err.args[0])) from None


def parse_class_map(entries: list[str]) -> dict[int, int]:
    """['1:mug', '2:6'] -> {1: 6, 2: 6}: mask id -> NOCS class id."""
    out = {}
    for entry in entries:
        if not entry.strip():
            continue
        key, sep, value = entry.partition(":")
        if not sep or not key.strip().isdigit():
            raise ValueError(f"mask_classes entry {entry!r} is not '<mask id>:<class>'")
        out[int(key)] = parse_class(value)
    return out


def parse_palette(entries: list[str]) -> dict[tuple[int, int, int], int]:
    """['mug:#ff0000', 'bowl:0,255,0'] -> {(255, 0, 0): 6, (0, 255, 0): 2}."""
    out = {}
    for entry in entries:
        if not entry.strip():
            continue
        name, sep, colour = entry.partition(":")
        if not sep:
            raise ValueError(f"class_colors entry {entry!r} is not '<class>:<#rrggbb or r,g,b>'")
        colour = colour.strip()
        try:
            if colour.startswith("#") and len(colour) == 7:
                rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
            else:
                rgb = tuple(int(c) for c in colour.split(","))
        except ValueError:
            raise ValueError(f"class_colors entry {entry!r}: bad colour {colour!r}") from None
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError(f"class_colors entry {entry!r}: colour must be 3 values 0..255")
        out[rgb] = parse_class(name)
    return out


def parse_class_aliases(entries: list[str]) -> dict[str, int]:
    """['cup:mug', 'Tumbler:6'] -> {'cup': 6, 'tumbler': 6}: detector class name -> NOCS id
    (the name as a detector writes it, any case; the class as a NOCS name or number)."""
    out = {}
    for entry in entries:
        if not entry.strip():
            continue
        name, sep, value = entry.rpartition(":")
        if not sep or not name.strip():
            raise ValueError(f"class_aliases entry {entry!r} is not '<detector class>:<class>'")
        out[name.strip()] = parse_class(value)
    return out


# --- the node's parameters as one frozen value ------------------------------------------------

CLASS_SOURCES = ("detections", "parameter", "color_mask")
SEGMENTATIONS = ("mask", "boxes")
SYNC_POLICIES = ("exact", "approximate")
# the sampler's parameters: changeable while running (the others are read-only)
SAMPLER_PARAMS = ("steps", "solver", "w_schedule", "w_max", "num_samples", "init", "seed")
# tracking's: changeable while running too (applied between frames)
TRACKING_PARAMS = ("tracking", "smoothing", "warm_start", "warm_t0", "warm_steps",
                   "track_max_age", "estimate_every", "camera_odometry")
AUTO_PREFIX = "auto"  # frame_prefix: derived from the node's fully qualified name


def _none_if(value, unset):
    """ROS parameters cannot be None: 0 / "" / a negative number spell "not set"."""
    return None if unset(value) else value


@dataclass(frozen=True)
class NodeParams:
    """posediff_node's parameters, parsed and checked once; a change is a new object.

    None means "not set": the model's value (sampler, num_points), the bundled model
    (model_path), the depth image's frame (camera_frame), torch's default (threads), new noise
    every call (seed). The ROS parameters spell None as 0, "" or -1 (node.PARAMETERS)."""

    model_path: str | None
    backend: str
    device: str
    threads: int | None
    # sampler: None = the value stored with the model
    steps: int | None
    solver: str | None
    w_schedule: str | None
    w_max: float | None
    num_samples: int
    init: str | None
    seed: int | None
    max_hypotheses: int  # num_samples > 1: modes per object published (0 = all)
    average_subsets: int  # test-time averaging: K point subsets per object (1 = off)
    average_reject_outliers: bool  # averaging: the largest agreeing mode (False: mean of all)
    # point extraction
    num_points: int | None
    max_objects: int
    min_points: int
    depth_min: float
    depth_max: float
    # inputs
    class_source: str
    mask_classes: dict[int, int]  # mask id -> NOCS class id
    class_colors: dict[tuple[int, int, int], int]  # rgb -> NOCS class id
    mask_background: int
    segmentation: str  # mask: an instance mask topic; boxes: the detections' boxes only
    class_aliases: dict[str, int]  # detector class name -> NOCS class id (on the defaults)
    sync: str  # exact | approximate
    slop: float
    queue_size: int
    max_age: float
    # tracking (tracking/): stable ids, smoothing, warm-started sampling
    tracking: bool
    smoothing: bool
    warm_start: bool
    warm_t0: float | None  # None: the model's t_start_warm
    warm_steps: int | None  # None: the tracker's default
    track_max_age: float
    estimate_every: int  # re-estimate still, confidently tracked objects every N frames
    camera_odometry: bool  # the camera's motion by ICP on the depth (else the centroid fit)
    publish_raw: bool
    # outputs
    camera_frame: str | None
    target_frame: str | None  # None: outputs in the camera frame
    transform_timeout: float  # s to wait for the camera -> target_frame transform
    frame_prefix: str
    publish_tf: bool
    publish_markers: bool
    publish_debug: bool
    publish_overlay: bool
    log_period: float
    managed: bool  # lifecycle: wait for configure / activate instead of starting at once

    @classmethod
    def from_ros(cls, values: dict[str, Any]) -> "NodeParams":
        """From {parameter name: value} as declared; raises ValueError naming the problem."""
        v = dict(values)
        for name in ("model_path", "solver", "w_schedule", "init", "camera_frame",
                     "target_frame"):
            v[name] = _none_if(v[name], lambda x: x == "")
        for name in ("threads", "steps", "num_points", "warm_steps"):
            v[name] = _none_if(v[name], lambda x: x == 0)
        for name in ("w_max", "warm_t0"):
            v[name] = _none_if(v[name], lambda x: x < 0)
        v["seed"] = _none_if(v["seed"], lambda x: x < 0)
        v["mask_classes"] = parse_class_map(v["mask_classes"])
        v["class_colors"] = parse_palette(v["class_colors"])
        v["class_aliases"] = parse_class_aliases(v["class_aliases"])
        params = cls(**v)
        params.validate()
        return params

    def validate(self) -> None:
        if self.class_source not in CLASS_SOURCES:
            raise ValueError(f"class_source {self.class_source!r} not in {CLASS_SOURCES}")
        if self.depth_min >= self.depth_max:
            raise ValueError(f"depth_min {self.depth_min} must be < depth_max {self.depth_max}")
        if self.class_source == "parameter" and not self.mask_classes:
            raise ValueError("class_source=parameter needs mask_classes, e.g. ['1:mug', '2:bowl']")
        if self.class_source == "color_mask" and not self.class_colors:
            raise ValueError("class_source=color_mask needs class_colors, e.g. ['mug:#ff0000']")
        if self.segmentation not in SEGMENTATIONS:
            raise ValueError(f"segmentation {self.segmentation!r} not in {SEGMENTATIONS}")
        if self.segmentation == "boxes" and self.class_source != "detections":
            raise ValueError("segmentation=boxes takes the classes from the detections: "
                             "class_source must be detections")
        if self.warm_t0 is not None and not 0.0 < self.warm_t0 <= 1.0:
            raise ValueError(f"warm_t0 {self.warm_t0} must be in (0, 1] (or -1: the model's)")
        if self.sync not in SYNC_POLICIES:
            raise ValueError(f"sync {self.sync!r} not in {SYNC_POLICIES}")
        if self.average_subsets < 1:
            raise ValueError(f"average_subsets {self.average_subsets} must be >= 1 (1 = off)")

    def sampler_overrides(self) -> dict[str, Any]:
        """The sampler fields set on top of the model's: None ones left out, except the seed
        (None there is a setting of its own: new noise every call)."""
        out = {name: getattr(self, name) for name in SAMPLER_PARAMS}
        return {k: v for k, v in out.items() if v is not None or k == "seed"}

    def tf_prefix(self, node_name: str) -> str:
        """The object frames' prefix: frame_prefix, or with "auto" the node's fully qualified
        name (unique in a ROS graph): /cam1/posediff_node -> "cam1/posediff_node/", so two
        nodes never publish the same child frame with different parents."""
        if self.frame_prefix != AUTO_PREFIX:
            return self.frame_prefix
        return node_name.strip("/") + "/"

    @property
    def depth_range(self) -> tuple[float, float]:
        return (self.depth_min, self.depth_max)

    @property
    def sync_topics(self) -> list[str]:
        """The inputs paired by stamp (boxes: no mask topic)."""
        mask = ["mask"] if self.segmentation == "mask" else []
        return ["depth", *mask] + (["detections"] if self.class_source == "detections" else [])
