"""Lion's lr rule (docs/science/other-effects.md §5 (ii)), direction only: Lion's update RMS is 1 against
AdamW's ≈ 0.2, so its best lr is smaller."""

from tests.helpers import shipped_sweep, sweep_and_report


def test_lion_optimal_lr_is_below_adamw(tmp_path):
    zipped = {key: values[2::2] for key, values in shipped_sweep("effects/lion_lr_rule.yaml")["zip"].items()}
    sweep = shipped_sweep("effects/lion_lr_rule.yaml", name="t/lion_lr_rule", zip=zipped, seeds=[0])
    report, folder = sweep_and_report(tmp_path, sweep, "training.steps=120", "model.embedding_dim=32", "data.vocab_size=512", "model.n_layer=1",
                                 "probes.every=60")
    measured = report["verdicts"][0]["measured"]
    assert float(measured.split("=")[-1]) > 1, measured
    assert "![metric_vs_lr](metric_vs_lr.png)" in (folder / "report.md").read_text()
