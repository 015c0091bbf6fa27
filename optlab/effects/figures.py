"""Figures shared by the effects of variant sweeps (named variants crossed with a grid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optlab.effects.core import SweepContext
from optlab.report.figures import plt, save_figure


def variant_lines(context: SweepContext, x: str, ylabel: str, name: str, xscale: str = "log",
                  marks: tuple[tuple[float, str], ...] = ()) -> Path:
    """The metric (seed mean) against grid axis `x`, one line per variant, and a vertical line at each
    (value, label) of `marks` (a rule's prediction, a measured optimum)."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for variant, rows in context.cells.groupby("variant", sort=False):
        rows = rows.sort_values(x)
        axes.plot(rows[x], rows["mean"].where(np.isfinite(rows["mean"])), "o-", label=variant)
    for number, (value, label) in enumerate(marks):
        axes.axvline(value, color="black", linestyle=("--", ":", "-.")[number % 3], linewidth=1, label=label)
    axes.set(xscale=xscale, xlabel=x, ylabel=ylabel, title=context.sweep.name)
    axes.legend(fontsize=7)
    return save_figure(figure, context.out / f"{name}.png")


def first_seed_curves(context: SweepContext, column: str, name: str, log_y: bool = False) -> Path | None:
    """`column` over steps for the first seed's trial of each cell; None if no trial logs it."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    first_seed = context.finished["training.seed"].min()
    shown = 0
    for _, row in context.finished[context.finished["training.seed"] == first_seed].iterrows():
        metrics = context.run(row["trial"]).metrics
        if column in metrics:
            label = " ".join(f"{row[k]:g}" if isinstance(row[k], float) else str(row[k]) for k in context.keys)
            axes.plot(metrics["step"], metrics[column], label=label)
            shown += 1
    if not shown:
        plt.close(figure)
        return None
    axes.set(xlabel="step", ylabel=column, yscale="log" if log_y else "linear", title=f"{column} (seed {first_seed})")
    axes.legend(fontsize=6)
    return save_figure(figure, context.out / f"{name}.png")
