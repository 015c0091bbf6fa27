"""Components by import path and by entry point: an optimizer, a model, a dataset and an effect of a
plug-in package written into a temporary folder, used from YAML through the command line; an optimizer of
another package (pytorch_optimizer) trained, swept and resumed; and the one-line errors."""

import json
import os
import textwrap

import pandas as pd
import pytest
import yaml

from optlab.config import validate_config
from optlab.errors import ConfigError
from optlab.train import train
from tests.helpers import optlab, sweep_and_report

PLUGIN = '''
"""A plug-in package: what a researcher would write to try their own optimizer, model, text and effect."""
import torch
import torch.nn.functional as F
from torch import nn

from optlab.data.dataset import TokenDataset
from optlab.effects.core import Effect, EffectReport, band_verdict


class SignDescent(torch.optim.Optimizer):
    """θ ← θ(1 − ηλ) − η·sign(g), with a `scale` that multiplies the step."""

    def __init__(self, params, lr=1e-2, weight_decay=0.0, scale=1.0):
        if scale <= 0:
            raise ValueError("scale must be positive")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, scale=scale))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["lr"] * group["weight_decay"]).add_(p.grad.sign(), alpha=-group["lr"] * group["scale"])


class RepeatedText(TokenDataset):
    """Characters of a short text, ids by frequency rank; windows drawn at random offsets."""

    def __init__(self, seed, text="the quick brown fox jumps over the lazy dog ", copies=200):
        super().__init__(seed)
        stream = text * copies
        order = sorted(set(stream), key=lambda c: (-stream.count(c), c))
        self.vocab_size = len(order)
        self.stream = torch.tensor([order.index(c) for c in stream])

    def sample(self, batch_size, length, split="train"):
        starts = torch.randint(len(self.stream) - length, (batch_size,), generator=self.generators[split])
        return self.stream[starts.unsqueeze(1) + torch.arange(length)]


class TinyLM(nn.Module):
    """Embedding of the previous token -> logits of the next."""

    def __init__(self, dataset, width=8):
        super().__init__()
        self.window_length = 2
        self.token_embedding = nn.Embedding(dataset.vocab_size, width)
        self.head = nn.Linear(width, dataset.vocab_size)

    def forward(self, batch):
        return F.cross_entropy(self.head(self.token_embedding(batch[:, 0])), batch[:, 1])


def _final_loss_report(context):
    value = float(context.cells["mean"].min())
    return EffectReport([band_verdict("final_loss_below_3", context.sweep.name, "best final loss", value, (0.0, 3.0))])


effect = Effect("final_loss_below_3", "the plug-in's own note", "sweep", _final_loss_report,
                summary="the best cell's final loss is below 3")
'''

ENTRY_POINTS = """
[optlab.optimizers]
sign_descent = myplug:SignDescent
[optlab.models]
tiny_lm = myplug:TinyLM
[optlab.datasets]
repeated_text = myplug:RepeatedText
[optlab.effects]
final_loss_below_3 = myplug:effect
"""


