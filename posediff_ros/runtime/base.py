"""What every inference backend (torch, onnxruntime, tensorrt) offers the node, bench and eval."""

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class SamplerSettings:
    """Few-step score-scaled sampling, changeable at run time (node parameters)."""

    steps: int = 4
    solver: str = "euler"  # euler | heun | dpm2
    w_schedule: str = "exponential"  # exponential | linear | constant | none
    w_max: float = 4.0
    num_samples: int = 1  # >1: mean pose + covariance from the spread
    init: str = "noise"  # noise | regression (start the ODE from the regression pose)
    seed: int | None = 0  # fixed noise -> reproducible poses

    def validate(self) -> None:
        """Raise ValueError naming the bad field; every backend's configure() calls this."""
        from ..model.sampler import SOLVERS, W_SCHEDULES  # torch: imported only when needed

        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; known: {', '.join(SOLVERS)}")
        if self.w_schedule not in W_SCHEDULES:
            raise ValueError(f"unknown w_schedule {self.w_schedule!r}; "
                             f"known: {', '.join(W_SCHEDULES)}")
        if self.init not in ("noise", "regression"):
            raise ValueError(f"unknown init {self.init!r}; known: noise, regression")
        if self.steps < 1 or self.num_samples < 1:
            raise ValueError("steps and num_samples must be >= 1")


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


class Backend(Protocol):
    """Batched pose inference. points: (B, P, 3) float32 camera-frame points of B objects
    (P = the model's point count); class_ids: (B,) int64 NOCS ids 1..6."""

    name: str
    num_points: int

    def predict(self, points: np.ndarray, class_ids: np.ndarray) -> PoseBatch: ...

    def configure(self, settings: SamplerSettings) -> None: ...
