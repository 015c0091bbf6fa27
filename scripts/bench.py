"""Where optlab spends time, measured side by side in one run on this machine.

    python scripts/bench.py [--repeats 7] [--quick] [--write docs/benchmarks.md]

1. training throughput of `optlab train` (probes at their default frequency) against a minimal
   hand-written PyTorch loop training the same model on the same data for the same steps;
2. model FLOP utilisation of the small LM: training FLOP/s ÷ matmul FLOP/s measured here;
3. start-up: `optlab --help`, `optlab validate`, and time to the first training step;
4. sweep throughput: a 16-trial sweep with --workers 1 and 2 against what a user would otherwise write,
   a loop over the 16 trials in one process (same models, data and optimizer, no files); the framework
   share of one Exp A trial trained alone (scripts/bench_trial.py); an LM trial with freed memory kept
   and returned; Exp A and Exp D0 with their trials trained in populations (the default) and with
   --no-population;
5. the optimizer-step tables of scripts/bench_optim.py (tiny and GPT-like parameter sets), and the sign
   optimizers' automatic compile over a whole run;
6. `optlab profile`: the quick and full cards, first and second invocation (scripts/bench_profile.py);
7. `optlab demo`: parallel (the default) and one run after another.
Figures are medians over repeats; ratios compare figures taken in the same run. The machine (cores,
threads, load average before and after) is printed with them; `--write` saves the whole output as a
markdown page (docs/benchmarks.md is made this way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
OPTLAB = [sys.executable, "-m", "optlab.cli"]

MODELS = {
    "small LM (gpt)": {"model": {"name": "gpt", "embedding_dim": 128, "context": 64, "n_layer": 2, "n_head": 4},
                       "data": {"name": "stdlib-text", "vocab_size": 4096}, "training": {"steps": 100, "batch_size": 16}},
    "embedding model (bag)": {"model": {"name": "bag", "embedding_dim": 32, "context": 4},
                              "data": {"name": "zipf", "vocab_size": 10000, "bigram_prob": 0.5},
                              "training": {"steps": 400, "batch_size": 64}},
}


def experiment(spec: dict, runs_dir: str):
    from optlab.config import validate_config

    return validate_config({"name": "bench/run", "optimizer": {"name": "adamw", "lr": 1e-3}, **spec,
                            "output": {"runs_dir": runs_dir}})


READING = """
## How to read these tables

