"""optlab sample: text from a trained language-model run, reproducible by seed; refused in one line for
runs without logits or without a text vocabulary."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from optlab.cli import app
from optlab.config import validate_config
from optlab.data import build_dataset
from optlab.train import train

LM = {"name": "lm", "model": {"name": "gpt", "embedding_dim": 16, "context": 8, "n_layer": 1, "n_head": 2},
      "data": {"name": "stdlib-text", "tokenizer": "words", "vocab_size": 256},
      "optimizer": {"name": "adamw", "lr": 1e-2}, "training": {"batch_size": 8, "steps": 20},
      "probes": {"every": 20, "embedding": False, "updates": False}}


def trained(tmp_path, config: dict):
    config = validate_config({**config, "output": {"runs_dir": str(tmp_path)}})
    return config, train(config, show_progress=False).run_dir


def test_samples_continue_the_prompt_and_repeat_with_the_seed(tmp_path):
    config, run_dir = trained(tmp_path, LM)
    command = ["sample", str(run_dir), "--prompt", "the value of", "--tokens", "12", "--seed", "3"]
    first, again = CliRunner().invoke(app, command), CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    assert first.output == again.output and first.output.startswith("the value of ")
    data = build_dataset(config.data, 0)
    assert len(data.encode(first.output)) >= 3 + 12 - 2  # punctuation may merge with a neighbour when printed


def test_temperature_zero_takes_the_most_likely_token(tmp_path):
    config, run_dir = trained(tmp_path, LM)
    from optlab.checkpoint import load_latest_checkpoint
    from optlab.models import build_model

    data = build_dataset(config.data, 0)
    model = build_model(config.model, data)
    model.load_state_dict(load_latest_checkpoint(run_dir)["model"])
    ids = data.encode("the value of")
    with torch.no_grad():
        expected = int(model.logits(torch.tensor([ids]))[0, -1].argmax())
    shown = CliRunner().invoke(app, ["sample", str(run_dir), "--prompt", "the value of", "-n", "1", "-t", "0"])
    assert shown.output.strip() == data.decode(ids + [expected])


def test_runs_that_cannot_be_sampled_are_refused_in_one_line(tmp_path):
    _, bag = trained(tmp_path, {**LM, "name": "bag", "model": {"name": "bag", "embedding_dim": 8, "context": 3}})
    _, zipf = trained(tmp_path, {**LM, "name": "zipf", "data": {"name": "zipf", "vocab_size": 64}})
    for run_dir, fragment in ((bag, "gives no next-token logits"), (zipf, "has no text vocabulary")):
        refused = CliRunner().invoke(app, ["sample", str(run_dir)])
        assert refused.exit_code == 2 and fragment in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
