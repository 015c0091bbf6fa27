"""Shared helpers of the tests: the command line in a subprocess, and shipped sweeps run in a scratch folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def optlab(*args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    """`optlab ARGS` in a fresh process (wide terminal, so rich tables do not wrap)."""
    environment = {**(env or os.environ), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "optlab.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environment)


def shipped_sweep(path: str, **changes) -> dict:
    """A shipped sweep file (configs/<path>) as a mapping, its base made absolute, top-level keys replaced."""
    sweep = yaml.safe_load((CONFIGS / path).read_text())
    sweep["base"] = str((CONFIGS / path).parent / sweep["base"])
    sweep.update(changes)
    return sweep


def sweep_and_report(tmp_path: Path, sweep: dict, *overrides: str, workers: int = 0) -> tuple[dict, Path]:
    """Run a sweep (a mapping) and its report in tmp_path: (report.json, report folder). With workers = 0
    the trials run in this process (the inline executor: no worker start-up, for sweeps of small trials);
    otherwise through the command line with that many worker processes."""
    path = tmp_path / f"{sweep['name'].replace('/', '_')}.yaml"
    runs_dir = tmp_path / "runs"
    path.write_text(yaml.safe_dump({**sweep, "runs_dir": str(runs_dir)}, sort_keys=False))
    if workers == 0:
        from rich.console import Console

        from optlab.report.sweep import write_sweep_report
        from optlab.sweep import run_sweep

        assert run_sweep(path, list(overrides), executor="inline", console=Console(quiet=True)) == 0
        write_sweep_report(runs_dir / sweep["name"])
    else:
        ran = optlab("sweep", str(path), *overrides, "--workers", str(workers), cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr[-3000:]
        reported = optlab("report", str(runs_dir / sweep["name"]), cwd=tmp_path)
        assert reported.returncode == 0, reported.stderr[-3000:]
    folder = runs_dir / sweep["name"] / "report"
    return json.loads((folder / "report.json").read_text()), folder


def cells(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "cells.csv")


def outcomes(report: dict, effect: str | None = None) -> list:
    """The `passed` of each verdict (of one effect)."""
    return [v["passed"] for v in report["verdicts"] if effect is None or v["effect"] == effect]


def gradient_sequence(shape, steps=6, zero_steps=(2, 3), seed=0):
    """Random gradients with some all-zero steps (stale-momentum steps)."""
    generator = torch.Generator().manual_seed(seed)
    grads = [torch.randn(shape, generator=generator) for _ in range(steps)]
    for step in zero_steps:
        grads[step] = torch.zeros(shape)
    return grads


def run_optimizer(optimizer_class, theta0, grads, **kwargs):
    """Feed `grads` to optimizer_class([θ], **kwargs) from θ_0; return (θ, the optimizer)."""
    param = torch.nn.Parameter(theta0.clone())
    optimizer = optimizer_class([param], **kwargs)
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
    return param.detach(), optimizer
