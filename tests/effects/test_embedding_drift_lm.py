"""The ±1/λ drift on a language model over real text, judged by idle time (docs/science/embedding-drift.md §7):
the probe's last-seen steps and row envelopes against the closed form, and a fast variant of
configs/real_text/ (a 250 000-character slice of the Shakespeare plays, a one-layer GPT, 400 steps)."""

import math
from types import SimpleNamespace

import pytest
import torch

from optlab.config import validate_config
from optlab.effects.embedding_drift import lm_drift_verdict, pinned_tokens
from optlab.optim import Tiger
from optlab.probes.embedding import EmbeddingProbe
from optlab.runs import load_run
from optlab.train import train


def test_last_seen_and_row_envelopes_follow_the_closed_form():
    """Rows seen at steps s get e = 1 − (1 − ηλ)^(k − 1 − s) after k steps; inputs only (not the last
    position); a row never seen has none (NaN)."""
    embedding = torch.nn.Embedding(6, 3)
    optimizer = Tiger([{"params": [embedding.weight], "kind": "embedding"}], lr=0.05, weight_decay=2.0)
    context = SimpleNamespace(capabilities=SimpleNamespace(token_embedding=embedding), optimizers=[optimizer],
                              data=SimpleNamespace(token_rank=torch.arange(1, 7)), device=torch.device("cpu"))
    probe = EmbeddingProbe(context)
    batches = {0: [[0, 1, 5]], 1: [[2, 1, 5]], 2: [[0, 3, 5]], 3: [[3, 3, 4]]}  # 5 and 4 only ever last
    for step, rows in batches.items():
        probe.on_batch(step, torch.tensor(rows))
    envelope = probe.row_envelopes(steps=4)
    decay_per_step = 1 - 0.05 * 2.0
    expected = {0: 1 - decay_per_step ** 1, 1: 1 - decay_per_step ** 2, 2: 1 - decay_per_step ** 2, 3: 0.0}
    for row, value in expected.items():
        assert envelope[row].item() == pytest.approx(value, rel=1e-12)
    assert math.isnan(envelope[4]) and math.isnan(envelope[5])


TIGER = {"name": "tiger", "lr": 2.0e-2, "beta": 0.965, "weight_decay": 1.0, "parameter_scaling": False}
ADAMW = {"name": "adamw", "lr": 2.0e-2, "weight_decay": 1.0}  # the same ηλ


def lm_config(runs_dir, name, optimizer=TIGER, effect=None, **sections):
    return validate_config({
        "name": f"real_text_fast/{name}",
        "model": {"name": "gpt", "embedding_dim": 16, "context": 16, "n_layer": 1, "n_head": 2},
        "data": {"name": "text", "corpus": "shakespeare", "tokenizer": "words", "vocab_size": 4096, "max_chars": 250_000},
        "optimizer": optimizer, "training": {"steps": 400, "batch_size": 8}, "probes": {"every": 100},
        "effect": effect or {"name": "embedding_drift_lm", "expect": "reproduced"},
        "output": {"runs_dir": str(runs_dir)}, **sections,
    })


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    fixed = {"name": "embedding_drift_lm", "expect": "fixed", "baseline": "real_text_fast/tiger"}
    configs = {"tiger": lm_config(runs_dir, "tiger"),
               "adamw": lm_config(runs_dir, "adamw", ADAMW, {"name": "embedding_drift_lm", "expect": "absent"}),
               "lazy": lm_config(runs_dir, "lazy", effect=fixed, param_groups={"lazy_embeddings": True})}
    return {name: load_run(train(config, show_progress=False).run_dir) for name, config in configs.items()}


def test_sign_updates_pin_the_long_idle_rows_adamw_and_lazy_rows_do_not(lm_runs):
    find = {run.name: run for run in lm_runs.values()}.get
    verdicts = {name: lm_drift_verdict(run, find) for name, run in lm_runs.items()}
    assert all(verdict.passed for verdict in verdicts.values()), [verdict.line() for verdict in verdicts.values()]
    tiger = lm_runs["tiger"].summary["final"]
    assert tiger["embedding.long_idle.rows"] >= 10 and tiger["embedding.long_idle.saturated_fraction"] >= 0.9
    for bucket in ("frequent", "mid", "rare"):  # §7: a bucket's saturated fraction ≥ its long-idle share
        assert tiger[f"embedding.{bucket}.saturated_fraction"] >= tiger[f"embedding.{bucket}.long_idle_share"]


def test_the_report_lists_the_pinned_words(lm_runs):
    lines = pinned_tokens(lm_runs["tiger"])
    assert len(lines) == 1 and "rows pinned (≥ 90% of their entries at |w|·λ ≥ 0.9)" in lines[0] and "×, idle " in lines[0]
    assert pinned_tokens(lm_runs["adamw"]) == ["- real_text_fast/adamw: no row has ≥ 90% of its entries at |w|·λ ≥ 0.9"]
