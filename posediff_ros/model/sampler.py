"""Few-step score-scaled sampling of the probability-flow ODE (k-diffusion style).

Everything is a small free function: sigma schedules, w_t (score-scaling) schedules, and
solvers with one signature `solver(denoise, x, sigmas, w, callback) -> x`. `denoise(x, sigma)`
returns the denoised estimate D = x + sigma^2 * score. For a fixed step count the loop unrolls
into a fixed graph (ONNX export traces it).

SamplerSettings (model/settings.py, torch-free) is the one description of a sampler run
(stored with a model, the defaults of every backend and program, changed at run time with
override()); make_schedule turns it into the noise levels and w_t that the torch model, the
exported graph and every backend use. Its solver and w_t names are SOLVERS' and W_SCHEDULES'
keys here (test_sampler_settings checks that they match).

Score scaling: the scaled ODE is dx/dsigma = w * (x - D) / sigma (score multiplied by w).
Each solver integrates that linear part exactly with D held fixed over a (sub)step:
    x_next = D + (x - D) * (sigma_next / sigma) ** w
At w = 1 this is exactly k-diffusion's Euler/DDIM step; for w > 1 a plain Euler step would
overshoot (x - w (x - D) for a big step) and few-step sampling would diverge.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .sde import VESDE
from .settings import START_TIMES, SamplerSettings  # noqa: F401 - re-exported: the config

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None]

# --- sigma schedules ------------------------------------------------------------------------


def get_sigmas(sde: VESDE, steps: int, t_start: float = 0.55, t_end: float | None = None):
    """steps + 1 noise levels from sigma(t_start) down to sigma(t_end), uniform in t (i.e.
    geometric in sigma, the VE-SDE's own clock)."""
    t_end = sde.eps if t_end is None else t_end
    return sde.sigma(torch.linspace(t_start, t_end, steps + 1))


# --- w_t schedules: one weight per step, 1 at the first step and w_max at the last ---------


def _progress(steps: int) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, steps) if steps > 1 else torch.ones(1)


def w_exponential(sigmas: torch.Tensor, w_max: float, **_) -> torch.Tensor:
    return w_max ** _progress(len(sigmas) - 1)


def w_linear(sigmas: torch.Tensor, w_max: float, **_) -> torch.Tensor:
    return 1.0 + (w_max - 1.0) * _progress(len(sigmas) - 1)


def w_constant(sigmas: torch.Tensor, w_max: float, **_) -> torch.Tensor:
    return torch.full((len(sigmas) - 1,), float(w_max))


def w_none(sigmas: torch.Tensor, w_max: float, **_) -> torch.Tensor:
    return torch.ones(len(sigmas) - 1)


def w_tsr(sigmas: torch.Tensor, w_max: float, sigma_d: float = 0.05, **_) -> torch.Tensor:
    """Temporal Score Rescaling (Xu et al. 2025): the exact factor that turns the score of a
    Gaussian with spread sigma_d into that of its k = w_max times sharpened version, at each
    step's geometric-mean noise level. ~1 while sigma >> sigma_d, -> k as sigma -> 0."""
    s2 = sigmas[:-1] * sigmas[1:]
    d2 = sigma_d**2
    return (d2 + s2) / (d2 / w_max + s2)


W_SCHEDULES = {"exponential": w_exponential, "linear": w_linear, "constant": w_constant,
               "none": w_none, "tsr": w_tsr}


def get_w(name: str, sigmas: torch.Tensor, w_max: float, sigma_d: float = 0.05) -> torch.Tensor:
    if name not in W_SCHEDULES:
        raise ValueError(f"unknown w schedule {name!r}; known: {', '.join(W_SCHEDULES)}")
    return W_SCHEDULES[name](sigmas, w_max, sigma_d=sigma_d).to(sigmas.dtype)


# --- solvers -------------------------------------------------------------------------------


def _step(x: torch.Tensor, d: torch.Tensor, ratio: torch.Tensor, w: torch.Tensor):
    return d + (x - d) * ratio**w


def _report(callback, i, x, sigma, denoised, w):
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised, "w": w})


