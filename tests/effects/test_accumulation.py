"""Tiger's accumulation variants (docs/science/other-effects.md §4): each variant recognised from its
config, and the measured direction of "fewer updates, better" at a small lr."""

import pytest

from tests.helpers import cells, shipped_sweep, sweep_and_report


def test_tiger_accumulation_variants_in_the_lr_limited_regime(tmp_path):
    """At lr 3e-4 (where the full run has a best) updating 4× less often moves 4× less, so a beats c and e
    there; Tiger's absorbed accumulation runs the same algorithm as true accumulation. The variants carry
    other names than the shipped ones: their letters come from their settings."""
    shipped = shipped_sweep("effects/tiger_accumulation.yaml")["variants"]
    renamed = {"plain": shipped["a_plain"], "sparse_updates": shipped["c_update_every_k"],
               "accumulated": shipped["e_true_accumulation"], "absorbed": shipped["tiger_absorbed"]}
    sweep = shipped_sweep("effects/tiger_accumulation.yaml", name="t/tiger_accumulation", seeds=[0],
                          grid={"optimizer.lr": [3.0e-4]}, variants=renamed)
    report, folder = sweep_and_report(tmp_path, sweep, "model.embedding_dim=32", "data.vocab_size=512", workers=2)
    loss = dict(zip(cells(folder)["variant"], cells(folder)["mean"]))
    assert loss["plain"] < loss["sparse_updates"] and loss["plain"] < loss["accumulated"]
    assert loss["absorbed"] == pytest.approx(loss["accumulated"], abs=0.02)
    assert [(v["run"].split()[-3], v["passed"]) for v in report["verdicts"]] == [("c", False), ("e", False)]
