"""The fits every scaling-law effect uses (optlab/effects/fits.py), on curves with known parameters."""

import math

import numpy as np
import pandas as pd
import pytest

from optlab.effects.fits import bootstrap_critical_batch, fit_hyperbola, fit_noise_scale, log_log_slope, refine_optimum


def test_parabola_refinement_recovers_a_known_optimum():
    lrs = np.geomspace(1e-3, 1.0, 25)
    values = (np.log(lrs) - math.log(0.037)) ** 2 + 1.0
    optimum = refine_optimum(lrs, values)
    assert optimum.flag == "" and optimum.lr == pytest.approx(0.037, rel=1e-9)
    values[-3:] = np.inf  # diverged cells beyond the optimum change nothing
    assert refine_optimum(lrs, values).lr == pytest.approx(0.037, rel=1e-9)


def test_optimum_at_the_grid_edge_is_flagged_not_reported():
    lrs = np.geomspace(1e-3, 1.0, 10)
    optimum = refine_optimum(lrs, -np.log(lrs))  # keeps improving with lr
    assert optimum.lr is None and optimum.flag == "edge"


BATCH = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], dtype=float)


def test_noise_scale_fit_recovers_known_parameters():
    fit = fit_noise_scale(BATCH, 0.8 / (1 + 40.0 / BATCH))
    assert fit["B_noise"] == pytest.approx(40.0, rel=1e-6) and fit["eta_max"] == pytest.approx(0.8, rel=1e-6)
    assert fit["B_noise_se"] < 1e-4 and fit["eta_max_se"] < 1e-6  # exact data: no spread


def test_noise_scale_standard_errors_match_the_spread_of_refits():
    """log η* with Gaussian noise of 0.1: over 300 noise draws the standard deviation of the fitted
    B_noise and η_max is what the covariance of one fit says (median over the draws, within 25 %)."""
    generator = np.random.default_rng(1)
    exact = np.log(0.8 / (1 + 40.0 / BATCH))
    fits = [fit_noise_scale(BATCH, np.exp(exact + 0.1 * generator.standard_normal(len(BATCH)))) for _ in range(300)]
    for key in ("B_noise", "eta_max"):
        spread = np.std([fit[key] for fit in fits], ddof=1)
        assert np.median([fit[f"{key}_se"] for fit in fits]) == pytest.approx(spread, rel=0.25), key


def test_hyperbola_fit_recovers_known_parameters():
    batch = np.array([1, 2, 4, 8, 16, 32, 64], dtype=float)
    fit = fit_hyperbola(batch, 12.0 + 600.0 / batch)
    assert fit["S_min"] == pytest.approx(12.0) and fit["E_min"] == pytest.approx(600.0)
    assert fit["B_crit"] == pytest.approx(50.0) and fit["B_crit_se"] < 1e-6


def test_hyperbola_standard_errors_are_those_of_weighted_least_squares():
    """Against the textbook formula: with X = [1, 1/B], W = diag(1/S²) and s² = r'Wr/(n − 2), the
    covariance of (S_min, E_min) is s²(X'WX)⁻¹, and B_crit's error follows by the delta method."""
    batch = np.array([2, 4, 8, 16, 32, 64, 128], dtype=float)
    steps = (20 + 2000 / batch) * np.exp(0.1 * np.random.default_rng(2).standard_normal(len(batch)))
    fit = fit_hyperbola(batch, steps, relative=True)
    design, weights = np.column_stack([np.ones_like(batch), 1 / batch]), np.diag(1 / steps ** 2)
    coefficients = np.linalg.solve(design.T @ weights @ design, design.T @ weights @ steps)
    residual = steps - design @ coefficients
    covariance = (residual @ weights @ residual) / (len(batch) - 2) * np.linalg.inv(design.T @ weights @ design)
    assert [fit["S_min"], fit["E_min"]] == pytest.approx(coefficients, rel=1e-6)
    assert [fit["S_min_se"], fit["E_min_se"]] == pytest.approx(np.sqrt(np.diag(covariance)), rel=1e-4)
    gradient = np.array([-coefficients[1] / coefficients[0] ** 2, 1 / coefficients[0]])
    assert fit["B_crit_se"] == pytest.approx(math.sqrt(gradient @ covariance @ gradient), rel=1e-4)


def test_log_log_slope_skips_what_it_cannot_take_the_log_of():
    assert log_log_slope([1, 2, 4, 8], [3, 6, 12, 24]) == pytest.approx(1.0)
    assert log_log_slope([1, 4, 16, 64], [1, 2, float("nan"), 8]) == pytest.approx(0.5)
    assert log_log_slope([1, 2], [1, float("inf")]) is None


def test_bootstrap_interval_of_the_critical_batch_needs_seeds_to_resample():
    """S(B) = 20 + 2000/B (B_crit = 100) with multiplicative seed noise: the 5–95 % interval over resampled
    seeds contains 100; with one seed per cell there is nothing to resample and no interval."""
    generator = np.random.default_rng(0)
    rows = [{"B": size, "lr": lr, "seed": seed,
             "metric": (20 + 2000 / size) * (1 if lr == 0.1 else 1.5) * math.exp(0.05 * generator.standard_normal())}
            for size in (1, 4, 16, 64, 256) for lr in (0.1, 0.3) for seed in range(3)]
    trials = pd.DataFrame(rows)
    low, high = bootstrap_critical_batch(trials, "B", "lr")
    assert low < 100 < high < 200
    assert bootstrap_critical_batch(trials[trials["seed"] == 0], "B", "lr") is None
