"""Figure saving, and the generic curves of any run. matplotlib runs with the Agg backend (no display):
modules that draw import `plt` from here, so the backend is set before pyplot loads."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def save_figure(figure, path: Path) -> Path:
    """Lay out (unless the figure has its own layout engine), write the PNG, close the figure; return its path."""
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def metric_curves(runs: list, out: Path, column: str, ylabel: str, title: str, filename: str,
                  log_y: bool = False) -> Path | None:
    """One line per run of `column` against the step (None when no run logged it)."""
    curves = [run for run in runs if column in run.metrics and run.metrics[column].notna().any()]
    if not curves:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for run in curves:
        axes.plot(run.metrics["step"], run.metrics[column], label=run.name)
    axes.set(xlabel="step", ylabel=ylabel, title=title, yscale="log" if log_y else "linear")
    axes.legend(fontsize=7)
    return save_figure(figure, out / filename)
