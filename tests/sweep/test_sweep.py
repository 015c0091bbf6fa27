"""optlab sweep: expansion, ids, manifest, failures, kill-and-resume, the Ray executor, reports of a sweep."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from optlab.sweep.spec import SweepConfig, expand, load_sweep

REPO = Path(__file__).resolve().parents[2]
BASE = {"model": {"name": "linreg"}, "data": {"name": "linear-regression", "dim": 7, "teacher": "zero"},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
        "training": {"steps": 10, "batch_size": 4, "dtype": "float64", "divergence_factor": 1e6},
        "probes": {"every": 10, "embedding": False, "updates": False}}


def sweep_config(**fields):
    return SweepConfig.model_validate({"name": "test/sweep", "base": BASE, **fields})

def test_grid_zip_seeds_and_exclusions():
    sweep = sweep_config(grid={"training.batch_size": [1, 4], "optimizer.lr": {"logspace": [0.01, 1.0, 3]}},
                         zip={"training.steps": [5, 10], "probes.every": [5, 10]}, seeds=[0, 1],
                         exclude=[{"training.batch_size": 1, "optimizer.lr": [1.0]}])
    trials = expand(sweep, BASE)
    assert len(trials) == (2 * 3 - 1) * 2 * 2
    lrs = sorted({t.overrides["optimizer.lr"] for t in trials})
    assert lrs == pytest.approx([0.01, 0.1, 1.0])
    assert not any(t.overrides["training.batch_size"] == 1 and t.overrides["optimizer.lr"] == 1.0 for t in trials)
    assert {(t.config.training.steps, t.config.probes.every) for t in trials} == {(5, 5), (10, 10)}
    assert len({t.id for t in trials}) == len(trials)

def test_trial_ids_are_stable_across_processes_and_ignore_names():
    code = ("from optlab.sweep.spec import SweepConfig, expand; import json, sys; "
            f"b = {BASE!r}; s = SweepConfig.model_validate({{'name': sys.argv[1], 'base': b, "
            "'grid': {'optimizer.lr': [0.1, 0.2]}}); print(json.dumps([t.id for t in expand(s, b)]))")
    first, second = (subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True).stdout
                     for name in ("one/name", "another"))
    assert first == second and len(json.loads(first)) == 2

def test_identical_cells_run_once():
    sweep = sweep_config(grid={"optimizer.lr": [0.1, 0.1, 0.2]})
    assert len(expand(sweep, BASE)) == 2

def write_sweep(folder: Path, text: str) -> Path:
    (folder / "base.yaml").write_text(json.dumps(BASE))
    path = folder / "sweep.yaml"
    path.write_text(text)
    return path

def optlab(*args, cwd, env=None):
    environment = {**(env or os.environ), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "optlab.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=environment)

def journal(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "manifest.jsonl").read_text().splitlines()]

def test_failing_and_diverging_trials_are_recorded_while_the_rest_complete(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("the failing cell asks for CUDA, which this machine has")
    path = write_sweep(tmp_path, """
name: t/failures
base: base.yaml
grid:
  optimizer.lr: [0.05, 0.2, 50.0]
  training.device: [cpu, cuda]
""")
    result = optlab("sweep", str(path), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "failed trials" in result.stderr and "no CUDA GPU" in result.stderr
    snapshot = json.loads((tmp_path / "runs" / "t" / "failures" / "manifest.json").read_text())["trials"]
    states = sorted((t["overrides"]["training.device"], t["overrides"]["optimizer.lr"], t["state"]) for t in snapshot.values())
    assert states == [("cpu", 0.05, "completed"), ("cpu", 0.2, "completed"), ("cpu", 50.0, "diverged"),
                      ("cuda", 0.05, "failed"), ("cuda", 0.2, "failed"), ("cuda", 50.0, "failed")]
    again = optlab("sweep", str(path), cwd=tmp_path)
    assert "running 0" in again.stderr, "failed trials rerun only with --retry-failed"
    retried = optlab("sweep", str(path), "--retry-failed", cwd=tmp_path)
    assert "running 3" in retried.stderr

@pytest.mark.parametrize("stop", ["sigkill", "sigterm"])
def test_stopped_part_way_then_resume_runs_every_trial_exactly_once(tmp_path, stop):
    path = write_sweep(tmp_path, """
