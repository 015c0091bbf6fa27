"""Steps to a target against batch size, and whether the gradient noise scale predicts its knee
(docs/science/scaling-laws.md §1.3 and §2, Exp D0, D, D-Adam; the same questions on the small LM).

S(B) = the minimum over the lr grid of the seed-median steps to the target, E(B) = B·S(B). The
hyperbola S = S_min + E_min/B (least squares in 1/B, weights 1/S) gives the critical batch
B_crit = E_min/S_min (§1.3), with a bootstrap interval over seeds; Zhang et al.'s "20 % overhead"
critical batch is the largest B with S(B) ≤ 1.2·S(B_min)·B_min/B. The noise scales come from the model
(exact, linear regression) or from the sampled-noise-scale probe of the best-lr trials.

Verdicts:
- `sgd_critical_batch` (D0): the bracket 0.5·B_simple(start) ≤ B_crit ≤ 2·B_simple(target) (gate ii);
  S(B) within ±25 % of the original numbers where the sweep is the original own instance (those numbers
  were computed for it alone, so another setting is reported, not judged).
- `sgd_critical_batch_mlp` (D), and `lm_critical_batch` when its optimizer is plain SGD (the law's
  premise): (i) max_B |ln(S_fit/S)| ≤ 0.3; the slope of log η* over the three smallest B in [0.7, 1.1]
  (SGD's η* ∝ B for B ≪ B_crit: judged where the third smallest B ≤ B_crit/4); (ii) the bracket;
  (iii) 0.5 ≤ B_crit/B_simple(L_mid) ≤ 2 (PASS-strong, L_mid the level nearest the middle of
  [L_target, L_init]); the two-batch estimator within 25 % of the per-example one; B_crit ∈ [60, 250],
  the original band for its teacher–student setting only.
- `adam_critical_batch_mlp` (D-Adam), `lm_critical_batch` with any other optimizer: the same numbers,
  reported without gates.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from optlab.effects.core import (Effect, EffectReport, SweepContext, TheoryDoesNotApply, Verdict, band_verdict, not_judged,
                                 require)
from optlab.effects.fits import aggregate_seeds, bootstrap_critical_batch, fit_hyperbola, log_log_slope
from optlab.effects.lr_vs_batch import eta_star_plot, optimal_lrs, scaling_fits
from optlab.report.figures import plt, save_figure
from optlab.report.tables import plus_minus, to_markdown
from optlab.runs import atomic_write_text

STEPS_TOLERANCE = 0.25
FIT_MAX_LOG_RESIDUAL = 0.3
SMALL_B_SLOPE_BAND = (0.7, 1.1)
BRACKET_FACTOR = 2.0
MID_RATIO_BAND = (0.5, 2.0)
ESTIMATOR_AGREEMENT = 0.25
OVERHEAD = 1.2  # Zhang et al.'s critical batch: perfect scaling from the smallest B, up to 20 % overhead

# Exp D0's instance (the reference numbers were computed for it alone) and its S(B), B = 1 … 512.
D0_INSTANCE = {"model.name": "linreg", "model.start": "gaussian", "model.start_seed": 123, "model.init_distance": 1.0,
               "data.name": "linear-regression", "data.dim": 32, "data.spectrum": "harmonic", "data.label_noise": 0.5,
               "data.teacher": "gaussian", "optimizer.name": "sgd", "optimizer.momentum": 0.0}
D0_STEPS = {1: 404, 2: 203, 4: 87, 8: 56, 16: 30, 32: 28, 64: 19, 128: 17, 256: 17, 512: 17}
D0_TARGET = ("relative_excess_loss", 0.02)
# Exp D's teacher–student setting, for which docs/science gives B_crit ∈ [60, 250].
D_SETTING = {"model.name": "mlp", "model.width": 64, "data.name": "teacher-classification", "data.dim": 16,
             "data.classes": 4, "data.teacher_width": 32, "data.logit_scale": 2.0, "optimizer.name": "sgd",
             "optimizer.momentum": 0.0}
D_CRITICAL_BAND = (60.0, 250.0)
SMALL_B_FRACTION = 4  # the slope rule is judged where the third smallest B ≤ B_crit/4 ("B ≪ B_crit")
PLAIN_SGD = {"optimizer.name": "sgd", "optimizer.momentum": 0.0}  # the premise of Exp D's rules
REPORTED = {
    "adam_critical_batch_mlp": "report only: slope ≈ 0.5 (0.35–0.7), B_crit ≥ SGD's",
    "lm_critical_batch": "report only for an optimizer other than plain SGD: slope ≈ 0.5 for Adam "
                         "(docs/science/scaling-laws.md §1.4)",
}
SAMPLED_COLUMNS = {"noise_scale.sampled_b_simple": "B_simple", "noise_scale.sampled_two_batch_b_simple": "B_simple_two_batch",
                   "noise_scale.sampled_b_noise": "B_noise"}


def steps_to_target(context: SweepContext) -> tuple[EffectReport, pd.DataFrame, dict, dict, pd.DataFrame]:
    """S(B), E(B), the refined η*(B), the hyperbola and the noise scales: (section, per-batch table, fits,
    exact noise scales, sampled noise scales)."""
    sweep, batch, lr = context.sweep, context.sweep.batch_key, context.sweep.lr_key
    finished = context.finished
    cells = aggregate_seeds(finished, [batch, lr])
    atomic_write_text(context.out / "cells.csv", cells.to_csv(index=False))
    best = cells.loc[cells.groupby(batch)["median"].idxmin()].sort_values(batch)
    per_batch = pd.DataFrame({batch: best[batch].to_numpy(), "S": best["median"].to_numpy(), "S_low": best["low"].to_numpy(),
                              "S_high": best["high"].to_numpy(), "best_lr": best[lr].to_numpy()})
    per_batch["E"] = per_batch[batch] * per_batch["S"]
    refined = optimal_lrs(cells.rename(columns={"mean": "mean_steps", "median": "mean"}), batch, lr)
    per_batch["eta_star"] = refined["eta_star"].to_numpy()  # the parabola vertex in log lr (§6), on the median steps
    per_batch["eta_star_flag"] = refined["flag"].to_numpy()
    reached = per_batch[np.isfinite(per_batch["S"])]
    fits = fit_hyperbola(reached[batch].to_numpy(float), reached["S"].to_numpy(float), relative=True) if len(reached) >= 3 else {}
    interval = bootstrap_critical_batch(finished, batch, lr) if fits else None
    if interval:
        fits["B_crit_bootstrap_5_95"] = list(interval)
    at_best = finished.merge(best[[batch, lr]], on=[batch, lr])
    completed_at_best = at_best[at_best["state"] == "completed"]
    noise = exact_noise_scales(context, at_best, completed_at_best)
    sampled = sampled_noise_scales_at_levels(context, completed_at_best, batch, sweep.metric.target)
    if len(sampled):
        atomic_write_text(context.out / "sampled_noise_scales.csv", sampled.to_csv(index=False))
    data = {"per_batch": per_batch.to_dict(orient="records"), "fits": fits, "noise_scales": noise,
            "sampled_noise_scales": sampled.to_dict(orient="records")}
    lines = ["## S(B): minimum over lr of the seed-median steps to target", "",
             "best_lr: the grid lr of the fewest median steps; eta_star: the parabola vertex in log lr through it and "
             "its two neighbours (docs/science/scaling-laws.md §2; flag `edge`: best lr at the grid's edge).", "",
             to_markdown(per_batch), ""]
    if fits:
        spread = f" (5–95 % over seeds resampled: {interval[0]:.3g}–{interval[1]:.3g})" if interval else ""
        lines += [f"Hyperbola (weights 1/S; ±: standard errors from the fit's covariance): "
                  f"{plus_minus('S_min', fits['S_min'], fits['S_min_se'])}, {plus_minus('E_min', fits['E_min'], fits['E_min_se'])}, "
                  f"{plus_minus('B_crit', fits['B_crit'], fits['B_crit_se'])}{spread}", ""]
    smallest = per_batch.iloc[0]
    within = per_batch[per_batch["S"] <= OVERHEAD * smallest["S"] * smallest[batch] / per_batch[batch]]
    if len(within):
        data["critical_batch_20_percent_overhead"] = float(within[batch].max())
        lines += [f"Largest B with S(B) ≤ 1.2·S(B_min)·B_min/B (20 % overhead): {within[batch].max():g}", ""]
    if noise:
        lines += ["Exact noise scales (per-example covariance of the model): " +
                  ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in noise.items()), ""]
    if len(sampled):
        lines += ["## Noise scales from fresh examples at the best lr (median over seeds)", "",
                  "Measured at θ_0 and where the eval loss first reached each level: B_simple from per-example "
                  "gradients (1), from the two-batch estimator (2), and the Hessian-weighted B_noise by HVPs (3) "
                  "(probes.sampled_noise_scale; docs/science/scaling-laws.md §2, Exp D).", "", to_markdown(sampled), ""]
    lr_fit = scaling_fits(per_batch, batch) if sweep.fit_noise_scale else {}
    if lr_fit:
        data["eta_star_fit"] = lr_fit
        lines += [f"η*(B) fit η_max/(1 + B_noise/B) (the SGD law, §1.2; ± standard errors): "
                  f"{plus_minus('B_noise', lr_fit['B_noise'], lr_fit['B_noise_se'])}, "
                  f"{plus_minus('η_max', lr_fit['eta_max'], lr_fit['eta_max_se'])}", ""]
    marks = {}
    if len(sampled):
        by_point = sampled.groupby("point", sort=False)["B_simple"].median()
        marks = {f"B_simple at {point}": value for point, value in by_point.items() if np.isfinite(value)}
    figures = [steps_plot(per_batch, batch, fits, context.out, noise_scales=marks),
               eta_star_plot(per_batch, lr_fit, batch, context.out)]
    return EffectReport(lines=lines, figures=figures, data=data), per_batch, fits, noise, sampled


def exact_noise_scales(context: SweepContext, at_best: pd.DataFrame, completed_at_best: pd.DataFrame) -> dict:
    """B_simple and B_noise the model knows exactly (linear regression): at θ_0, and the median (and range)
    over the best-lr trials where they reached the target."""
    noise = {}
    for key in ("exact_b_simple", "exact_b_noise"):
        column = f"final.noise_scale.{key}"
        if column in at_best:
            values = completed_at_best[column].dropna()
            noise[f"{key}_at_target"] = float(values.median()) if len(values) else None
            noise[f"{key}_at_target_range"] = [float(values.min()), float(values.max())] if len(values) else None
    initial = context.run(context.finished["trial"].iloc[0]).summary.get("initial_metrics", {}) if len(context.finished) else {}
    for key in ("exact_b_simple", "exact_b_noise"):
        if f"noise_scale.{key}" in initial:
            noise[f"{key}_at_start"] = initial[f"noise_scale.{key}"]
    return noise


def sampled_noise_scales_at_levels(context: SweepContext, trials: pd.DataFrame, batch: str, target: float | None) -> pd.DataFrame:
    """Per (batch size, point): the seed medians of the sampled noise scales of `trials` (those that carry
    probes.sampled_noise_scale) at θ_0 and at the first logged step with eval_loss ≤ each level."""
    rows = []
    for _, trial in trials.iterrows():
        probe = context.configs[trial["trial"]].probes.sampled_noise_scale
        if probe is None:
            continue
        run = context.run(trial["trial"])
        initial, metrics = run.summary.get("initial_metrics", {}), run.metrics
        points = [("θ_0", initial.get("eval_loss", math.nan), initial)]
        for level in sorted(probe.at_eval_loss, reverse=True):
            reached = metrics[metrics["eval_loss"] <= level]
            if len(reached):
                points.append((f"eval_loss ≤ {level:g}", level, reached.iloc[0].to_dict()))
        for point, level, values in points:
            rows.append({"batch_size": trial[batch], "point": point, "eval_loss_level": level,
                         "is_target": target is not None and level == target,
                         **{name: values.get(column, math.nan) for column, name in SAMPLED_COLUMNS.items()}})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    return (table.groupby(["batch_size", "point"], sort=False)
            .agg(eval_loss_level=("eval_loss_level", "first"), is_target=("is_target", "first"), seeds=("B_simple", "size"),
                 **{name: (name, "median") for name in SAMPLED_COLUMNS.values()})
            .reset_index())


def steps_plot(per_batch: pd.DataFrame, batch: str, fits: dict, out: Path, predicted: dict | None = None,
               tolerance=None, noise_scales: dict | None = None) -> Path:
    """Steps and examples to the target against B: the seed medians (columns S, E) with the range over seeds
    (S_low–S_high) shaded, the fitted hyperbola with its knee B_crit and, when given, the closed form's
    prediction {B: S} with the verdict's band {B: S ± tolerance(S)} and the measured noise scales
    {label: B} as vertical lines beside the knee."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    sizes = per_batch[batch].to_numpy(float)
    for axis, scale in ((left, np.ones_like(sizes)), (right, sizes)):
        axis.plot(sizes, per_batch["S"] * scale, "o-", color="C0", label="median over seeds")
        low, high = per_batch["S_low"].to_numpy(float), per_batch["S_high"].to_numpy(float)
        shown = np.isfinite(low) & np.isfinite(high)
        axis.fill_between(sizes[shown], (low * scale)[shown], (high * scale)[shown], color="C0", alpha=0.2,
                          label="range over seeds")
    if fits:
        grid = np.geomspace(sizes.min(), sizes.max(), 200)
        left.plot(grid, fits["S_min"] + fits["E_min"] / grid, "--", color="C1", label="fit S_min + E_min/B")
        right.plot(grid, grid * fits["S_min"] + fits["E_min"], "--", color="C1", label="fit B·S_min + E_min")
    if predicted:
        shown = np.array(sorted(predicted), dtype=float)
        expected = np.array([predicted[size] for size in shown])
        for axis, scale in ((left, np.ones_like(shown)), (right, shown)):
            axis.plot(shown, expected * scale, "k:", label="closed form")
            if tolerance is not None:
                band = np.array([tolerance(value) for value in expected])
                axis.fill_between(shown, (expected - band) * scale, (expected + band) * scale, color="grey",
                                  alpha=0.25, label="verdict band")
    if fits and np.isfinite(fits.get("B_crit", np.nan)) and fits["B_crit"] > 0:
        for axis in (left, right):
            axis.axvline(fits["B_crit"], color="C1", linewidth=2, alpha=0.6, label=f"B_crit = {fits['B_crit']:.3g}")
    for index, (label, value) in enumerate((noise_scales or {}).items()):
        for axis in (left, right):
            axis.axvline(value, color="C2", linestyle=(0, (1 + index, 2)), alpha=0.4 + 0.6 * index / max(1, len(noise_scales) - 1),
                         label=f"{label} = {value:.3g}")
    left.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="steps S", title="steps to target")
    right.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="examples E = B·S", title="examples to target")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    return save_figure(figure, out / "steps_vs_batch.png")


