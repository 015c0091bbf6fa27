"""η*(B): the optimal learning rate per batch size of a batch × lr sweep (docs/science/scaling-laws.md §2,
"General protocol"), shared by the scaling-law effects and offered on its own as `optimal_lr_vs_batch`
(report only) for any sweep over `batch_key` × `lr_key`.

Per batch size the seed-aggregated metric is minimised over the lr grid and the best grid lr refined by
a parabola in log lr (a best lr at the grid's edge gives no η*). With `fit_noise_scale` the SGD law
η*(B) = η_max/(1 + B_noise/B) (§1.2) is fitted. With `group_key` (e.g. one optimizer or ε per group)
there is one η*(B) curve per group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from optlab.effects.core import Effect, EffectReport, SweepContext
from optlab.effects.fits import aggregate_seeds, fit_noise_scale, refine_optimum
from optlab.report.figures import plt, save_figure
from optlab.report.tables import plus_minus, to_markdown
from optlab.runs import atomic_write_text

Theory = Callable[[np.ndarray], np.ndarray]


def optimal_lrs(cells: pd.DataFrame, batch: str, lr: str) -> pd.DataFrame:
    """One row per batch size: the refined η*, the best grid lr, its metric and the flag of the refinement."""
    rows = []
    for batch_size, group in cells.groupby(batch):
        group = group.sort_values(lr)
        optimum = refine_optimum(group[lr].to_numpy(float), group["mean"].to_numpy(float))
        rows.append({batch: batch_size, "eta_star": optimum.lr, "best_grid_lr": optimum.grid_lr,
                     "best_metric": optimum.value, "flag": optimum.flag})
    return pd.DataFrame(rows)


def scaling_fits(optima: pd.DataFrame, batch: str) -> dict:
    """B_noise and η_max of the SGD law fitted to the batch sizes that have an η* (needs three)."""
    usable = optima[optima["eta_star"].notna()]
    if len(usable) < 3:
        return {}
    return fit_noise_scale(usable[batch].to_numpy(float), usable["eta_star"].to_numpy(float))


def curve(optima: pd.DataFrame, batch: str) -> tuple[np.ndarray, np.ndarray]:
    """(batch sizes, η*) sorted by batch size; η* is NaN where the refinement gave none."""
    rows = optima.sort_values(batch)
    return rows[batch].to_numpy(float), rows["eta_star"].to_numpy(float)


def optimal_lr_section(context: SweepContext, theory: Optional[Theory] = None) -> tuple[EffectReport, pd.DataFrame, dict]:
    """η*(B) of the whole sweep, its fit, table and figures (heatmap, metric vs lr, η*(B) with `theory`).
    Returns (the report section, the η* table, the fits) for an effect to judge."""
    sweep, batch, lr = context.sweep, context.sweep.batch_key, context.sweep.lr_key
    cells = aggregate_seeds(context.finished, [batch, lr])
    atomic_write_text(context.out / "cells.csv", cells.to_csv(index=False))
    optima = optimal_lrs(cells, batch, lr)
    atomic_write_text(context.out / "eta_star.csv", optima.to_csv(index=False))
    fits = scaling_fits(optima, batch) if sweep.fit_noise_scale else {}
    lines = ["## η*(B)", "", "η* is the parabola vertex in log lr around the best grid lr (flag `edge`: best "
             "lr at the grid's edge, no η*).", "", to_markdown(optima), ""]
    if fits:
        lines += [f"Fit η*(B) = η_max/(1 + B_noise/B) (±: standard errors from the fit's covariance): "
                  f"{plus_minus('B_noise', fits['B_noise'], fits['B_noise_se'])}, "
                  f"{plus_minus('η_max', fits['eta_max'], fits['eta_max_se'])}", ""]
    figures = [heatmap(cells, batch, lr, context.out), metric_vs_lr(cells, batch, lr, context.out),
               eta_star_plot(optima, fits, batch, context.out, theory=theory)]
    return EffectReport(lines=lines, figures=figures, data={"eta_star": optima.to_dict(orient="records"), "fits": fits}), optima, fits


def group_label(value) -> str:
    """A readable label for a group value: `adam eps=0.001` for an optimizer mapping, else the value."""
    if isinstance(value, dict):
        details = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
                           if k not in ("name", "lr", "betas", "momentum"))
        return f"{value.get('name', '')} {details}".strip()
    return f"{value:g}" if isinstance(value, float) else str(value)


def grouped_optimal_lrs(context: SweepContext) -> tuple[EffectReport, pd.DataFrame]:
    """η*(B) for each value of `group_key` (e.g. each optimizer or ε), in one table and one figure; the
    η* table has a `group` column."""
    sweep, batch, lr = context.sweep, context.sweep.batch_key, context.sweep.lr_key
    trials = context.trials.assign(group=context.trials[sweep.group_key].map(group_label))
    finished = context.finished.assign(group=context.finished[sweep.group_key].map(group_label))
    tables = []
    for label in dict.fromkeys(trials["group"]):  # in sweep order
        cells = aggregate_seeds(finished[finished["group"] == label], [batch, lr])
        tables.append(optimal_lrs(cells, batch, lr).assign(group=label))
    optima = pd.concat(tables, ignore_index=True)
    atomic_write_text(context.out / "eta_star.csv", optima.to_csv(index=False))
    wide = optima.pivot(index=batch, columns="group", values="eta_star")[list(dict.fromkeys(optima["group"]))]
    lines = [f"## η*(B) per {sweep.group_key}", "", to_markdown(wide.reset_index()), ""]
    figure, axes = plt.subplots(figsize=(7, 5))
    for label in wide.columns:
        axes.plot(wide.index, wide[label], "o-", label=label, markersize=3)
    axes.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="η*", title=f"η*(B) per {sweep.group_key}")
    axes.legend(fontsize=7)
    figures = [save_figure(figure, context.out / "eta_star_groups.png")]
    return EffectReport(lines=lines, figures=figures, data={"eta_star": optima.to_dict(orient="records")}), optima


def heatmap(cells: pd.DataFrame, batch: str, lr: str, out: Path) -> Path:
    table = cells.pivot(index=lr, columns=batch, values="mean").sort_index()
    values = table.to_numpy(float)
    figure, axes = plt.subplots(figsize=(7, 5))
    shown = np.where(np.isfinite(values), values, np.nan)
    image = axes.imshow(shown, aspect="auto", origin="lower", cmap="viridis")
    diverged = np.argwhere(np.isposinf(values))
    axes.scatter(diverged[:, 1], diverged[:, 0], marker="x", color="red", s=12, label="diverged")
    axes.set_xticks(range(len(table.columns)), [f"{c:g}" for c in table.columns], rotation=45)
    step = max(1, len(table.index) // 10)
    axes.set_yticks(range(0, len(table.index), step), [f"{v:.3g}" for v in table.index[::step]])
    axes.set(xlabel=batch, ylabel=lr, title="metric (seed mean) over lr × batch size")
    figure.colorbar(image, ax=axes)
    if len(diverged):
        axes.legend(loc="upper left", fontsize=7)
    return save_figure(figure, out / "heatmap.png")


def metric_vs_lr(cells: pd.DataFrame, batch: str, lr: str, out: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for batch_size, group in cells.groupby(batch):
        group = group.sort_values(lr)
        axes.plot(group[lr], group["mean"].where(np.isfinite(group["mean"])), label=f"B = {batch_size:g}")
    axes.set(xscale="log", xlabel=lr, ylabel="metric (seed mean)", title="metric vs lr per batch size")
    axes.legend(fontsize=7, ncol=2)
    return save_figure(figure, out / "metric_vs_lr.png")


def eta_star_plot(optima: pd.DataFrame, fits: dict, batch: str, out: Path, theory: Optional[Theory] = None) -> Path | None:
    """η*(B) on log-log axes with the fit and the theory curve; None when no batch size has an η*."""
    usable = optima[optima["eta_star"].notna()]
    if usable.empty:
        return None
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.plot(usable[batch], usable["eta_star"], "o", label="measured η* (refined)")
    grid = np.geomspace(optima[batch].min(), optima[batch].max(), 200)
    if fits:
        axes.plot(grid, fits["eta_max"] / (1 + fits["B_noise"] / grid), "-",
                  label=f"fit η_max/(1+B_noise/B): B_noise={fits['B_noise']:.3g}, η_max={fits['eta_max']:.3g}")
    if theory is not None:
        axes.plot(grid, theory(grid), "--", color="black", label="theory")
    axes.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="η*", title="optimal lr vs batch size")
    axes.legend(fontsize=7)
    return save_figure(figure, out / "eta_star.png")


def _report(context: SweepContext) -> EffectReport:
    if context.sweep.group_key:
        return grouped_optimal_lrs(context)[0]
    return optimal_lr_section(context)[0]


effect = Effect("optimal_lr_vs_batch", "docs/science/scaling-laws.md §2 (general protocol)", "sweep", _report,
                summary="η*(B) per batch size (parabola-refined), the SGD-law fit, heatmap; report only")
