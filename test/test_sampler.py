"""Sampler: schedules, solvers, determinism, score scaling on a known Gaussian."""

import math

import pytest
import torch

from posediff_ros.model.sampler import (
    SOLVERS,
    W_SCHEDULES,
    get_sigmas,
    get_w,
    solve,
)
from posediff_ros.model.sde import VESDE

torch.set_num_threads(1)
SDE = VESDE()


def gaussian_denoiser(mu: torch.Tensor, sd: float):
    """Exact D(x, sigma) for data ~ N(mu, sd^2 I)."""
    def denoise(x, sigma):
        return mu + sd**2 / (sd**2 + sigma**2) * (x - mu)
    return denoise


def test_sigmas_are_geometric_and_span_the_range():
    s = get_sigmas(SDE, 4, 0.55)
    assert s.shape == (5,)
    assert s[0].item() == pytest.approx(0.01 * 5000**0.55, rel=1e-5)
    assert s[-1].item() == pytest.approx(0.01, rel=1e-3)
    ratios = s[1:] / s[:-1]
    torch.testing.assert_close(ratios, ratios[0].expand(4))


@pytest.mark.parametrize("name", list(W_SCHEDULES))
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 16])
def test_w_schedules(name, steps):
    s = get_sigmas(SDE, steps, 0.55)
    w = get_w(name, s, 4.0, sigma_d=0.05)
    assert w.shape == (steps,) and (w >= 1.0 - 1e-6).all() and (w <= 4.0 + 1e-5).all()
    assert (w[1:] >= w[:-1] - 1e-6).all()  # never decreases toward the end
    if name in ("exponential", "linear", "constant"):
        assert w[-1].item() == pytest.approx(4.0)
    if name in ("exponential", "linear") and steps > 1:
        assert w[0].item() == pytest.approx(1.0)
    if name == "none":
        assert torch.equal(w, torch.ones(steps))


def test_unknown_names_are_rejected():
    s = get_sigmas(SDE, 2)
    with pytest.raises(ValueError, match="unknown w schedule"):
        get_w("cubic", s, 2.0)
    with pytest.raises(ValueError, match="unknown solver"):
        solve(lambda x, sg: x, torch.zeros(1, 9), s, solver="rk45")


# --- against the exact solution of the Gaussian case ----------------------------------------
# Data ~ N(mu, sd^2): D(x, sigma) = mu + sd^2 / (sd^2 + sigma^2) (x - mu), and the scaled ODE
# dx/dsigma = w (x - D) / sigma becomes dy/dsigma = w sigma y / (sd^2 + sigma^2) for y = x - mu,
# solved exactly by y(s1) = y(s0) ((sd^2 + s1^2) / (sd^2 + s0^2))^(w / 2) for w constant on
# [s1, s0]. Every map is linear in y, so one point gives the gain (= the std ratio) exactly.
# All in float64: the errors measured are the solvers', not rounding.

MU, SD = 0.3, 0.1


def geometric(steps: int, start: float = 1.1, end: float = 0.01) -> torch.Tensor:
    return torch.logspace(math.log10(start), math.log10(end), steps + 1, dtype=torch.float64)


def exact_gain(sigmas: torch.Tensor, w: torch.Tensor, sd: float = SD) -> float:
    g = ((sd**2 + sigmas[1:] ** 2) / (sd**2 + sigmas[:-1] ** 2)) ** (w / 2)
    return float(g.prod())


def solver_gain(solver: str, sigmas: torch.Tensor, w: torch.Tensor, sd: float = SD) -> float:
    y0 = 1.0
    out = SOLVERS[solver](gaussian_denoiser(torch.tensor(MU, dtype=torch.float64), sd),
                          torch.tensor([MU + y0], dtype=torch.float64), sigmas, w)
    return float(out[0] - MU) / y0


def relative_error(solver: str, steps: int, w_value: float) -> float:
    sigmas = geometric(steps)
    w = torch.full((steps,), w_value, dtype=torch.float64)
    exact = exact_gain(sigmas, w)
    return abs(solver_gain(solver, sigmas, w) - exact) / exact


ORDER = {"euler": 1, "heun": 2, "dpm2": 2}


@pytest.mark.parametrize("w_value", [1.0, 3.0], ids=["unscaled", "w3"])
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_solver_order_on_the_gaussian_ode(solver, w_value):
    """Halving the step divides the error by 2^order (1 for Euler, 2 for Heun and DPM2).
    Measured ratios at 64 -> 128 steps: 1.99-2.03 and 3.86-3.97; a Heun that uses only its
    second slope gives 1.8-1.9, Euler in Heun's place 2."""
    e64, e128 = relative_error(solver, 64, w_value), relative_error(solver, 128, w_value)
    want = 2 ** ORDER[solver]
    assert 0.85 * want <= e64 / e128 <= 1.15 * want, (e64, e128, e64 / e128)
    assert e128 < 0.03  # converging to the exact solution, not to another one


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_scaled_sampling_reaches_the_exact_sharpened_std(solver):
    """Constant w = 4 from N(mu, sd^2 + s0^2): the std at the end is exactly
    (sd^2 + s_end^2)^(w/2) (sd^2 + s0^2)^((1 - w)/2), far below the unscaled sqrt(sd^2 + s_end^2).
    Steps chosen so the solver's own error (order 1 or 2, measured above) is < 0.5 %."""
    steps = 2048 if ORDER[solver] == 1 else 512
    sigmas = geometric(steps)
    s0, s_end, w = sigmas[0].item(), sigmas[-1].item(), 4.0
    std0 = math.sqrt(SD**2 + s0**2)
    want = (SD**2 + s_end**2) ** (w / 2) * (SD**2 + s0**2) ** ((1 - w) / 2)
    got = std0 * solver_gain(solver, sigmas, torch.full((steps,), w, dtype=torch.float64))
    assert got == pytest.approx(want, rel=5e-3)
    assert want < 0.2 * math.sqrt(SD**2 + s_end**2)  # the check is about sharpening