def _matches(context: SweepContext, expected: dict) -> bool:
    """Whether the sweep is the reference setting (whose numbers then apply)."""
    try:
        require(context, expected)
    except TheoryDoesNotApply:
        return False
    return True


def regression_verdicts(context: SweepContext, per_batch: pd.DataFrame, fits: dict, noise: dict) -> list[Verdict]:
    """Exp D0: the reference S(B) on its own instance, and the bracket by the exact noise scales."""
    effect, sweep = "sgd_critical_batch", context.sweep
    verdicts = []
    instance = _matches(context, D0_INSTANCE) and (sweep.metric.column, sweep.metric.target) == D0_TARGET
    if instance:
        for row in per_batch.to_dict(orient="records"):
            size = int(row[sweep.batch_key])
            if size in D0_STEPS:
                verdicts.append(band_verdict(effect, f"{sweep.name} B={size}", "S(B)", row["S"],
                                             (D0_STEPS[size] * (1 - STEPS_TOLERANCE), D0_STEPS[size] * (1 + STEPS_TOLERANCE)),
                                             basis=f"the reference {D0_STEPS[size]} for this instance ± 25 %"))
    else:
        verdicts.append(not_judged(effect, sweep.name, "S(B): the reference numbers (docs/science/scaling-laws.md §2, Exp D0) belong to one instance (d = 32, "
                                   "H = diag(1/i), label noise 0.5, start_seed 123, target 2 %); this sweep is another"))
    start, target, crit = noise.get("exact_b_simple_at_start"), noise.get("exact_b_simple_at_target"), fits.get("B_crit")
    if start is not None and target is not None and crit is not None:
        inside = 0.5 * start <= crit <= 2 * target
        verdicts.append(Verdict(effect, sweep.name, "bracketed" if inside else "not bracketed", inside,
                                f"B_crit = {crit:.3g}, B_simple at start {start:.3g}, at target {target:.3g}",
                                "0.5·B_simple(start) ≤ B_crit ≤ 2·B_simple(target)"))
    return verdicts


