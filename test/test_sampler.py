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


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_unscaled_solvers_recover_a_gaussian(solver):
    """With the exact denoiser and w = 1 the ODE maps the noised marginal N(mu, sd^2 + s0^2)
    to N(mu, sd^2 + sigma_min^2)."""
    mu, sd = torch.tensor([0.3, -0.2, 0.5]), 0.1
    s = get_sigmas(SDE, 16, 0.55)
    g = torch.Generator().manual_seed(0)
    x = mu + (sd**2 + s[0] ** 2).sqrt() * torch.randn(4000, 3, generator=g)
    out = solve(gaussian_denoiser(mu, sd), x, s, solver, "none")
    torch.testing.assert_close(out.mean(0), mu, atol=0.01, rtol=0)
    assert out.std(0).mean().item() == pytest.approx(math.sqrt(sd**2 + 0.01**2), rel=0.15)


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("schedule", ["exponential", "linear", "constant", "tsr"])
def test_score_scaling_sharpens(solver, schedule):
    mu, sd = torch.tensor([0.3, -0.2, 0.5]), 0.1
    s = get_sigmas(SDE, 8, 0.55)
    x = mu + s[0] * torch.randn(2000, 3, generator=torch.Generator().manual_seed(1))
    plain = solve(gaussian_denoiser(mu, sd), x, s, solver, "none")
    scaled = solve(gaussian_denoiser(mu, sd), x, s, solver, schedule, 4.0, sigma_d=sd)
    assert scaled.std(0).mean() < 0.8 * plain.std(0).mean()
    torch.testing.assert_close(scaled.mean(0), mu, atol=0.01, rtol=0)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_few_step_scaled_sampling_stays_stable(steps):
    mu = torch.tensor([0.3, -0.2, 0.5])
    s = get_sigmas(SDE, steps, 0.55)
    x = mu + s[0] * torch.randn(100, 3, generator=torch.Generator().manual_seed(2))
    out = solve(gaussian_denoiser(mu, 0.1), x, s, "euler", "constant", 8.0)
    assert (out - mu).abs().max() < 0.5


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