- §1-2: optlab ÷ bare is throughput, so above 1 means optlab's loop is faster; the bare loop has no
  probes, logging or files. Both use fused AdamW (optlab's default for `adamw`).
- §4: the in-process loop is one script (its own process, imports included, as `optlab sweep` is timed)
  that trains the same 16 trials one after another with the same optimizer and no run directories; a
  sweep adds what a sweep is for (a run directory per trial, a journal, resumability). The framework
  share is 1 − bare ÷ run_trial for Exp A trials trained one by one (the worker's function against a
  hand-written loop over the same data, model and optimizer; same final losses).
- §5: "tiny" is 0.116M parameters in 26 tensors at 1 thread (per-call overhead rules), "gpt" 7.35M in
  50 tensors at 2 threads (memory bandwidth rules). "× fused AdamW" is the step time against
  torch.optim.AdamW(fused=True) on the same parameters, in the same run. Each sign optimizer (Lion,
  Tiger, Signum, SignSGD) has two rows, both its default: `compiled: null` keeps the update eager for a
  short run or a sweep trial, and compiles it (torch.compile, static shapes) once parameters × steps ≥
  8·10¹⁰; the one-off compile is in the warm-up, not in the figure. "Tiger (basic)" is the §2.1 update
  (no per-parameter scaling) with the NaN/inf guard, "default rules" adds the scaling (embedding,
  matrix and bias groups). The bandwidth floor is the bytes a step must move ÷ the copy bandwidth
  measured in the run. The whole-run table counts the compile, made cold (a fresh compile cache, as on
  a new machine), over the run length from which `compiled: null` compiles.
- §6: the second invocation of a card finds every trial finished and only re-measures the cost panel
  and redraws the figures.
"""


def tokens_per_step(config) -> int:
    predicted = config.model.context if config.model.name == "gpt" else 1
    return config.training.batch_size * predicted


def bare_loop_seconds(config) -> float:
    """The minimal loop: same model, data stream and optimizer; no probes, no logging, no files."""
    from optlab.data import build_dataset
    from optlab.models import build_model
    from optlab.optim.groups import build_optimizers

    torch.manual_seed(config.training.seed)
    data = build_dataset(config.data, config.training.seed)
    model = build_model(config.model, data)
    optimizer = (torch.optim.AdamW(model.parameters(), lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay,
                                   fused=True)  # the fast path a user would pick; optlab's default is fused too
                 if config.optimizer.name == "adamw" else build_optimizers(model, config)[0])
    start = time.perf_counter()
    for _ in range(config.training.steps):
        loss = model(data.sample(config.training.batch_size, model.window_length))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return time.perf_counter() - start


def optlab_loop_seconds(config) -> tuple[float, float]:
    """(loop wall time, time to the first step) of optlab's train()."""
    from optlab.train import train

    result = train(config, show_progress=False)
    return result.summary["wall_time_s"], result.summary["first_step_s"]


def matmul_flops(size=1024, repeats=10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        timings.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(timings)


def lm_training_flops_per_token(config) -> float:
    """6 × (parameters in matmuls) + attention (12 · layers · context · width) per token (Kaplan et al.)."""
    width, layers, context = config.model.embedding_dim, config.model.n_layer, config.model.context
    vocab = 4096
    matmul_params = layers * 12 * width**2 + width * vocab
    return 6 * matmul_params + 12 * layers * context * width


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def trial_loop(runs_dir: str) -> None:
    """What a user would otherwise write for §4: one script that trains the 16 trials one after another."""
    for lr in (0.001, 0.002, 0.005, 0.01):
        for seed in range(4):
            bare_loop_seconds(experiment({"name": "bench/loop", "model": {"name": "bag", "embedding_dim": 16, "context": 4},
                                          "data": {"name": "zipf", "vocab_size": 2000}, "optimizer": {"name": "tiger", "lr": lr},
                                          "training": {"steps": 300, "batch_size": 32, "seed": seed}}, runs_dir))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run of the benchmark itself)")
    parser.add_argument("--write", type=Path, default=None, help="also write the output to this markdown file")
    parser.add_argument("--trial-loop", metavar="RUNS_DIR", help=argparse.SUPPRESS)  # §4's baseline, in its own process
    args = parser.parse_args()
    if args.trial_loop:
        trial_loop(args.trial_loop)
        return
    work = Path(tempfile.mkdtemp(prefix="optlab-bench-"))
    lines: list[str] = []

    def print(*parts, end="\n"):  # noqa: A001  (everything printed is also kept for --write)
        text = " ".join(str(part) for part in parts) + end
        sys.stdout.write(text)
        sys.stdout.flush()
        lines.append(text)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    print("# Benchmarks\n")
    print(f"Written by `python scripts/bench.py{' --quick' if args.quick else ''} --repeats {args.repeats} --write ...` "
          f"on {started}.\n")
    print(f"machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; "
          f"load average before the run {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min); "
          f"medians of {args.repeats} repeats\n")

    print("## 1-2. Training throughput: optlab train vs a bare PyTorch loop (AdamW, same model and data)\n")
    print("| model | bare loop tokens/s | optlab tokens/s | optlab ÷ bare: median of paired ratios (range) | MFU |")
    print("|---|---|---|---|---|")
    peak = matmul_flops()
    first_steps = []
    for name, spec in MODELS.items():
        spec = json.loads(json.dumps(spec))
        if args.quick:
            spec["training"]["steps"] //= 5
        config = experiment(spec, str(work / "runs"))
        warm_up = config.model_copy(update={"training": config.training.model_copy(update={"steps": 3})})
        bare_loop_seconds(warm_up)  # first-use costs (torch.optim's lazy imports) stay out of the timings
        optlab_loop_seconds(warm_up)
        bare, ours, ratios = [], [], []
        for _ in range(args.repeats):  # paired and interleaved: drift in machine load hits both alike
            bare.append(bare_loop_seconds(config))
            seconds, first = optlab_loop_seconds(config)
            ours.append(seconds)
            ratios.append(bare[-1] / seconds)
            first_steps.append(first)
        tokens = tokens_per_step(config) * config.training.steps
        bare_rate, our_rate = tokens / statistics.median(bare), tokens / statistics.median(ours)
        mfu = (f"{our_rate * lm_training_flops_per_token(config) / peak:.1%}" if config.model.name == "gpt" else "—")
        spread = f"{min(ratios):.2f}–{max(ratios):.2f}"
        print(f"| {name} | {bare_rate:,.0f} | {our_rate:,.0f} | {statistics.median(ratios):.3f} ({spread}) | {mfu} |")
    print(f"\nmatmul peak measured here: {peak / 1e9:.1f} GFLOP/s (1024² float32)\n")

    print("## 3. Start-up\n")
    config_path = REPO / "configs" / "embedding_drift" / "tiger.yaml"
    help_s = statistics.median(timed([*OPTLAB, "--help"], work) for _ in range(args.repeats))
    validate_s = statistics.median(timed([*OPTLAB, "validate", str(config_path)], work) for _ in range(args.repeats))
    one_step_s = statistics.median(timed([*OPTLAB, "train", str(config_path), "-q", "training.steps=1"], work)
                                   for _ in range(args.repeats))
    print(f"| `optlab --help` | {help_s:.2f} s |\n|---|---|\n| `optlab validate` | {validate_s:.2f} s |\n"
          f"| `optlab train` of one step, whole process (imports, set-up, step, files) | {one_step_s:.2f} s |\n"
          f"| time to first training step inside train() (set-up + one step) | {statistics.median(first_steps):.3f} s |\n")

    print("## 4. Sweep throughput: 16 tiny trials (bag model, Tiger, 300 steps each)\n")
    base = work / "tiny.yaml"
    base.write_text("model: {name: bag, embedding_dim: 16, context: 4}\ndata: {name: zipf, vocab_size: 2000}\n"
                    "optimizer: {name: tiger, lr: 0.01}\ntraining: {steps: 300, batch_size: 32}\n")
    sweep = work / "sweep.yaml"
    sweep.write_text("name: bench/sweep\nbase: tiny.yaml\ngrid: {optimizer.lr: [0.001, 0.002, 0.005, 0.01]}\n"
                     "seeds: [0, 1, 2, 3]\n")
    figures = {}
    for label, workers in (("sweep --workers 1", 1), ("sweep --workers 2", 2)):
        shutil.rmtree(work / "runs" / "bench" / "sweep", ignore_errors=True)
        figures[label] = timed([*OPTLAB, "sweep", str(sweep), "--workers", str(workers)], work)
    loop = [sys.executable, str(Path(__file__).resolve()), "--trial-loop", str(work / "runs")]
    figures["the 16 trials in an in-process loop"] = timed(loop, work)  # a fresh process, as the sweep's is
    baseline = figures["the 16 trials in an in-process loop"]
    print("| way | wall (s) | speed × in-process loop |\n|---|---|---|")
    for label, seconds in figures.items():
        print(f"| {label} | {seconds:.1f} | {baseline / seconds:.2f} |")

    print("\n### One trial trained alone: run_trial against a bare loop (scripts/bench_trial.py)\n")
    per_trial = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_trial.py"), "--repeats",
                                str(args.repeats)], check=True, capture_output=True, text=True)
    print(per_trial.stdout)
    print("### An LM sweep trial at batch 256 (lm_adamw, 20 steps): freed memory kept (train.keep_freed_memory) "
          "or returned to the OS (glibc's default), each in its own process\n")
    per_trial_ms = {}
    for policy in ("returned", "kept"):
        lm_trial = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_trial.py"), "--sweep",
                                   str(REPO / "configs" / "scaling" / "lm_adamw.yaml"), "--batch-size", "256",
                                   "--steps", "20", "--trials", "1", "--repeats", "3", "--freed-memory", policy],
                                  check=True, capture_output=True, text=True).stdout
        per_trial_ms[policy] = float(next(line for line in lm_trial.splitlines()
                                          if line.startswith("| run_trial |")).split("|")[2])
    print("| freed memory | run_trial per trial (ms) |\n|---|---|")
    for policy, milliseconds in per_trial_ms.items():
        print(f"| {policy} | {milliseconds:.0f} |")
    print(f"\nkept ÷ returned: {per_trial_ms['kept'] / per_trial_ms['returned']:.2f} (time)\n")
    print("### Populations: shipped sweeps with and without `--no-population` (docs/populations.md)\n")
    print("| sweep | trials | --workers 2 (s) | --no-population (s) | speed-up |\n|---|---|---|---|---|")
    for name in (["exp_d0"] if args.quick else ["exp_a", "exp_d0"]):
        shipped = REPO / "configs" / "scaling" / f"{name}.yaml"
        seconds = {}
        for flag in ([], ["--no-population"]):
            shutil.rmtree(work / "runs" / "scaling", ignore_errors=True)
            seconds[bool(flag)] = timed([*OPTLAB, "sweep", str(shipped), "--workers", "2", *flag], work)
        trials = len(list((work / "runs" / "scaling" / name / "trials").iterdir()))
        print(f"| {name} | {trials} | {seconds[False]:.1f} | {seconds[True]:.1f} | {seconds[True] / seconds[False]:.2f} |")

    print("\n## 5. Optimizer step (scripts/bench_optim.py)\n")
    optimizer_tables = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_optim.py"), "--repeats",
                                       str(max(5, args.repeats * 2))], check=True, capture_output=True, text=True)
    print(optimizer_tables.stdout.replace("\n## ", "\n### "))
    whole_run = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_optim.py"), "--whole-run"]
                               + (["300"] if args.quick else []), check=True, capture_output=True, text=True)
    print("### The sign optimizers' automatic compile over a whole run (a fresh process)\n")
    print(whole_run.stdout)
    print("## 6. `optlab profile` (scripts/bench_profile.py)\n")
    profile = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_profile.py")]
                             + (["--skip-full"] if args.quick else []), check=True, capture_output=True, text=True)
    print(profile.stdout)
    print("## 7. `optlab demo` (the embedding-drift demo's seven runs and report)\n")
    print("| way | wall (s) |\n|---|---|")
    for label, workers in (("optlab demo (default: one worker per core)", None), ("optlab demo --workers 1", 1)):
        demo_dir = work / f"demo-{workers}"
        demo_dir.mkdir()
        command = [*OPTLAB, "demo", "-q"] + ([] if workers is None else ["--workers", str(workers)])
        print(f"| {label} | {timed(command, demo_dir):.1f} |")
    print()
    load_after = os.getloadavg()
    print(f"load average after the run: {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min)")
    print(READING)
    shutil.rmtree(work, ignore_errors=True)
    if args.write:
        args.write.write_text("".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
