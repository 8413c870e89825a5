"""Few-step score-scaled sampling of the probability-flow ODE (k-diffusion style).

Everything is a small free function: sigma schedules, w_t (score-scaling) schedules, and
solvers with one signature `solver(denoise, x, sigmas, w, callback) -> x`. `denoise(x, sigma)`
returns the denoised estimate D = x + sigma^2 * score. For a fixed step count the loop unrolls
into a fixed graph (ONNX export traces it).

Score scaling: the scaled ODE is dx/dsigma = w * (x - D) / sigma (score multiplied by w).
Each solver integrates that linear part exactly with D held fixed over a (sub)step:
    x_next = D + (x - D) * (sigma_next / sigma) ** w
At w = 1 this is exactly k-diffusion's Euler/DDIM step; for w > 1 a plain Euler step would
overshoot (x - w (x - D) for a big step) and few-step sampling would diverge.
"""

import math
from collections.abc import Callable

import torch

from .sde import VESDE

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


# --- GenPose-style baseline: many hypotheses, many steps, a selection step ----------------


def select_and_average(rot: torch.Tensor, trans: torch.Tensor, keep: float = 0.6):
    """Selection rule standing in for GenPose's energy network (we train none): keep the
    `keep` fraction of hypotheses closest to the hypotheses' mean pose (chordal rotation
    distance in radians-ish units + translation distance, both in the normalised frame), then
    average them (chordal rotation mean, translation mean).
    rot (B, N, 3, 3), trans (B, N, 3) -> (B, 3, 3), (B, 3)."""
    from .rotation import mean_rotation

    r_mean = mean_rotation(rot, dim=1)
    t_mean = trans.mean(dim=1)
    dist = (rot - r_mean[:, None]).flatten(2).norm(dim=-1) + (trans - t_mean[:, None]).norm(dim=-1)
    n_keep = max(1, math.ceil(keep * rot.shape[1]))
    idx = dist.topk(n_keep, dim=1, largest=False).indices
    b = torch.arange(rot.shape[0], device=rot.device)[:, None]
    return mean_rotation(rot[b, idx], dim=1), trans[b, idx].mean(dim=1)
