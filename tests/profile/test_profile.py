"""optlab profile: known answers of the panels on small grids, an optimizer of this file by import path,
a third-party one, reuse of finished trials, and the card's files."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from optlab.cli import app
import numpy as np

from optlab.profile import batch_law, drift, gradients, lr_sensitivity
from optlab.profile.panel import Battery


class ClippedSGD(torch.optim.Optimizer):
    """A user's optimizer, profiled by import path: SGD on the gradient clipped elementwise to ±clip."""

    def __init__(self, params, lr: float = 0.1, clip: float = 1.0):
        super().__init__(params, {"lr": lr, "clip": clip})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.add_(param.grad.clamp(-group["clip"], group["clip"]), alpha=-group["lr"])


@pytest.fixture
def small_batch_law(monkeypatch):
    """The batch-law panel on a coarser grid: B ∈ {1, 4, 16, 256, 4096}, 3 lrs per decade, 1000 replicas."""
    monkeypatch.setitem(batch_law.BATCHES, True, [1, 4, 16, 256, 4096])
    monkeypatch.setitem(batch_law.LRS, True, [1e-4, 1e3, 22])


@pytest.mark.slow  # 440 one-step trials: about 15 s
def test_batch_law_known_answers(tmp_path, small_batch_law):
    """SGD: exponent ≈ 1, no surge; SignSGD and AdamW with a small ε: ≈ ½ and the surge (β_noise = 0.40);
    AdamW with ε = 1000 (units of g_0, far above the noise σ/√B at B ≥ 1): SGD-like, no surge."""
    optimizers = {"sgd": {"name": "sgd", "momentum": 0.0}, "signsgd": {"name": "signsgd"},
                  "adamw": {"name": "adamw", "eps": 1e-8}, "adamw_eps_1e3": {"name": "adamw", "eps": 1e3}}
    findings = batch_law.measure(Battery(optimizers, tmp_path, quick=True))
    assert findings["sgd"].finding == "≈ 1 (SGD-like), no surge"
    assert findings["signsgd"].finding == "≈ ½ (sign-like), surges"
    assert findings["adamw"].finding == "≈ ½ (sign-like), surges"
    assert findings["adamw_eps_1e3"].finding == "≈ 1 (SGD-like), no surge"
    assert findings["signsgd"].numbers["surge_ratio"] == pytest.approx(1.45, rel=0.1)


@pytest.mark.slow  # four 600-step runs
def test_drift_known_answers(tmp_path, monkeypatch):
    """At ηλT = 6 on one stream: Lion (at two lrs 10× apart) pins idle rows at ±1/λ; SGD's and AdamW's settle."""
    monkeypatch.setitem(drift.BASE, "data", {**drift.BASE["data"], "vocab_size": 2000})
    optimizers = {"lion": {"name": "lion", "lr": 0.003, "weight_decay": 0.0},
                  "lion_slow": {"name": "lion", "lr": 0.0003, "weight_decay": 0.1},
                  "sgd": {"name": "sgd", "lr": 0.01, "weight_decay": 1.0}, "adamw": {"name": "adamw"}}
    findings = drift.measure(Battery(optimizers, tmp_path, quick=True))
    for lion in ("lion", "lion_slow"):
        assert findings[lion].finding.startswith("pins idle rows at ±1/λ") and findings[lion].value >= 0.3
    assert findings["lion"].finding.endswith("(at its own λ = 0: no pull to ±1/λ)")
    assert findings["sgd"].finding == "idle rows settle" and findings["adamw"].finding == "idle rows settle"
    config = yaml.safe_load((tmp_path / "drift.yaml").read_text())["variants"]["lion"]
    assert config["training.steps"] * config["optimizer"]["lr"] * config["optimizer"]["weight_decay"] == pytest.approx(6)


def test_drift_without_weight_decay_is_not_judged(tmp_path, monkeypatch):
    monkeypatch.setattr(drift, "STEPS", 50)
    findings = drift.measure(Battery({"clipped": {"name": "tests.profile.test_profile:ClippedSGD"}}, tmp_path, quick=True))
    assert findings["clipped"].finding.startswith("not judged (no weight decay")


