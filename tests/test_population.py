"""optlab/population.py: runs trained together give the results of the same runs trained one by one."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch.nn.functional as F
from torch import nn

from optlab.config import validate_config
from optlab.population import PopulationUnsupported, train_population
from optlab.runs import read_summary
from optlab.sweep.population import trains_together
from optlab.train import train

RELATIVE = 1e-12  # batched against single matrix products: rounding only (float64)


def regression(lr: float, **training) -> dict:
    """Exp A's problem, small: SGD on noiseless isotropic linear regression in float64."""
    return {"name": "t/pop", "model": {"name": "linreg"}, "data": {"name": "linear-regression", "dim": 15, "teacher": "zero"},
            "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.0}, "schedule": {"name": "constant"},
            "training": {"steps": 30, "batch_size": 4, "dtype": "float64", "divergence_factor": 1e4, **training},
            "probes": {"every": 5, "embedding": False, "updates": False}, "output": {"final_checkpoint": False}}


def noisy_quadratic(optimizer: dict) -> dict:
    """Exp C's problem, small: one step on the noisy quadratic, Adam with betas (0, 0) or SGD."""
    return {"name": "t/pop", "model": {"name": "nqm", "correlation": 0.1}, "data": {"name": "gaussian-noise", "dim": 8,
                                                                                    "replicas": 50},
            "optimizer": optimizer, "schedule": {"name": "constant"},
            "training": {"steps": 1, "batch_size": 16, "dtype": "float64", "divergence_factor": 1e12},
            "probes": {"every": 1, "embedding": False, "updates": False}, "output": {"final_checkpoint": False}}


class DropoutLM(nn.Module):
    """A model by import path whose forward pass draws random numbers (dropout)."""

    def __init__(self, dataset):
        super().__init__()
        self.window_length = 2
        self.token_embedding = nn.Embedding(dataset.vocab_size, 8)
        self.head = nn.Linear(8, dataset.vocab_size)

    def forward(self, batch):
        hidden = F.dropout(self.token_embedding(batch[:, 0]), p=0.1, training=self.training)
        return F.cross_entropy(self.head(hidden), batch[:, 1])


def tiny_lm(optimizer: dict, model: dict | None = None) -> dict:
    return {"name": "t/pop", "model": model or {"name": "gpt", "embedding_dim": 16, "context": 8, "n_layer": 1, "n_head": 2},
            "data": {"name": "zipf", "vocab_size": 64}, "optimizer": optimizer,
            "training": {"steps": 12, "batch_size": 4, "dtype": "float64", "grad_accum_steps": 2, "grad_clip": 0.5},
            "probes": {"every": 4, "eval_examples": 8, "embedding": False}, "output": {"final_checkpoint": False}}


def assert_same_runs(together: list, alone: list, columns: list[str] | None = None) -> None:
    """Same status, steps and stop step; every logged metric (or `columns`) of every row equal to RELATIVE."""
    for pooled, single in zip(together, alone):
        assert pooled.status == single.status
        for key in ("steps_completed", "diverged_at_step", "reached_target_at_step"):
            assert pooled.summary.get(key) == single.summary.get(key), key
        rows, expected = pd.read_csv(pooled.run_dir / "metrics.csv"), pd.read_csv(single.run_dir / "metrics.csv")
        assert list(rows.columns) == list(expected.columns) and len(rows) == len(expected)
        for column in columns or expected.columns.drop("elapsed_s"):
            for got, want in zip(rows[column], expected[column]):
                if math.isfinite(want):
                    assert abs(got - want) <= RELATIVE * abs(want), (column, got, want)
                else:
                    assert not math.isfinite(got) or got == want, (column, got, want)


def train_both(tmp_path, datas: list[dict]):
    configs = [validate_config(data) for data in datas]
    together = train_population(configs, [tmp_path / f"together{i}" for i in range(len(configs))])
    alone = [train(config, show_progress=False, run_dir=tmp_path / f"alone{i}") for i, config in enumerate(configs)]
    return together, alone


def test_sgd_lrs_together_equal_one_by_one_including_divergence(tmp_path):
    together, alone = train_both(tmp_path, [regression(lr) for lr in (0.01, 0.05, 0.1, 0.2, 3.0)])
    assert [run.status for run in alone] == ["completed"] * 4 + ["diverged"]  # the test covers a member stopping early
    assert_same_runs(together, alone)
    assert read_summary(together[2].run_dir)["population"] == {"size": 5, "member": 2}


def test_adam_eps_and_sgd_together_equal_one_by_one(tmp_path):
    optimizers = [{"name": "adam", "lr": lr, "betas": [0.0, 0.0], "eps": eps} for lr in (0.01, 1.0) for eps in (1e-3, 10.0)]
    together, alone = train_both(tmp_path, [noisy_quadratic(o) for o in optimizers + [{"name": "sgd", "lr": 0.05}]])
    assert_same_runs(together, alone)


def test_schedules_seed_of_the_stream_and_stop_at_target(tmp_path):
    target = {"stop_at_target": {"column": "population_loss", "value": 0.01}}
    datas = [regression(0.2, **target), regression(0.05, **target)]
    datas[1]["schedule"] = {"name": "cosine", "warmup_steps": 3}
    together, alone = train_both(tmp_path, datas)
    assert_same_runs(together, alone)
    assert alone[0].summary.get("reached_target_at_step")  # one member stops at its target, the other trains on


