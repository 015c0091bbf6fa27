"""Fast variant of the embedding-drift experiment (embedding-drift.md §6): V = 2000, 400 steps, ηλ = 0.02."""

import pytest

from optlab.report.verdicts import drift_observed, fix_cut
from optlab.train import train

ADAMW = {"name": "adamw", "lr": 0.06, "weight_decay": 1 / 3}
TIGER = {"name": "tiger", "lr": 0.02, "beta": 0.965, "weight_decay": 1.0, "parameter_scaling": False}


@pytest.fixture(scope="module")
def drift_runs(tmp_path_factory):
    from optlab.config import validate_config

    runs_dir = tmp_path_factory.mktemp("runs")

    def run(name, optimizer=TIGER, model=None, param_groups=None, seed=0, bigram_prob=0.0):
        config = validate_config({
            "name": f"drift/{name}",
            "model": {"name": "bag", "embedding_dim": 16, "context": 4, **(model or {})},
            "data": {"name": "zipf", "vocab_size": 2000, "exponent": 1.2, "bigram_prob": bigram_prob},
            "optimizer": optimizer,
            "param_groups": param_groups or {},
            "training": {"steps": 400, "batch_size": 64, "seed": seed},
            "probes": {"every": 100},
            "output": {"runs_dir": str(runs_dir)},
        })
        return train(config, show_progress=False).summary["final"]

    return {
        "tiger": run("tiger"),
        "tiger_seed1_bigram": run("tiger_seed1_bigram", seed=1, bigram_prob=0.5),
        "lion": run("lion", optimizer={"name": "lion", "lr": 0.02, "weight_decay": 1.0}),
        "adamw": run("adamw", optimizer=ADAMW),
        "lazy": run("lazy", param_groups={"lazy_embeddings": True}),
        "hybrid": run("hybrid", param_groups={"embedding_optimizer": ADAMW}),
        "tied": run("tied", model={"tie_embeddings": "plain"}),
        "tied_swap": run("tied_swap", model={"tie_embeddings": "swap"}),
    }


RARE = "embedding.rare.saturated_fraction"


@pytest.mark.parametrize("name", ["tiger", "tiger_seed1_bigram", "lion"])
def test_sign_optimizers_pin_rare_rows_at_one_over_lambda(drift_runs, name):
    final = drift_runs[name]
    reproduced, measured = drift_observed(final)
    assert reproduced, measured
    assert final["embedding.frequent.saturated_fraction"] < final[RARE] / 4, "frequent tokens drift far less"


def test_adamw_pins_nothing(drift_runs):
    reproduced, measured = drift_observed(drift_runs["adamw"])
    assert not reproduced, measured
    assert all(drift_runs["adamw"][f"embedding.{b}.saturated_fraction"] == 0 for b in ("rare", "mid", "frequent"))


@pytest.mark.parametrize("fix", ["lazy", "hybrid"])
def test_lazy_rows_and_adamw_embeddings_cut_drift_tenfold(drift_runs, fix):
    works, cut = fix_cut(drift_runs[fix][RARE], drift_runs["tiger"][RARE])
    assert works, f"{fix}: only {cut:.1f}× cut"
    assert not drift_observed(drift_runs[fix])[0]


@pytest.mark.parametrize("fix", ["tied", "tied_swap"])
def test_tying_cuts_drift_in_measured_direction(drift_runs, fix):
    """Measured here: tying cuts the rare saturated fraction about 3-7× in this model (the spec's
    verdict gate is 10×, applied by `optlab report`); the direction is asserted, not the gate."""
    assert drift_runs[fix][RARE] < drift_runs["tiger"][RARE] / 2
    assert not drift_observed(drift_runs[fix])[0]
