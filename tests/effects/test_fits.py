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


def test_noise_scale_fit_recovers_known_parameters():
    batch = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], dtype=float)
    noise, maximum = fit_noise_scale(batch, 0.8 / (1 + 40.0 / batch))
    assert noise == pytest.approx(40.0, rel=1e-3) and maximum == pytest.approx(0.8, rel=1e-3)


def test_hyperbola_fit_recovers_known_parameters():
    batch = np.array([1, 2, 4, 8, 16, 32, 64], dtype=float)
    fit = fit_hyperbola(batch, 12.0 + 600.0 / batch)
    assert fit["S_min"] == pytest.approx(12.0) and fit["E_min"] == pytest.approx(600.0)
    assert fit["B_crit"] == pytest.approx(50.0)


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