def judged_by_exp_d(context: SweepContext, effect: str) -> bool:
    """Whether Exp D's gates apply: always for its SGD teacher–student effect, for the language model when
    every trial trains with plain SGD, never for D-Adam."""
    return effect == "sgd_critical_batch_mlp" or (effect == "lm_critical_batch" and _matches(context, PLAIN_SGD))


def teacher_student_verdicts(context: SweepContext, effect: str, per_batch: pd.DataFrame, fits: dict) -> list[Verdict]:
    sweep, batch = context.sweep, context.sweep.batch_key
    reached = per_batch[np.isfinite(per_batch["S"])].sort_values(batch)
    sizes, steps = reached[batch].to_numpy(float), reached["S"].to_numpy(float)
    residual = (float(np.max(np.abs(np.log((fits["S_min"] + fits["E_min"] / sizes) / steps))))
                if fits and fits["S_min"] > 0 else None)
    smallest = reached.head(3)
    usable = len(smallest) == 3 and smallest["eta_star"].notna().all()
    slope = log_log_slope(smallest[batch], smallest["eta_star"].astype(float)) if usable else None
    grid_slope = log_log_slope(smallest[batch], smallest["best_lr"]) if len(smallest) == 3 else math.nan
    label, grid = "slope of log η* over the 3 smallest B", f" (of the grid's best lrs: {grid_slope:.3g})"
    crit = fits.get("B_crit", math.nan)
    if not judged_by_exp_d(context, effect):
        return [Verdict(effect, sweep.name, "measured", None,
                        f"{label} = {slope:.3g}{grid}, B_crit = {crit:.3g}"
                        if slope is not None else "too few batch sizes with an interior best lr reached the target",
                        REPORTED[effect])]
    verdicts = [band_verdict(effect, sweep.name, "max_B |ln(S_fit/S)|", residual, (0.0, FIT_MAX_LOG_RESIDUAL))]
    third = float(smallest[batch].iloc[-1]) if len(smallest) == 3 else math.nan
    if third <= crit / SMALL_B_FRACTION:
        verdicts.append(band_verdict(effect, sweep.name, label, slope, SMALL_B_SLOPE_BAND, unit=grid,
                                     basis="η* ∝ B for B ≪ B_crit (SGD, §1.2); a fixed band"))
    else:
        measured = f"; measured {slope:.3g}{grid}" if slope is not None else ""
        verdicts.append(not_judged(effect, sweep.name, f"{label}: η* ∝ B holds for B ≪ B_crit, and the third smallest "
                                   f"B = {third:g} is above B_crit/{SMALL_B_FRACTION} = {crit / SMALL_B_FRACTION:.3g}{measured}"))
    if _matches(context, D_SETTING):
        verdicts.insert(1, band_verdict(effect, sweep.name, "B_crit = E_min/S_min", fits.get("B_crit"), D_CRITICAL_BAND,
                                        basis="a fixed band, found for this teacher–student setting"))
    else:
        verdicts.insert(1, not_judged(effect, sweep.name, "B_crit ∈ [60, 250] is a band found for the reference "
                                      "teacher–student setting (16 → 32 → 4 teacher, 64-wide student, SGD)"))
    return verdicts


