"""What every inference backend (torch, onnxruntime, tensorrt) offers the node, bench and eval."""

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..model.settings import SamplerSettings  # what configure() takes


@dataclass
class PoseBatch:
    """Poses of B objects, camera frame, camera-from-object."""

    rotation: np.ndarray  # (B, 3, 3)
    translation: np.ndarray  # (B, 3) metres
    size: np.ndarray  # (B, 3) box extents along the object's x, y, z, metres
    score: np.ndarray  # (B,) confidence in [0, 1]
    # (B, 6, 6) over (x, y, z, rot x, rot y, rot z) as in geometry_msgs/PoseWithCovariance,
    # or None when a single sample was drawn
    covariance: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    # every sample when several were drawn (hypotheses.py clusters them into modes):
    # (B, N, 3, 3) and (B, N, 3), or None for a single sample
    samples_rotation: np.ndarray | None = None
    samples_translation: np.ndarray | None = None


@dataclass
class WarmStart:
    """Start the sampler of each object from a given pose (tracking: its previous pose)
    noised to diffusion time t0, and take `steps` steps (SamplerSettings init=warm)."""

    rotation: np.ndarray  # (B, 3, 3) camera-from-object
    translation: np.ndarray  # (B, 3) metres, camera frame
    t0: float
    steps: int

    def settings(self, base: SamplerSettings) -> SamplerSettings:
        """The configured sampler with this start (solver, w_t, samples, seed kept)."""
        return base.override(init="warm", steps=self.steps, t_start_warm=self.t0)


class Backend(Protocol):
    """Batched pose inference. points: (B, P, 3) float32 camera-frame points of B objects
    (P = the model's point count); class_ids: (B,) int64 NOCS ids 1..6; warm: start from given
    poses instead of the configured start (backends with `warm_start` True)."""

    name: str
    num_points: int
    warm_start: bool

    def predict(self, points: np.ndarray, class_ids: np.ndarray,
                warm: WarmStart | None = None) -> PoseBatch: ...

    def configure(self, settings: SamplerSettings) -> None: ...
