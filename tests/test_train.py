"""The training loop: determinism, run directory contents, divergence, schedules."""

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import torch

import optlab

from optlab.config import validate_config
from optlab.schedules import ScheduleConfig, lr_multiplier
from optlab.train import train

TINY = dict(
    model={"name": "bag", "embedding_dim": 8, "context": 3},
    data={"name": "zipf", "vocab_size": 300},
    optimizer={"name": "tiger", "lr": 0.01, "weight_decay": 0.1},
    training={"steps": 30, "batch_size": 16},
    probes={"every": 10},
)


def test_same_config_and_seed_give_identical_metrics(make_config):
    first = train(make_config(**TINY), show_progress=False)
    second = train(make_config(**TINY), show_progress=False)
    assert first.run_dir != second.run_dir
    a, b = (pd.read_csv(r.run_dir / "metrics.csv").drop(columns="elapsed_s") for r in (first, second))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_different_seed_gives_different_metrics(make_config):
    first = train(make_config(**TINY), show_progress=False)
    other = train(make_config(**{**TINY, "training": {**TINY["training"], "seed": 1}}), show_progress=False)
    assert first.summary["final"]["loss"] != other.summary["final"]["loss"]


def test_run_directory_contents(make_config):
    result = train(make_config(**TINY), show_progress=False)
    assert {p.name for p in result.run_dir.iterdir()} >= {"config.yaml", "metrics.csv", "summary.json", "embedding.npz"}
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert list(metrics["step"]) == [1, 11, 21, 30]
    for column in ("loss", "lr", "grad_norm", "update_rms", "update_to_param_rms.embedding",
                   "embedding.rare.saturated_fraction", "embedding.frequent.rms_x_lambda",
                   "embedding.stale_momentum_rows"):
        assert column in metrics, column
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps_completed"] == 30
    assert summary["final"]["step"] == 30 and summary["seed"] == 0
    assert summary["denormals"] in ("preserved", "flushed") and summary["versions"]["torch"] == torch.__version__


def test_summary_records_software_hardware_and_commit(make_config):
    """Provenance: Python, torch, CUDA, the CPU model, threads, every dependency's installed version and the
    checkout's commit with a dirty flag, as git and the package metadata report them."""
    summary = train(make_config(**TINY), show_progress=False).summary
    versions = summary["versions"]
    assert versions["python"] == platform.python_version() and versions["cuda"] == torch.version.cuda
    assert versions["dependencies"]["pydantic"] == metadata.version("pydantic")
    assert set(versions["dependencies"]) >= {"torch", "pandas", "tokenizers", "scipy"}
    assert summary["cpu"] and summary["threads"] == torch.get_num_threads()
    checkout = Path(optlab.__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True)
    if head.returncode == 0:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout,
                               capture_output=True, text=True).stdout.strip() != ""
        assert summary["git"] == {"commit": head.stdout.strip(), "dirty": dirty}
    else:
        assert summary["git"] == {"commit": None, "dirty": None}


@pytest.mark.parametrize("model", [{"name": "gpt", "embedding_dim": 16, "context": 8, "n_layer": 1, "n_head": 2},
                                   {"name": "bag", "embedding_dim": 8, "tie_embeddings": "swap"}])
def test_other_models_and_stdlib_text_train(make_config, model):
    config = make_config(**{**TINY, "model": model, "data": {"name": "stdlib-text", "vocab_size": 500},
                            "optimizer": {"name": "adamw", "lr": 3e-3},
                            "schedule": {"name": "cosine", "warmup_steps": 5},
                            "training": {"steps": 20, "batch_size": 8, "grad_accum_steps": 2, "grad_clip": 1.0}})
    result = train(config, show_progress=False)
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert result.status == "completed"
    assert metrics["loss"].iloc[-1] < metrics["loss"].iloc[0]


def test_divergence_is_recorded_not_lost(make_config):
    config = make_config(**{**TINY, "optimizer": {"name": "sgd", "lr": 1e4, "momentum": 0.9}, "probes": {"every": 1}})
    result = train(config, show_progress=False)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] < 30
    assert (pd.read_csv(result.run_dir / "metrics.csv")["step"].iloc[-1]) == summary["diverged_at_step"]