def sampled_noise_verdicts(effect: str, name: str, fits: dict, sampled: pd.DataFrame, gated: bool) -> list[Verdict]:
    """Exp D gates (ii), (iii) and the agreement of estimators (1) and (2), from the noise scales measured
    at θ_0 (L_init), at the level nearest the middle of [L_target, L_init] and at L_target."""
    if sampled is None or not len(sampled):
        return []
    crit = fits.get("B_crit")
    by_point = sampled.groupby("point", sort=False).agg(level=("eval_loss_level", "first"), target=("is_target", "first"),
                                                        simple=("B_simple", "median"), two_batch=("B_simple_two_batch", "median"))
    start, at_target = by_point.loc["θ_0"] if "θ_0" in by_point.index else None, by_point[by_point["target"]]
    verdicts = []
    deviations = (by_point["two_batch"] / by_point["simple"] - 1).abs()
    if deviations.notna().any():
        worst = deviations.max()
        verdicts.append(Verdict(effect, name, "agree" if worst <= ESTIMATOR_AGREEMENT else "disagree",
                                bool(worst <= ESTIMATOR_AGREEMENT) if gated else None,
                                "two-batch / per-example B_simple: " + ", ".join(
                                    f"{point}: {row.two_batch:.3g}/{row.simple:.3g}" for point, row in by_point.iterrows()),
                                f"within {ESTIMATOR_AGREEMENT:.0%} at every point"))
    if start is None or not len(at_target) or crit is None:
        return verdicts
    target = at_target.iloc[0]
    inside = start.simple / BRACKET_FACTOR <= crit <= BRACKET_FACTOR * target.simple
    verdicts.append(Verdict(effect, name, "bracketed" if inside else "not bracketed", bool(inside) if gated else None,
                            f"B_crit = {crit:.3g}, B_simple at L_init {start.simple:.3g}, at L_target {target.simple:.3g}",
                            "0.5·B_simple(L_init) ≤ B_crit ≤ 2·B_simple(L_target)" + ("" if gated else " (reported)")))
    middle = (start.level + target.level) / 2
    levels = by_point[(by_point.index != "θ_0") & ~by_point["target"]]
    if len(levels):
        mid = levels.iloc[int((levels["level"] - middle).abs().argmin())]
        label = f"B_crit / B_simple(L_mid = {mid.level:.4g}) (B_simple {mid.simple:.3g})"
        ratio = crit / mid.simple
        verdicts.append(band_verdict(effect, name, f"hypothesis (PASS-strong): {label}", ratio, MID_RATIO_BAND) if gated else
                        Verdict(effect, name, "measured", None, f"{label} = {ratio:.3g}", "report only: [0.5, 2] in Exp D"))
    return verdicts


