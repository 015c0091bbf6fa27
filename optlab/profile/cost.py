"""Panel: cost (docs/science/optimizers.md). What does one step cost against torch's fused AdamW on the same
parameters, and how much state does the optimizer keep per parameter?

The parameters are those of the small GPT (width 128, 2 layers, vocabulary 2048: 0.9M numbers) with
fixed random gradients. Steps of the optimizer and of torch.optim.AdamW(fused=True) alternate, in
rounds, in this one process; the ratio is the median over rounds of (time of the optimizer's steps) /
(time of AdamW's). State bytes per parameter: every tensor in the optimizer's state after the steps,
over the parameter count (AdamW: 8 in float32, Lion: 4, SGD without momentum: 0). A measurement on a
shared machine: the card prints it, it is not judged against a threshold.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from optlab.profile.panel import Battery, Finding, Panel
from optlab.report.figures import plt, save_figure

ROUNDS = {True: 5, False: 11}
STEPS_PER_ROUND = 20
MODEL = {"name": "gpt", "embedding_dim": 128, "context": 32, "n_layer": 2, "n_head": 4}
DATA = {"name": "zipf", "vocab_size": 2048}


def setup(section: dict):
    """(the model's parameters with gradients, optlab's optimizers for `section`) on the cost model."""
    import torch

    from optlab.config import validate_config
    from optlab.data import build_dataset
    from optlab.models import build_model
    from optlab.optim.groups import build_optimizers

    config = validate_config({"model": MODEL, "data": DATA, "optimizer": section, "training": {"device": "cpu"}})
    torch.manual_seed(0)
    model = build_model(config.model, build_dataset(config.data, 0))
    generator = torch.Generator().manual_seed(1)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=generator) * 1e-3
    return model, build_optimizers(model, config)


def state_bytes(optimizers) -> int:
    import torch

    return sum(value.numel() * value.element_size() for optimizer in optimizers for state in optimizer.state.values()
               for value in state.values() if isinstance(value, torch.Tensor) and value.dim() > 0)


def measure(battery: Battery) -> dict[str, Finding]:
    import torch

    reference_model, _ = setup({"name": "adamw"})
    fused = torch.optim.AdamW(reference_model.parameters(), lr=1e-3, fused=True)
    built = {label: setup(section) for label, section in battery.optimizers.items()}
    timings = {label: [] for label in built}

    def timed(step) -> float:
        started = time.perf_counter()
        for _ in range(STEPS_PER_ROUND):
            step()
        return time.perf_counter() - started

    timed(fused.step)
    for _, optimizers in built.values():  # warm-up: state allocated, any compilation done
        for optimizer in optimizers:
            optimizer.step()
    for _ in range(ROUNDS[battery.quick]):
        for label, (_, optimizers) in built.items():
            reference = timed(fused.step)
            timings[label].append(timed(lambda: [optimizer.step() for optimizer in optimizers]) / reference)
    findings = {}
    for label, (model, optimizers) in built.items():
        ratio = statistics.median(timings[label])
        per_parameter = state_bytes(optimizers) / sum(p.numel() for p in model.parameters())
        findings[label] = Finding(f"step {ratio:.2g}× fused AdamW; {per_parameter:.3g} state bytes/parameter", ratio,
                                  {"step_time_vs_fused_adamw": ratio, "state_bytes_per_parameter": per_parameter,
                                   "rounds": len(timings[label])})
    return findings


def figure(battery: Battery, findings: dict[str, Finding], out: Path) -> Path | None:
    labels = list(findings)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.6), layout="constrained")
    bars = left.bar(labels, [findings[label].value for label in labels], color="tab:purple")
    left.bar_label(bars, fmt="%.2f")
    left.axhline(1.0, color="black", linestyle="--", linewidth=1)
    left.set(ylabel="step time / fused AdamW's (median)", title="Step time")
    bars = right.bar(labels, [findings[label].numbers["state_bytes_per_parameter"] for label in labels], color="tab:gray")
    right.bar_label(bars, fmt="%.3g")
    right.set(ylabel="bytes per parameter", title="Optimizer state")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=20)
    return save_figure(fig, out / "cost.png")


PANEL = Panel("cost", "Cost", "docs/science/optimizers.md",
              "median over alternating rounds of step time / torch fused AdamW's on the same 0.9M parameters; state "
              "bytes per parameter (measured, not judged)", measure, figure)