def test_schedules_are_functions_of_the_step():
    total = 101
    cosine = ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_multiplier(cosine, 0, total) == pytest.approx(0.1)
    assert lr_multiplier(cosine, 9, total) == pytest.approx(1.0)
    assert lr_multiplier(cosine, 100, total) == pytest.approx(0.1)
    assert lr_multiplier(cosine, 55, total) == pytest.approx(0.1 + 0.9 * 0.5)
    linear = ScheduleConfig(name="linear")
    assert [lr_multiplier(linear, s, 5) for s in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0])
    assert lr_multiplier(ScheduleConfig(), 1234, 10) == 1.0


def test_compiled_model_with_bf16_autocast_trains(make_config):
    """The fast path (torch.compile + bf16 autocast) trains and records its time to the first step."""
    config = make_config(**{**TINY, "optimizer": {"name": "adamw", "lr": 1e-2},
                            "training": {"steps": 30, "batch_size": 16, "compile": True, "autocast": True}})
    result = train(config, show_progress=False)
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert result.status == "completed" and result.summary["first_step_s"] > 0
    assert metrics["loss"].iloc[-1] < metrics["loss"].iloc[0]


def test_a_metric_that_appears_later_gets_its_column(tmp_path):
    """metrics.csv is widened once when a probe starts reporting a new metric (earlier rows: nan)."""
    import pandas as pd

    from optlab.runs import MetricsWriter

    writer = MetricsWriter(tmp_path / "metrics.csv")
    writer.append({"step": 1, "loss": 2.0})
    writer.append({"step": 2, "loss": 1.5, "adam_sqrt_v_slope": 0.5})
    writer.append({"step": 3, "loss": 1.0, "adam_sqrt_v_slope": 0.6})
    writer.close()
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert list(table.columns) == ["step", "loss", "adam_sqrt_v_slope"]
    assert table["adam_sqrt_v_slope"].isna().tolist() == [True, False, False]
    assert table["loss"].tolist() == [2.0, 1.5, 1.0]


def test_progress_without_a_terminal_is_plain_lines_at_an_interval(capsys, monkeypatch):
    """In a log or CI stderr is not a terminal: a plain line at the first logged step, then at most one every
    PLAIN_EVERY_S seconds (here 0 after the second call), with step, loss, lr and ETA; no rich bar."""
    from optlab.train import _progress_bar

    bar = _progress_bar(True, "demo/run", 200)
    bar.update(1, 5.25, 1e-3)
    bar.update(2, 5.0, 1e-3)  # within the interval: nothing
    monkeypatch.setattr(_progress_bar, "PLAIN_EVERY_S", 0.0)
    bar.update(100, 4.5, 1e-3)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("demo/run: step 1/200 (0%), loss 5.2500, lr 1.00e-03")
    assert lines[1].startswith("demo/run: step 100/200 (50%), loss 4.5000") and "ETA" in lines[1]
    assert _progress_bar(False, "quiet", 10).plain is False


def test_the_report_table_marks_a_run_that_has_not_finished(tmp_path):
    """A run killed mid-way (kill -9) leaves its summary at status running: the report says how far it got."""
    import json

    from optlab.report.tables import comparison_table
    from optlab.runs import load_run

    config = validate_config({"name": "t/unfinished", "model": {"name": "bag", "embedding_dim": 8, "context": 3},
                              "data": {"name": "zipf", "vocab_size": 100}, "training": {"steps": 40, "batch_size": 8},
                              "probes": {"every": 20}, "output": {"runs_dir": str(tmp_path)}})
    run_dir = train(config, show_progress=False).run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    assert comparison_table([load_run(run_dir)])["steps"].tolist() == [40]
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "running", "steps_completed": 20}))
    assert comparison_table([load_run(run_dir)])["steps"].tolist() == ["20 of 40 (unfinished)"]


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_training_keeps_freed_tensor_memory_for_reuse():
    """keep_freed_memory (called by train.build): a freed 128 MB tensor stays in the process for the next
    allocation instead of being unmapped and page-faulted again (glibc's default, shown first)."""
    script = """
import os, torch
from optlab.train import keep_freed_memory
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
def kept_after_free():
    before = resident_mb()
    big = torch.ones(32 * 2**20)  # 128 MB, every page touched
    del big
    return resident_mb() - before
print(round(kept_after_free()), end=" ")
keep_freed_memory()
print(round(kept_after_free()))
"""
    default, kept = map(float, subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                                              text=True).stdout.split())
    assert default < 32 and kept > 96, (default, kept)