def test_tsr_factor_is_the_exact_score_ratio():
    """w_tsr turns the score of N(mu, d^2 + s^2) into that of the k-times sharpened Gaussian
    N(mu, d^2 / k + s^2), at each step's geometric-mean noise level."""
    sigmas, d, k = geometric(6), 0.05, 4.0
    w = get_w("tsr", sigmas, k, sigma_d=d)
    s = (sigmas[:-1] * sigmas[1:]).sqrt()
    y = 0.37  # any offset from the mean: both scores are linear in it
    score = -y / (d**2 + s**2)
    sharpened = -y / (d**2 / k + s**2)
    torch.testing.assert_close(w, sharpened / score, rtol=1e-12, atol=0)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_tsr_sampling_is_the_flow_of_the_sharpened_gaussian(solver):
    """With TSR the scaled ODE of N(mu, d^2) is the plain PF-ODE of N(mu, d^2 / k): the gain
    tends to sqrt((d^2/k + s_end^2) / (d^2/k + s0^2)) (piecewise-constant w converges)."""
    steps = 2048 if ORDER[solver] == 1 else 256
    sigmas, d, k = geometric(steps), 0.05, 4.0
    w = get_w("tsr", sigmas, k, sigma_d=d)
    want = math.sqrt((d**2 / k + sigmas[-1] ** 2) / (d**2 / k + sigmas[0] ** 2))
    assert solver_gain(solver, sigmas, w, sd=d) == pytest.approx(want, rel=5e-3)


@pytest.mark.parametrize("schedule", list(W_SCHEDULES))
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_a_fixed_denoised_estimate_is_integrated_exactly(solver, schedule):
    """With D constant each (sub)step is exact: x_end = D + (x0 - D) prod (s_i+1 / s_i)^w_i,
    at any step count (this is what keeps few-step scaled sampling from overshooting)."""
    sigmas = geometric(3)
    w = get_w(schedule, sigmas, 6.0, sigma_d=0.05)
    d = torch.tensor([0.2, -0.4], dtype=torch.float64)
    x0 = torch.tensor([1.5, 0.7], dtype=torch.float64)
    got = SOLVERS[solver](lambda x, sg: d, x0, sigmas, w)
    want = d + (x0 - d) * ((sigmas[1:] / sigmas[:-1]) ** w).prod()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_solvers_evaluate_where_they_say():
    """Euler: D at each sigma_i; Heun: at sigma_i and sigma_i+1 (the predictor's end);
    DPM2: at sigma_i and the log-sigma midpoint sqrt(sigma_i sigma_i+1)."""
    sigmas = geometric(3)
    want = {"euler": [sigmas[i] for i in range(3)],
            "heun": [s for i in range(3) for s in (sigmas[i], sigmas[i + 1])],
            "dpm2": [s for i in range(3) for s in (sigmas[i], (sigmas[i] * sigmas[i + 1]).sqrt())]}
    for solver, levels in want.items():
        seen: list[float] = []
        SOLVERS[solver](lambda x, sg, seen=seen: seen.append(float(sg)) or x, torch.zeros(1),
                        sigmas, torch.ones(3, dtype=torch.float64))
        assert seen == pytest.approx([float(s) for s in levels], rel=1e-12), solver


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_few_step_scaled_sampling_never_overshoots(steps):
    """Big steps with w = 8: Euler's gain is exactly prod(a_i + (1 - a_i) r_i^w), with
    a_i = sd^2 / (sd^2 + s_i^2) and r_i = s_i+1 / s_i, so it stays in (0, 1): samples move
    toward the mean, never past it (a plain Euler step x - w (x - D) would)."""
    sigmas = get_sigmas(SDE, steps, 0.55).double()
    w = torch.full((steps,), 8.0, dtype=torch.float64)
    a = SD**2 / (SD**2 + sigmas[:-1] ** 2)
    want = float((a + (1 - a) * (sigmas[1:] / sigmas[:-1]) ** 8.0).prod())
    got = solver_gain("euler", sigmas, w)
    assert got == pytest.approx(want, rel=1e-12) and 0 < got < 1


def test_determinism_and_callback():
    mu = torch.tensor([0.1, 0.2, 0.3])
    s = get_sigmas(SDE, 4, 0.55)
    seen = []
    x = s[0] * torch.randn(10, 3, generator=torch.Generator().manual_seed(5))
    a = solve(gaussian_denoiser(mu, 0.1), x, s, "heun", callback=seen.append)
    b = solve(gaussian_denoiser(mu, 0.1), x.clone(), s, "heun")
    assert torch.equal(a, b)
    assert [d["i"] for d in seen] == [0, 1, 2, 3]
    assert seen[0]["x"].shape == (10, 3) and seen[-1]["w"].item() == pytest.approx(4.0)
