"""Schedules with the same half-life (docs/science/other-effects.md §3.4; Su, kexue.fm/archives/9344):
constant, inverse-time 1/(1 + t/T), inverse-square 1/(1 + (√2 − 1)t/T)², warmup + cosine, and Amos's
implied schedule d_t read from its state. The spec gives no prior numbers: the report ranks them and
draws the loss, lr and Amos curves (no gate).

`closed_form` (§3.4) judges the schedules where Su's derivation is exact: the isotropic quadratic ½‖θ‖²
(H = I, θ* = 0) trained with SignSGD at η = α_0σ (σ = RMS(θ_0) = ‖θ_0‖/√k) and the decay rule λ = α_0/(2σ),
with gradient noise of std (s + ν·r)/√B per entry (r = RMS(θ), s = model.gradient_noise, ν =
model.relative_noise). A sign step's mean cosine with −θ is then a function of r alone,
p(r) = √(2/π)/√(1 + ((s/r + ν)²/B)), and the squared distance x_t = ‖θ_t‖²/‖θ_0‖² obeys a closed-form
recursion. Two cases are Su's:
- constant rate (s = 0): p = √(2/π)/√(1 + ν²/B) at every distance; the inverse-square schedule of half-life
  T* = (√2 − 1)/(α_0p) gives x_t = D_t = 1/(1 + α_0pt)²;
- slowing rate (ν = 0, s ≫ r): p_t = p_0·√x_t with p_0 = √(2/π)·√B·σ/s, the rate falls with the distance; the
  inverse-time schedule of half-life T* = 1/(2α_0p_0) gives x_t = D_t = 1/(1 + 2α_0p_0t).
Verdicts: for the case's schedule, max |x_t/D_t − 1| ≤ 0.1 over the probe steps (T and λ within 5 % of T*
and the rule, else not judged; p must be known to 1 % at θ_0, i.e. (s/σ + ν)/√B ≳ 6); every schedule: the
final x within 15 % of the recursion at its own η_t. Reported: the measured p and the ranking.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optlab.effects.core import (Effect, SweepContext, TheoryDoesNotApply, Verdict, band_verdict, cells_report,
                                 not_judged, relative_band, require, setting)
from optlab.effects.figures import first_seed_curves
from optlab.report.figures import MARKERS, plt, save_figure
from optlab.report.tables import to_markdown
from optlab.schedules import lr_multiplier

CURVES = ("eval_loss", "loss", "lr", "amos.d", "amos.decay_per_step")


def _report(context: SweepContext):
    means = context.cells.set_index("variant")["mean"]
    verdicts = [Verdict("schedules", context.sweep.name, f"best: {means.idxmin()}", None,
                        ", ".join(f"{v} {m:.4f}" for v, m in means.items()), "report only (no prior numbers)")]
    figures = [first_seed_curves(context, column, f"{column}_curves", log_y=column == "lr") for column in CURVES]
    return cells_report(context, verdicts, [], figures)


effect = Effect("schedules", "docs/science/other-effects.md §3.4", "sweep", _report,
                summary="inverse-time / inverse-square / cosine schedules and Amos's implied one, ranked (report only)")


# --- the closed form on the quadratic -------------------------------------------------------------------------

MATCH_TOLERANCE = 0.05  # T and λ within 5 % of the matched T* and the rule's λ, or x_t = D_t is not judged
RATE_UNCERTAINTY = 0.01  # p must be known to 1 %: x_t ≈ (1 − α_0pΣD)² at t ≫ T multiplies an error in p by ~10
FOLLOW_TOLERANCE = 0.1  # the matched schedule: max |x_t/D_t − 1| ≤ 0.1
RECURSION_TOLERANCE = 0.15  # every schedule: the final x within 15 % of its recursion
MATCHED = {"constant rate": "inverse_square", "slowing rate": "inverse_time"}


def convergence_rate(noise_to_signal: float) -> tuple[float, float]:
    """p = E cos(sign g, θ) on ½‖θ‖² with gradient θ + n·r·z (r = RMS(θ), n = the noise's std per entry over r),
    and its uncertainty. To first order in 1/n, p = √(2/π)/n whatever the entries of θ; the next order
    depends on their distribution: √(2/π)/√(1 + n²) for Gaussian entries (E[θ_i sign(θ_i + n·r·z_i)] =
    r·√(2/π)/√(1 + n²)), 2Φ(1/n) − 1 for entries of equal size (θ_0). Returns the Gaussian value and the
    relative gap between the two."""
    gaussian, equal = math.sqrt(2 / math.pi) / math.sqrt(1 + noise_to_signal**2), math.erf(1 / (noise_to_signal * math.sqrt(2)))
    return gaussian, abs(equal - gaussian) / gaussian


def noise_to_signal(x: float, sigma: float, additive: float, relative: float, batch_size: int) -> float:
    """The gradient noise's std per entry over r = RMS(θ) = σ√x: (s/r + ν)/√B."""
    return (additive / (sigma * math.sqrt(x)) + relative) / math.sqrt(batch_size) if x > 0 else math.inf


def distance_recursion(multipliers: np.ndarray, alpha_0: float, decay: float, sigma: float, rate) -> np.ndarray:
    """x_t = ‖θ_t‖²/‖θ_0‖² for t = 0 … len(multipliers) under θ ← (1 − η_tλ)θ − η_t·sign(g), η_t = α_0σD_t:
    x_{t+1} = (1 − η_tλ)²x_t − 2(1 − η_tλ)·a_t·p(x_t)·√x_t + a_t²  with a_t = η_t/σ = α_0D_t (the sign step has
    norm √k·η_t, its mean cosine with −θ is p, and ‖θ_0‖ = √k·σ). `rate` is p(x), a function of x."""
    x = np.empty(len(multipliers) + 1)
    x[0] = 1.0
    for step, multiplier in enumerate(multipliers):
        shrink, move = 1 - alpha_0 * sigma * multiplier * decay, alpha_0 * multiplier
        x[step + 1] = max(shrink**2 * x[step] - 2 * shrink * move * rate(x[step]) * math.sqrt(x[step]) + move**2, 0.0)
    return x


def closed_form_setting(context: SweepContext) -> dict:
    """The quantities the closed form needs, from the trials' shared config (TheoryDoesNotApply where the
    quadratic is not the isotropic one, its rate is not known to 1 %, or the optimizer is not SignSGD)."""
    require(context, {"model.name": "quadratic", "model.curvature_range": (1.0, 1.0), "model.point_noise": 0.0,
                      "optimizer.name": "signsgd"})
    if "bias" in setting(context, "param_groups.no_decay"):
        raise TheoryDoesNotApply("θ is of kind bias: the decay rule needs param_groups: {no_decay: []}")
    additive, relative = setting(context, "model.gradient_noise"), setting(context, "model.relative_noise")
    batch = setting(context, "training.batch_size")
    sigma = setting(context, "model.init_distance") / math.sqrt(setting(context, "data.dim"))
    rate_0, uncertainty = convergence_rate(noise_to_signal(1.0, sigma, additive, relative, batch))
    if uncertainty > RATE_UNCERTAINTY:
        raise TheoryDoesNotApply(f"p = {rate_0:.4f} at θ_0 is uncertain by {uncertainty:.1%} (noise/RMS(θ_0) = "
                                 f"{noise_to_signal(1.0, sigma, additive, relative, batch):.3g}: its next order depends on "
                                 f"the entries' distribution); the closed form needs ≤ {RATE_UNCERTAINTY:.0%}: raise "
                                 "model.relative_noise or model.gradient_noise")
    lr, decay = setting(context, "optimizer.lr"), setting(context, "optimizer.weight_decay")
    alpha_0 = lr / sigma
    given = {"σ": sigma, "η": lr, "λ": decay, "α_0": alpha_0, "s": additive, "ν": relative, "B": batch,
             "p(θ_0)": rate_0, "rule λ": alpha_0 / (2 * sigma)}
    if additive == 0:
        given.update({"case": "constant rate", "T*": (math.sqrt(2) - 1) / (alpha_0 * rate_0)})
    elif relative == 0:
        slope = math.sqrt(2 / math.pi) * math.sqrt(batch) * sigma / additive  # p_0 of p_t = p_0·√x_t
        given.update({"case": "slowing rate", "p_0": slope, "T*": 1 / (2 * alpha_0 * slope)})
    else:
        given["case"] = "mixed (neither of Su's cases)"
    return given


def closed_form_rows(context: SweepContext, given: dict) -> list[dict]:
    def rate(x):
        return convergence_rate(noise_to_signal(x, given["σ"], given["s"], given["ν"], given["B"]))[0]

    rows = []
    for _, trial in context.finished.iterrows():
        config = context.configs[trial["trial"]]
        metrics = context.run(trial["trial"]).metrics
        logged = metrics[["step", "population_loss"]].dropna()
        steps = logged["step"].to_numpy(int)
        multipliers = np.array([lr_multiplier(config.schedule, step, config.training.steps) for step in range(steps[-1])])
        measured = logged["population_loss"].to_numpy(float) / logged["population_loss"].iloc[0]
        predicted = distance_recursion(multipliers, given["α_0"], given["λ"], given["σ"], rate)[steps]
        cosine = metrics.filter(like="update_weight_cosine").mean(axis=1).dropna()
        rows.append({"trial": trial["trial"], "variant": trial["variant"], "seed": trial["training.seed"],
                     "schedule": config.schedule.name, "half_life": config.schedule.half_life,
                     "final x": float(measured[-1]), "final x, recursion": float(predicted[-1]),
                     "measured p": float(-cosine.mean()) if len(cosine) else math.nan,
                     "_curves": (steps, measured, predicted, np.append(multipliers, multipliers[-1])[steps])})
    return rows


def follow_verdicts(context: SweepContext, given: dict, rows: list[dict]) -> list[Verdict]:
    """Su's result for the case: its schedule at T = T* and the rule's λ gives x_t = D_t (the lr multiplier itself)."""
    matched = MATCHED.get(given["case"])
    closed_form = ("1/(1 + α_0pt)², p = √(2/π)/√(1 + ν²/B)" if matched == "inverse_square" else
                   "1/(1 + 2α_0p_0t), p_0 = √(2/π)·√B·σ/s")
    half_life = "(√2 − 1)/(α_0p)" if matched == "inverse_square" else "1/(2α_0p_0)"
    verdicts = []
    for row in (row for row in rows if row["schedule"] == matched):
        name = f"{context.sweep.name} {row['variant']} seed {row['seed']}"
        mismatch = [f"{what} = {value:.4g} vs {target} = {target_value:.4g}" for what, value, target, target_value in
                    (("T", row["half_life"], f"T* = {half_life}", given["T*"]), ("λ", given["λ"], "α_0/(2σ)", given["rule λ"]))
                    if abs(value / target_value - 1) > MATCH_TOLERANCE]
        if mismatch:
            verdicts.append(not_judged("schedule_closed_form", name, "x_t = D_t needs " + "; ".join(mismatch)
                                       + f" (within {MATCH_TOLERANCE:.0%})"))
            continue
        steps, measured, _, multiplier = row["_curves"]
        worst = float(np.max(np.abs(measured / multiplier - 1)))
        verdicts.append(Verdict("schedule_closed_form", name, "follows" if worst <= FOLLOW_TOLERANCE else "departs",
                                worst <= FOLLOW_TOLERANCE,
                                f"max |x_t/D_t − 1| = {worst:.3f} over {len(steps)} probe steps (final x = {measured[-1]:.4g}, "
                                f"D = {multiplier[-1]:.4g}; p measured {row['measured p']:.4f})",
                                f"≤ {FOLLOW_TOLERANCE:g} ({given['case']}: x_t = D_t = {closed_form}, α_0 = η/σ = "
                                f"{given['α_0']:.4g}, p(θ_0) = {given['p(θ_0)']:.4f})"))
    return verdicts


def recursion_verdicts(context: SweepContext, rows: list[dict]) -> list[Verdict]:
    """Every schedule: the final squared distance against the recursion run with its own η_t."""
    return [band_verdict("schedule_recursion", f"{context.sweep.name} {row['variant']} seed {row['seed']}", "final x",
                         row["final x"], relative_band(row["final x, recursion"], RECURSION_TOLERANCE),
                         f"the recursion's {row['final x, recursion']:.4g} ± {RECURSION_TOLERANCE:.0%}") for row in rows]


def closed_form_figure(context: SweepContext, given: dict, rows: list[dict]):
    """x_t per schedule (first seed, solid), its recursion (dashed) and the matched schedule's D_t (dotted)."""
    first_seed = min(row["seed"] for row in rows)
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for number, row in enumerate(row for row in rows if row["seed"] == first_seed):
        steps, measured, predicted, multiplier = row["_curves"]
        line, = axes.plot(steps, measured, marker=MARKERS[number % len(MARKERS)], markersize=3, markevery=5,
                          label=f"{row['variant']}: measured")
        axes.plot(steps, predicted, color=line.get_color(), linestyle="--", linewidth=1, label=f"{row['variant']}: recursion")
        if row["schedule"] == MATCHED.get(given["case"]):
            axes.plot(steps, multiplier, color="black", linestyle=":", linewidth=1.5, label="D_t (Su: x_t = D_t)")
    axes.set(yscale="log", xlabel="step", ylabel="x_t = ‖θ_t − θ*‖² / ‖θ_0 − θ*‖²",
             title=f"{context.sweep.name} (seed {first_seed}, {given['case']})\nsquared distance per schedule; dashed: closed-form recursion")
    axes.legend(fontsize=7)
    return save_figure(figure, context.out / "distance_by_schedule.png")


def _closed_form_report(context: SweepContext):
    try:
        given = closed_form_setting(context)
    except TheoryDoesNotApply as reason:
        return cells_report(context, [not_judged("schedule_closed_form", context.sweep.name, str(reason))], [], [])
    rows = closed_form_rows(context, given)
    means = context.cells.set_index("variant")["mean"]
    verdicts = follow_verdicts(context, given, rows) + recursion_verdicts(context, rows)
    verdicts.append(Verdict("schedule_ranking", context.sweep.name, f"best: {means.idxmin()}", None,
                            ", ".join(f"{v} {m:.4g}" for v, m in means.sort_values().items()), "report only"))
    table = pd.DataFrame([{k: v for k, v in row.items() if not k.startswith("_") and k != "trial"} for row in rows])
    lines = ["## Squared distance against the closed form (docs/science/other-effects.md §3.4)", "",
             ", ".join(f"{key} = {value:.4g}" if isinstance(value, float) else f"{key}: {value}" for key, value in given.items()), "",
             "x = ‖θ‖²/‖θ_0‖²; the recursion is the mean-field x_{t+1} = (1 − η_tλ)²x_t − 2(1 − η_tλ)a_tp(x_t)√x_t + a_t² "
             "with the run's η_t and p(x) = √(2/π)/√(1 + (s/(σ√x) + ν)²/B); the measured p is −update_weight_cosine "
             "(the mean over the run).", "",
             to_markdown(table), ""]
    report = cells_report(context, verdicts, lines, [closed_form_figure(context, given, rows)])
    report.data.update({"setting": given, "schedules": table.to_dict(orient="records")})
    return report


closed_form = Effect("schedule_closed_form", "docs/science/other-effects.md §3.4", "sweep", _closed_form_report,
                     summary="on a quadratic with a constant (slowing) convergence rate, the squared distance x_t = D_t "
                             "under Su's inverse-square (inverse-time) schedule; every schedule against its recursion")
