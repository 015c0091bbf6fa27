"""Panel: missing and non-finite gradients (docs/science/optimizers.md). What does one step do to a
parameter whose gradient is None, all zero, or holds NaN or inf?

For each case the optimizer steps a 2 × 8 weight once from a fresh state, and once after three steps
of random gradients (when momentum is stale). The outcome: "stays" (bit-identical), "moves" (finite
change: decay, or a stale momentum), or "corrupts" (a non-finite value appears in the parameter).
"""

from __future__ import annotations

from pathlib import Path

from optlab.profile.panel import Battery, Finding, Panel
from optlab.report.figures import plt, save_figure

CASES = ("None", "zero", "NaN", "inf")
OUTCOMES = ("stays", "moves", "corrupts")
WARM_UP_STEPS = 3


def outcome(section: dict, case: str, warm_up: int) -> str:
    import torch

    from optlab.config import validate_config
    from optlab.optim.groups import build_optimizers

    config = validate_config({"optimizer": section})
    model = torch.nn.Linear(8, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.linspace(-1, 1, 16).reshape(2, 8))
    optimizers = build_optimizers(model, config)
    generator = torch.Generator().manual_seed(0)
    for _ in range(warm_up):
        model.weight.grad = torch.randn(2, 8, generator=generator)
        for optimizer in optimizers:
            optimizer.step()
    before = model.weight.detach().clone()
    grad = {"None": None, "zero": torch.zeros(2, 8), "NaN": torch.full((2, 8), 0.5).index_fill_(1, torch.tensor([3]), float("nan")),
            "inf": torch.full((2, 8), 0.5).index_fill_(1, torch.tensor([3]), float("inf"))}[case]
    model.weight.grad = grad
    for optimizer in optimizers:
        optimizer.step()
    after = model.weight.detach()
    if not torch.isfinite(after).all():
        return "corrupts"
    return "stays" if torch.equal(after, before) else "moves"


def measure(battery: Battery) -> dict[str, Finding]:
    findings = {}
    for label, section in battery.optimizers.items():
        table = {f"{case} ({when})": outcome(section, case, steps) for case in CASES
                 for when, steps in (("fresh", 0), ("warm", WARM_UP_STEPS))}
        corrupted = [key for key, value in table.items() if value == "corrupts"]
        text = "; ".join(f"{case}: {table[f'{case} (fresh)']}/{table[f'{case} (warm)']}" for case in CASES)
        findings[label] = Finding(text, float(len(corrupted)), {"outcomes": table})
    return findings


def figure(battery: Battery, findings: dict[str, Finding], out: Path) -> Path | None:
    """A grid: optimizer × case (fresh/warm), coloured by outcome."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    labels = list(findings)
    columns = list(next(iter(findings.values())).numbers["outcomes"])
    codes = np.array([[OUTCOMES.index(findings[label].numbers["outcomes"][column]) for column in columns] for label in labels])
    fig, axis = plt.subplots(figsize=(1.0 + 0.9 * len(columns), 0.9 + 0.45 * len(labels)), layout="constrained")
    axis.imshow(codes, cmap=ListedColormap(["tab:green", "tab:orange", "tab:red"]), vmin=0, vmax=2, aspect="auto")
    for row, label in enumerate(labels):
        for column, key in enumerate(columns):
            axis.text(column, row, findings[label].numbers["outcomes"][key], ha="center", va="center", fontsize=8)
    axis.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    axis.set_yticks(range(len(labels)), labels)
    axis.set_title("One step on a gradient that is None, zero, NaN or inf (fresh / after warm-up)", fontsize=9)
    return save_figure(fig, out / "gradients.png")


PANEL = Panel("gradients", "Missing and non-finite gradients", "docs/science/optimizers.md",
              "one step on a 2 × 8 weight whose gradient is None, zero, NaN or inf, fresh and after 3 warm-up steps: "
              "stays (bit-identical), moves (finite change) or corrupts (non-finite parameter)", measure, figure)
