"""Figure saving, and the generic figures of any run. matplotlib runs with the Agg backend (no display):
modules that draw import `plt` from here, so the backend is set before pyplot loads."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*")
SMOOTHING_LOGS = 5  # the training-loss curve: a centred rolling mean over this many logged steps


def save_figure(figure, path: Path) -> Path:
    """Lay out (unless the figure has its own layout engine), write the PNG, close the figure; return its path."""
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def run_labels(runs: list) -> list[str]:
    """Legend labels: run names without the folder they share (`embedding_drift/tiger` → `tiger`); runs of
    one name are told apart by their optimizer settings, else by their directory."""
    from optlab.report.tables import optimizer_label

    names = [run.name for run in runs]
    shared = os.path.commonpath(names) if len(set(names)) > 1 else ""
    labels = [name[len(shared):].lstrip("/") if shared else name for name in names]
    if len(set(labels)) < len(labels):
        optimizers = [optimizer_label(run) for run in runs]
        unique = len(set(optimizers)) == len(optimizers)
        labels = [f"{label}: {optimizer}" if unique else f"{label} ({run.path.name})"
                  for label, optimizer, run in zip(labels, optimizers, runs)]
    return labels


def run_style(index: int) -> dict:
    """Colour, line style and marker of the index-th run: curves that coincide stay distinguishable."""
    return {"color": f"C{index % 10}", "linestyle": LINE_STYLES[index % len(LINE_STYLES)],
            "marker": MARKERS[index % len(MARKERS)], "markevery": 0.1, "markersize": 4}


def _logged(run, column: str):
    """(steps, values) of the rows where `column` is logged and finite, or None."""
    if column not in run.metrics:
        return None
    rows = run.metrics[["step", column]].dropna()
    rows = rows[np.isfinite(rows[column])]
    return (rows["step"].to_numpy(), rows[column].to_numpy()) if len(rows) else None


def loss_curves(runs: list, out: Path) -> Path | None:
    """Training loss (faint: the logged batches; solid: a centred rolling mean over SMOOTHING_LOGS logs)
    and held-out loss (dashed, where logged), one colour per run. The y-range leaves out the first tenth
    of the run, where the initial loss (ln V for a language model) would flatten every difference."""
    labels = run_labels(runs)
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    shown, visible = 0, []
    for index, (run, label) in enumerate(zip(runs, labels)):
        style = run_style(index)
        train = _logged(run, "loss")
        if train is not None:
            steps, values = train
            smooth = pd.Series(values).rolling(SMOOTHING_LOGS, center=True, min_periods=1).mean().to_numpy()
            axes.plot(steps, values, color=style["color"], alpha=0.2, linewidth=0.8)
            axes.plot(steps, smooth, color=style["color"], linestyle="-", label=f"{label}: training")
            visible.append(smooth[steps >= 0.1 * steps.max()])
            shown += 1
        held_out = _logged(run, "eval_loss")
        if held_out is not None:
            axes.plot(*held_out, color=style["color"], linestyle="--", marker=style["marker"], markersize=4,
                      label=f"{label}: held-out")
            visible.append(held_out[1][held_out[0] >= 0.1 * held_out[0].max()])
            shown += 1
    if not shown:
        plt.close(figure)
        return None
    kept = np.concatenate([part for part in visible if len(part)]) if any(len(part) for part in visible) else None
    if kept is not None:
        low, high = kept.min(), kept.max()
        margin = 0.08 * (high - low) or 0.05 * abs(high) or 1.0
        axes.set_ylim(low - margin, high + margin)
    axes.set(xlabel="step", ylabel="loss", title=f"Loss (training: rolling mean of {SMOOTHING_LOGS} logged batches)")
    axes.legend(fontsize=7, ncol=2 if shown > 8 else 1)
    return save_figure(figure, out / "loss.png")


DYNAMICS = (("lr", "learning rate", "linear"), ("grad_norm", "gradient norm (before clipping)", "log"),
            ("update_rms", "update RMS", "log"), ("update_to_param_rms", "update RMS / parameter RMS", "log"))


def dynamics_panels(runs: list, out: Path) -> Path | None:
    """The run's optimisation at a glance: lr, gradient norm, update RMS and the relative update size
    against the step, one panel for each of these columns that some run logged."""
    present = [(column, title, scale) for column, title, scale in DYNAMICS
               if any(_logged(run, column) is not None for run in runs)]
    if not present:
        return None
    labels = run_labels(runs)
    figure, axes = plt.subplots(1, len(present), figsize=(3.6 * len(present) + 0.5, 3.8), squeeze=False,
                                layout="constrained")
    for axis, (column, title, scale) in zip(axes[0], present):
        for index, (run, label) in enumerate(zip(runs, labels)):
            curve = _logged(run, column)
            if curve is not None:
                positive = curve[1] > 0 if scale == "log" else np.ones(len(curve[1]), bool)
                axis.plot(curve[0][positive], curve[1][positive], label=label, **run_style(index))
        axis.set(xlabel="step", title=title, yscale=scale)
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncol=min(len(runs), 4), fontsize=8)
    return save_figure(figure, out / "dynamics.png")


def metric_curves(runs: list, out: Path, column: str, ylabel: str, title: str, filename: str,
                  log_y: bool = False) -> Path | None:
    """One line per run of `column` against the step (None when no run logged it)."""
    curves = [(index, run, label) for index, (run, label) in enumerate(zip(runs, run_labels(runs)))
              if _logged(run, column) is not None]
    if not curves:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for index, run, label in curves:
        axes.plot(*_logged(run, column), label=label, **run_style(index))
    axes.set(xlabel="step", ylabel=ylabel, title=title, yscale="log" if log_y else "linear")
    axes.legend(fontsize=7)
    return save_figure(figure, out / filename)


def drop_stale_figures(out: Path, figures: list) -> None:
    """In a folder an earlier report wrote (it holds report.json), delete the PNGs this report did not
    write, so a figure that was renamed or dropped does not linger beside the new ones."""
    if not (out / "report.json").is_file():
        return
    kept = {Path(path).name for path in figures if path}
    for stale in out.glob("*.png"):
        if stale.name not in kept:
            stale.unlink(missing_ok=True)