def test_a_language_model_with_accumulation_clipping_and_probes(tmp_path):
    together, alone = train_both(tmp_path, [tiny_lm({"name": "adamw", "lr": 1e-2}),
                                            tiny_lm({"name": "sgd", "lr": 0.3, "momentum": 0.9})])
    assert_same_runs(together, alone)


def test_a_sign_based_update_agrees_in_its_losses(tmp_path):
    """Lion takes the sign of each coordinate of its interpolation: where that is within rounding of zero,
    the batched and the single computation can give opposite signs, and that coordinate then moves by 2η
    in one and not the other (docs/populations.md). The losses agree to rounding all the same."""
    together, alone = train_both(tmp_path, [tiny_lm({"name": "lion", "lr": 1e-3}), tiny_lm({"name": "lion", "lr": 3e-4})])
    assert_same_runs(together, alone, columns=["loss", "eval_loss"])


def test_random_forward_pass_is_refused_before_anything_is_written(tmp_path):
    model = {"name": "tests.test_population:DropoutLM"}
    configs = [validate_config(tiny_lm({"name": "adamw", "lr": lr}, model)) for lr in (1e-3, 1e-2)]
    with pytest.raises(PopulationUnsupported, match="cannot be vectorised"):
        train_population(configs, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_configs_that_differ_beyond_the_optimizer_are_refused(tmp_path):
    configs = [validate_config(regression(0.1)), validate_config(regression(0.1, batch_size=8))]
    with pytest.raises(PopulationUnsupported, match="differ in more than the optimizer"):
        train_population(configs, [tmp_path / "a", tmp_path / "b"])


def test_trains_together_groups_by_everything_but_the_optimizer():
    datas = [regression(lr, batch_size=batch, seed=seed) for batch in (2, 8) for seed in (0, 1) for lr in (0.1, 0.2, 0.3)]
    datas.append({**regression(0.1), "output": {"final_checkpoint": True}})  # checkpointing: never in a population
    configs = [validate_config(data) for data in datas]
    assert trains_together(configs) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12]]
    assert trains_together(configs[:3], workers=2) == [[0, 1], [2]]  # every worker gets a batch


def test_stop_request_records_members_interrupted_without_checkpoint(tmp_path, monkeypatch):
    import optlab.population as population

    class StopAfterThreeSteps(population.StopRequest):
        reads = 0

        @property
        def requested(self):
            StopAfterThreeSteps.reads += 1
            return StopAfterThreeSteps.reads > 3

        @requested.setter
        def requested(self, value):
            pass

    monkeypatch.setattr(population, "StopRequest", StopAfterThreeSteps)
    configs = [validate_config(regression(lr)) for lr in (0.1, 0.2)]
    runs = train_population(configs, [tmp_path / "a", tmp_path / "b"])
    assert [run.status for run in runs] == ["interrupted", "interrupted"]
    assert [read_summary(run.run_dir)["steps_completed"] for run in runs] == [3, 3]
    assert not (tmp_path / "a" / "checkpoints").exists()


def test_a_sweep_trains_its_populations_and_matches_no_population(tmp_path, monkeypatch):
    """`optlab sweep` (inline and local executors) batches the trials of one batch size and seed; the
    journal's final metrics equal those of --no-population."""
    import yaml
    from rich.console import Console

    from optlab.sweep import run_sweep, trial_results

    base = regression(0.1)
    finals = {}
    for population in (True, False):
        folder = tmp_path / str(population)
        folder.mkdir()
        monkeypatch.chdir(folder)
        (folder / "base.yaml").write_text(yaml.safe_dump(base))
        sweep = {"name": "t/pop", "base": "base.yaml", "grid": {"training.batch_size": [2, 8], "optimizer.lr": [0.05, 0.1, 3.0]},
                 "seeds": [0, 1], "metric": {"column": "population_loss", "reduce": "final"}}
        (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
        assert run_sweep(folder / "sweep.yaml", [], executor="inline", population=population, console=Console(quiet=True)) == 0
        _, table, _ = trial_results(folder / "runs" / "t" / "pop")
        finals[population] = table.set_index("trial").sort_index()
        sizes = {read_summary(folder / "runs" / "t" / "pop" / "trials" / trial).get("population", {}).get("size")
                 for trial in table["trial"]}
        assert sizes == ({3} if population else {None})  # 4 populations of 3 lrs; none without
    together, alone = finals[True], finals[False]
    assert list(together["state"]) == list(alone["state"]) and "diverged" in set(alone["state"])
    for column in [c for c in alone.columns if c.startswith("final.") and c != "final.elapsed_s"]:
        for got, want in zip(together[column], alone[column]):
            assert got == pytest.approx(want, rel=RELATIVE, nan_ok=True), column


def test_populations_form_only_where_they_pay():
    """docs/populations.md: small models (Exp A's 63 weights) yes; the noisy quadratic's 4000 replicas, the
    teacher MLP whose eval probe outweighs its step, and the GPT no."""
    from pathlib import Path

    from optlab.sweep import plan
    from optlab.sweep.population import pays_to_train_together

    configs = Path(__file__).resolve().parents[1] / "configs" / "scaling"
    verdicts = {name: {pays_to_train_together(trial.config) for trial in plan(configs / f"{name}.yaml", [])[2]}
                for name in ("exp_a", "exp_d0", "exp_c_rho0.1", "exp_d", "lm_sgd")}
    assert verdicts == {"exp_a": {True}, "exp_d0": {True}, "exp_c_rho0.1": {False}, "exp_d": {False}, "lm_sgd": {False}}
