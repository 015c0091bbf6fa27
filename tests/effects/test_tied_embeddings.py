"""Tied against untied embeddings (docs/science/embedding-drift.md §5 (b)), a comparison over seeds: a fast
variant of configs/real_text/sweeps/tied_variants.yaml (a slice of the plays, a one-layer GPT, 120 steps)."""

from tests.helpers import shipped_sweep, sweep_and_report


def test_each_tied_variant_is_compared_with_the_untied_one_seed_by_seed(tmp_path):
    sweep = shipped_sweep("real_text/sweeps/tied_variants.yaml", name="t/tied_variants", seeds=[0, 1])
    report, folder = sweep_and_report(
        tmp_path, sweep, "training.steps=120", "model.embedding_dim=16", "model.context=16", "model.n_layer=1",
        "data.vocab_size=2048", "data.max_chars=150000", "probes.every=60", "probes.eval_examples=64")
    verdicts = {verdict["run"].split()[-1]: verdict for verdict in report["verdicts"]}
    assert set(verdicts) == {"tied_plain", "tied_swap"}
    assert all(verdict["passed"] is None and "over 2 seeds" in verdict["measured"] for verdict in verdicts.values())
    assert all(verdict["observed"] in ("better", "worse", "within the seed spread") for verdict in verdicts.values())
    assert "![tied_vs_untied](tied_vs_untied.png)" in (folder / "report.md").read_text()
