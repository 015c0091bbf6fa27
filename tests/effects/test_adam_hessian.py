"""Adam's √v̂ against the Hessian diagonal (docs/science/other-effects.md §2): the four regimes of the
shipped sweep, the regime read from each trial's config, and the same slopes on another spectrum."""

import pytest

from optlab.config import validate_config
from optlab.effects.adam_hessian import regime
from tests.helpers import cells, outcomes, shipped_sweep, sweep_and_report


def test_regimes_come_from_the_config():
    quadratic = {"data": {"name": "gaussian-noise", "dim": 8, "replicas": 2}}
    assert regime(validate_config({**quadratic, "model": {"name": "quadratic", "point_noise": 1.0}})) == "A"
    assert regime(validate_config({**quadratic, "model": {"name": "quadratic"}})) == "B"
    assert regime(validate_config({**quadratic, "model": {"name": "quadratic", "gradient_noise": 0.5}})) == "D"
    assert regime(validate_config({**quadratic, "model": {"name": "quadratic", "point_noise": 1, "gradient_noise": 1}})) is None
    assert regime(validate_config({"model": {"name": "linreg"}, "data": {"name": "linear-regression", "label_noise": 1.0}})) == "C"
    assert regime(validate_config({"model": {"name": "mlp"}, "data": {"name": "teacher-classification"}})) is None


def test_adam_v_tracks_h_squared_when_circling_and_h_at_the_minibatch_noise_floor(tmp_path):
    """Slope of log √v̂ on log h: 1 in regimes A and B, ½ in C (minibatch regression), 0 in D."""
    report, folder = sweep_and_report(tmp_path, shipped_sweep("effects/adam_hessian.yaml", name="t/adam_hessian", seeds=[0]),
                                      "training.steps=1500")
    slopes = dict(zip(cells(folder)["variant"], cells(folder)["mean"]))
    assert slopes["A_point_noise"] == pytest.approx(1.0, abs=0.05)
    assert slopes["B_full_batch_lr_0.01"] == pytest.approx(1.0, abs=0.05)
    assert slopes["C_regression_lr_0.01"] == pytest.approx(0.5, abs=0.05)
    assert slopes["D_additive_noise"] == pytest.approx(0.0, abs=0.05)
    gated = [v for v in report["verdicts"] if v["passed"] is not None]
    assert len(gated) == 7 and all(v["passed"] for v in gated)
    mlp = next(v for v in report["verdicts"] if "mlp_hutchinson" in v["run"])
    assert "rank correlation" in mlp["measured"] and 0 < slopes["mlp_hutchinson"] < 1.2


def test_the_regimes_hold_on_another_spectrum_whatever_the_variants_are_called(tmp_path):
    """h log-spaced over [0.1, 100], variants named freely: regime B (full batch) gives 1, regime D 0 (with
    noise large against Hθ, its premise: at noise 1 the largest h already leave a slope of 0.10)."""
    sweep = shipped_sweep("effects/adam_hessian.yaml", name="t/adam_hessian_wide", seeds=[0],
                          set={"model.curvature_range": [0.1, 100.0]},
                          variants={"deterministic": {"optimizer.lr": 1.0e-2},
                                    "noisy": {"model.gradient_noise": 10.0, "optimizer.lr": 1.0e-3}})
    report, _ = sweep_and_report(tmp_path, sweep, "training.steps=1500")
    assert outcomes(report) == [True, True], [v["measured"] for v in report["verdicts"]]
    assert [v["expected"].split("(")[-1] for v in report["verdicts"]] == ["regime B: 1 ± 0.1)", "regime D: 0 ± 0.1)"]
