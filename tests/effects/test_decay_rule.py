"""The decay rule λ = α_0/(2σ) (docs/science/other-effects.md §3 (iii)): the report places the optimum
relative to the rule computed from the sweep's own lr and init scale; more decay leaves smaller weights."""

import json

import yaml

from tests.helpers import shipped_sweep, sweep_and_report


def test_decay_rule_reports_the_optimum_relative_to_the_rule(tmp_path):
    shipped = shipped_sweep("effects/decay_rule.yaml")
    sweep = shipped_sweep("effects/decay_rule.yaml", name="t/decay_rule", seeds=[0],
                          grid={"optimizer.weight_decay": [0.1875, 0.75, 3.0]},
                          set={**shipped["set"], "training.steps": 150})
    report, _ = sweep_and_report(tmp_path, sweep, "model.embedding_dim=32", "data.vocab_size=512", "model.n_layer=1", "probes.every=50", workers=2)
    verdict = report["verdicts"][0]
    assert verdict["passed"] is None and "× the rule's λ = α_0/(2σ) = 0.75" in verdict["measured"]
    finals = {}
    for trial in (tmp_path / "runs/t/decay_rule/trials").iterdir():
        summary = json.loads((trial / "summary.json").read_text())
        config = yaml.safe_load((trial / "config.yaml").read_text())
        finals[config["optimizer"]["weight_decay"]] = summary["final"]["param_rms.matrix"]
    assert finals[0.1875] > finals[0.75] > finals[3.0]
