"""SamplerSettings: the one description of a sampler run, stored with a model, the defaults of
every backend and program, changed at run time with override().

Plain data without torch, so that a node running an exported graph (onnxruntime) reads its
model's settings without importing the network's code; model/sampler.py holds what the names
mean (SOLVERS, W_SCHEDULES) and checks that they match these.
"""

import dataclasses
from dataclasses import dataclass

SOLVER_NAMES = ("euler", "heun", "dpm2")
W_SCHEDULE_NAMES = ("exponential", "linear", "constant", "none", "tsr")

# Start modes: what the start noise (at sigma(start time)) is added to, and which field holds
# the start time. noise: the prior's mean 0, as GenPose; regression: the regression head's
# pose; warm: a given pose per object (tracking: the object's previous pose), from a small
# start time with 1-3 steps.
START_TIMES = {"noise": "t_start", "regression": "t_start_regression", "warm": "t_start_warm"}


@dataclass(frozen=True)
class SamplerSettings:
    """Few-step score-scaled sampling of the PF-ODE. A model file stores the settings it was
    tuned with ("sampler" in its JSON); backends and programs start from those and change
    fields with override() (None = keep). Frozen: a change is a new value (and a graph key)."""

    steps: int = 4
    solver: str = "euler"  # euler | heun | dpm2
    w_schedule: str = "exponential"  # exponential | linear | constant | none | tsr
    w_max: float = 4.0
    init: str = "noise"  # the start mode, one of START_TIMES
    t_start: float = 0.55  # init=noise starts here (GenPose: sigma ~1.1)
    t_end: float = 1e-5
    t_start_regression: float = 0.25  # init=regression starts here, near the regression pose
    t_start_warm: float = 0.25  # init=warm starts here, near the given (previous) pose
    tsr_sigma_d: float = 0.05  # w_schedule=tsr: the data spread its factor assumes
    num_samples: int = 1  # >1: mean pose + covariance from the spread
    seed: int | None = 0  # fixed noise -> reproducible poses; None = new noise every call

    def override(self, **changes) -> "SamplerSettings":
        """These settings with the given fields replaced; None leaves a field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def start_time(self) -> float:
        """Diffusion time the ODE starts at, the start mode's."""
        return getattr(self, START_TIMES[self.init])

    def graph_key(self) -> "SamplerSettings":
        """What a fixed-step graph bakes in: everything but the seed (the noise is an input)."""
        return dataclasses.replace(self, seed=None)

    def tag(self) -> str:
        """Short readable name of a graph's settings (file names)."""
        return (f"{self.solver}{self.steps}-{self.w_schedule}{self.w_max:g}-n{self.num_samples}"
                f"-{self.init}")

    def validate(self) -> None:
        """Raise ValueError naming the bad field; every backend's configure() calls this."""
        if self.solver not in SOLVER_NAMES:
            raise ValueError(f"unknown solver {self.solver!r}; known: {', '.join(SOLVER_NAMES)}")
        if self.w_schedule not in W_SCHEDULE_NAMES:
            raise ValueError(f"unknown w_schedule {self.w_schedule!r}; "
                             f"known: {', '.join(W_SCHEDULE_NAMES)}")
        if self.init not in START_TIMES:
            raise ValueError(f"unknown init {self.init!r}; known: {', '.join(START_TIMES)}")
        if self.steps < 1 or self.num_samples < 1:
            raise ValueError("steps and num_samples must be >= 1")
