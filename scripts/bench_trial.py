"""What optlab adds to one small sweep trial, measured side by side in one process.

    python scripts/bench_trial.py [--sweep configs/scaling/exp_a.yaml] [--trials 24] [--repeats 5]

Trains the same trials of a shipped sweep (by default Exp A's 40-step SGD trials on linear regression,
spread over its grid) two ways, interleaved round-robin so that machine noise hits both alike:

- `run_trial`: the sweep worker's function, as a sweep calls it for a trial trained alone: config
  validation, run directory, config.yaml/metrics.csv/summary.json, environment record, probes;
- a bare loop: the same data generator, model and optimizer (optlab's builders, the same seed), trained
  by a hand-written loop that keeps only the final loss and the model's final exact metrics (the
  number the sweep reads), with no validation, probes or files.

Both must reach the same final loss (1e-12). Printed: the median per-trial time of each and the framework
share, 1 − bare ÷ run_trial (the target: ≤ 15 %). The population path (several trials in one vmapped
model, docs/populations.md) is timed by scripts/bench.py §4.

`--batch-size` and `--steps` pick and shorten long trials (an LM sweep's, whose eval probe then counts as
framework work); `--freed-memory returned` runs with glibc's default policy instead of
train.keep_freed_memory (a process-wide setting: compare two runs).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import optlab.train
from optlab.data import build_dataset
from optlab.models import build_model, capabilities
from optlab.optim.groups import build_optimizers
from optlab.sweep.executors import run_trial
from optlab.sweep.spec import expand, load_sweep
from optlab.train import DTYPES, seed_everything

REPO = Path(__file__).resolve().parent.parent


def bare_loop(config) -> float:
    """The trial as a user would write it: build, step, then read the number the sweep keeps (the model's
    exact metrics, e.g. the population loss, where it has them); returns the last step's loss."""
    training = config.training
    seed_everything(training.seed, torch.device("cpu"))
    data = build_dataset(config.data, training.seed)
    model = build_model(config.model, data).to(dtype=DTYPES[training.dtype])
    (optimizer,) = build_optimizers(model, config)
    for group in optimizer.param_groups:
        group["lr"] *= training.lr_scale()
    for _ in range(training.steps):
        loss = model(data.sample(training.batch_size, model.window_length))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    exact_metrics = capabilities(model).exact_metrics
    if exact_metrics is not None:
        exact_metrics()
    return loss.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=REPO / "configs" / "scaling" / "exp_a.yaml")
    parser.add_argument("--trials", type=int, default=24, help="trials taken evenly from the sweep's list")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="only the trials of this batch size")
    parser.add_argument("--steps", type=int, default=None, help="train each trial this many steps, no stop rule")
    parser.add_argument("--freed-memory", choices=["kept", "returned"], default="kept",
                        help="returned: glibc's default (freed big blocks go back to the OS) instead of "
                             "train.keep_freed_memory")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a sweep worker of tiny trials runs
    if args.freed_memory == "returned":
        optlab.train.keep_freed_memory = lambda: None
    sweep, base = load_sweep(args.sweep)
    trials = [trial for trial in expand(sweep, base, str(args.sweep))
              if args.batch_size in (None, trial.config.training.batch_size)]
    if args.steps:
        trials = [replace(trial, config=trial.config.model_copy(update={"training": trial.config.training.model_copy(
            update={"steps": args.steps, "stop_at_target": None})})) for trial in trials]
    chosen = trials[:: max(1, len(trials) // args.trials)][: args.trials]
    payloads = [trial.config.model_dump(mode="json") for trial in chosen]
    timings = {"run_trial": [], "bare loop": []}
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(args.repeats):
            start = time.perf_counter()
            results = [run_trial(payload, str(Path(work) / f"{repeat}-{i}")) for i, payload in enumerate(payloads)]
            timings["run_trial"].append((time.perf_counter() - start) / len(chosen))
            start = time.perf_counter()
            losses = [bare_loop(trial.config) for trial in chosen]
            timings["bare loop"].append((time.perf_counter() - start) / len(chosen))
    completed = 0
    for result, loss in zip(results, losses):  # a diverged trial stops early in run_trial, not in the bare loop
        assert result["status"] in ("completed", "diverged"), result
        if result["status"] == "completed":
            completed += 1
            assert math.isclose(result["final"]["loss"], loss, rel_tol=1e-12, abs_tol=1e-300), (result, loss)
    steps = chosen[0].config.training.steps
    print(f"{len(chosen)} trials of {sweep.name} ({steps} steps each; {completed} completed, the same final loss both "
          f"ways), 1 thread, freed memory {args.freed_memory}, medians of {args.repeats} repeats")
    print("| way | per trial (ms) | per step (µs) |\n|---|---|---|")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.1f} | {median / steps * 1e6:.0f} |")
    share = 1 - statistics.median(timings["bare loop"]) / statistics.median(timings["run_trial"])
    print(f"\nframework share of a trial trained alone: {share:.0%} (1 − bare ÷ run_trial)")


if __name__ == "__main__":
    main()
