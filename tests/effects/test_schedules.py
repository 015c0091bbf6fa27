"""Schedules (docs/science/other-effects.md §3 (ii)): the inverse decays halve the lr after the half-life,
and the shipped comparison runs and ranks them, Amos's implied schedule included (report only)."""

import math

import pytest

from optlab.schedules import ScheduleConfig, lr_multiplier
from tests.helpers import cells, shipped_sweep, sweep_and_report


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
                                      "probes.every=10", workers=2)
    assert set(cells(folder)["variant"]) == {"constant", "inverse_time", "inverse_square", "warmup_cosine", "amos"}
    assert report["verdicts"][0]["passed"] is None and report["verdicts"][0]["observed"].startswith("best: ")
    assert (folder / "amos.d_curves.png").is_file()
