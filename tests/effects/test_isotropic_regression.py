"""SGD on isotropic regression (docs/science/scaling-laws.md §2, Exp A and A2): fast variants of the shipped
sweeps, the same effects at another dimension (the verdicts follow d + 1, not the shipped 64), and an
optimizer that breaks SGD's law."""

import math

import pytest

from optlab.effects.isotropic_regression import contraction, optimal_lr, predicted_steps
from tests.helpers import CONFIGS, outcomes, sweep_and_report

BASE = str(CONFIGS / "regression" / "exp_a_base.yaml")


def batch_scaling_sweep(name, batch_sizes, seeds=(0, 1, 2), **settings):
    return {"name": f"t/{name}", "base": BASE, "set": settings,
            "grid": {"training.batch_size": batch_sizes, "optimizer.lr": {"logspace": [1.0e-3, 1.5, 25]}},
            "seeds": list(seeds), "metric": {"column": "population_loss", "reduce": "final", "log": True},
            "effect": "sgd_batch_scaling"}


def test_closed_form():
    """ρ(η, B) is smallest at η* = B/(B + d + 1), where S = ln(L_0/L)/ln(1 + B/(d + 1))."""
    for batch, dim in [(1, 63), (16, 63), (256, 15)]:
        best = optimal_lr(batch, dim)
        assert contraction(best, batch, dim) == pytest.approx((dim + 1) / (batch + dim + 1))
        assert contraction(best * 1.01, batch, dim) > contraction(best, batch, dim) < contraction(best * 0.99, batch, dim)
        assert predicted_steps(0.5, 5e-4, best, batch, dim) == pytest.approx(math.log(1000) / math.log(1 + batch / (dim + 1)))


def test_exp_a_fast_variant_recovers_b_noise(tmp_path):
    """η*(B) = B/(B + 64): B_noise ≈ 64, η_max ≈ 1; every gate of the shipped sweep passes."""
    report, folder = sweep_and_report(tmp_path, batch_scaling_sweep("exp_a_fast", [1, 4, 16, 64, 256]))
    assert 51 <= report["fits"]["B_noise"] <= 77 and 0.9 <= report["fits"]["eta_max"] <= 1.1
    optima = {row["training.batch_size"]: row["eta_star"] for row in report["eta_star"]}
    assert all(optima[b] == pytest.approx(b / (b + 64), rel=0.15) for b in (4, 16, 64, 256))
    assert outcomes(report) == [True] * 4
    assert {"heatmap.png", "metric_vs_lr.png", "eta_star.png", "report.md", "trials.csv"} <= {p.name for p in folder.iterdir()}


def test_exp_a_at_another_dimension_is_judged_against_its_own_closed_form(tmp_path):
    """d = 15: B_noise = 16, outside the shipped band [51, 77]; the verdicts follow d + 1 and pass."""
    report, _ = sweep_and_report(tmp_path, batch_scaling_sweep("exp_a_d15", [1, 2, 4, 8, 32, 128], seeds=(0, 1),
                                                                **{"data.dim": 15}))
    assert 16 * 0.8 <= report["fits"]["B_noise"] <= 16 * 1.2, report["fits"]
    assert outcomes(report) == [True] * 4, [v["measured"] for v in report["verdicts"]]
    assert "d + 1 = 16" in report["verdicts"][0]["expected"]


def test_exp_a_with_heavy_momentum_fails_sgds_law(tmp_path):
    """SGD with momentum 0.9 takes steps ≈ 10× larger for the same lr: its η* sits ~10× below SGD's law."""
    report, _ = sweep_and_report(tmp_path, batch_scaling_sweep("exp_a_momentum", [1, 4, 16, 64, 256], seeds=(0, 1),
                                                               **{"data.dim": 15, "optimizer.momentum": 0.9}))
    assert False in outcomes(report)
    assert report["fits"]["eta_max"] < 0.5


def steps_sweep(name, dim, lr_factor, batch_sizes, target=5.0e-4):
    lrs = [lr_factor * b / (b + dim + 1) for b in batch_sizes]
    return {"name": f"t/{name}", "base": BASE, "set": {"training.steps": 400, "probes.every": 1, "data.dim": dim},
            "zip": {"training.batch_size": batch_sizes, "optimizer.lr": lrs}, "seeds": [0, 1, 2],
            "metric": {"column": "population_loss", "reduce": "steps_to_target", "target": target},
            "effect": "sgd_steps_vs_batch"}


def test_exp_a2_fast_variant_matches_predicted_steps(tmp_path):
    """Steps to 1e-3·L_0 at η = B/(B + 64) follow ln(1000)/ln(1 + B/64)."""
    report, _ = sweep_and_report(tmp_path, steps_sweep("exp_a2_fast", 63, 1.0, [2, 8, 64]))
    medians = {row["training.batch_size"]: row["median"] for row in report["per_batch"]}
    for batch, steps in medians.items():
        assert steps == pytest.approx(math.log(1000) / math.log(1 + batch / 64), rel=0.15, abs=1)
    assert outcomes(report) == [True] * 3


def test_exp_a2_at_another_dimension_and_half_the_optimal_lr(tmp_path):
    """d = 15 at η = ½·B/(B + 16): the prediction comes from ρ(η, B) of each batch size's own lr."""
    report, _ = sweep_and_report(tmp_path, steps_sweep("exp_a2_half", 15, 0.5, [2, 8, 32]))
    assert outcomes(report) == [True] * 3, [(v["measured"], v["expected"]) for v in report["verdicts"]]