@pytest.fixture
def plugin(tmp_path):
    """The package `myplug` and an installed distribution that registers its components (a dist-info
    folder on PYTHONPATH, as pip would write it)."""
    (tmp_path / "myplug.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "myplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return tmp_path, {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def write_config(folder, name, **sections):
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": f"plug/{name}", **sections}, sort_keys=False))
    return path


def run_and_read(folder, env, path):
    result = optlab("train", str(path), "-q", cwd=folder, env=env)
    assert result.returncode == 0, result.stderr
    run_dir = next((folder / "runs" / "plug" / path.stem).iterdir())
    return pd.read_csv(run_dir / "metrics.csv"), yaml.safe_load((run_dir / "config.yaml").read_text())


SECTIONS = dict(training={"steps": 60, "batch_size": 32}, probes={"every": 20})


def test_components_by_import_path_and_by_entry_point_train_identically(plugin):
    folder, env = plugin
    by_path = write_config(folder, "by_path", model={"name": "myplug:TinyLM", "width": 8},
                           data={"name": "myplug:RepeatedText"},
                           optimizer={"name": "myplug:SignDescent", "lr": 0.02, "weight_decay": 0.5}, **SECTIONS)
    by_name = write_config(folder, "by_name", model={"name": "tiny_lm", "width": 8}, data={"name": "repeated_text"},
                           optimizer={"name": "sign_descent", "lr": 0.02, "weight_decay": 0.5}, **SECTIONS)
    metrics, config = run_and_read(folder, env, by_path)
    named, _ = run_and_read(folder, env, by_name)
    assert metrics["loss"].iloc[-1] < metrics["loss"].iloc[0]
    pd.testing.assert_frame_equal(metrics.drop(columns="elapsed_s"), named.drop(columns="elapsed_s"))
    assert config["optimizer"] == {"name": "myplug:SignDescent", "lr": 0.02, "weight_decay": 0.5, "scale": 1.0}, \
        "the resolved config records the signature's defaults"
    assert config["data"]["copies"] == 200
    # the probes see the plug-in like a built-in: update RMS per kind, the drift statistics of its embedding
    assert {"update_rms.embedding", "update_rms.head", "embedding.rare.saturated_fraction",
            "lr_x_weight_decay.embedding"} <= set(metrics)
    listed = optlab("list", cwd=folder, env=env).stdout
    assert "sign_descent: myplug:SignDescent (installed)" in listed and "final_loss_below_3 [sweep]" in listed


def test_a_plugin_optimizer_takes_part_in_the_param_group_rules(plugin):
    folder, env = plugin
    path = write_config(folder, "routed", model={"name": "tiny_lm"}, data={"name": "repeated_text"},
                        optimizer={"name": "adamw", "lr": 0.01},
                        param_groups={"embedding_optimizer": {"name": "sign_descent", "lr": 0.05, "weight_decay": 1.0},
                                      "rules": [{"kind": "head", "lr_scale": 0.5}]}, **SECTIONS)
    metrics, _ = run_and_read(folder, env, path)
    assert metrics["lr_x_weight_decay.embedding"].iloc[-1] == pytest.approx(0.05 * 1.0)
    assert metrics["lr_x_weight_decay.head"].iloc[-1] == pytest.approx(0.5 * 0.01 * 0.01), "AdamW's λ at half its lr"
    # sign steps of size η on the rows a batch touches, none on the others: 0 < RMS(Δθ/η) ≤ 1 (decay included)
    assert 0 < metrics["update_rms_over_lr.embedding"].iloc[-1] <= 1.0 + 0.05


def test_a_sweep_of_a_plugin_optimizer_with_a_plugin_effect(plugin, monkeypatch):
    """The effect by its entry-point name in a sweep file; by import path it resolves to the same object."""
    folder, env = plugin
    base = {"model": {"name": "tiny_lm"}, "data": {"name": "repeated_text"}, "optimizer": {"name": "sign_descent"},
            **SECTIONS}
    sweep = folder / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "plug/sweep", "base": base, "grid": {"optimizer.lr": [0.003, 0.03]},
                                     "metric": {"column": "loss"}, "effect": "final_loss_below_3"}))
    assert optlab("sweep", str(sweep), "--workers", "2", cwd=folder, env=env).returncode == 0
    reported = optlab("report", "runs/plug/sweep", cwd=folder, env=env)
    assert reported.returncode == 0, reported.stderr
    verdicts = json.loads((folder / "runs/plug/sweep/report/report.json").read_text())["verdicts"]
    assert [(v["effect"], v["passed"]) for v in verdicts] == [("final_loss_below_3", True)]
    monkeypatch.syspath_prepend(str(folder))
    from optlab.effects import load_effect

    assert load_effect("myplug:effect").name == "final_loss_below_3"


