"""optlab sweep: expansion, ids, manifest, failures, kill-and-resume, the Ray executor, fits."""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from optlab.report.fits import fit_noise_scale, refine_optimum
from optlab.sweep.spec import SweepConfig, expand, load_sweep

REPO = Path(__file__).resolve().parent.parent
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


def test_bad_sweep_file_is_one_line(tmp_path):
    path = write_sweep(tmp_path, "name: t/bad\nbase: base.yaml\ngrid: {optimizer.lrr: [0.1]}\n")
    result = optlab("sweep", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "optimizer.lrr: unknown key; did you mean `lr`?" in result.stderr
    assert "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def test_ray_executor_on_a_two_node_cluster_matches_local(tmp_path):
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
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                        "--include-dashboard=false", *common], check=True, capture_output=True, env=environment, timeout=180)
        subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common],
                       check=True, capture_output=True, env=environment, timeout=180)
        result = optlab("sweep", "sweep.yaml", "--executor", "ray", "--address", f"127.0.0.1:{port}",
                        cwd=ray_dir, env=environment)
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=environment, timeout=120)
    tables = []
    for folder in (local_dir, ray_dir):
        assert optlab("report", "runs/t/ray", cwd=folder).returncode == 0
        table = pd.read_csv(folder / "runs" / "t" / "ray" / "report" / "trials.csv")
        tables.append(table.sort_values("trial").reset_index(drop=True)[["trial", "state", "metric"]])
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_parabola_refinement_recovers_a_known_optimum():
    lrs = np.geomspace(1e-3, 1.0, 25)
    values = (np.log(lrs) - math.log(0.037)) ** 2 + 1.0
    optimum = refine_optimum(lrs, values)
    assert optimum.flag == "" and optimum.lr == pytest.approx(0.037, rel=1e-9)
    values[-3:] = np.inf  # diverged cells beyond the optimum change nothing
    assert refine_optimum(lrs, values).lr == pytest.approx(0.037, rel=1e-9)


def test_optimum_at_the_grid_edge_is_flagged_not_reported():
    lrs = np.geomspace(1e-3, 1.0, 10)
    optimum = refine_optimum(lrs, -np.log(lrs))  # keeps improving with lr
    assert optimum.lr is None and optimum.flag == "edge"


def test_noise_scale_fit_recovers_known_parameters():
    batch = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], dtype=float)
    noise, maximum = fit_noise_scale(batch, 0.8 / (1 + 40.0 / batch))
    assert noise == pytest.approx(40.0, rel=1e-3) and maximum == pytest.approx(0.8, rel=1e-3)


