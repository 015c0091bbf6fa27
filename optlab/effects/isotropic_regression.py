"""SGD on noiseless isotropic linear regression, where the batch-size law is exact (docs/science/
docs/science/scaling-laws.md §2, Exp A and A2).

With x ~ N(0, I_d) and e = w − w*, the per-example gradient is x xᵀe, so g = e, H = I and
Σ = |e|²I + eeᵀ, and one SGD step at lr η and batch B contracts the expected squared error by

    ρ(η, B) = (1 − η)² + η²(d + 1)/B,       E|e_{t+1}|² = ρ·|e_t|²,

which is smallest at η*(B) = B/(B + d + 1) for every horizon: η_max = 1 and B_noise = d + 1.

`sgd_batch_scaling` (Exp A) judges η*(B) of a loss-after-T-steps sweep against it, with the original
tolerances restated around the closed form of the sweep's own d: fitted B_noise within ±20 % of d + 1
(the original [51, 77] at d = 63), η_max within ±10 % of 1, the slope of log η* over B ∈ [1, 8] within
±0.1 of the closed form's slope over the same batch sizes (the original [0.85, 1.05] around 0.95 at
d = 63), and η* of the two largest batch sizes in the ratio of the closed form within ±10 % (the original
[1.0, 1.2] around 1.11 for 512/256).

`sgd_steps_vs_batch` (Exp A2) judges the steps to L ≤ L_target at each batch size's own lr against
S(B) = ln(L_0/L_target)/(−ln ρ(η, B)) (= ln(L_0/L_target)/ln(1 + B/(d + 1)) at η*), within ±10 % or
±1 step; the hyperbola S = S_min + E_min/B is fitted over B ≤ 2(d + 1) only (one step at η = 1 solves
a full batch, so it holds for B ≲ B_noise).
"""

from __future__ import annotations

import math

import numpy as np

from optlab.effects.core import (Effect, EffectReport, SweepContext, TheoryDoesNotApply, Verdict, band_verdict, not_judged,
                                 relative_band, require, setting)
from optlab.effects.critical_batch import steps_plot
from optlab.effects.fits import aggregate_seeds, fit_hyperbola, log_log_slope
from optlab.effects.lr_vs_batch import curve, optimal_lr_section
from optlab.report.tables import plus_minus, to_markdown
from optlab.runs import atomic_write_text

NOISE_TOLERANCE, MAX_TOLERANCE, RATIO_TOLERANCE = 0.20, 0.10, 0.10
SLOPE_RANGE, SLOPE_TOLERANCE = (1, 8), 0.10
STEPS_TOLERANCE = 0.10

ASSUMPTIONS = {"model.name": "linreg", "data.name": "linear-regression", "data.spectrum": "isotropic",
               "data.label_noise": 0.0, "schedule.name": "constant", "schedule.warmup_steps": 0,
               "training.lr_scaling": "none"}  # the setting; the optimizer is what is judged (plain SGD passes)


def contraction(lr, batch, dim: int):
    """ρ(η, B) = (1 − η)² + η²(d + 1)/B: the expected factor of |e|² per step."""
    return (1 - lr) ** 2 + lr**2 * (dim + 1) / batch


def optimal_lr(batch, dim: int):
    """η*(B) = B/(B + d + 1)."""
    return batch / (batch + dim + 1)


def regression_dimension(context: SweepContext) -> int:
    """d of the sweep's regression, once the closed form's assumptions are checked."""
    require(context, ASSUMPTIONS)
    return setting(context, "data.dim")


def batch_scaling_verdicts(name: str, batch_sizes: np.ndarray, optima: np.ndarray, fits: dict, dim: int) -> list[Verdict]:
    effect = "sgd_batch_scaling"
    usable = np.isfinite(optima)
    sizes, measured = batch_sizes[usable], optima[usable]
    low, high = SLOPE_RANGE
    small = (sizes >= low) & (sizes <= high)
    slope = log_log_slope(sizes[small], measured[small])
    predicted_slope = log_log_slope(sizes[small], optimal_lr(sizes[small], dim))
    verdicts = [
        band_verdict(effect, name, "B_noise", fits.get("B_noise"), relative_band(dim + 1, NOISE_TOLERANCE),
                     basis=f"d + 1 = {dim + 1} ± {NOISE_TOLERANCE:.0%}"),
        band_verdict(effect, name, "η_max", fits.get("eta_max"), relative_band(1.0, MAX_TOLERANCE),
                     basis=f"1 ± {MAX_TOLERANCE:.0%}"),
    ]
    label = f"slope of log η* over B ∈ [{low}, {high}]"
    if predicted_slope is None:
        verdicts.append(not_judged(effect, name, f"{label}: fewer than two batch sizes there have an η*"))
    else:
        verdicts.append(band_verdict(effect, name, label, slope,
                                     (predicted_slope - SLOPE_TOLERANCE, predicted_slope + SLOPE_TOLERANCE),
                                     basis=f"B/(B + d + 1) gives {predicted_slope:.3f} ± {SLOPE_TOLERANCE}"))
    if len(sizes) >= 2:
        (second, largest), (eta_second, eta_largest) = sizes[-2:], measured[-2:]
        predicted = optimal_lr(largest, dim) / optimal_lr(second, dim)
        verdicts.append(band_verdict(effect, name, f"η*({largest:g})/η*({second:g})", eta_largest / eta_second,
                                     relative_band(predicted, RATIO_TOLERANCE),
                                     basis=f"closed form {predicted:.3f} ± {RATIO_TOLERANCE:.0%}"))
    return verdicts


