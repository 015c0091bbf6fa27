"""Amos's implied schedule (docs/science/optimizers.md §5.3, docs/science/other-effects.md §3.5): d_t stays ≈ 1 for
≈ 1/ξ² steps, then falls; its closed form (g²·r ≡ 1) computed from the run's ξ, ζ, b_0 and η."""

import math

import numpy as np
import pytest

from optlab.effects.amos_schedule import closed_form_b, late_exponent
from tests.helpers import shipped_sweep, sweep_and_report


def test_closed_form_b_grows_exponentially_then_quadratically():
    xi, zeta, steps = 0.1, 0.25, 40000
    b = closed_form_b(xi, zeta, 0.0, 1.0, steps)
    # first 1/ξ² steps: b ≈ exp(ξ²t) − 1 (c_t ≈ 1 while ζ√ξ·b is small)
    assert b[100] == pytest.approx(math.e - 1, rel=0.05)
    # late: b ∝ t², so d = 1/(1 + ζ√(ξη)b) ∝ 1/t²
    t = np.arange(steps + 1)
    assert late_exponent(t[1:], b[1:]) == pytest.approx(2.0, abs=0.1)


def test_amos_schedule_is_flat_then_falls_on_a_long_run(tmp_path):
    sweep = shipped_sweep("effects/amos_schedule.yaml", name="t/amos_schedule", grid={"optimizer.lr": [0.1]},
                          set={**shipped_sweep("effects/amos_schedule.yaml")["set"], "training.steps": 1600})
    report, folder = sweep_and_report(tmp_path, sweep, "probes.eval_examples=512")
    verdicts = {v["effect"]: v for v in report["verdicts"]}
    assert verdicts["amos_schedule_flat"]["passed"] is True
    assert verdicts["amos_schedule_decays"]["passed"] is True
    row = report["schedule"][0]
    assert row["1/ξ²"] == 100 and row["d last"] < row["d(1/ξ²)"]
    assert (folder / "amos_schedule.png").is_file()