name: t/resume
base: base.yaml
grid:
  training.batch_size: [1, 2, 4, 8, 16, 32]
  optimizer.lr: {logspace: [0.01, 0.5, 8]}
seeds: [0, 1]
""")
    process = subprocess.Popen([sys.executable, "-m", "optlab.cli", "sweep", str(path), "--workers", "2"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    sweep_dir = tmp_path / "runs" / "t" / "resume"
    deadline = time.time() + 300
    while sum(e["state"] == "completed" for e in journal(sweep_dir)) < 15 if (sweep_dir / "manifest.jsonl").exists() else True:
        assert process.poll() is None and time.time() < deadline, "sweep ended before it could be killed"
        time.sleep(0.05)
    if stop == "sigkill":  # the coordinator and its workers die at once
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    else:  # the coordinator stops its workers and records the cut-short trials as interrupted
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 130
        states = {}
        for event in journal(sweep_dir):
            states[event["trial"]] = event["state"]
        assert "running" not in states.values() and "interrupted" in states.values()
    events_before = journal(sweep_dir)
    completed_before = {e["trial"] for e in events_before if e["state"] == "completed"}
    assert 0 < len(completed_before) < 96
    resumed = optlab("sweep", str(path), "--workers", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    events = journal(sweep_dir)
    finished = [e["trial"] for e in events if e["state"] in ("completed", "diverged")]
    assert len(finished) == len(set(finished)) == 96, "every trial finished exactly once"
    rerun = {e["trial"] for e in events[len(events_before):] if e["state"] == "running"}
    assert not rerun & completed_before, "completed trials were not executed again"
    snapshot = json.loads((sweep_dir / "manifest.json").read_text())["trials"]
    assert len(snapshot) == 96 and {t["state"] for t in snapshot.values()} <= {"completed", "diverged"}

def test_dry_run_prints_trials_and_total_steps(tmp_path):
    path = write_sweep(tmp_path, "name: t/dry\nbase: base.yaml\ngrid: {optimizer.lr: [0.1, 0.2, 0.3]}\nseeds: [0, 1]\n")
    result = optlab("sweep", str(path), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0 and "6 trials, 60 optimizer steps" in result.stderr
    assert not (tmp_path / "runs").exists()

def test_report_keeps_only_the_cells_of_the_sweep_file_last_run(tmp_path):
    """Editing a sweep file and running it again: trials of dropped cells stay on disk but leave the report."""
    text = "name: t/edited\nbase: base.yaml\ngrid: {{optimizer.lr: {lrs}}}\nfit_noise_scale: false\n"
    path = write_sweep(tmp_path, text.format(lrs=[0.1, 0.2]))
    assert optlab("sweep", str(path), cwd=tmp_path).returncode == 0
    path.write_text(text.format(lrs=[0.2, 0.3]))
    assert optlab("sweep", str(path), cwd=tmp_path).returncode == 0
    sweep_dir = tmp_path / "runs" / "t" / "edited"
    assert len(list((sweep_dir / "trials").iterdir())) == 3
    assert optlab("report", str(sweep_dir), cwd=tmp_path).returncode == 0
    trials = pd.read_csv(sweep_dir / "report" / "trials.csv")
    assert sorted(trials["optimizer.lr"]) == [0.2, 0.3]

def free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]

@pytest.mark.slow  # two `ray start`s and a stop: about 35 s
def test_ray_executor_on_a_two_node_cluster_matches_local(tmp_path):
    """A two-node cluster whose nodes run from their own working directory: each task gets optlab's code
    through Ray's runtime_env and trains in a temporary directory on its worker; the coordinator alone
    writes runs/ from the files the tasks return. Half a CPU per trial: two trials per one-CPU node. The
    metrics equal those of the local executor."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'optlab[ray]'); CI installs it")
    ray_cli = str(Path(sys.executable).parent / "ray")
    path = write_sweep(tmp_path, """
name: t/ray
base: base.yaml
grid: {training.batch_size: [2, 8], optimizer.lr: [0.05, 0.2, 0.4]}
seeds: [0, 1]
""")
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    for folder in (local_dir, ray_dir):
        folder.mkdir()
        shutil.copy(path, folder / "sweep.yaml")
        shutil.copy(tmp_path / "base.yaml", folder / "base.yaml")
    assert optlab("sweep", "sweep.yaml", cwd=local_dir).returncode == 0
    port = free_port()
    environment = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        node_dir = tmp_path / "node"
        node_dir.mkdir()
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                        "--include-dashboard=false", *common], check=True, capture_output=True, env=environment,
                       timeout=180, cwd=node_dir)
        subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common],
                       check=True, capture_output=True, env=environment, timeout=180, cwd=node_dir)
        result = optlab("sweep", "sweep.yaml", "--executor", "ray", "--address", f"127.0.0.1:{port}",
                        "--trial-cpus", "0.5", cwd=ray_dir, env=environment)
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=environment, timeout=120)
    assert list(node_dir.iterdir()) == []  # nothing written where the nodes run
    trials = ray_dir / "runs" / "t" / "ray" / "trials"
    assert not list(trials.glob(".*"))  # no half-received trial left
    for trial in trials.iterdir():
        assert {"config.yaml", "metrics.csv", "summary.json"} <= {path.name for path in trial.iterdir()}
    tables = []
    for folder in (local_dir, ray_dir):
        assert optlab("report", "runs/t/ray", cwd=folder).returncode == 0
        table = pd.read_csv(folder / "runs" / "t" / "ray" / "report" / "trials.csv")
        tables.append(table.sort_values("trial").reset_index(drop=True)[["trial", "state", "metric"]])
    pd.testing.assert_frame_equal(tables[0], tables[1])

