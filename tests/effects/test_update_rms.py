"""Update RMS (docs/science/other-effects.md §5 (i)): RMS(Δθ/η) of the matrices is 1 for Lion, ≈ the
pure-noise √((1 − β1)/(1 + β1)) for AdamW at its own β1, 0.2 for Muon's exact rule."""

from tests.helpers import shipped_sweep, sweep_and_report


def test_update_rms_is_one_for_lion_and_follows_beta1_for_adamw(tmp_path):
    sweep = shipped_sweep("effects/update_rms.yaml", name="t/update_rms")
    sweep["variants"]["adamw_beta1_0.5"] = {"optimizer": {"name": "adamw", "lr": 1.0e-3, "betas": [0.5, 0.95],
                                                          "weight_decay": 0.0}}
    report, folder = sweep_and_report(tmp_path, sweep, "training.steps=80", "model.embedding_dim=32", "data.vocab_size=512", "model.n_layer=1",
                                 "probes.every=10")
    measured = {v["run"].split()[1]: v for v in report["verdicts"]}
    assert set(measured) == {"lion", "adamw", "muon_match_rms_adamw", "muon_exact_rms", "adamw_beta1_0.5"}
    assert all(v["passed"] for v in measured.values()), [v["measured"] for v in measured.values()]
    assert "0.577" in measured["adamw_beta1_0.5"]["expected"] and "0.229" in measured["adamw"]["expected"]
    assert (folder / "update_rms.png").is_file() and "![update_rms](update_rms.png)" in (folder / "report.md").read_text()
