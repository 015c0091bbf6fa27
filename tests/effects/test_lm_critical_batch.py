"""The critical batch on real text (docs/science/scaling-laws.md §2, Exp D's rules on a language model): a
fast variant of configs/real_text/sweeps/critical_batch_{sgd,adamw}.yaml on a 200 000-character slice of
the Shakespeare plays, three batch sizes, two lrs each, a target just below the start."""

import pandas as pd

from tests.helpers import shipped_sweep, sweep_and_report

SLICE = {"data.max_chars": 200_000, "probes.eval_examples": 64}


def fast(path: str, lrs: list[float], target: float, levels: list[float]) -> dict:
    sweep = shipped_sweep(path, name=f"t/{path.split('/')[-1][:-5]}_fast",
                          zip={"training.batch_size": [4, 16, 64], "training.steps": [400, 200, 100],
                               "probes.every": [5, 2, 1],
                               "probes.sampled_noise_scale": [None, {"examples": 64, "two_batch_repeats": 10,
                                                                     "two_batch_small": 4, "two_batch_big": 32,
                                                                     "hessian_examples": 0, "at_eval_loss": levels},
                                                              None]},
                          grid={"optimizer.lr": lrs}, exclude=[],
                          metric={"column": "eval_loss", "reduce": "steps_to_target", "target": target})
    sweep["set"] = {**sweep["set"], **SLICE, "training.stop_at_target": {"column": "eval_loss", "value": target}}
    return sweep


def test_sgd_on_real_text_is_judged_by_exp_d_and_adamw_is_reported(tmp_path):
    """Plain SGD: fewer steps at the larger batch, the noise scale measured at θ_0 and at each level on the
    B = 16 trials, and Exp D's gates judged (each a PASS or a FAIL; the small-B slope only where the third
    smallest B ≤ B_crit/4). AdamW on the same text: the same numbers, every verdict reported, none judged."""
    report, _ = sweep_and_report(tmp_path, fast("real_text/sweeps/critical_batch_sgd.yaml", [0.3, 0.56], 6.3, [7.0, 6.3]))
    steps = {row["training.batch_size"]: row["S"] for row in report["per_batch"]}
    assert steps[4] > steps[64] and steps[16] >= steps[64]
    sampled = pd.DataFrame(report["sampled_noise_scales"])
    assert sampled["point"].tolist() == ["θ_0", "eval_loss ≤ 7", "eval_loss ≤ 6.3"] and (sampled["B_simple"] > 0).all()
    by_rule = {v["expected"]: v for v in report["verdicts"]}
    assert isinstance(by_rule["max_B |ln(S_fit/S)| ∈ [0, 0.3]"]["passed"], bool)
    bracket = next(v for v in report["verdicts"] if v["observed"] in ("bracketed", "not bracketed"))
    assert isinstance(bracket["passed"], bool) and "(reported)" not in bracket["expected"]
    slope = next(v for v in report["verdicts"] if "slope of log η*" in v["measured"] + v["expected"])
    third_is_small = 64 <= report["fits"]["B_crit"] / 4
    assert (slope["observed"] == "not judged") != third_is_small, slope
    if not third_is_small:
        assert "B_crit/4" in slope["measured"]

    report, _ = sweep_and_report(tmp_path, fast("real_text/sweeps/critical_batch_adamw.yaml", [3.2e-3], 7.0, [7.2, 7.0]))
    assert report["verdicts"] and all(v["passed"] is None for v in report["verdicts"])
    assert any("report only" in v["expected"] for v in report["verdicts"])
