"""The decay rule λ = α_0/(2σ) (docs/science/other-effects.md §3.3): the report places the optimum
relative to the rule computed from the sweep's own lr and init scale; more decay leaves smaller weights."""

import json
import math

import pytest
import yaml

from optlab.effects.decay_rule import rms_recursion
from tests.helpers import shipped_sweep, sweep_and_report


def test_decay_rule_reports_the_optimum_relative_to_the_rule(tmp_path):
    shipped = shipped_sweep("effects/decay_rule.yaml")
    sweep = shipped_sweep("effects/decay_rule.yaml", name="t/decay_rule", seeds=[0],
                          grid={"optimizer.weight_decay": [0.1875, 0.75, 3.0]},
                          set={**shipped["set"], "training.steps": 150})
    report, _ = sweep_and_report(tmp_path, sweep, "model.embedding_dim=32", "data.vocab_size=512", "model.n_layer=1", "probes.every=50", workers=0)
    verdict = report["verdicts"][0]
    # σ is the matrices' measured RMS at θ_0 (GPT init std 0.02), and the rule η/(2σ²) comes from it
    assert report["sigma"] == pytest.approx(0.02, rel=0.05)
    assert report["rule_weight_decay"] == pytest.approx(shipped["set"]["optimizer"]["lr"] / (2 * report["sigma"] ** 2))
    assert verdict["passed"] is None and f"× the rule's λ = α_0/(2σ) = {report['rule_weight_decay']:.4g}" in verdict["measured"]
    # on the GPT the steps point away from the weights (the loss wants them larger): the premise fails, not judged
    assert all(row["premise R"] > 1 for row in report["norms"])
    assert not [v for v in report["verdicts"] if v["effect"] == "decay_rule_norm"]
    finals = {}
    for trial in (tmp_path / "runs/t/decay_rule/trials").iterdir():
        summary = json.loads((trial / "summary.json").read_text())
        config = yaml.safe_load((trial / "config.yaml").read_text())
        finals[config["optimizer"]["weight_decay"]] = summary["final"]["param_rms.matrix"]
    assert finals[0.1875] > finals[0.75] > finals[3.0]


def test_rms_recursion_settles_at_its_equilibrium():
    """RMS²_∞ = η/(λ(2 − ηλ)); at the rule's λ = η/(2σ²) that is σ (to O(ηλ))."""
    lr, sigma = 6.25e-3, 0.125
    rule = lr / (2 * sigma**2)
    rms = rms_recursion(sigma, lr, rule, 20000)
    assert rms[-1] == pytest.approx(math.sqrt(lr / (rule * (2 - lr * rule))), rel=1e-9)
    assert rms[-1] == pytest.approx(sigma, rel=lr * rule)
    assert rms_recursion(sigma, lr, 4 * rule, 20000)[-1] == pytest.approx(sigma / 2, rel=0.01)


def test_decay_rule_on_the_scale_invariant_model_follows_the_closed_form(tmp_path):
    """Where the decay is auxiliary the matrices' RMS follows the recursion at each λ; the head, whose sign steps
    point outward (|R| > 1), is not judged (docs/science/other-effects.md §3.3)."""
    shipped = shipped_sweep("effects/decay_rule_normalized.yaml")
    sweep = shipped_sweep("effects/decay_rule_normalized.yaml", name="t/decay_rule_normalized", seeds=[0],
                          grid={"optimizer.weight_decay": [0.1, 0.4]}, set={**shipped["set"], "training.steps": 800})
    report, folder = sweep_and_report(tmp_path, sweep, "probes.eval_examples=512")
    assert report["sigma"] == pytest.approx(0.125, rel=0.05)
    norms = {v["run"].split()[-2:][0] + " " + v["run"].split()[-1]: v for v in report["verdicts"] if v["effect"] == "decay_rule_norm"}
    assert [norms[f"λ={decay} matrix"]["passed"] for decay in (0.1, 0.4)] == [True, True]
    assert [norms[f"λ={decay} head"]["passed"] for decay in (0.1, 0.4)] == [None, None]
    final = {row["optimizer.weight_decay"]: row["final RMS"] for row in report["norms"] if row["kind"] == "matrix"}
    assert final[0.1] > final[0.4]
    assert (folder / "weight_rms_vs_step.png").is_file()