def _batch_scaling(context: SweepContext) -> EffectReport:
    try:
        dim = regression_dimension(context)
    except TheoryDoesNotApply as reason:
        section, _, _ = optimal_lr_section(context)
        section.verdicts = [not_judged("sgd_batch_scaling", context.sweep.name, str(reason))]
        return section
    section, optima, fits = optimal_lr_section(context, theory=lambda batch: optimal_lr(batch, dim))
    sizes, measured = curve(optima, context.sweep.batch_key)
    section.verdicts = batch_scaling_verdicts(context.sweep.name, sizes, measured, fits, dim)
    section.lines.insert(0, f"Closed form (d = {dim}): η*(B) = B/(B + {dim + 1}), B_noise = {dim + 1}, η_max = 1.")
    section.lines.insert(1, "")
    return section


def predicted_steps(initial_loss: float, target: float, lr: float, batch: float, dim: int) -> float:
    """S = ln(L_0/L_target)/(−ln ρ(η, B)); inf where the step does not contract (ρ ≥ 1)."""
    rate = -math.log(contraction(lr, batch, dim))
    return math.log(initial_loss / target) / rate if rate > 0 else math.inf


def _steps_vs_batch(context: SweepContext) -> EffectReport:
    sweep, batch, effect = context.sweep, context.sweep.batch_key, "sgd_steps_vs_batch"
    per_batch = aggregate_seeds(context.finished, [batch])
    per_batch["examples_median"] = per_batch["median"] * per_batch[batch]
    atomic_write_text(context.out / "cells.csv", per_batch.to_csv(index=False))
    verdicts, predicted, fits = [], {}, {}
    try:
        dim = regression_dimension(context)
        require(context, {"model.start": "sphere"})  # |e_0| = init_distance exactly: L_0 = ½·init_distance²
        if sweep.metric.reduce != "steps_to_target" or sweep.metric.column not in ("population_loss", "excess_loss"):
            raise TheoryDoesNotApply("the closed form counts steps to a population_loss (or excess_loss) target")
        initial_loss = 0.5 * setting(context, "model.init_distance") ** 2
    except TheoryDoesNotApply as reason:
        verdicts.append(not_judged(effect, sweep.name, str(reason)))
        dim = None
    if dim is not None:
        lrs = context.finished.groupby(batch)["trial"].apply(lambda ids: {context.configs[t].optimizer.lr for t in ids})
        for row in per_batch.to_dict(orient="records"):
            size, measured = row[batch], row["median"]
            if len(lrs[size]) != 1:
                verdicts.append(not_judged(effect, f"{sweep.name} B={size:g}", "more than one lr at this batch size"))
                continue
            expected = predicted_steps(initial_loss, sweep.metric.target, next(iter(lrs[size])), size, dim)
            predicted[size] = expected
            passed = math.isfinite(measured) and (abs(measured - expected) <= STEPS_TOLERANCE * expected
                                                  or abs(measured - expected) <= 1)
            verdicts.append(Verdict(effect, f"{sweep.name} B={size:g}", "matches" if passed else "differs", passed,
                                    f"median steps {measured:g}", f"{expected:.1f} ± max(10 %, 1 step)"))
        usable = per_batch[(per_batch[batch] <= 2 * (dim + 1)) & np.isfinite(per_batch["median"])]
        if len(usable) >= 3:
            fits = fit_hyperbola(usable[batch].to_numpy(float), usable["median"].to_numpy(float))
            fits["fitted_over_B"] = [1.0, float(2 * (dim + 1))]
    lines = ["## Metric per batch size (seed median, mean, spread)", "", to_markdown(per_batch), ""]
    if fits:
        lines += [f"Hyperbola S = S_min + E_min/B over B ∈ [{fits['fitted_over_B'][0]:g}, {fits['fitted_over_B'][1]:g}]: "
                  f"{plus_minus('S_min', fits['S_min'], fits['S_min_se'])}, {plus_minus('E_min', fits['E_min'], fits['E_min_se'])}, "
                  f"{plus_minus('B_crit = E_min/S_min', fits['B_crit'], fits['B_crit_se'])} (± standard errors)", ""]
    plotted = per_batch.rename(columns={"median": "S", "low": "S_low", "high": "S_high"})
    figure = steps_plot(plotted, batch, fits, context.out, predicted=predicted,
                        tolerance=lambda steps: max(STEPS_TOLERANCE * steps, 1))
    return EffectReport(verdicts, lines, [figure], {"per_batch": per_batch.to_dict(orient="records"), "fits": fits})


SECTION = "docs/science/scaling-laws.md §2"
batch_scaling = Effect("sgd_batch_scaling", SECTION + ", Exp A", "sweep", _batch_scaling,
                       summary="Exp A: SGD's η*(B) = B/(B + d + 1) on isotropic regression (B_noise = d + 1)")
steps_vs_batch = Effect("sgd_steps_vs_batch", SECTION + ", Exp A2", "sweep", _steps_vs_batch,
                        summary="Exp A2: steps to a target S(B) = ln(L_0/L)/(−ln ρ(η, B)) at each B's lr")
