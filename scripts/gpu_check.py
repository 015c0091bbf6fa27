"""Check optlab's CUDA path on a machine with a GPU, and print one table.

    python scripts/gpu_check.py [--device cuda] [--quick]

1. optimizer equality: every built-in optimizer (and its compiled update where it has one) takes 20 steps
   on the device and on the CPU from the same parameters and gradients; the trajectories must agree to
   float32 rounding (max |Δθ| ≤ 1e-5 · max |θ|);
2. bf16 autocast: the small GPT trains 200 steps under `training.autocast: true`; its final loss must lie
   within 0.1 of the float32 run's;
3. compiled model: `training.compile: true` gives the float32 run's loss curve (≤ 1e-3 apart);
4. the shipped effects on the device: every config of configs/embedding_drift/ and configs/real_text/
   (each with its `effect.expect`) trained there, their verdicts as `optlab report` gives them;
5. the step benchmark: scripts/bench_optim.py on the device (its own table follows).

A check passes or fails with its number (an effect whose rule does not apply is NOT JUDGED, a failure
unless --quick); the exit status is 1 if any failed. `--device cpu` runs the same
checks against the CPU itself (a dry run of the script on a machine without a GPU). `--quick` trains the
effect configs for a tenth of their steps (their verdicts are then not expected to pass).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from optlab.config import load_config
from optlab.optim import Amos, Lion, Muon, SignSGD, Signum, Tiger
from optlab.report import write_report
from optlab.runs import load_run
from optlab.train import train

REPO = Path(__file__).resolve().parent.parent
RESULTS: list[tuple[str, bool | None, str, float]] = []


def check(name: str):
    """Record a check's (passed, detail) with its wall time; an exception is a failure with its message."""
    def decorate(function):
        def run(*arguments):
            started = time.perf_counter()
            try:
                passed, detail = function(*arguments)
            except Exception as error:  # a check that cannot run has failed
                passed, detail = False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            RESULTS.append((name, passed, detail, time.perf_counter() - started))
        return run
    return decorate


OPTIMIZERS = {
    "adamw fused": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1, fused=True),
    "lion": lambda p: Lion(p, lr=1e-4, weight_decay=0.1),
    "lion compiled": lambda p: Lion(p, lr=1e-4, weight_decay=0.1, compiled=True),
    "tiger": lambda p: Tiger(p, lr=1e-3, weight_decay=0.1),
    "tiger compiled": lambda p: Tiger(p, lr=1e-3, weight_decay=0.1, compiled=True),
    "signum": lambda p: Signum(p, lr=1e-3, weight_decay=0.1),
    "signsgd": lambda p: SignSGD(p, lr=1e-3, weight_decay=0.1),
    "amos": lambda p: Amos(p, lr=0.01),
    "muon": lambda p: Muon([q for q in p if q.ndim == 2], lr=0.02),
}


def trajectory(make, device: torch.device, steps: int = 20) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shapes = [(64, 32), (32, 32), (32,), (16, 32)]
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator).to(device)) for shape in shapes]
    gradients = [[torch.randn(shape, generator=generator) for shape in shapes] for _ in range(steps)]
    optimizer = make(params)
    for step_gradients in gradients:
        for param, gradient in zip(params, step_gradients):
            param.grad = gradient.to(device)
        optimizer.step()
    return [param.detach().cpu() for param in params]


def optimizer_equality(device: torch.device) -> None:
    for name, make in OPTIMIZERS.items():
        @check(f"{name}: {device.type} = cpu")
        def compare():
            on_device, on_cpu = trajectory(make, device), trajectory(make, torch.device("cpu"))
            worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(on_device, on_cpu))
            return worst <= 1e-5, f"max |Δθ|/max |θ| = {worst:.2e} (≤ 1e-5)"
        compare()


def small_gpt(device: torch.device, **training) -> float:
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(REPO / "configs" / "effects" / "lm_base.yaml",
                             [f"training.device={device.type}", "training.steps=200", "probes.every=50",
                              f"output.runs_dir={folder}", *(f"training.{key}={value}" for key, value in training.items())])
        return train(config, show_progress=False).summary["final"]["loss"]


def training_paths(device: torch.device) -> None:
    baseline = {}

    @check(f"small GPT float32 on {device.type}")
    def float32():
        baseline["loss"] = small_gpt(device)
        return True, f"final loss {baseline['loss']:.4f} after 200 steps"

    @check("bf16 autocast")
    def autocast():
        loss = small_gpt(device, autocast="true")
        return abs(loss - baseline["loss"]) <= 0.1, f"final loss {loss:.4f} vs float32 {baseline['loss']:.4f} (≤ 0.1 apart)"

    @check("compiled model (training.compile)")
    def compiled():
        loss = small_gpt(device, compile="true")
        return abs(loss - baseline["loss"]) <= 1e-3, f"final loss {loss:.4f} vs eager {baseline['loss']:.4f} (≤ 1e-3 apart)"

    float32()
    if "loss" in baseline:
        autocast()
        compiled()


def shipped_effects(device: torch.device, quick: bool) -> None:
    for path in sorted([*(REPO / "configs" / "embedding_drift").glob("*.yaml"), *(REPO / "configs" / "real_text").glob("*.yaml")]):
        @check(f"effect {path.parent.name}/{path.stem}")
        def effect():
            steps = max(1, load_config(path).training.steps // 10) if quick else load_config(path).training.steps
            with tempfile.TemporaryDirectory() as folder:
                config = load_config(path, [f"training.device={device.type}", f"training.steps={steps}",
                                            f"output.runs_dir={folder}"])
                result = train(config, show_progress=False)
                _, verdicts = write_report([load_run(result.run_dir)], Path(folder) / "report")
            judged = [verdict for verdict in verdicts if verdict.passed is not None]
            if not judged:  # e.g. --quick: too few steps for the rule to apply
                return None, "not judged: " + "; ".join(verdict.measured for verdict in verdicts)[:140]
            return (all(verdict.passed for verdict in judged),
                    "; ".join(f"{verdict.observed}: {verdict.measured}" for verdict in judged)[:160])
        effect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="effect configs for a tenth of their steps")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run this on a GPU machine (or --device cpu for a dry run)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}, CUDA {torch.version.cuda}")
    optimizer_equality(device)
    training_paths(device)
    shipped_effects(device, args.quick)
    print("| check | result | measured | s |\n|---|---|---|---|")
    for check_name, passed, detail, seconds in RESULTS:
        print(f"| {check_name} | {'NOT JUDGED' if passed is None else 'PASS' if passed else 'FAIL'} | {detail} | {seconds:.1f} |")
    benchmark = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_optim.py"), "--device", args.device],
                               capture_output=True, text=True)
    print("\nStep benchmark (scripts/bench_optim.py):\n" + (benchmark.stdout or benchmark.stderr))
    failed = [name for name, passed, _, _ in RESULTS if passed is False or (passed is None and not args.quick)]
    return 0 if not failed and benchmark.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