def _regression(context: SweepContext) -> EffectReport:
    section, per_batch, fits, noise, _ = steps_to_target(context)
    section.verdicts = regression_verdicts(context, per_batch, fits, noise)
    return section


def _measured_noise_scale(effect: str):
    """The report of a steps-to-target sweep whose noise scales come from the sampled probe (D, D-Adam, LM)."""

    def report(context: SweepContext) -> EffectReport:
        section, per_batch, fits, _, sampled = steps_to_target(context)
        section.verdicts = (teacher_student_verdicts(context, effect, per_batch, fits)
                            + sampled_noise_verdicts(effect, context.sweep.name, fits, sampled,
                                                     judged_by_exp_d(context, effect)))
        return section

    return report


SECTION = "docs/science/scaling-laws.md §2, Exp D"
regression = Effect("sgd_critical_batch", "docs/science/scaling-laws.md §2, Exp D0", "sweep", _regression,
                    summary="Exp D0: steps-vs-batch knee of SGD on ill-conditioned regression, bracketed by the exact B_simple")
teacher_student = Effect("sgd_critical_batch_mlp", SECTION, "sweep", _measured_noise_scale("sgd_critical_batch_mlp"),
                         summary="Exp D: the knee of a teacher–student MLP against the measured noise scale")
teacher_student_adam = Effect("adam_critical_batch_mlp", SECTION + " (D-Adam)", "sweep",
                              _measured_noise_scale("adam_critical_batch_mlp"),
                              summary="D-Adam: Exp D with Adam, reported without gates")
language_model = Effect("lm_critical_batch", "docs/science/scaling-laws.md §2, Exp D (on a language model)", "sweep",
                        _measured_noise_scale("lm_critical_batch"),
                        summary="steps to an eval loss vs batch on a language model against its measured noise "
                                "scale (Exp D's gates for plain SGD, reported otherwise)")
