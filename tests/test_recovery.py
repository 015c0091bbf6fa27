"""Nothing lost: kill-and-resume equality, Ctrl-C, bad run directories and checkpoints."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

CONFIG = """
name: recovery/run
model: {name: bag, embedding_dim: 32, context: 4}
data: {name: zipf, vocab_size: 3000, bigram_prob: 0.5}
optimizer: {name: tiger, lr: 0.01, weight_decay: 0.1}
schedule: {name: cosine, warmup_steps: 20}
training: {steps: 700, batch_size: 32}
probes: {every: 25}
output: {checkpoint_every: 50, keep_checkpoints: 2}
"""


def optlab_command(*args):
    return [sys.executable, "-m", "optlab.cli", *args]


def run_optlab(*args, cwd):
    return subprocess.run(optlab_command(*args), cwd=cwd, capture_output=True, text=True, timeout=300)


def metrics_without_time(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns="elapsed_s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    (folder / "config.yaml").write_text(CONFIG)
    assert run_optlab("train", "config.yaml", "-q", cwd=folder).returncode == 0
    return metrics_without_time(next((folder / "runs" / "recovery" / "run").iterdir()))


def start_and_stop(folder: Path, sig: int) -> tuple[Path, int]:
    """Start a run, wait until it has checkpointed (plus a random delay), then send `sig`."""
    (folder / "config.yaml").write_text(CONFIG)
    process = subprocess.Popen(optlab_command("train", "config.yaml", "-q"), cwd=folder,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(folder.glob("runs/recovery/run/*/checkpoints/step_*.pt")):
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.3))
    process.send_signal(sig)
    process.communicate(timeout=120)
    return next((folder / "runs" / "recovery" / "run").iterdir()), process.returncode


def test_sigkill_then_resume_gives_identical_metrics(tmp_path, uninterrupted):
    run_dir, _ = start_and_stop(tmp_path, signal.SIGKILL)
    partial = json.loads((run_dir / "summary.json").read_text())
    assert partial["status"] == "running"
    resumed = run_optlab("train", "--resume", str(run_dir), "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    pd.testing.assert_frame_equal(metrics_without_time(run_dir), uninterrupted, check_exact=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_sigterm_checkpoint_mark_interrupted_and_resume_identically(tmp_path, uninterrupted, sig):
    run_dir, returncode = start_and_stop(tmp_path, sig)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert returncode == 130 and summary["status"] == "interrupted"
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    assert int(checkpoints[-1].stem.split("_")[1]) == summary["steps_completed"] and len(checkpoints) <= 2
    resumed = run_optlab("train", "--resume", str(run_dir), "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    pd.testing.assert_frame_equal(metrics_without_time(run_dir), uninterrupted, check_exact=True)


def make_finished_run(folder: Path, steps=20, fresh_process: bool = False) -> Path:
    """A finished run of CONFIG in folder/runs, trained in a fresh process or in this one."""
    (folder / "config.yaml").write_text(CONFIG.replace("steps: 700", f"steps: {steps}"))
    if fresh_process:
        assert run_optlab("train", "config.yaml", "-q", cwd=folder).returncode == 0
    else:
        from optlab.config import load_config
        from optlab.train import train

        train(load_config(folder / "config.yaml", [f"output.runs_dir={folder / 'runs'}"]), show_progress=False)
    return next((folder / "runs" / "recovery" / "run").iterdir())


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_resume_with_a_different_config_is_refused_unless_forced(tmp_path):
    run_dir = make_finished_run(tmp_path)
    result = run_optlab("train", "--resume", str(run_dir), "training.steps=40", "optimizer.lr=0.02", cwd=tmp_path)
    assert_one_line_error(result, "differs from the run's in optimizer.lr, training.steps", "--force")
    forced = run_optlab("train", "--resume", str(run_dir), "training.steps=40", "--force", "-q", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert pd.read_csv(run_dir / "metrics.csv")["step"].iloc[-1] == 40


def test_debug_flag_shows_the_traceback(tmp_path):
    (tmp_path / "config.yaml").write_text("training: {steps: 0}\n")
    result = run_optlab("--debug", "validate", "config.yaml", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_determinism_across_fresh_processes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = (make_finished_run(tmp_path / folder, steps=60, fresh_process=True) for folder in ("a", "b"))
    pd.testing.assert_frame_equal(metrics_without_time(first), metrics_without_time(second), check_exact=True)


def test_a_diverging_run_is_stopped_within_a_few_steps_between_probes(make_config):
    """The loss is read only on probe steps; a flag kept on the device is read every few steps, so a run
    that blows up is not carried on for `probes.every` steps of nan."""
    from optlab.train import train

    config = make_config(model={"name": "linreg"}, data={"name": "linear-regression", "dim": 8},
                         optimizer={"name": "sgd", "lr": 50.0}, training={"steps": 1000, "batch_size": 4},
                         probes={"every": 1000, "embedding": False, "updates": False})
    result = train(config, show_progress=False)
    losses = pd.read_csv(result.run_dir / "metrics.csv")
    assert result.status == "diverged" and result.summary["diverged_at_step"] <= 16, "within a few steps, not at 1000"
    assert result.summary["steps_completed"] == result.summary["diverged_at_step"] == losses["step"].iloc[-1]


def test_run_files_follow_the_umask(make_config):
    import os

    from optlab.train import train

    previous = os.umask(0o022)
    try:
        result = train(make_config(training={"steps": 3, "batch_size": 4}, probes={"every": 1}), show_progress=False)
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in result.run_dir.rglob("*") if path.is_file()}
    assert {"config.yaml", "summary.json", "metrics.csv"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


def interrupted_demo(tmp_path: Path, folder: Path, workers: int, runs_started: int) -> int:
    """`optlab demo folder --workers N`, sent a Ctrl-C once `runs_started` runs have written metrics; its exit code."""
    process = subprocess.Popen(optlab_command("demo", str(folder), "-q", "--workers", str(workers)), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(list(tmp_path.glob("runs/recovery/*/*/metrics.csv"))) < runs_started:
        assert process.poll() is None and time.time() < deadline, "the demo ended before its runs started"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    return process.returncode


def test_ctrl_c_stops_the_demo(tmp_path):
    """The first Ctrl-C ends the run it falls in (checkpointed, interrupted) and the demo with it: exit 130,
    no next config, no report."""
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "a_long.yaml").write_text(CONFIG.replace("steps: 700", "steps: 1000000"))
    (folder / "b_short.yaml").write_text(CONFIG.replace("steps: 700", "steps: 5").replace("recovery/run", "recovery/short"))
    assert interrupted_demo(tmp_path, folder, workers=1, runs_started=1) == 130
    assert not (tmp_path / "runs" / "recovery" / "short").exists() and not list(tmp_path.glob("runs/**/report.md"))


def test_ctrl_c_stops_the_parallel_demo_with_its_runs_checkpointed(tmp_path):
    """Runs in worker processes: a Ctrl-C stops each at the end of its step, checkpointed and recorded
    interrupted (resumable), and the demo exits 130 without a report."""
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "a_long.yaml").write_text(CONFIG.replace("steps: 700", "steps: 1000000"))
    (folder / "b_long.yaml").write_text(CONFIG.replace("steps: 700", "steps: 1000000").replace("recovery/run", "recovery/other"))
    assert interrupted_demo(tmp_path, folder, workers=2, runs_started=2) == 130
    assert not list(tmp_path.glob("runs/**/report.md"))
    summaries = list(tmp_path.glob("runs/recovery/*/*/summary.json"))
    assert len(summaries) == 2
    for summary_path in summaries:
        summary = json.loads(summary_path.read_text())
        assert summary["status"] == "interrupted", summary
        assert list(summary_path.parent.glob("checkpoint*")), "no checkpoint to resume from"


def test_ctrl_c_during_set_up_is_not_lost_in_a_finaliser(tmp_path, monkeypatch):
    """A SIGINT that lands while Python runs a finaliser during set-up (here: while the run directory is
    being written) used to raise a KeyboardInterrupt that Python prints and drops, and the run trained on.
    Now it stops the run before its first step: interrupted, checkpointed at step 0, resumable."""
    import optlab.train
    from optlab.config import load_config

    class RaisesSigintWhenCollected:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)

    write_run_dir = optlab.train.open_run_dir

    def open_run_dir_hit_by_ctrl_c(*args):
        RaisesSigintWhenCollected()  # collected at once: the signal arrives inside __del__
        return write_run_dir(*args)

    monkeypatch.setattr(optlab.train, "open_run_dir", open_run_dir_hit_by_ctrl_c)
    (tmp_path / "config.yaml").write_text(CONFIG)
    result = optlab.train.train(load_config(tmp_path / "config.yaml", [f"output.runs_dir={tmp_path / 'runs'}"]),
                                show_progress=False)
    assert result.status == "interrupted" and result.summary["steps_completed"] == 0
    assert [path.name for path in (result.run_dir / "checkpoints").iterdir()] == ["step_00000000.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back
