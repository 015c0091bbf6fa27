"""Schedules (docs/science/other-effects.md §3.4): the inverse decays halve the lr after the half-life, the
shipped comparison on the LM runs and ranks them (report only), and on the quadratic with a constant
convergence rate they follow their closed form (Su's x_t = D_t for the inverse-square schedule)."""

import math

import numpy as np
import pytest
import torch

from optlab.effects.schedules import convergence_rate, distance_recursion, noise_to_signal
from optlab.schedules import ScheduleConfig, lr_multiplier
from tests.helpers import cells, outcomes, shipped_sweep, sweep_and_report


def test_schedules_halve_the_lr_after_the_half_life_and_run_with_amos(tmp_path):
    for name in ("inverse_time", "inverse_square"):
        schedule = ScheduleConfig(name=name, half_life=100, warmup_steps=10)
        assert lr_multiplier(schedule, 10, 1000) == 1.0
        assert lr_multiplier(schedule, 110, 1000) == pytest.approx(0.5)
    # inverse-square decays faster later: 1/(1 + (√2 − 1)·3)² at t = 3T vs 1/4 for inverse-time
    assert lr_multiplier(ScheduleConfig(name="inverse_square", half_life=100), 300, 1000) == pytest.approx(
        1 / (1 + 3 * (math.sqrt(2) - 1)) ** 2)
    report, folder = sweep_and_report(tmp_path, shipped_sweep("effects/schedules.yaml", name="t/schedules", seeds=[0]),
                                      "training.steps=60", "model.embedding_dim=32", "data.vocab_size=512", "model.n_layer=1",
                                      "probes.every=10")
    assert set(cells(folder)["variant"]) == {"constant", "inverse_time", "inverse_square", "warmup_cosine", "amos"}
    assert report["verdicts"][0]["passed"] is None and report["verdicts"][0]["observed"].startswith("best: ")
    assert (folder / "amos.d_curves.png").is_file()


def test_relative_noise_gives_the_gradient_theta_plus_noise_proportional_to_its_norm():
    from optlab.data.noise import GaussianNoise
    from optlab.models.quadratic import DiagonalQuadratic

    data = GaussianNoise(0, dim=500, replicas=2)
    model = DiagonalQuadratic(data, (1.0, 1.0), init_distance=1.0, relative_noise=3.0)
    noise = data.sample(1, 0)
    model(noise).backward()
    theta = model.theta.detach()
    torch.testing.assert_close(model.theta.grad, theta + 3.0 * theta.norm() / 500**0.5 * noise[1])


def test_the_convergence_rate_of_sign_steps_matches_its_closed_form():
    """p = E cos(sign g, θ) for Gaussian entries of θ, at any distance, against a Monte Carlo estimate."""
    rate, uncertainty = convergence_rate(10.0)
    assert rate == pytest.approx(math.sqrt(2 / math.pi) / math.sqrt(1 + 100))
    assert noise_to_signal(0.25, 0.01, 0.1, 2.0, 4) == pytest.approx((0.1 / 0.005 + 2.0) / 2)
    assert uncertainty < 0.01 < convergence_rate(4.0)[1]
    generator = torch.Generator().manual_seed(0)
    for distance in (1.0, 1e-3):
        theta = distance * torch.randn(2_000_000, generator=generator, dtype=torch.float64)
        gradient = theta + 10.0 * theta.pow(2).mean().sqrt() * torch.randn(2_000_000, generator=generator, dtype=torch.float64)
        cosine = (torch.sign(gradient) @ theta / (theta.norm() * 2_000_000**0.5)).item()
        assert cosine == pytest.approx(rate, rel=0.03)  # Monte Carlo error 1/√n ≈ 0.9 % of p


def test_the_recursion_keeps_x_on_the_inverse_square_schedule_at_the_matched_half_life():
    """Su's x_t = D_t: at α_0pT = √2 − 1 and λ = α_0/(2σ) the second-order terms cancel on the path x = D."""
    rate, sigma, half_life, steps = 0.08, 0.01, 100, 1000
    alpha_0 = (math.sqrt(2) - 1) / (rate * half_life)
    schedule = ScheduleConfig(name="inverse_square", half_life=half_life)
    multipliers = np.array([lr_multiplier(schedule, step, steps) for step in range(steps)])
    x = distance_recursion(multipliers, alpha_0, alpha_0 / (2 * sigma), sigma, lambda x: rate)
    np.testing.assert_allclose(x[1:], multipliers, rtol=0.03)
    # a constant lr stalls at the floor where the step's growth a² balances the pull 2ap√x (and the decay)
    constant = distance_recursion(np.ones(steps), alpha_0, alpha_0 / (2 * sigma), sigma, lambda x: rate)
    assert constant[-1] == pytest.approx(constant[-100], rel=1e-4) and constant[-1] > x[-1]


def test_the_recursion_keeps_x_on_the_inverse_time_schedule_when_the_rate_slows_with_the_distance():
    """Su's slowing rate p_t = p_0·√x_t: at 2α_0p_0T = 1 and λ = α_0/(2σ), x_t = D_t = 1/(1 + t/T)."""
    slope, sigma, half_life, steps = 0.08, 0.01, 100, 1000
    alpha_0 = 1 / (2 * slope * half_life)
    schedule = ScheduleConfig(name="inverse_time", half_life=half_life)
    multipliers = np.array([lr_multiplier(schedule, step, steps) for step in range(steps)])
    x = distance_recursion(multipliers, alpha_0, alpha_0 / (2 * sigma), sigma, lambda x: slope * math.sqrt(x))
    np.testing.assert_allclose(x[1:], multipliers, rtol=0.03)


@pytest.mark.parametrize("sweep, case, matched", [("schedules_quadratic", "constant rate", "inverse_square"),
                                                  ("schedules_quadratic_slowing", "slowing rate", "inverse_time")])
def test_the_schedules_follow_their_closed_form_on_the_quadratic(tmp_path, sweep, case, matched):
    report, folder = sweep_and_report(tmp_path, shipped_sweep(f"effects/{sweep}.yaml", name=f"t/{sweep}", seeds=[0]),
                                      "training.steps=400")
    assert report["setting"]["case"] == case
    judged = [v for v in report["verdicts"] if v["effect"] == "schedule_closed_form"]
    assert [v["passed"] for v in judged] == [True] and f" {matched} " in judged[0]["run"]
    assert outcomes(report, "schedule_recursion") == [True, True, True]
    assert (folder / "distance_by_schedule.png").is_file()


def test_the_schedule_closed_form_is_not_judged_where_the_rate_is_uncertain(tmp_path):
    report, _ = sweep_and_report(tmp_path, shipped_sweep("effects/schedules_quadratic.yaml", name="t/schedules_noisy",
                                                         seeds=[0]), "training.steps=20", "model.relative_noise=3")
    assert outcomes(report) == [None]
    assert "uncertain by 3.5%" in report["verdicts"][0]["measured"] and "raise model.relative_noise" in report["verdicts"][0]["measured"]