def test_a_trial_returned_as_files_is_the_trial_written_in_place(tmp_path):
    """What a Ray task returns (the run directory's files, trained in a temporary directory) and the
    coordinator writes back is the run directory the trial writes in place: same files, same metrics."""
    from optlab.sweep.executors import receive_files, run_trial, run_trial_returning_files

    config = sweep_config(set={"training.steps": 20, "probes.every": 5}, grid={"optimizer.lr": [0.1]})
    data = expand(config, BASE)[0].config.model_dump(mode="json")
    run_trial(data, str(tmp_path / "in_place"))
    returned = run_trial_returning_files(data, threads=1)
    assert returned["status"] == "completed"
    receive_files(returned.pop("files"), tmp_path / "received")
    names = lambda folder: sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                  if p.is_file() and "checkpoints" not in p.parts)
    assert names(tmp_path / "received") == names(tmp_path / "in_place")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "received" / "metrics.csv").drop(columns="elapsed_s"),
                                  pd.read_csv(tmp_path / "in_place" / "metrics.csv").drop(columns="elapsed_s"))


def test_set_changes_the_base_for_every_trial():
    sweep = sweep_config(set={"training.steps": 3, "probes.every": 1}, grid={"optimizer.lr": [0.1, 0.2]})
    assert {(t.config.training.steps, t.config.probes.every) for t in expand(sweep, BASE)} == {(3, 1)}

def test_report_of_a_sweep_with_no_finished_trial(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("the failing cells ask for CUDA, which this machine has")
    path = write_sweep(tmp_path, "name: t/none\nbase: base.yaml\n"
                                 "grid: {training.batch_size: [1, 2], optimizer.lr: [0.1], training.device: [cuda]}\n")
    assert optlab("sweep", str(path), cwd=tmp_path).returncode == 1
    reported = optlab("report", "runs/t/none", cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    assert "No trial has finished yet" in (tmp_path / "runs/t/none/report/report.md").read_text()

def test_finished_trials_keep_no_checkpoint(tmp_path):
    path = write_sweep(tmp_path, "name: t/disk\nbase: base.yaml\ncheckpoint_every: 2\ngrid: {optimizer.lr: [0.1, 0.2]}\n")
    assert optlab("sweep", str(path), cwd=tmp_path).returncode == 0
    trials = list((tmp_path / "runs/t/disk/trials").iterdir())
    assert len(trials) == 2 and not any((trial / "checkpoints").exists() for trial in trials)

def test_variants_cross_the_grid_and_do_not_leak_into_each_other(tmp_path):
    """Each named variant is a set of overrides applied on top of `set`; a mapping set by `set` is
    copied per trial, so one variant's edit of it never reaches the next variant."""
    sweep_file = tmp_path / "variants.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "variants", "base": {"model": {"name": "bag"}, "data": {"name": "zipf", "vocab_size": 50}},
        "set": {"optimizer": {"name": "tiger", "lr": 1e-3}},
        "variants": {"plain": {}, "slow_beta": {"optimizer.beta": 0.99}, "every_2": {"optimizer.update_every": 2}},
        "grid": {"training.batch_size": [4, 8]}, "seeds": [0]}, sort_keys=False))
    sweep, base = load_sweep(sweep_file)
    trials = expand(sweep, base)
    assert [t.overrides["variant"] for t in trials] == ["plain", "plain", "slow_beta", "slow_beta", "every_2", "every_2"]
    betas = {t.overrides["variant"]: t.config.optimizer.beta for t in trials}
    assert betas == {"plain": 0.965, "slow_beta": 0.99, "every_2": 0.965}
    assert [t.config.optimizer.update_every for t in trials if t.overrides["variant"] == "every_2"] == [2, 2]