def test_gradients_panel_outcomes(tmp_path):
    findings = gradients.measure(Battery({"sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                                          "tiger": {"name": "tiger", "lr": 0.1, "weight_decay": 0.0}}, tmp_path))
    sgd, tiger = findings["sgd"].numbers["outcomes"], findings["tiger"].numbers["outcomes"]
    assert sgd["None (fresh)"] == "stays" and sgd["zero (fresh)"] == "stays"
    assert sgd["zero (warm)"] == "moves", "a stale momentum keeps moving the weight"
    assert sgd["NaN (fresh)"] == "corrupts"
    assert tiger["NaN (fresh)"] != "corrupts", "Tiger's NaN guard (docs/science/optimizers.md)"


def test_profile_of_an_optimizer_by_import_path_writes_its_card(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments = ["profile", "tests.profile.test_profile:ClippedSGD", "lr=0.05", "clip=0.5", "--panels", "gradients",
                 "--against", "sgd"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    [folder] = (tmp_path / "runs" / "profiles").iterdir()
    assert folder.name.startswith("clippedsgd-")
    card = json.loads((folder / "card.json").read_text())
    assert card["optimizer"] == {"name": "tests.profile.test_profile:ClippedSGD", "lr": 0.05, "clip": 0.5}
    assert set(card["panels"]["gradients"]["findings"]) == {"ClippedSGD", "sgd"}
    assert "| Missing and non-finite gradients |" in (folder / "card.md").read_text() and (folder / "gradients.png").is_file()


def test_profile_of_a_third_party_optimizer_and_bad_input(tmp_path, monkeypatch):
    pytest.importorskip("pytorch_optimizer")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["profile", "pytorch_optimizer:AdaBelief", "lr=1e-3", "--panels", "gradients",
                                      "--against", "adamw"])
    assert result.exit_code == 0, result.output
    for arguments, fragment in [(["profile", "adamm"], "optimizer.name: unknown name 'adamm'"),
                                (["profile", "lion", "lrr=1"], "optimizer.lrr: unknown key"),
                                (["profile", "lion", "--panels", "speed"], "--panels speed: unknown panel"),
                                (["profile", "lion", "--against", "adam"], "--against adam: unknown reference")]:
        refused = CliRunner().invoke(app, arguments)
        assert refused.exit_code == 2 and fragment in refused.stderr, refused.output


def test_a_second_run_reuses_every_finished_trial(tmp_path, monkeypatch):
    monkeypatch.setitem(batch_law.BATCHES, True, [1, 16])
    monkeypatch.setitem(batch_law.LRS, True, [1e-3, 1.0, 4])
    battery = Battery({"signsgd": {"name": "signsgd"}}, tmp_path, quick=True)
    first = batch_law.measure(battery)
    journal = (tmp_path / "batch_law" / "manifest.jsonl").read_text().splitlines()
    again = batch_law.measure(battery)
    assert (tmp_path / "batch_law" / "manifest.jsonl").read_text().splitlines() == journal, "nothing ran again"
    assert again["signsgd"].numbers == first["signsgd"].numbers


def test_lr_basin_and_steps_to_target_follow_their_definitions():
    lrs = np.array([1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1])
    # L_0 = 7, L* = 3 at 1e-2: the basin admits final L ≤ 3 + 0.1·4 = 3.4, contiguous around the best
    best, decades, at_edge = lr_sensitivity.basin(lrs, np.array([3.5, 3.3, 3.0, 3.41, 3.2]), initial=7.0)
    assert (best, at_edge) == (2, False) and decades == pytest.approx(0.5)
    best, decades, at_edge = lr_sensitivity.basin(lrs, np.array([3.2, 3.3, 3.0, np.inf, 3.1]), initial=7.0)
    assert (best, at_edge) == (2, True) and decades == pytest.approx(1.0)  # a diverged run bounds the basin
    steps, losses = np.array([0.0, 10, 20, 30]), np.array([7.0, 5.0, 4.0, 3.0])
    assert lr_sensitivity.reached_at(steps, losses, 4.5) == pytest.approx(15.0)
    assert lr_sensitivity.reached_at(steps, losses, 7.5) == 0.0
    assert lr_sensitivity.reached_at(steps, losses, 2.0) == float("inf")


def test_lr_sensitivity_panel_on_a_tiny_grid(tmp_path, monkeypatch):
    """AdamW is its own speed reference (1×); the card gets every lr at both widths, and its figure."""
    monkeypatch.setitem(lr_sensitivity.STEPS, True, 12)
    monkeypatch.setitem(lr_sensitivity.WIDTHS, True, (16, 32))
    monkeypatch.setitem(lr_sensitivity.MULTIPLIERS, True, (0.1, 1.0, 10.0))
    monkeypatch.setitem(lr_sensitivity.EVAL_EXAMPLES, True, 16)
    battery = Battery({"lion": {"name": "lion", "lr": 1e-3}, "adamw": {"name": "adamw", "lr": 3e-3}}, tmp_path, quick=True)
    findings = lr_sensitivity.measure(battery)
    assert findings["adamw"].numbers["speed_vs_adamw"] == pytest.approx(1.0)
    for label, lr in (("lion", 1e-3), ("adamw", 3e-3)):
        widths = findings[label].numbers["widths"]
        assert set(widths) == {"16", "32"}
        assert widths["32"]["lrs"] == pytest.approx([lr / 10, lr, lr * 10])
        assert widths["32"]["best_loss"] == min(widths["32"]["final_eval_loss"])
    assert lr_sensitivity.figure(battery, findings, tmp_path).is_file()
