"""The CLI in subprocesses: errors are one line with exit code 2; train and report write their files."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = """
name: cli/tiny
model: {name: bag, embedding_dim: 8, context: 3}
data: {name: zipf, vocab_size: 200}
optimizer: {name: tiger, lr: 0.02, weight_decay: 1.0, parameter_scaling: false}
training: {steps: 150, batch_size: 16}
probes: {every: 25}
effect: {name: embedding_drift, expect: reproduced}
"""


def optlab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "optlab.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("command,expected", [
    (["validate", "{path}"], "optimizer.betta: unknown key; did you mean `beta`?"),
    (["train", "{path}", "training.batch_size=1e12"], "training.batch_size: the run needs about"),
    (["report", "nothing"], "nothing: no such directory"),
])
def test_bad_input_in_a_real_process_is_one_line_and_exit_2(tmp_path, command, expected):
    """The in-process bad-input suite (test_bad_input.py), checked on a few cases as a user's shell sees them."""
    path = write(tmp_path, "optimizer: {name: tiger, betta: 0.9}\n" if command[0] == "validate" else TINY_CONFIG)
    result = optlab(*[part.format(path=path) for part in command], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_override_of_unknown_key_and_type_coercion(tmp_path):
    path = write(tmp_path, TINY_CONFIG)
    result = optlab("validate", str(path), "optimizer.lrr=0.1", cwd=tmp_path)
    assert result.returncode == 2 and "optimizer.lrr: unknown key; did you mean `lr`?" in result.stderr
    result = optlab("validate", str(path), "optimizer.lr=3e-4", "training.steps=7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lr: 0.0003" in result.stdout and "steps: 7" in result.stdout


@pytest.mark.parametrize("command", [["--help"], ["validate", str(REPO / "configs/embedding_drift/tiger.yaml")],
                                     ["sweep", str(REPO / "configs/scaling/exp_a.yaml"), "--dry-run"]])
def test_help_and_validate_do_not_import_torch(tmp_path, command):
    code = (f"import sys; from optlab.cli import app\ntry: app({command!r}, standalone_mode=False)\n"
            "except SystemExit: pass\nprint('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip().endswith("False"), result.stderr


def test_train_then_report_end_to_end(tmp_path):
    path = write(tmp_path, TINY_CONFIG)
    trained = optlab("train", str(path), "--quiet", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    run_dir = next((tmp_path / "runs" / "cli" / "tiny").iterdir())
    assert {"config.yaml", "metrics.csv", "summary.json"} <= {p.name for p in run_dir.iterdir()}
    reported = optlab("report", str(run_dir), cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    report_dir = run_dir / "report"
    assert (report_dir / "report.md").is_file()
    figures = {p.name for p in report_dir.glob("*.png")}
    assert {"loss.png", "dynamics.png", "embedding_drift.png", "rare_rows_hist.png", "row_max_vs_rank.png"} <= figures
    assert all(f"![{Path(name).stem}]({name})" in (report_dir / "report.md").read_text() for name in figures)
    (report_dir / "embedding_max_vs_step.png").write_bytes(b"a figure an older report wrote")
    assert optlab("report", str(run_dir), cwd=tmp_path).returncode == 0
    assert {p.name for p in report_dir.glob("*.png")} == figures  # the stale one is gone, the rest rewritten
    verdicts = json.loads((report_dir / "report.json").read_text())["verdicts"]
    assert verdicts[0]["run"] == "cli/tiny" and verdicts[0]["expected"].startswith("reproduced")
    assert set(verdicts[0]) >= {"effect", "run", "passed", "measured", "expected"}
    assert "embedding_drift" in reported.stdout and "max|w|·λ" in reported.stdout


def test_report_check_exits_1_when_a_verdict_fails(tmp_path):
    """120 steps at ηλ = 0.02 on 200 tokens leave too few rare rows idle: the drift does not appear, so the
    run that expects it FAILs and the one that expects it absent passes (in process: no interpreter starts)."""
    from typer.testing import CliRunner

    from optlab.cli import app
    from optlab.config import load_config
    from optlab.train import train

    runs = {}
    for expect in ("reproduced", "absent"):
        config = TINY_CONFIG.replace("expect: reproduced", f"expect: {expect}").replace("cli/tiny", f"cli/{expect}")
        config = config.replace("steps: 150", "steps: 120")  # envelope 1 − 0.98^120 = 0.91: judged
        experiment = load_config(write(tmp_path, config, f"{expect}.yaml"), [f"output.runs_dir={tmp_path / 'runs'}"])
        runs[expect] = str(train(experiment, show_progress=False).run_dir)
    assert CliRunner().invoke(app, ["report", runs["reproduced"]]).exit_code == 0  # without --check a report is a report
    checked = CliRunner().invoke(app, ["report", runs["reproduced"], "--check"])
    assert checked.exit_code == 1 and ": FAIL" in checked.stdout
    assert checked.stderr.strip().splitlines()[-1] == "--check: 1 verdict failed"
    assert CliRunner().invoke(app, ["report", runs["absent"], "--check"]).exit_code == 0


def test_list_shows_optimizers_and_shipped_configs(tmp_path):
    from typer.testing import CliRunner

    from optlab.cli import app

    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0
    assert "tiger: lr=0.001, beta=0.965, weight_decay=0.01" in result.stdout
    assert "configs/embedding_drift/tiger.yaml" in result.stdout
    models = CliRunner().invoke(app, ["list", "models"]).stdout.splitlines()
    gpt = models.index(next(line for line in models if line.startswith("  gpt: ")))
    assert "embedding_dim=64" in models[gpt + 1] and "n_head=2" in models[gpt + 1]  # one kind: its fields
    linreg = next(line for line in models if line.startswith("  linreg: "))
    assert "init_distance" in linreg  # the first paragraph whole, not its first line cut mid-sentence
    configs = CliRunner().invoke(app, ["list", "configs"]).stdout
    assert "configs/embedding_drift/lion.yaml: Lion with the same step size" in configs


def test_help_shows_flags_without_a_value_and_choices_as_choices():
    from typer.testing import CliRunner

    from optlab.cli import app

    shown = CliRunner().invoke(app, ["sweep", "--help"], terminal_width=120).stdout
    assert "<bool>" not in shown and re.search(r"--dry-run\s+Print", shown)
    assert "--executor <local|inline|ray|slurm>" in shown
    refused = CliRunner().invoke(app, ["sweep", str(REPO / "configs/scaling/exp_a.yaml"), "--executor", "rey"])
    assert refused.exit_code == 2 and refused.stderr.strip() == "error: --executor 'rey': choose local, inline, ray or slurm"


def test_cp_starts_a_config_from_a_shipped_one(tmp_path, monkeypatch):
    """`optlab cp` copies a shipped config by its listed name; a sweep's base still resolves from the copy."""
    from typer.testing import CliRunner

    from optlab.cli import app
    from optlab.sweep import plan

    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["cp", "embedding_drift/lion", "mine.yaml"]).exit_code == 0
    assert (tmp_path / "mine.yaml").read_text() == (REPO / "configs/embedding_drift/lion.yaml").read_text()
    (tmp_path / "sweeps").mkdir()
    assert CliRunner().invoke(app, ["cp", "configs/scaling/exp_a.yaml", "sweeps"]).exit_code == 0
    assert len(plan(tmp_path / "sweeps/exp_a.yaml", [])[2]) == len(plan(REPO / "configs/scaling/exp_a.yaml", [])[2])
    again = CliRunner().invoke(app, ["cp", "scaling/exp_a", "sweeps"])
    assert again.exit_code == 2 and "sweeps/exp_a.yaml: exists; choose another name or add --force" in again.stderr
    missing = CliRunner().invoke(app, ["cp", "scaling/nope", "x.yaml"])
    assert missing.exit_code == 2 and "file not found" in missing.stderr and not (tmp_path / "x.yaml").exists()


def test_shipped_configs_validate():
    """Every shipped config validates, and every shipped sweep expands into valid trials."""
    from optlab.config import load_config
    from optlab.sweep import plan

    for path in sorted((REPO / "configs").rglob("*.yaml")):
        if "base" in yaml.safe_load(path.read_text()):
            assert plan(path, [])[2], path
        else:
            load_config(path)


def test_validate_prints_the_description_as_written():
    shown = optlab("validate", "configs/embedding_drift/tiger.yaml", cwd=REPO)
    assert shown.returncode == 0 and "±1/λ" in shown.stdout and "\\u03BB" not in shown.stdout and "\\xB1" not in shown.stdout


def test_demo_says_which_run_it_is_on_and_how_long_the_rest_will_take(tmp_path):
    from typer.testing import CliRunner

    from optlab.cli import app

    folder = tmp_path / "demo"
    folder.mkdir()
    for name, steps in (("a", 40), ("b", 20)):
        config = TINY_CONFIG.replace("cli/tiny", f"cli/{name}").replace("steps: 150", f"steps: {steps}")
        (folder / f"{name}.yaml").write_text(config + f"output: {{runs_dir: {tmp_path / 'runs'}}}\n")
    for workers in ("1", "2"):
        shown = CliRunner().invoke(app, ["demo", str(folder), "-q", "--workers", workers])
        assert shown.exit_code == 0, shown.output
        lines = shown.stdout.splitlines()
        assert lines[0] == f"2 runs, {workers} at a time" + (" (one worker process per core)" if workers == "2" else "")
        if workers == "1":
            assert [line for line in lines if line.startswith("run ")] == ["run 1 of 2: cli/a", "run 2 of 2: cli/b"]
        finished = [line for line in lines if line.startswith("completed: ")]
        assert len(finished) == 2 and re.search(r", about \d+ s left\)$", finished[0]) and "left" not in finished[1], lines
        assert re.search(r"report: .*report\.md \(\d+ s in all\)$", lines[-1]), lines
