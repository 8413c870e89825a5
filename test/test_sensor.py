"""The depth-sensor model (posediff_ros.data.sensor): each artefact against its physics.

Scenes are analytic depth maps (planes, a box in front of a wall, a thin bar), so every
expected value follows from the settings: step = step_1m z^2, sigma = sigma0 + sigma1 z^2,
shadow width = f b (1/z_near - 1/z_far), correlation exp(-d^2 / (4 l^2)) of a Gaussian-filtered
white field of standard deviation l.
"""

import numpy as np
import pytest
from scipy import ndimage

from posediff_ros.data.sensor import (
    SensorRanges,
    SensorSettings,
    correlated_field,
    draw_settings,
    occlusion_shadow,
    simulate_depth,
)

H, W = 160, 240
# everything off but what a test switches on
QUIET = dict(sigma0=1e-5, sigma1=1e-5, step_1m=1e-5, shadow=False, p_dark=0.0, p_shiny=0.0,
             hole_fraction=0.0, dropout=0.0, grazing_cos=0.001, p_mixed_lost=0.0)


def _settings(**kw) -> SensorSettings:
    return SensorSettings(**{**QUIET, **kw})


def _box_scene(z_box=0.6, z_wall=1.0, rows=(40, 120), cols=(80, 160)):
    z = np.full((H, W), z_wall)
    label = np.full((H, W), -1)
    z[rows[0]:rows[1], cols[0]:cols[1]] = z_box
    label[rows[0]:rows[1], cols[0]:cols[1]] = 0
    return z, label


@pytest.mark.parametrize("z0", [0.5, 1.0, 1.6])
def test_depth_steps_grow_with_distance_squared(z0):
    s = _settings(sigma0=0.0005, sigma1=0.002, step_1m=0.003, fb_px_m=40.0)
    out = simulate_depth(np.full((H, W), z0), np.ones((H, W)), np.zeros((H, W), int),
                         np.random.default_rng(0), s)
    levels = np.unique(out[out > 0])
    assert len(levels) >= 4  # the noise spans several steps
    # steps between neighbouring disparity levels: z^2 * step_1m to first order (relative
    # error ~ z * step_1m / 1 m < 1 %); depth quantised in plain mm would give 1 mm everywhere
    np.testing.assert_allclose(np.median(np.diff(levels)), 0.003 * z0**2, rtol=0.03)


@pytest.mark.parametrize("z0", [0.5, 1.0, 1.6])
def test_noise_grows_as_sigma0_plus_sigma1_z_squared(z0):
    s = _settings(sigma0=0.0006, sigma1=0.002, step_1m=0.0002, corr_px=1.0)
    out = simulate_depth(np.full((H, W), z0), np.ones((H, W)), np.zeros((H, W), int),
                         np.random.default_rng(1), s)
    expect = np.hypot(0.0006 + 0.002 * z0**2, 0.0002 * z0**2 / np.sqrt(12))
    # ~38k pixels, ~3k independent ones at corr 1 px: the std is known to a few %
    assert out[out > 0].std() == pytest.approx(expect, rel=0.1)
    assert abs(out[out > 0].mean() - z0) < 0.2 * expect


def test_noise_is_spatially_correlated_over_its_length():
    rng = np.random.default_rng(2)
    for corr, white in ((3.0, 0.0), (1.5, 0.0), (3.0, 0.4)):
        f = correlated_field((400, 400), _settings(corr_px=corr, white_frac=white), rng)
        assert f.std() == pytest.approx(1.0, rel=0.02)
        for lag in (1, 3, 6):
            c = np.corrcoef(f[:, :-lag].ravel(), f[:, lag:].ravel())[0, 1]
            # Gaussian filter of std l: autocorrelation exp(-d^2 / (4 l^2)), times the
            # correlated share of the variance
            assert c == pytest.approx((1 - white) * np.exp(-lag**2 / (4 * corr**2)), abs=0.04)
    white_only = correlated_field((300, 300), _settings(white_frac=1.0), rng)
    assert abs(np.corrcoef(white_only[:, :-1].ravel(), white_only[:, 1:].ravel())[0, 1]) < 0.02


def test_flying_pixels_only_where_the_window_spans_a_depth_edge():
    z, label = _box_scene()
    s = _settings(window_px=7, p_flying=0.6)
    out = simulate_depth(z, np.ones((H, W)), label, np.random.default_rng(3), s)
    wrong = (out > 0) & (np.abs(out - z) > 0.01)
    box = label == 0
    band = ndimage.binary_dilation(box, iterations=3) & ~ndimage.binary_erosion(box,
                                                                                iterations=3)
    assert wrong.sum() > 50  # edges do produce wrong depths ...
    assert not (wrong & ~band).any()  # ... and only within half a window of the edge
    flying = (out > 0.6 + 0.01) & (out < 1.0 - 0.01)  # between object and wall
    assert flying.sum() > 10 and not (flying & ~band).any()
    # no edge, no mixing: a flat wall comes back exact (all effects but mixing are off)
    flat = simulate_depth(np.ones((H, W)), np.ones((H, W)), label, np.random.default_rng(3), s)
    assert np.abs(flat - 1.0).max() < 0.001


