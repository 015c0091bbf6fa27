"""The report of a sweep directory: the tidy trials table with each trial's number under the sweep's
metric, then the section of the sweep's effect (optlab/effects: its analysis, verdicts and figures), or,
for a sweep that names no effect, the metric per cell and one figure. Reads only what the sweep wrote,
through optlab/sweep (manifest, trials) and optlab/runs.py (run directories)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optlab.effects.core import EffectReport, SweepContext
from optlab.effects.fits import trial_metric
from optlab.report.figures import drop_stale_figures, plt, save_figure
from optlab.report.tables import to_markdown
from optlab.runs import FINISHED, atomic_write_text, read_metrics, write_json


def write_sweep_report(sweep_dir: Path, out: Path | None = None) -> tuple[Path, dict]:
    from optlab.effects import load_effect
    from optlab.sweep import trial_results

    sweep, trials, configs = trial_results(sweep_dir)
    out = out or sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    trials["metric"] = [trial_metric(row, sweep.metric, _metrics_table(sweep_dir, row, sweep.metric))
                        for _, row in trials.iterrows()]
    atomic_write_text(out / "trials.csv", trials.to_csv(index=False))
    lines = [f"# Sweep report: {sweep.name}", "", sweep.description.strip(), "",
             f"Trials: {len(trials)} ({', '.join(f'{n} {s}' for s, n in trials['state'].value_counts().items())}). "
             f"Metric per trial, then per cell: {sweep.metric.describe()} "
             f"({'smaller' if sweep.metric.minimize else 'larger'} is better; diverged = +inf).", ""]
    context = SweepContext(sweep, sweep_dir, out, trials, configs)
    if not trials["state"].isin(FINISHED).any():
        section = EffectReport(lines=["No trial has finished yet: nothing to judge.", ""])
    elif sweep.effect:
        effect = load_effect(sweep.effect)
        section = effect.report(context)
        lines += [f"Effect: `{effect.name}` ({effect.section}).", ""]
    else:
        section = cells_section(context)
    if section.verdicts:
        lines += ["## Verdicts", ""] + [f"- {verdict.line()}" for verdict in section.verdicts] + [""]
    lines += section.lines
    figures = [path for path in section.figures if path]
    if figures:
        lines += ["## Figures", ""] + [f"![{path.stem}]({path.name})" for path in figures] + [""]
    failed = trials[trials["state"] == "failed"]
    if len(failed):
        lines += ["## Failed trials", "", to_markdown(failed[["trial", "error"]]), ""]
    summary = {"sweep": sweep.name, "metric": sweep.metric.describe(),
               "verdicts": [verdict.as_json() for verdict in section.verdicts], **section.data}
    drop_stale_figures(out, figures)
    atomic_write_text(out / "report.md", "\n".join(lines))
    write_json(out / "report.json", summary)
    return out, summary


def cells_section(context: SweepContext) -> EffectReport:
    """A sweep without an effect: the metric per cell, and the metric against the numeric axis with the
    most values, one line per combination of the other axes."""
    cells = context.cells
    atomic_write_text(context.out / "cells.csv", cells.to_csv(index=False))
    lines = [f"## Metric per cell ({context.sweep.metric.column})", "", to_markdown(cells), "",
             "Name an effect (`effect:`, `optlab list effects`) for its analysis and verdicts.", ""]
    data = {"cells": cells.to_dict(orient="records")}
    axes_keys = [key for key in context.keys if cells[key].nunique() > 1]
    numeric = [key for key in axes_keys if pd.api.types.is_numeric_dtype(cells[key])]
    if not numeric:
        return EffectReport(lines=lines, data=data)
    x = max(numeric, key=lambda key: cells[key].nunique())
    others = [key for key in axes_keys if key != x]
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for values, rows in (cells.groupby(others, sort=False) if others else [((), cells)]):
        values = values if isinstance(values, tuple) else (values,)
        label = ", ".join(f"{key.split('.')[-1]}={value:.3g}" if isinstance(value, float) else f"{key.split('.')[-1]}={value}"
                          for key, value in zip(others, values))
        rows = rows.sort_values(x)
        axes.plot(rows[x], rows["mean"].where(np.isfinite(rows["mean"])), "o-", label=label or None)
    spread = cells[x].max() / cells[x].min() if (cells[x] > 0).all() else 0
    axes.set(xscale="log" if spread > 10 else "linear", xlabel=x, ylabel=context.sweep.metric.describe(),
             title=f"{context.sweep.name} (diverged cells not drawn)")
    if others:
        axes.legend(fontsize=7)
    return EffectReport(lines=lines, figures=[save_figure(figure, context.out / "metric_per_cell.png")], data=data)


def _metrics_table(sweep_dir: Path, row: pd.Series, metric):
    if metric.reduce == "final" or row["state"] != "completed":
        return None
    return read_metrics(sweep_dir / "trials" / row["trial"])
