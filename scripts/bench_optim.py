"""Time one optimizer step on a GPT-shaped set of parameters and print medians and ratios.

    python scripts/bench_optim.py [--device cpu|cuda] [--sets tiny gpt] [--repeats 15] [--threads N]

Two parameter sets: "tiny" (0.116M parameters in 26 tensors, 1 thread), where per-call overhead rules,
and "gpt" (7.35M in 50 tensors, 2 threads), where memory bandwidth does.

Each sign optimizer has two rows: eager, what `compiled: null` (the default) runs for a short run or a
sweep trial, and compiled (torch.compile of the update), what it runs from parameters × steps ≥
COMPILE_PAYS_AT on. The one-off compile happens in the warm-up and is not timed here; `--whole-run`
counts it over a whole run of that length.

All optimizers run on the same parameters and gradients in one process, interleaved round-robin so
that machine noise hits them alike; each figure is the median over repeats of the mean step time.
Ratios are against torch.optim.AdamW(fused=True). Also printed: optimizer state bytes per parameter
and the memory-bandwidth floor, i.e. bytes a step must move ÷ copy bandwidth measured in this run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time

import torch

from optlab.optim.amos import Amos
from optlab.optim.lion import Lion
from optlab.optim.muon import Muon
from optlab.optim.signsgd import SignSGD, Signum
from optlab.optim.tiger import Tiger
from optlab.optim.torch_adam import adamw


SETS = {  # name -> (vocab, width, layers, threads): the overhead-bound tiny set at 1 thread, the GPT-like set at 2
    "tiny": (128, 64, 2, 1),
    "gpt": (8192, 256, 4, 2),
}


def gpt_shaped_parameters(device, vocab=8192, width=256, layers=4):
    """Embedding, head, and per layer qkv/proj/mlp weights, biases and norm gains (≈7.3M parameters in 50
    tensors at the defaults; the tiny set: ≈0.11M in 26)."""
    shapes = [(vocab, width), (vocab, width)]
    for _ in range(layers):
        shapes += [(3 * width, width), (3 * width,), (width, width), (width,), (4 * width, width), (4 * width,),
                   (width, 4 * width), (width,), (width,), (width,), (width,), (width,)]
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter((torch.randn(s, generator=generator) * 0.02).to(device)) for s in shapes]
    grads = [(torch.randn(s, generator=generator) * 1e-3).to(device) for s in shapes]
    return params, grads


def copy_bandwidth(device, megabytes=256, repeats=10) -> float:
    """Bytes per second of a large device-to-device copy (read + write counted)."""
    source = torch.empty(megabytes * 2**20 // 4, device=device)
    target = torch.empty_like(source)
    timings = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        timings.append(time.perf_counter() - start)
    return 2 * source.numel() * 4 / statistics.median(timings)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def tiger_groups(params):
    """Tiger's per-parameter rules need kinds: the first tensor is the embedding, vectors are biases."""
    return [{"params": params[:1], "kind": "embedding"},
            {"params": [p for p in params[1:] if p.ndim == 2], "kind": "matrix"},
            {"params": [p for p in params[1:] if p.ndim == 1], "kind": "bias"}]


SIGN_OPTIMIZERS = {  # name -> factory(params, compiled): the sign optimizers, which choose eager or compiled
    "Lion": lambda p, compiled: Lion(p, lr=1e-4, weight_decay=0.1, compiled=compiled),
    "Tiger (basic)": lambda p, compiled: Tiger(p, lr=1e-3, parameter_scaling=False, compiled=compiled),
    "Tiger (basic, no guard)": lambda p, compiled: Tiger(p, lr=1e-3, parameter_scaling=False, nan_guard=False,
                                                         compiled=compiled),
    "Tiger (default rules)": lambda p, compiled: Tiger(tiger_groups(p), lr=1e-3, compiled=compiled),
    "Signum": lambda p, compiled: Signum(p, lr=1e-3, compiled=compiled),
    "SignSGD": lambda p, compiled: SignSGD(p, lr=1e-3, compiled=compiled),
}


def candidates():
    """name -> (constructor, arrays moved per element per step: reads + writes, or None). Each sign optimizer
    appears twice: eager (what `compiled: null` picks for a short run) and compiled (what it picks from
    parameters × steps ≥ COMPILE_PAYS_AT on)."""
    found = {
        "torch AdamW fused": (lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True), 7),
        "torch AdamW foreach": (lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True), 7),
        "torch AdamW default (for-loop on CPU)": (lambda p: torch.optim.AdamW(p, lr=1e-3), 7),
        "optlab adamw (default)": (lambda p: adamw(p, lr=1e-3), 7),
    }
    for name, make in SIGN_OPTIMIZERS.items():
        arrays = 3 if name == "SignSGD" else 5  # θ read and written, g read (and m read and written)
        found[f"optlab {name}, short run (eager)"] = (lambda p, make=make: make(p, False), arrays)
        found[f"optlab {name}, long run (compiled)"] = (lambda p, make=make: make(p, True), arrays)
    found["optlab Amos"] = (lambda p: Amos(p, lr=0.01), 3)
    found["optlab Muon (matrices)"] = (lambda p: Muon([q for q in p if q.ndim == 2], lr=0.02), None)
    try:
        import lion_pytorch

        found["lion_pytorch Lion"] = (lambda p: lion_pytorch.Lion(p, lr=1e-4, weight_decay=0.1), 5)
    except ImportError:
        pass
    try:
        import pytorch_optimizer

        found["pytorch_optimizer Lion"] = (lambda p: pytorch_optimizer.Lion(p, lr=1e-4), 5)
        found["pytorch_optimizer Tiger"] = (lambda p: pytorch_optimizer.Tiger(p, lr=1e-3), 5)
        found["pytorch_optimizer Amos"] = (lambda p: pytorch_optimizer.Amos(p, lr=0.01), 3)
    except ImportError:
        pass
    return found