@pytest.mark.parametrize("optimizer,message", [
    ({"name": "myplug:NoSuchThing"}, "optimizer.name: module 'myplug' has no attribute 'NoSuchThing'"),
    ({"name": "nopackage.module:Class"}, "optimizer.name: cannot import 'nopackage.module'"),
    ({"name": "myplug:TinyLM"}, "optimizer.name: myplug:TinyLM is not a torch.optim.Optimizer subclass"),
    ({"name": "myplug:SignDescent", "scael": 2.0}, "optimizer.scael: unknown key for myplug:SignDescent; did you mean `scale`?"),
    ({"name": "sign_descnt"}, "optimizer.name: unknown name 'sign_descnt' (did you mean `sign_descent`?)"),
])
def test_bad_plugin_names_and_keywords_are_one_line(plugin, optimizer, message):
    folder, env = plugin
    path = write_config(folder, "bad", model={"name": "tiny_lm"}, data={"name": "repeated_text"}, optimizer=optimizer)
    result = optlab("validate", str(path), cwd=folder, env=env)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_plugin_rejecting_a_value_is_one_line(plugin):
    folder, env = plugin
    path = write_config(folder, "rejected", model={"name": "tiny_lm"}, data={"name": "repeated_text"},
                        optimizer={"name": "sign_descent", "scale": -1.0}, **SECTIONS)
    result = optlab("train", str(path), cwd=folder, env=env)
    assert result.returncode == 2 and "optimizer: sign_descent rejected its settings (ValueError: scale must be positive)" \
        in result.stderr, result.stderr


def test_a_model_given_the_wrong_data_says_so():
    with pytest.raises(ConfigError, match="model.name: nqm needs data.name: gaussian-noise"):
        config = validate_config({"model": {"name": "nqm"}, "data": {"name": "zipf", "vocab_size": 20}})
        train(config, show_progress=False)


PYTORCH_OPTIMIZER = {"name": "pytorch_optimizer:AdaBelief", "lr": 3e-3, "weight_decay": 0.01}


def foreign_config(tmp_path, steps, **optimizer):
    return validate_config({
        "name": "foreign/adabelief", "model": {"name": "gpt", "embedding_dim": 16, "context": 8, "n_layer": 1},
        "data": {"name": "zipf", "vocab_size": 64}, "optimizer": {**PYTORCH_OPTIMIZER, **optimizer},
        "training": {"steps": steps, "batch_size": 8}, "probes": {"every": 5},
        "output": {"runs_dir": str(tmp_path / "runs"), "checkpoint_every": 10, "keep_checkpoints": 10}})


def test_an_optimizer_of_another_package_trains_checkpoints_and_resumes_bit_identically(tmp_path):
    """A crash after the checkpoint of step 20 (a copy of the run with the later checkpoints removed),
    resumed, ends with metrics identical to the uninterrupted run."""
    import shutil

    pytest.importorskip("pytorch_optimizer")
    whole = train(foreign_config(tmp_path, 40), show_progress=False)
    assert whole.status == "completed" and whole.summary["final"]["update_rms.matrix"] > 0
    crashed = tmp_path / "crashed"
    shutil.copytree(whole.run_dir, crashed)
    for checkpoint in (crashed / "checkpoints").iterdir():
        if int(checkpoint.stem.split("_")[1]) > 20:
            checkpoint.unlink()
    resumed = train(foreign_config(tmp_path, 40), show_progress=False, resume=crashed).run_dir
    pd.testing.assert_frame_equal(pd.read_csv(resumed / "metrics.csv").drop(columns="elapsed_s"),
                                  pd.read_csv(whole.run_dir / "metrics.csv").drop(columns="elapsed_s"))


def test_an_optimizer_of_another_package_sweeps(tmp_path):
    pytest.importorskip("pytorch_optimizer")
    base = foreign_config(tmp_path, 10).model_dump(mode="json")
    sweep = {"name": "foreign/sweep", "base": base, "grid": {"optimizer.lr": [1e-3, 1e-2]}, "seeds": [0, 1],
             "metric": {"column": "loss"}}
    _, folder = sweep_and_report(tmp_path, sweep)
    cells = pd.read_csv(folder / "cells.csv")
    assert len(cells) == 2 and (cells["seeds"] == 2).all()
    assert (folder / "metric_per_cell.png").is_file()