@torch.no_grad()
def sample_euler(denoise: Denoiser, x, sigmas, w, callback: Callback | None = None):
    """First order (DDIM) with score scaling; one network call per step."""
    for i in range(len(sigmas) - 1):
        d = denoise(x, sigmas[i])
        _report(callback, i, x, sigmas[i], d, w[i])
        x = _step(x, d, sigmas[i + 1] / sigmas[i], w[i])
    return x


@torch.no_grad()
def sample_heun(denoise: Denoiser, x, sigmas, w, callback: Callback | None = None):
    """Second order (trapezoidal on D), two network calls per step."""
    for i in range(len(sigmas) - 1):
        ratio = sigmas[i + 1] / sigmas[i]
        d = denoise(x, sigmas[i])
        _report(callback, i, x, sigmas[i], d, w[i])
        x_pred = _step(x, d, ratio, w[i])
        d2 = denoise(x_pred, sigmas[i + 1])
        x = _step(x, (d + d2) / 2, ratio, w[i])
    return x


@torch.no_grad()
def sample_dpm2(denoise: Denoiser, x, sigmas, w, callback: Callback | None = None):
    """DPM-Solver-2 style: D re-estimated at the log-sigma midpoint, two calls per step."""
    for i in range(len(sigmas) - 1):
        d = denoise(x, sigmas[i])
        _report(callback, i, x, sigmas[i], d, w[i])
        s_mid = (sigmas[i] * sigmas[i + 1]).sqrt()
        x_mid = _step(x, d, s_mid / sigmas[i], w[i])
        d_mid = denoise(x_mid, s_mid)
        x = _step(x, d_mid, sigmas[i + 1] / sigmas[i], w[i])
    return x


SOLVERS = {"euler": sample_euler, "heun": sample_heun, "dpm2": sample_dpm2}


def get_solver(name: str):
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known: {', '.join(SOLVERS)}")
    return SOLVERS[name]


def solve(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, solver: str = "euler",
          w_schedule: str = "exponential", w_max: float = 4.0, sigma_d: float = 0.05,
          callback: Callback | None = None) -> torch.Tensor:
    """Run the PF-ODE from x at sigmas[0] down to sigmas[-1] with score scaling."""
    w = get_w(w_schedule, sigmas, w_max, sigma_d).to(x.device)
    return get_solver(solver)(denoise, x, sigmas.to(x.device), w, callback)


@dataclass
class Schedule:
    sigmas: torch.Tensor  # (steps + 1,) noise levels, from the start down to the end
    w: torch.Tensor  # (steps,) score-scaling factor of each step


def make_schedule(sde: VESDE, settings: SamplerSettings) -> Schedule:
    """The noise levels and w_t of a sampler run (float32, CPU)."""
    settings.validate()
    sigmas = get_sigmas(sde, settings.steps, settings.start_time, settings.t_end)
    return Schedule(sigmas, get_w(settings.w_schedule, sigmas, settings.w_max,
                                  settings.tsr_sigma_d))


def start_point(init: str, noise: torch.Tensor, sigma0: torch.Tensor,
                reg_pose: torch.Tensor | None = None,
                start_pose: torch.Tensor | None = None) -> torch.Tensor:
    """x at the first noise level: noise (B, N, 9) scaled by sigma0, around the start mode's
    mean (reg_pose (B, 9): the regression head's pose, for init=regression; start_pose (B, 9):
    the given pose, normalised frame, for init=warm)."""
    x = sigma0 * noise
    if init == "regression":
        x = reg_pose[:, None] + x
    elif init == "warm":
        if start_pose is None:
            raise ValueError("init=warm needs a start pose per object")
        x = start_pose[:, None] + x
    return x


def sample(denoise: Denoiser, noise: torch.Tensor, schedule: Schedule, settings: SamplerSettings,
           reg_pose: torch.Tensor | None = None, callback: Callback | None = None,
           start_pose: torch.Tensor | None = None):
    """A whole sampler run (eager torch): start point, then the solver down the schedule."""
    sigmas, w = schedule.sigmas.to(noise), schedule.w.to(noise.device)
    x = start_point(settings.init, noise, sigmas[0], reg_pose, start_pose)
    return get_solver(settings.solver)(denoise, x, sigmas, w, callback)