def state_bytes_per_param(optimizer, count) -> float:
    total = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                if torch.is_tensor(v) and v.ndim > 0)
    return total / count


def time_set(device, shape, repeats: int, steps: int, only: str | None = None) -> None:
    """Build every candidate on one parameter set, time them round-robin and print the table."""
    setups = {}
    for name, (make, arrays) in candidates().items():
        if only and name != "torch AdamW fused" and not re.search(only, name):
            continue
        params, grads = gpt_shaped_parameters(device, *shape)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer = make(params)
        for _ in range(3):  # warm-up: state allocation, kernel selection, compilation
            optimizer.step()
        for group in optimizer.param_groups:  # a new lr after warm-up: a compiled step must not recompile
            group["lr"] *= 0.5
        setups[name] = (optimizer, arrays, sum(p.numel() for p in params if p.grad is not None))
    timings = {name: [] for name in setups}
    for _ in range(repeats):
        for name, (optimizer, _, _) in setups.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                optimizer.step()
            synchronize(device)
            timings[name].append((time.perf_counter() - start) / steps)
    bandwidth = copy_bandwidth(device)
    baseline = statistics.median(timings["torch AdamW fused"])
    count = setups["torch AdamW fused"][2]
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}, {count / 1e6:.3f}M parameters, "
          f"copy bandwidth {bandwidth / 1e9:.1f} GB/s, {repeats} repeats × {steps} steps")
    print("| optimizer | median step (ms) | × fused AdamW | state bytes/param | bandwidth floor (ms) | × floor |")
    print("|---|---|---|---|---|---|")
    for name, (optimizer, arrays, n) in setups.items():
        median = statistics.median(timings[name])
        floor = arrays * 4 * n / bandwidth if arrays else None
        floor_text = f"{floor * 1e3:.3f}" if floor else "—"
        ratio_floor = f"{median / floor:.2f}" if floor else "—"
        print(f"| {name} | {median * 1e3:.3f} | {median / baseline:.2f} | {state_bytes_per_param(optimizer, n):.3f} "
              f"| {floor_text} | {ratio_floor} |")


def whole_runs(device, steps: int | None) -> None:
    """The sign optimizers over a whole run on the GPT-like set, compile time included (run first in a fresh
    process with an empty compile cache, so that no compile is already done or cached on disk): eager and
    compiled, beside fused AdamW. The default length
    is the one from which `compiled: null` compiles (COMPILE_PAYS_AT ÷ parameters)."""
    from optlab.optim.schema import COMPILE_PAYS_AT

    vocab, width, layers, threads = SETS["gpt"]
    torch.set_num_threads(threads)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()  # compile cold, as a user's first run does
    runs = {"torch AdamW fused": lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True)}
    for name in ("Lion", "Tiger (default rules)", "Signum"):
        runs[f"optlab {name} eager"] = lambda p, make=SIGN_OPTIMIZERS[name]: make(p, False)
        runs[f"optlab {name} compiled (compile included)"] = lambda p, make=SIGN_OPTIMIZERS[name]: make(p, True)
    totals = {}
    for name, make in runs.items():
        params, grads = gpt_shaped_parameters(device, vocab, width, layers)
        for p, g in zip(params, grads):
            p.grad = g
        steps = steps or int(COMPILE_PAYS_AT / sum(p.numel() for p in params)) + 1
        optimizer = make(params)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        synchronize(device)
        totals[name] = time.perf_counter() - start
    print(f"{steps} steps on the GPT-like set ({threads} threads), optimizer steps only, first step (and compile) included:")
    print("| optimizer | whole run (s) | × fused AdamW |\n|---|---|---|")
    for name, seconds in totals.items():
        print(f"| {name} | {seconds:.1f} | {seconds / totals['torch AdamW fused']:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=list(SETS))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    parser.add_argument("--threads", type=int, default=None, help="override each set's thread count")
    parser.add_argument("--only", default=None, help="time only the optimizers whose name matches this regex "
                                                     "(fused AdamW, the baseline, always runs)")
    parser.add_argument("--whole-run", nargs="?", type=int, const=0, default=None, metavar="STEPS",
                        help="instead of the tables: the sign optimizers over a whole run, compile included "
                             "(default length: "
                             "where `compiled: null` starts compiling)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.whole_run is not None:
        whole_runs(device, args.whole_run or None)
        return
    for name in args.sets:
        vocab, width, layers, threads = SETS[name]
        torch.set_num_threads(args.threads or threads)
        print(f"\n## {name} set")
        time_set(device, (vocab, width, layers), args.repeats, args.steps * (20 if name == "tiny" else 1), args.only)


if __name__ == "__main__":
    main()
