"""Sweeps under faults: workers killed at random moments, a worker stopped, a torn or damaged journal,
a trial the journal lost. Every trial ends exactly once, and the report equals an uninterrupted sweep's."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console

from optlab.report.sweep import write_sweep_report
from optlab.sweep import run_sweep

WIDE = {**os.environ, "COLUMNS": "250"}  # rich does not wrap the lines the test reads
# 1200 steps: a trial lasts long enough (≈ 1 s) that the sweep outlives the four faults injected into it
BASE = {"model": {"name": "linreg"}, "data": {"name": "linear-regression", "dim": 7, "teacher": "zero"},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
        "training": {"steps": 1200, "batch_size": 4, "dtype": "float64", "divergence_factor": 1e6},
        "probes": {"every": 50, "embedding": False, "updates": False}}


def write_sweep(folder: Path, name: str, grid: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": BASE, "grid": grid, "runs_dir": str(folder / "runs")}))
    return path


def inline_sweep(path: Path) -> int:
    return run_sweep(path, [], executor="inline", console=Console(quiet=True))


def journal(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "manifest.jsonl").read_text().splitlines()]


def report_table(sweep_dir: Path) -> pd.DataFrame:
    folder, _ = write_sweep_report(sweep_dir)
    table = pd.read_csv(folder / "trials.csv")
    kept = [column for column in table if column in ("trial", "state", "metric") or column.startswith(("optimizer.", "training."))]
    return table.sort_values("trial").reset_index(drop=True)[kept]


def workers_of(coordinator: int) -> dict[int, str | None]:
    """{pid: the trial directory whose metrics.csv it has open (None: idle or starting)} of the sweep's
    worker processes (children of the coordinator; multiprocessing's resource tracker left out)."""
    workers = {}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != coordinator:
                continue
            if b"resource_tracker" in (entry / "cmdline").read_bytes():
                continue
            open_files = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        workers[int(entry.name)] = next((str(Path(f).parent) for f in open_files if f.endswith("metrics.csv")), None)
    return workers


def test_workers_killed_at_random_moments_and_one_stopped_lose_and_repeat_nothing(tmp_path):
    grid = {"optimizer.lr": [0.02, 0.05, 0.1, 0.2], "training.batch_size": [2, 8]}
    reference_dir = tmp_path / "reference" / "runs" / "t" / "faults"
    assert inline_sweep(write_sweep(tmp_path / "reference", "t/faults", grid)) == 0
    path = write_sweep(tmp_path / "faulty", "t/faults", grid)
    sweep_dir = tmp_path / "faulty" / "runs" / "t" / "faults"
    process = subprocess.Popen([sys.executable, "-m", "optlab.cli", "sweep", str(path), "--workers", "2", "--no-population"],
                               cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=WIDE)
    rng, deadline, stopped = random.Random(), time.time() + 240, None
    for signal_number in (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
        while True:  # a random moment: a worker of the running sweep (SIGTERM: one inside a trial)
            assert process.poll() is None and time.time() < deadline, "the sweep ended before every fault was injected"
            time.sleep(rng.uniform(0.05, 0.25))
            workers = workers_of(process.pid)
            candidates = [pid for pid, trial in workers.items() if trial or signal_number == signal.SIGKILL]
            if candidates:
                pid = rng.choice(candidates)
                os.kill(pid, signal_number)
                stopped = workers[pid] if signal_number == signal.SIGTERM else stopped
                break
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 1, stderr  # the stopped worker's trial did not finish: not done, not exit 0
    assert "did not finish" in stderr and "run the same command again" in stderr
    states = {}
    for event in journal(sweep_dir):
        states[event["trial"]] = event["state"]
    assert states[Path(stopped).name] == "interrupted" and "running" not in states.values()
    resumed = subprocess.run([sys.executable, "-m", "optlab.cli", "sweep", str(path), "--executor", "inline", "--retry-failed"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=240, env=WIDE)
    assert resumed.returncode == 0, resumed.stderr
    events = journal(sweep_dir)
    finished = [event["trial"] for event in events if event["state"] in ("completed", "diverged")]
    assert len(finished) == len(set(finished)) == 8, "every trial finished exactly once"
    killed = [event for event in events if "killed by SIGKILL" in str(event.get("error"))]
    assert len(killed) == 3, "each killed worker's trial was recorded with the cause"
    pd.testing.assert_frame_equal(report_table(sweep_dir), report_table(reference_dir))


def tear(path: Path, keep_of_last_line: float = 0.5) -> None:
    """A crash mid-write: the last line cut short, without its newline."""
    text = path.read_text()
    head, last = text.rstrip("\n").rsplit("\n", 1)
    path.write_text(head + "\n" + last[: int(len(last) * keep_of_last_line)])


def test_a_torn_journal_is_repaired_and_loses_no_trial(tmp_path):
    path = write_sweep(tmp_path, "t/torn", {"optimizer.lr": [0.1, 0.2]})
    sweep_dir = tmp_path / "runs" / "t" / "torn"
    assert inline_sweep(path) == 0
    tear(sweep_dir / "manifest.jsonl")  # the second trial's `completed` is cut short
    write_sweep(tmp_path, "t/torn", {"optimizer.lr": [0.1, 0.2, 0.3]})  # a third cell: its `pending` comes next
    assert inline_sweep(path) == 0
    text = (sweep_dir / "manifest.jsonl").read_text()
    assert all(json.loads(line) for line in text.splitlines()), "the torn fragment was cut off, nothing glued to it"
    events = journal(sweep_dir)
    pending = [event for event in events if event["state"] == "pending"]
    assert len(pending) == 3 and all(event["overrides"] for event in pending)
    finished = [event["trial"] for event in events if event["state"] == "completed"]
    assert len(finished) == 3, "the trial whose record was torn was placed from its own directory, not rerun"
    table = report_table(sweep_dir)
    assert len(table) == 3 and set(table["state"]) == {"completed"}


def test_a_journal_glued_by_an_older_optlab_is_replayed(tmp_path):
    """An older optlab appended the next event onto a torn line; replay recovers the whole event."""
    from optlab.sweep.manifest import Manifest

    (tmp_path / "manifest.jsonl").write_text('{"trial": "a", "state": "pending", "overrides": {"x": 1}}\n'
                                             '{"trial": "b", "state": "pen{"trial": "c", "state": "pending", "overrides": {"x": 3}}\n'
                                             '{"trial": "a", "state": "completed"}\n')
    manifest = Manifest(tmp_path)
    assert {trial: info["state"] for trial, info in manifest.trials.items()} == {"a": "completed", "c": "pending"}
    assert manifest.trials["c"]["overrides"] == {"x": 3}


def test_a_trial_the_journal_lost_is_placed_from_its_directory(tmp_path):
    path = write_sweep(tmp_path, "t/lost", {"optimizer.lr": [0.1, 0.2]})
    sweep_dir = tmp_path / "runs" / "t" / "lost"
    assert inline_sweep(path) == 0
    lost = journal(sweep_dir)[0]["trial"]
    kept = [line for line in (sweep_dir / "manifest.jsonl").read_text().splitlines() if json.loads(line)["trial"] != lost]
    (sweep_dir / "manifest.jsonl").write_text("\n".join(kept) + "\n")
    assert len(report_table(sweep_dir)) == 2, "the report places it from its directory"
    assert inline_sweep(path) == 0
    events = [event for event in journal(sweep_dir) if event["trial"] == lost]
    assert [event["state"] for event in events] == ["completed"] and events[0]["placed_from"] == "directory"