def test_exp_a_fast_variant_recovers_b_noise(tmp_path):
    """Exp A (scaling-laws.md §5) on fewer cells: η*(B) = B/(B + 64), so B_noise ≈ 64 and η_max ≈ 1."""
    path = tmp_path / "exp_a_fast.yaml"
    path.write_text(f"""
name: t/exp_a_fast
base: {REPO / 'configs' / 'regression' / 'exp_a_base.yaml'}
grid:
  training.batch_size: [1, 4, 16, 64, 256]
  optimizer.lr: {{logspace: [1.0e-3, 1.5, 25]}}
seeds: [0, 1, 2]
metric: {{column: population_loss, reduce: final, log: true}}
effect: sgd_batch_scaling
""")
    assert optlab("sweep", str(path), "--workers", "2", cwd=tmp_path).returncode == 0
    reported = optlab("report", "runs/t/exp_a_fast", cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    summary = json.loads((tmp_path / "runs/t/exp_a_fast/report/report.json").read_text())
    assert 51 <= summary["fits"]["B_noise"] <= 77 and 0.9 <= summary["fits"]["eta_max"] <= 1.1
    optima = {row["training.batch_size"]: row["eta_star"] for row in summary["eta_star"]}
    assert all(optima[b] == pytest.approx(b / (b + 64), rel=0.15) for b in (4, 16, 64, 256))
    assert {"heatmap.png", "metric_vs_lr.png", "eta_star.png", "report.md", "trials.csv"} <= \
           {p.name for p in (tmp_path / "runs/t/exp_a_fast/report").iterdir()}


def test_hyperbola_fit_recovers_known_parameters():
    from optlab.report.fits import fit_hyperbola

    batch = np.array([1, 2, 4, 8, 16, 32, 64], dtype=float)
    fit = fit_hyperbola(batch, 12.0 + 600.0 / batch)
    assert fit["S_min"] == pytest.approx(12.0) and fit["E_min"] == pytest.approx(600.0)
    assert fit["B_crit"] == pytest.approx(50.0)


def test_set_changes_the_base_for_every_trial():
    sweep = sweep_config(set={"training.steps": 3, "probes.every": 1}, grid={"optimizer.lr": [0.1, 0.2]})
    assert {(t.config.training.steps, t.config.probes.every) for t in expand(sweep, BASE)} == {(3, 1)}


def test_exp_a2_fast_variant_matches_predicted_steps(tmp_path):
    """Exp A2 (scaling-laws.md §5): steps to 1e-3·L_0 at η = B/(B + 64) follow ln(1000)/ln(1 + B/64)."""
    path = tmp_path / "exp_a2_fast.yaml"
    path.write_text(f"""
name: t/exp_a2_fast
base: {REPO / 'configs' / 'regression' / 'exp_a_base.yaml'}
set: {{training.steps: 300, probes.every: 1}}
zip: {{training.batch_size: [2, 8, 64], optimizer.lr: [0.030303030303, 0.111111111111, 0.5]}}
seeds: [0, 1, 2]
metric: {{column: population_loss, reduce: steps_to_target, target: 5.0e-4}}
effect: sgd_steps_vs_batch
""")
    assert optlab("sweep", str(path), "--workers", "2", cwd=tmp_path).returncode == 0
    assert optlab("report", "runs/t/exp_a2_fast", cwd=tmp_path).returncode == 0
    summary = json.loads((tmp_path / "runs/t/exp_a2_fast/report/report.json").read_text())
    medians = {row["training.batch_size"]: row["median"] for row in summary["per_batch"]}
    for batch, steps in medians.items():
        assert steps == pytest.approx(math.log(1000) / math.log(1 + batch / 64), rel=0.15, abs=1)
    assert all(v["passed"] for v in summary["verdicts"]) and len(summary["verdicts"]) == 3


def nqm_fast_sweep(tmp_path, name, correlation, effect):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
name: t/{name}
base: {REPO / 'configs' / 'nqm' / 'exp_b_base.yaml'}
set: {{model.correlation: {correlation}, data.replicas: 1000}}
grid:
  training.batch_size: [1, 16, 256, 4096, 65536]
  optimizer.lr: {{logspace: [1.0e-2, 3.0, 31]}}
metric: {{column: population_loss, reduce: final}}
fit_noise_scale: false
effect: {effect}
""")
    assert optlab("sweep", str(path), "--workers", "2", cwd=tmp_path).returncode == 0
    assert optlab("report", f"runs/t/{name}", cwd=tmp_path).returncode == 0
    report = json.loads((tmp_path / f"runs/t/{name}/report/report.json").read_text())
    return [row["eta_star"] for row in report["eta_star"]]


def test_exp_b1_fast_signsgd_optimal_lr_rises_monotonically(tmp_path):
    """Exp B1 (ρ = 0): η*(B) = erf(sqrt(B/2000)) — rising like √B, no interior maximum."""
    optima = nqm_fast_sweep(tmp_path, "b1_fast", 0.0, "signsgd_sqrt_law")
    assert all(later >= earlier * 0.97 for earlier, later in zip(optima, optima[1:]))
    for batch, measured in zip([1, 16, 256, 4096, 65536], optima):
        assert measured == pytest.approx(math.erf(math.sqrt(batch / 2000)), rel=0.08)


def test_exp_b2_fast_signsgd_surge_has_an_interior_maximum(tmp_path):
    """Exp B2 (ρ = 0.1): η* rises, peaks near B = 273, then falls to 1/(1 + 6.3) = 0.137."""
    optima = nqm_fast_sweep(tmp_path, "b2_fast", 0.1, "signsgd_surge")
    peak = int(np.argmax(optima))
    assert 0 < peak < len(optima) - 1 and optima[peak] / optima[-1] > 1.3
    assert optima[-1] == pytest.approx(1 / (1 + 0.1 * 63), rel=0.05)


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


def test_exp_c_fast_slope_rises_with_adam_eps(tmp_path):
    """Exp C (scaling-laws.md §5): Adam(β = 0) moves from SignSGD's √B law (slope ½) toward SGD's
    linear law (slope ≈ 1) as ε grows; η*/ε approaches SGD's η* at large ε."""
    path = tmp_path / "exp_c_fast.yaml"
    path.write_text(f"""
name: t/exp_c_fast
base: {REPO / 'configs' / 'nqm' / 'exp_b_base.yaml'}
set: {{data.replicas: 1000}}
grid:
  optimizer:
    - {{name: adam, betas: [0.0, 0.0], eps: 1.0e-3}}
    - {{name: adam, betas: [0.0, 0.0], eps: 10.0}}
    - {{name: adam, betas: [0.0, 0.0], eps: 1.0e+4}}
    - {{name: sgd, momentum: 0.0}}
  training.batch_size: [1, 4, 16]
  optimizer.lr: {{logspace: [1.0e-4, 3.0e+4, 61]}}
group_key: optimizer
metric: {{column: population_loss, reduce: final}}
fit_noise_scale: false
""")
    assert optlab("sweep", str(path), "--workers", "2", cwd=tmp_path).returncode == 0
    assert optlab("report", "runs/t/exp_c_fast", cwd=tmp_path).returncode == 0
    table = pd.read_csv(tmp_path / "runs/t/exp_c_fast/report/eta_star.csv")
    slopes = {group: np.polyfit(np.log(rows["training.batch_size"]), np.log(rows["eta_star"]), 1)[0]
              for group, rows in table.groupby("group")}
    assert slopes["adam eps=0.001"] < 0.6 < slopes["adam eps=10"] < slopes["adam eps=10000"]
    assert slopes["adam eps=10000"] > 0.9 * slopes["sgd"]
    large = table[table["group"] == "adam eps=10000"]["eta_star"].to_numpy() / 1e4
    sgd = table[table["group"] == "sgd"]["eta_star"].to_numpy()
    assert np.allclose(large, sgd, rtol=0.05)


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


def test_exp_d0_fast_knee_of_steps_is_bracketed_by_the_exact_noise_scale(tmp_path):
    """Exp D0 (scaling-laws.md §5) on the spec's instance: B_simple = 11 at the start; S(B) falls with B
    and flattens; B_crit of the hyperbola lies between ½·B_simple(start) and 2·B_simple(target)."""
    path = tmp_path / "exp_d0_fast.yaml"
    path.write_text(f"""
name: t/exp_d0_fast
base: {REPO / 'configs' / 'regression' / 'exp_d0_base.yaml'}
grid:
  training.batch_size: [1, 4, 32, 256]
  optimizer.lr: {{logspace: [0.03, 3.0, 9]}}
effect: sgd_critical_batch
metric: {{column: relative_excess_loss, reduce: steps_to_target, target: 0.02}}
""")
    assert optlab("sweep", str(path), "--workers", "2", cwd=tmp_path).returncode == 0
    assert optlab("report", "runs/t/exp_d0_fast", cwd=tmp_path).returncode == 0
    report = json.loads((tmp_path / "runs/t/exp_d0_fast/report/report.json").read_text())
    assert report["noise_scales"]["exact_b_simple_at_start"] == pytest.approx(11.35, abs=0.01)
    steps = [row["S"] for row in report["per_batch"]]
    assert steps[0] > steps[1] > steps[2] >= steps[3] and steps[2] / steps[3] < 2 < steps[0] / steps[1]
    bracket = [v for v in report["verdicts"] if v["observed"] in ("bracketed", "not bracketed")]
    assert bracket and bracket[0]["passed"], bracket


def test_exp_d_fast_teacher_student_steps_fall_with_batch_size(tmp_path):
    """Exp D (scaling-laws.md §5), two batch sizes: the teacher is the same for every training seed, the
    eval set is the same for every batch size, and S(64) < S(4) < 64/4·S(64) (the knee lies between)."""
    from optlab.config import validate_config
    from optlab.data import build_dataset

    data = [build_dataset(validate_config({"data": {"name": "teacher-classification"}}).data, seed) for seed in (0, 1)]
    assert torch.equal(data[0].hidden, data[1].hidden) and 0.9 < data[0].teacher_entropy < 1.1
    labels = data[0].sample(1000, 17)[:, 16]
    assert set(labels.unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    path = tmp_path / "exp_d_fast.yaml"
    path.write_text(f"""
name: t/exp_d_fast
base: {REPO / 'configs' / 'teacher' / 'exp_d_base.yaml'}
set:
  training.steps: 3000
  training.stop_at_target: {{column: eval_loss, value: 1.0695}}
  probes.every: 5
  probes.sampled_noise_scale: {{examples: 256, two_batch_repeats: 20, hessian_examples: 50, hessian_batch: 2048,
                                at_eval_loss: [1.224, 1.0695]}}
grid:
  training.batch_size: [4, 64]
  optimizer.lr: [0.0475, 0.119, 0.3]
metric: {{column: eval_loss, reduce: steps_to_target, target: 1.0695}}
effect: sgd_critical_batch_mlp
""")
    assert optlab("sweep", str(path), "--workers", "2", cwd=tmp_path).returncode == 0
    assert optlab("report", "runs/t/exp_d_fast", cwd=tmp_path).returncode == 0
    report = json.loads((tmp_path / "runs/t/exp_d_fast/report/report.json").read_text())
    small, large = (row["S"] for row in report["per_batch"])
    assert large < small < 16 * large
    # the noise scales at the best lr: θ_0, L_mid, L_target for each batch size; B_simple grows as the loss falls
    sampled = pd.DataFrame(report["sampled_noise_scales"])
    assert sampled.groupby("batch_size")["point"].apply(list).tolist() == [["θ_0", "eval_loss ≤ 1.224", "eval_loss ≤ 1.0695"]] * 2
    for _, points in sampled.groupby("batch_size"):
        assert points["B_simple"].is_monotonic_increasing and (points["B_noise"] > 0).all()
    agreement = [v for v in report["verdicts"] if v["expected"] == "within 25% at every point"]
    assert len(agreement) == 1 and "θ_0: " in agreement[0]["measured"]


@pytest.mark.parametrize("crit,outcomes", [(150.0, [True, True, True]), (30.0, [True, False, False]),
                                           (900.0, [True, False, False])])
def test_exp_d_noise_scale_gates(crit, outcomes):
    """Exp D gates (ii) bracket 0.5·B_simple(L_init) ≤ B_crit ≤ 2·B_simple(L_target) and (iii)
    0.5 ≤ B_crit/B_simple(L_mid) ≤ 2, L_mid the level nearest the middle of [L_target, L_init]."""
    from types import SimpleNamespace

    from optlab.report.verdicts import sampled_noise_verdicts

    sampled = pd.DataFrame({"batch_size": 32, "point": ["θ_0", "eval_loss ≤ 1.3", "eval_loss ≤ 1.2", "eval_loss ≤ 1.07"],
                            "eval_loss_level": [1.38, 1.3, 1.2, 1.07], "is_target": [False, False, False, True],
                            "B_simple": [100.0, 120.0, 180.0, 400.0], "B_simple_two_batch": [110.0, 100.0, 170.0, 420.0],
                            "B_noise": [60.0, 80.0, 120.0, 300.0]})
    sweep = SimpleNamespace(effect="sgd_critical_batch_mlp", name="t")
    verdicts = sampled_noise_verdicts(sweep, {"B_crit": crit}, sampled)
    assert [v.passed for v in verdicts] == outcomes
    assert "B_simple(L_mid = 1.2) (B_simple 180" in verdicts[2].measured


def test_bootstrap_interval_of_the_critical_batch_needs_seeds_to_resample():
    """S(B) = 20 + 2000/B (B_crit = 100) with multiplicative seed noise: the 5–95 % interval over resampled
    seeds contains 100; with one seed per cell there is nothing to resample and no interval."""
    from optlab.report.fits import bootstrap_critical_batch

    generator = np.random.default_rng(0)
    rows = [{"B": size, "lr": lr, "seed": seed,
             "metric": (20 + 2000 / size) * (1 if lr == 0.1 else 1.5) * math.exp(0.05 * generator.standard_normal())}
            for size in (1, 4, 16, 64, 256) for lr in (0.1, 0.3) for seed in range(3)]
    trials = pd.DataFrame(rows)
    low, high = bootstrap_critical_batch(trials, "B", "lr")
    assert low < 100 < high < 200
    assert bootstrap_critical_batch(trials[trials["seed"] == 0], "B", "lr") is None
