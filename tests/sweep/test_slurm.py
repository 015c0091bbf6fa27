"""`--executor slurm` (optlab/sweep/executors.py) with submitit's local executor: the job array gives the
trials the inline executor gives, a preempted task checkpoints, is requeued and resumes to the same
metrics, and a machine without SLURM gets one line saying so."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.sweep.test_sweep import BASE, expand, optlab, sweep_config, write_sweep

submitit = pytest.importorskip("submitit")

SWEEP = """
name: t/slurm
base: base.yaml
grid: {training.batch_size: [2, 8], optimizer.lr: [0.05, 0.2]}
slurm: {cluster: local, time_minutes: 5, mem_gb: 1}
"""


def metrics(trial_dir) -> pd.DataFrame:
    return pd.read_csv(trial_dir / "metrics.csv").drop(columns="elapsed_s")


def test_job_array_gives_the_trials_of_the_inline_executor(tmp_path):
    for executor in ("inline", "slurm"):
        (tmp_path / executor).mkdir()
        write_sweep(tmp_path / executor, SWEEP)
        ran = optlab("sweep", "sweep.yaml", "--executor", executor, cwd=tmp_path / executor)
        assert ran.returncode == 0, ran.stderr[-2000:]
    journal = [json.loads(line) for line in (tmp_path / "slurm" / "runs/t/slurm/manifest.jsonl").read_text().splitlines()]
    assert sum(entry["state"] == "completed" for entry in journal) == 4
    assert all(entry.get("slurm_job") for entry in journal if entry["state"] == "running")
    inline, array = (sorted((tmp_path / executor / "runs/t/slurm/trials").iterdir()) for executor in ("inline", "slurm"))
    assert [path.name for path in inline] == [path.name for path in array] and len(array) == 4
    for one, other in zip(inline, array):
        pd.testing.assert_frame_equal(metrics(one), metrics(other))
    assert list((tmp_path / "slurm" / "runs/t/slurm/slurm").glob("*_log.out"))  # submitit's logs, beside the journal


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the task's process in /proc")
def test_a_preempted_task_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """SIGUSR2 (what SLURM sends a task that submitit started, before preemption or its time limit) mid-run: the trial checkpoints, submitit requeues it,
    the requeued task resumes from the checkpoint and ends with the metrics of an uninterrupted trial."""
    from optlab.sweep.executors import SlurmTrial, run_trial

    config = sweep_config(set={"training.steps": 6000, "probes.every": 100}, grid={"optimizer.lr": [0.05]})
    data = expand(config, BASE)[0].config.model_dump(mode="json")
    data["output"]["checkpoint_every"] = 250
    run_trial(data, str(tmp_path / "uninterrupted"), 1)

    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=5)
    trial_dir = tmp_path / "preempted"
    job = executor.submit(SlurmTrial(), data, str(trial_dir), 1)
    deadline = time.time() + 120
    while not (trial_dir / "metrics.csv").is_file() or len((trial_dir / "metrics.csv").read_text().splitlines()) < 8:
        assert time.time() < deadline and not job.done(), job.stderr()
        time.sleep(0.05)
    controller = job._process.pid  # submitit's local controller; the task is its child, as under srun
    (task,) = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)  # what SLURM sends the task before preemption (submitit's --signal)
    assert job.result()["status"] == "completed", job.stderr()
    summary = json.loads((trial_dir / "summary.json").read_text())
    assert 0 < summary["resumed_from_step"] < 6000, summary
    pd.testing.assert_frame_equal(metrics(trial_dir), metrics(tmp_path / "uninterrupted"))


def test_slurm_where_there_is_none_is_one_line(tmp_path, monkeypatch):
    write_sweep(tmp_path, SWEEP.replace("cluster: local", "cluster: slurm"))
    monkeypatch.setenv("PATH", "/nonexistent")
    ran = optlab("sweep", "sweep.yaml", "--executor", "slurm", cwd=tmp_path)
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert "no SLURM here (sbatch not found)" in ran.stderr and "slurm: {cluster: local}" in ran.stderr