@pytest.mark.parametrize("population", [False, True])
def test_a_metric_column_the_trials_do_not_log_stops_the_sweep_at_its_first_trial(tmp_path, monkeypatch, population):
    from typer.testing import CliRunner

    from optlab.cli import app

    monkeypatch.chdir(tmp_path)
    grid = "grid: {optimizer.lr: [0.1, 0.2, 0.3]}\n"
    path = write_sweep(tmp_path, f"name: t/typo\nbase: base.yaml\nmetric: {{column: losss}}\n{grid}")
    stopped = CliRunner().invoke(app, ["sweep", str(path), "--executor", "inline"] + ([] if population else ["--no-population"]))
    last = stopped.stderr.strip().splitlines()[-1]
    assert stopped.exit_code == 2 and "Traceback" not in stopped.stderr, stopped.stderr
    assert last.startswith("error: ") and "metric.column 'losss': the trials do not log it; did you mean `loss`?" in last
    started = ["running"] * (3 if population else 1)  # a population's trials start together
    assert [event["state"] for event in journal(tmp_path / "runs/t/typo") if event["state"] != "pending"] == started + ["completed"]
    path.write_text(f"name: t/typo\nbase: base.yaml\nmetric: {{column: loss}}\n{grid}")
    assert CliRunner().invoke(app, ["sweep", str(path), "--executor", "inline"]).exit_code == 0
    assert sum(event["state"] == "completed" for event in journal(tmp_path / "runs/t/typo")) == 3  # the first kept



def test_an_override_reaches_the_variants_that_do_not_set_it_and_is_refused_when_all_do(tmp_path):
    from optlab.errors import ConfigError
    from optlab.sweep import plan

    path = write_sweep(tmp_path, "name: t/v\nbase: base.yaml\nvariants:\n  long: {training.steps: 40}\n  plain: {}\n")
    _, _, trials = plan(path, ["training.steps=20"])
    assert sorted(trial.config.training.steps for trial in trials) == [20, 40]
    path.write_text("name: t/v\nbase: base.yaml\nvariants:\n  a: {training: {steps: 40}}\n  b: {training.steps: 30}\n")
    with pytest.raises(ConfigError, match="every variant of the sweep sets training"):
        plan(path, ["training.steps=20"])


def test_a_sweep_in_a_log_prints_plain_progress_lines(tmp_path, monkeypatch):
    """Without a terminal (a log, CI) the live table would print nothing: the sweep prints a plain line of
    trials finished by state and an ETA instead (every refresh here; every 30 s by default)."""
    import io

    from rich.console import Console

    from optlab.sweep import _SweepProgress, run_sweep

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_SweepProgress, "PLAIN_EVERY_S", 0.0)
    path = write_sweep(tmp_path, "name: t/log\nbase: base.yaml\ngrid: {optimizer.lr: [0.1, 0.2, 0.3]}\n")
    log = io.StringIO()
    assert run_sweep(path, [], executor="inline", population=False, console=Console(file=log, width=60)) == 0
    lines = [line for line in log.getvalue().splitlines() if "trials finished" in line]
    assert lines[0].startswith("sweep t/log: 1 of 3 trials finished (1 completed, 2 pending), ")
    assert lines[-1].startswith("sweep t/log: 3 of 3 trials finished (3 completed), ")
    assert all(re.search(r"ETA \d+ s$", line) for line in lines)  # one line each, never wrapped at 60 columns