def test_thin_parts_blend_into_the_background_wide_parts_survive():
    s = _settings(window_px=7, support_lo=0.35, support_hi=0.6)
    rng = np.random.default_rng(4)
    for width, kept_min, kept_max in ((2, 0.0, 0.25), (24, 0.85, 1.0)):
        z, label = _box_scene(cols=(100, 100 + width))
        out = simulate_depth(z, np.ones((H, W)), label, rng, s)
        inner = (label == 0) & ndimage.binary_erosion(np.ones((H, W)), iterations=1)
        inner[:44] = inner[116:] = False  # away from the bar's ends
        kept = (np.abs(out[inner] - 0.6) < 0.01).mean()
        # a 2 px bar fills 2/7 of a 7 px window (support < support_lo): always mixed
        assert kept_min <= kept <= kept_max, (width, kept)


@pytest.mark.parametrize("side", [1, -1])
def test_occlusion_shadow_is_as_wide_as_the_disparity_jump_on_one_side(side):
    z, label = _box_scene(z_box=0.6, z_wall=1.0)
    s = _settings(fb_px_m=40.0, shadow_side=side)
    rows = occlusion_shadow(z, s)[60:100]
    width = 40.0 * (1 / 0.6 - 1 / 1.0)  # 26.7 px
    left, right = rows[:, :80].sum(1), rows[:, 160:].sum(1)
    band = left if side > 0 else right
    assert (np.abs(band - width) <= 1).all(), band
    assert ((right if side > 0 else left) == 0).all()
    assert not rows[:, 80:160].any()  # the nearer surface itself is seen
    out = simulate_depth(z, np.ones((H, W)), label, np.random.default_rng(5),
                         _settings(fb_px_m=40.0, shadow_side=side, shadow=True))
    assert (out[60:100][rows] == 0).all()


def test_dark_objects_lose_blobs_of_their_pixels():
    z, label = _box_scene()
    rng = np.random.default_rng(6)
    lost = []
    for _ in range(6):
        out = simulate_depth(z, np.ones((H, W)), label, rng,
                             _settings(p_dark=1.0, dark_holes=0.4, window_px=3))
        lost.append((out[label == 0] == 0).mean())
    assert np.mean(lost) == pytest.approx(0.4, abs=0.08)
    assert (simulate_depth(z, np.ones((H, W)), label, rng, _settings(window_px=3))[label == 0]
            > 0).all()


def test_shiny_objects_lose_the_highlight_grazing_angles_lose_everything():
    z, label = _box_scene()
    cos = np.full((H, W), 0.5)
    cos[60:70, 100:110] = 0.995  # facing the sensor
    out = simulate_depth(z, cos, label, np.random.default_rng(7),
                         _settings(p_shiny=1.0, specular_cos=0.98, window_px=3))
    assert (out[60:70, 100:110] == 0).all()
    graze = simulate_depth(np.ones((50, 50)), np.full((50, 50), 0.05), np.zeros((50, 50), int),
                           np.random.default_rng(7), _settings(grazing_cos=0.1))
    assert (graze == 0).all()


def test_settings_drawn_inside_training_ranges_and_wider_out_of_distribution():
    r = SensorRanges()
    rng = np.random.default_rng(8)
    train = [draw_settings(rng) for _ in range(300)]
    ood = [draw_settings(rng, ood=True) for _ in range(300)]
    steps = np.array([s.step_1m * 1000 for s in train])
    assert steps.min() >= r.step_1m_mm[0] and steps.max() <= r.step_1m_mm[1]
    ood_steps = np.array([s.step_1m * 1000 for s in ood])
    outside = (ood_steps < r.step_1m_mm[0]) | (ood_steps > r.step_1m_mm[1])
    assert 0.25 < outside.mean() < 0.75  # widened by half the width on each side
    assert all(s.window_px % 2 == 1 for s in train + ood)


def test_same_seed_same_depth():
    z, label = _box_scene()
    a = simulate_depth(z, np.ones((H, W)), label, np.random.default_rng(9), SensorSettings())
    b = simulate_depth(z, np.ones((H, W)), label, np.random.default_rng(9), SensorSettings())
    np.testing.assert_array_equal(a, b)
