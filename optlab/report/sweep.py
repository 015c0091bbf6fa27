"""The report of a sweep directory: a tidy trials table, the seed-aggregated cell table, η*(B) with
its fits, plots (heatmap over lr × batch size, metric-vs-lr per batch size, η*(B) on log-log axes)
and the verdicts of the sweep's effect. Reads only what the sweep wrote (manifest, trial dirs)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from optlab.report.fits import (aggregate_seeds, bootstrap_critical_batch, fit_hyperbola,  # noqa: E402
                                fit_noise_scale, refine_optimum, trial_metric)
from optlab.config import apply_override  # noqa: E402
from optlab.runs import atomic_write_text, write_json  # noqa: E402


def write_sweep_report(sweep_dir: Path, out: Path | None = None):
    from optlab.report.tables import to_markdown
    from optlab.report.verdicts import sweep_verdicts
    from optlab.sweep import load_sweep, trial_results, SWEEP_FILE

    sweep, trials = trial_results(sweep_dir)
    _, base = load_sweep(sweep_dir / SWEEP_FILE)
    for key, value in sweep.set.items():  # the base every trial shared, for the theory and the verdicts
        apply_override(base, key.split("."), value, str(sweep_dir / SWEEP_FILE))
    out = out or sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    trials["metric"] = [trial_metric(row, sweep.metric, _metrics_table(sweep_dir, row, sweep.metric))
                        for _, row in trials.iterrows()]
    atomic_write_text(out / "trials.csv", trials.to_csv(index=False))
    lines = [f"# Sweep report: {sweep.name}", "", sweep.description.strip(), "",
             f"Trials: {len(trials)} ({', '.join(f'{n} {s}' for s, n in trials['state'].value_counts().items())}). "
             f"Metric per trial, then per cell: {sweep.metric.describe()} "
             f"({'smaller' if sweep.metric.minimize else 'larger'} is better; diverged = +inf).", ""]
    summary = {"sweep": sweep.name, "metric": sweep.metric.describe(), "verdicts": []}
    batch, lr = sweep.batch_key, sweep.lr_key
    finished = trials["state"].isin(["completed", "diverged"])
    one_lr_per_batch = batch in trials and (lr not in trials or trials.groupby(batch)[lr].nunique().max() == 1)
    from optlab.report.effects import EFFECTS, effect_section

    if sweep.effect in EFFECTS:
        lines += effect_section(sweep, trials, sweep_dir, out, summary)
    elif batch in trials and not finished.any():
        lines += ["No trial has finished yet: nothing to fit.", ""]
    elif batch in trials and one_lr_per_batch:
        lines += steps_vs_batch_section(sweep, trials, base, out, summary)
    elif batch in trials and lr in trials and sweep.metric.reduce == "steps_to_target":
        lines += critical_batch_section(sweep, trials, base, sweep_dir, out, summary)
    elif batch in trials and lr in trials and sweep.group_key:
        lines += grouped_section(sweep, trials, base, out, summary)
    elif batch in trials and lr in trials:
        cells = aggregate_seeds(trials[trials["state"].isin(["completed", "diverged"])], [batch, lr])
        atomic_write_text(out / "cells.csv", cells.to_csv(index=False))
        optima = optimal_lrs(cells, batch, lr)
        atomic_write_text(out / "eta_star.csv", optima.to_csv(index=False))
        fits = scaling_fits(optima, batch) if sweep.fit_noise_scale else {}
        summary.update(eta_star=optima.to_dict(orient="records"), fits=fits)
        verdicts = sweep_verdicts(sweep, optima, fits, base)
        summary["verdicts"] = [v.as_json() for v in verdicts]
        if verdicts:
            lines += ["## Verdicts", ""] + [f"- {v.line()}" for v in verdicts] + [""]
        lines += ["## η*(B)", "", "η* is the parabola vertex in log lr around the best grid lr (flag `edge`: best "
                  "lr at the grid's edge, no η*).", "", to_markdown(optima), ""]
        if fits:
            lines += ["Fits: " + ", ".join(f"{k} = {v:.4g}" for k, v in fits.items() if v is not None), ""]
        figures = [heatmap(cells, batch, lr, out), curves(cells, batch, lr, out),
                   eta_star_plot(optima, fits, batch, out, theory=_theory(sweep, base))]
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures if p] + [""]
    failed = trials[trials["state"] == "failed"]
    if len(failed):
        lines += ["## Failed trials", "", to_markdown(failed[["trial", "error"]]), ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    write_json(out / "report.json", summary)
    return out, summary


def group_label(value) -> str:
    """A readable label for a group value: `adam eps=0.001` for an optimizer mapping, else the value."""
    if isinstance(value, dict):
        details = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
                           if k not in ("name", "lr", "betas", "momentum"))
        return f"{value.get('name', '')} {details}".strip()
    return f"{value:g}" if isinstance(value, float) else str(value)


def grouped_section(sweep, trials: pd.DataFrame, base: dict, out: Path, summary: dict) -> list[str]:
    """η*(B) for each value of `group_key` (e.g. each optimizer or ε), on one figure."""
    from optlab.report.tables import to_markdown
    from optlab.report.verdicts import sweep_verdicts

    batch, lr = sweep.batch_key, sweep.lr_key
    trials = trials.assign(group=trials[sweep.group_key].map(group_label))
    finished = trials[trials["state"].isin(["completed", "diverged"])]
    tables = []
    for label in dict.fromkeys(trials["group"]):  # in sweep order
        cells = aggregate_seeds(finished[finished["group"] == label], [batch, lr])
        tables.append(optimal_lrs(cells, batch, lr).assign(group=label))
    optima = pd.concat(tables, ignore_index=True)
    atomic_write_text(out / "eta_star.csv", optima.to_csv(index=False))
    verdicts = sweep_verdicts(sweep, optima, {}, base)
    summary.update(eta_star=optima.to_dict(orient="records"), verdicts=[v.as_json() for v in verdicts])
    lines = ["## Verdicts", ""] + [f"- {v.line()}" for v in verdicts] + [""] if verdicts else []
    wide = optima.pivot(index=batch, columns="group", values="eta_star")[list(dict.fromkeys(optima["group"]))]
    lines += [f"## η*(B) per {sweep.group_key}", "", to_markdown(wide.reset_index()), ""]
    figure, axes = plt.subplots(figsize=(7, 5))
    for label in wide.columns:
        axes.plot(wide.index, wide[label], "o-", label=label, markersize=3)
    axes.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="η*", title=f"η*(B) per {sweep.group_key}")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "eta_star_groups.png", dpi=110)
    plt.close(figure)
    return lines + ["## Figures", "", "![eta_star_groups](eta_star_groups.png)", ""]


def steps_vs_batch_section(sweep, trials: pd.DataFrame, base: dict, out: Path, summary: dict) -> list[str]:
    """One lr per batch size (e.g. each B at its own tuned lr): the metric per B over seeds, and for a
    steps-to-target metric the hyperbola S = S_min + E_min/B (scaling-laws.md §1.3)."""
    from optlab.report.tables import to_markdown
    from optlab.report.verdicts import steps_vs_batch_verdicts, hyperbola_range

    batch = sweep.batch_key
    per_batch = aggregate_seeds(trials[trials["state"].isin(["completed", "diverged"])], [batch])
    per_batch["examples_median"] = per_batch["median"] * per_batch[batch]
    atomic_write_text(out / "cells.csv", per_batch.to_csv(index=False))
    lines = []
    fits = {}
    if sweep.metric.reduce == "steps_to_target":
        low, high = hyperbola_range(sweep)
        usable = per_batch[(per_batch[batch] >= low) & (per_batch[batch] <= high) & np.isfinite(per_batch["median"])]
        if len(usable) >= 3:
            fits = fit_hyperbola(usable[batch].to_numpy(float), usable["median"].to_numpy(float))
            fits["fitted_over_B"] = [float(low), float(high)]
    verdicts = steps_vs_batch_verdicts(sweep, per_batch, base)
    summary.update(per_batch=per_batch.to_dict(orient="records"), fits=fits,
                   verdicts=[v.as_json() for v in verdicts])
    if verdicts:
        lines += ["## Verdicts", ""] + [f"- {v.line()}" for v in verdicts] + [""]
    lines += ["## Metric per batch size (seed median, mean, spread)", "", to_markdown(per_batch), ""]
    if fits:
        lines += [f"Hyperbola S = S_min + E_min/B over B ∈ [{fits['fitted_over_B'][0]:g}, {fits['fitted_over_B'][1]:g}]: "
                  f"S_min = {fits['S_min']:.3g}, E_min = {fits['E_min']:.4g}, B_crit = E_min/S_min = {fits['B_crit']:.3g}", ""]
    figure = steps_plot(per_batch, batch, fits, out)
    lines += ["## Figures", "", f"![{figure.stem}]({figure.name})", ""]
    return lines


def critical_batch_section(sweep, trials: pd.DataFrame, base: dict, sweep_dir: Path, out: Path, summary: dict) -> list[str]:
    """Steps to target with an lr grid (scaling-laws.md Exp D): S(B) = min over lr of the seed-median steps,
    E(B) = B·S(B), the hyperbola S = S_min + E_min/B (weights 1/S) and B_crit = E_min/S_min, against the
    exact noise scales the model logged at θ_0 and where each best-lr run reached the target."""
    import json

    from optlab.report.tables import to_markdown
    from optlab.report.verdicts import critical_batch_verdicts

    batch, lr = sweep.batch_key, sweep.lr_key
    finished = trials[trials["state"].isin(["completed", "diverged"])]
    cells = aggregate_seeds(finished, [batch, lr])
    atomic_write_text(out / "cells.csv", cells.to_csv(index=False))
    best = cells.loc[cells.groupby(batch)["median"].idxmin()].sort_values(batch)
    per_batch = pd.DataFrame({batch: best[batch].to_numpy(), "S": best["median"].to_numpy(),
                              "best_lr": best[lr].to_numpy()})
    per_batch["E"] = per_batch[batch] * per_batch["S"]
    refined = optimal_lrs(cells.rename(columns={"mean": "mean_steps", "median": "mean"}), batch, lr)
    per_batch["eta_star"] = refined["eta_star"].to_numpy()  # the parabola vertex in log lr (§6), on the median steps
    per_batch["eta_star_flag"] = refined["flag"].to_numpy()
    reached = per_batch[np.isfinite(per_batch["S"])]
    fits = fit_hyperbola(reached[batch].to_numpy(float), reached["S"].to_numpy(float), relative=True) if len(reached) >= 3 else {}
    interval = bootstrap_critical_batch(finished, batch, lr) if fits else None
    if interval:
        fits["B_crit_bootstrap_5_95"] = list(interval)
    noise = {}
    at_best = finished.merge(best[[batch, lr]], on=[batch, lr])
    for key in ("exact_b_simple", "exact_b_noise"):
        column = f"final.noise_scale.{key}"
        if column in at_best:
            values = at_best[column][at_best["state"] == "completed"].dropna()
            noise[f"{key}_at_target"] = float(values.median()) if len(values) else None
            noise[f"{key}_at_target_range"] = [float(values.min()), float(values.max())] if len(values) else None
    first = sweep_dir / "trials" / finished["trial"].iloc[0] / "summary.json" if len(finished) else None
    initial = json.loads(first.read_text()).get("initial_metrics", {}) if first and first.is_file() else {}
    for key in ("exact_b_simple", "exact_b_noise"):
        if f"noise_scale.{key}" in initial:
            noise[f"{key}_at_start"] = initial[f"noise_scale.{key}"]
    sampled = sampled_noise_scales_at_levels(sweep_dir, at_best[at_best["state"] == "completed"], batch, sweep.metric.target)
    if len(sampled):
        atomic_write_text(out / "sampled_noise_scales.csv", sampled.to_csv(index=False))
    verdicts = critical_batch_verdicts(sweep, per_batch, fits, noise, sampled)
    summary.update(per_batch=per_batch.to_dict(orient="records"), fits=fits, noise_scales=noise,
                   sampled_noise_scales=sampled.to_dict(orient="records"), verdicts=[v.as_json() for v in verdicts])
    lines = ["## Verdicts", ""] + [f"- {v.line()}" for v in verdicts] + [""] if verdicts else []
    lines += ["## S(B): minimum over lr of the seed-median steps to target", "",
              "best_lr: the grid lr of the fewest median steps; eta_star: the parabola vertex in log lr through it and "
              "its two neighbours (scaling-laws.md §6; flag `edge`: best lr at the grid's edge).", "",
              to_markdown(per_batch), ""]
    if fits:
        spread = (f" (5–95 % over seeds resampled: {interval[0]:.3g}–{interval[1]:.3g})" if interval else "")
        lines += [f"Hyperbola (weights 1/S): S_min = {fits['S_min']:.3g}, E_min = {fits['E_min']:.4g}, "
                  f"B_crit = {fits['B_crit']:.3g}{spread}", ""]
    smallest = per_batch.iloc[0]
    within = per_batch[per_batch["S"] <= 1.2 * smallest["S"] * smallest[batch] / per_batch[batch]]
    if len(within):  # Zhang et al.'s critical batch: perfect scaling from the smallest B, up to 20 % overhead
        summary["critical_batch_20_percent_overhead"] = float(within[batch].max())
        lines += [f"Largest B with S(B) ≤ 1.2·S(B_min)·B_min/B (20 % overhead): {within[batch].max():g}", ""]
    if noise:
        lines += ["Exact noise scales (per-example covariance of the model): " +
                  ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in noise.items()), ""]
    if len(sampled):
        lines += ["## Noise scales from fresh examples at the best lr (median over seeds)", "",
                  "Measured at θ_0 and where the eval loss first reached each level: B_simple from per-example "
                  "gradients (1), from the two-batch estimator (2), and the Hessian-weighted B_noise by HVPs (3) "
                  "(probes.sampled_noise_scale; scaling-laws.md Exp D).", "", to_markdown(sampled), ""]
    lr_fit = scaling_fits(per_batch, batch) if sweep.fit_noise_scale else {}
    if lr_fit:
        summary["eta_star_fit"] = lr_fit
        lines += [f"η*(B) fit η_max/(1 + B_noise/B) (the SGD law, §1.2): B_noise = {lr_fit['B_noise']:.3g}, "
                  f"η_max = {lr_fit['eta_max']:.3g}", ""]
    figures = [steps_plot(per_batch.rename(columns={"S": "median", "E": "examples_median"}), batch, fits, out),
               eta_star_plot(per_batch, lr_fit, batch, out)]
    return lines + ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures if p] + [""]


SAMPLED_COLUMNS = {"noise_scale.sampled_b_simple": "B_simple", "noise_scale.sampled_two_batch_b_simple": "B_simple_two_batch",
                   "noise_scale.sampled_b_noise": "B_noise"}


def sampled_noise_scales_at_levels(sweep_dir: Path, runs: pd.DataFrame, batch: str, target: float | None) -> pd.DataFrame:
    """Per (batch size, point): the seed medians of the sampled noise scales of `runs` (trials that carry
    probes.sampled_noise_scale) at θ_0 and at the first logged step with eval_loss ≤ each level."""
    import json

    import yaml

    rows = []
    for _, run in runs.iterrows():
        directory = sweep_dir / "trials" / run["trial"]
        probe = (yaml.safe_load((directory / "config.yaml").read_text()).get("probes") or {}).get("sampled_noise_scale")
        if not probe:
            continue
        initial = json.loads((directory / "summary.json").read_text()).get("initial_metrics", {})
        metrics = pd.read_csv(directory / "metrics.csv")
        points = [("θ_0", initial.get("eval_loss", math.nan), initial)]
        for level in sorted(probe.get("at_eval_loss") or [], reverse=True):
            reached = metrics[metrics["eval_loss"] <= level]
            if len(reached):
                points.append((f"eval_loss ≤ {level:g}", level, reached.iloc[0].to_dict()))
        for point, level, values in points:
            rows.append({"batch_size": run[batch], "point": point, "eval_loss_level": level,
                         "is_target": target is not None and level == target,
                         **{name: values.get(column, math.nan) for column, name in SAMPLED_COLUMNS.items()}})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    return (table.groupby(["batch_size", "point"], sort=False)
            .agg(eval_loss_level=("eval_loss_level", "first"), is_target=("is_target", "first"), seeds=("B_simple", "size"),
                 **{name: (name, "median") for name in SAMPLED_COLUMNS.values()})
            .reset_index())


def steps_plot(per_batch: pd.DataFrame, batch: str, fits: dict, out: Path) -> Path:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = per_batch[batch].to_numpy(float)
    left.plot(sizes, per_batch["median"], "o-", label="median over seeds")
    right.plot(sizes, per_batch["examples_median"], "o-", label="median over seeds")
    if fits:
        grid = np.geomspace(sizes.min(), sizes.max(), 200)
        left.plot(grid, fits["S_min"] + fits["E_min"] / grid, "--", label="S_min + E_min/B")
        right.plot(grid, grid * fits["S_min"] + fits["E_min"], "--", label="B·S_min + E_min")
    left.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="steps S", title="steps to target")
    right.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="examples E = B·S", title="examples to target")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "steps_vs_batch.png", dpi=110)
    plt.close(figure)
    return out / "steps_vs_batch.png"


def _metrics_table(sweep_dir: Path, row: pd.Series, metric):
    if metric.reduce == "final" or row["state"] != "completed":
        return None
    return pd.read_csv(sweep_dir / "trials" / row["trial"] / "metrics.csv")


def optimal_lrs(cells: pd.DataFrame, batch: str, lr: str) -> pd.DataFrame:
    rows = []
    for batch_size, group in cells.groupby(batch):
        group = group.sort_values(lr)
        optimum = refine_optimum(group[lr].to_numpy(float), group["mean"].to_numpy(float))
        rows.append({batch: batch_size, "eta_star": optimum.lr, "best_grid_lr": optimum.grid_lr,
                     "best_metric": optimum.value, "flag": optimum.flag})
    return pd.DataFrame(rows)


def scaling_fits(optima: pd.DataFrame, batch: str) -> dict:
    usable = optima[optima["eta_star"].notna()]
    if len(usable) < 3:
        return {}
    noise, maximum = fit_noise_scale(usable[batch].to_numpy(float), usable["eta_star"].to_numpy(float))
    return {"B_noise": noise, "eta_max": maximum}


def _theory(sweep, base):
    from optlab.report.verdicts import NQM_EFFECTS, exact_sgd_optimum, nqm_optimum

    if sweep.effect == "sgd_batch_scaling":
        return exact_sgd_optimum(base)
    if sweep.effect in NQM_EFFECTS:
        return nqm_optimum(base, "sgd" if sweep.effect == "sgd_nqm_control" else "sign")
    return None


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
    figure.tight_layout()
    figure.savefig(out / "heatmap.png", dpi=110)
    plt.close(figure)
    return out / "heatmap.png"


def curves(cells: pd.DataFrame, batch: str, lr: str, out: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for batch_size, group in cells.groupby(batch):
        group = group.sort_values(lr)
        axes.plot(group[lr], group["mean"].where(np.isfinite(group["mean"])), label=f"B = {batch_size:g}")
    axes.set(xscale="log", xlabel=lr, ylabel="metric (seed mean)", title="metric vs lr per batch size")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(out / "metric_vs_lr.png", dpi=110)
    plt.close(figure)
    return out / "metric_vs_lr.png"


def eta_star_plot(optima: pd.DataFrame, fits: dict, batch: str, out: Path, theory=None) -> Path | None:
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
    figure.tight_layout()
    figure.savefig(out / "eta_star.png", dpi=110)
    plt.close(figure)
    return out / "eta_star.png"
