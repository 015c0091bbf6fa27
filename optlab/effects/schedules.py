"""Schedules with the same half-life (docs/science/other-effects.md §3.4; Su, kexue.fm/archives/9344):
constant, inverse-time 1/(1 + t/T), inverse-square 1/(1 + (√2 − 1)t/T)², warmup + cosine, and Amos's
implied schedule d_t read from its state. The spec gives no prior numbers: the report ranks them and
draws the loss, lr and Amos curves (no gate).

`closed_form` (§3.4) judges the schedules where Su's derivation is exact: the isotropic quadratic ½‖θ‖²
with gradient noise proportional to ‖θ‖ (model.relative_noise ν), where a sign step has the same mean
cosine p = √(2/π)/√(1 + ν²/B) with −θ at every distance (a constant convergence rate), trained with
SignSGD at η = α_0σ (σ = RMS(θ_0) = ‖θ_0‖/√k) and the decay rule λ = α_0/(2σ). Then the squared distance
x_t = ‖θ_t‖²/‖θ_0‖² obeys a closed-form recursion, and under the inverse-square schedule of half-life
T* = (√2 − 1)/(α_0p) it equals the schedule itself: x_t = D_t = 1/(1 + α_0pt)².
Verdict: max |x_t/D_t − 1| ≤ 0.1 over the probe steps (T and λ within 5 % of T* and the rule, else not
judged; p must be known to 1 %, i.e. ν/√B ≳ 6). Every schedule: the final x within 15 % of the recursion
at its own η_t. Reported: the measured p and the ranking.
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
FOLLOW_TOLERANCE = 0.1  # inverse-square: max |x_t/D_t − 1| ≤ 0.1
RECURSION_TOLERANCE = 0.15  # every schedule: the final x within 15 % of its recursion


def convergence_rate(relative_noise: float, batch_size: int) -> tuple[float, float]:
    """p = E cos(sign g, θ) on ½‖θ‖² with gradient θ + ν_B·r·z (r = RMS(θ), ν_B = ν/√B), and its spread.
    To first order in 1/ν_B, p = √(2/π)/ν_B whatever the entries of θ; the next order depends on their
    distribution: √(2/π)/√(1 + ν_B²) for Gaussian entries (E[θ_i sign(θ_i + ν_B r z_i)] = r√(2/π)/√(1 + ν_B²)),
    2Φ(1/ν_B) − 1 for entries of equal size (θ_0). Returns the Gaussian value and the relative gap between
    the two, the uncertainty of p."""
    nu = relative_noise / math.sqrt(batch_size)
    gaussian, equal = math.sqrt(2 / math.pi) / math.sqrt(1 + nu**2), math.erf(1 / (nu * math.sqrt(2)))
    return gaussian, abs(equal - gaussian) / gaussian


def distance_recursion(multipliers: np.ndarray, alpha_0: float, decay: float, sigma: float, rate: float) -> np.ndarray:
    """x_t = ‖θ_t‖²/‖θ_0‖² for t = 0 … len(multipliers) under θ ← (1 − η_tλ)θ − η_t·sign(g), η_t = α_0σD_t:
    x_{t+1} = (1 − η_tλ)²x_t − 2(1 − η_tλ)·a_t·p·√x_t + a_t²  with a_t = η_t/σ = α_0D_t (the sign step has norm
    √k·η_t, its mean cosine with −θ is p, and ‖θ_0‖ = √k·σ)."""
    x = np.empty(len(multipliers) + 1)
    x[0] = 1.0
    for step, multiplier in enumerate(multipliers):
        shrink, move = 1 - alpha_0 * sigma * multiplier * decay, alpha_0 * multiplier
        x[step + 1] = max(shrink**2 * x[step] - 2 * shrink * move * rate * math.sqrt(x[step]) + move**2, 0.0)
    return x


def closed_form_setting(context: SweepContext) -> dict:
    """The quantities the closed form needs, from the trials' shared config (TheoryDoesNotApply where the
    quadratic is not the isotropic, relative-noise one, or the optimizer is not SignSGD)."""
    require(context, {"model.name": "quadratic", "model.curvature_range": (1.0, 1.0), "model.point_noise": 0.0,
                      "model.gradient_noise": 0.0, "optimizer.name": "signsgd"})
    nu, batch = setting(context, "model.relative_noise"), setting(context, "training.batch_size")
    if not nu:
        raise TheoryDoesNotApply("the constant convergence rate needs model.relative_noise > 0")
    if "bias" in setting(context, "param_groups.no_decay"):
        raise TheoryDoesNotApply("θ is of kind bias: the decay rule needs param_groups: {no_decay: []}")
    rate, uncertainty = convergence_rate(nu, batch)
    if uncertainty > RATE_UNCERTAINTY:
        raise TheoryDoesNotApply(f"p = √(2/π)/√(1 + ν²/B) = {rate:.4f} is uncertain by {uncertainty:.1%} at ν/√B = "
                                 f"{nu / math.sqrt(batch):.3g} (its next order depends on the entries' distribution); "
                                 f"the closed form needs ≤ {RATE_UNCERTAINTY:.0%}: raise model.relative_noise")
    sigma = setting(context, "model.init_distance") / math.sqrt(setting(context, "data.dim"))
    lr, decay = setting(context, "optimizer.lr"), setting(context, "optimizer.weight_decay")
    alpha_0 = lr / sigma
    return {"σ": sigma, "η": lr, "λ": decay, "α_0": alpha_0, "p": rate, "ν": nu, "B": batch,
            "T*": (math.sqrt(2) - 1) / (alpha_0 * rate), "rule λ": alpha_0 / (2 * sigma)}


def closed_form_rows(context: SweepContext, given: dict) -> list[dict]:
    rows = []
    for _, trial in context.finished.iterrows():
        config = context.configs[trial["trial"]]
        metrics = context.run(trial["trial"]).metrics
        logged = metrics[["step", "population_loss"]].dropna()
        steps = logged["step"].to_numpy(int)
        multipliers = np.array([lr_multiplier(config.schedule, step, config.training.steps) for step in range(steps[-1])])
        measured = logged["population_loss"].to_numpy(float) / logged["population_loss"].iloc[0]
        predicted = distance_recursion(multipliers, given["α_0"], given["λ"], given["σ"], given["p"])[steps]
        cosine = metrics.filter(like="update_weight_cosine").mean(axis=1).dropna()
        rows.append({"trial": trial["trial"], "variant": trial["variant"], "seed": trial["training.seed"],
                     "schedule": config.schedule.name, "half_life": config.schedule.half_life,
                     "final x": float(measured[-1]), "final x, recursion": float(predicted[-1]),
                     "measured p": float(-cosine.mean()) if len(cosine) else math.nan,
                     "_curves": (steps, measured, predicted, np.append(multipliers, multipliers[-1])[steps])})
    return rows


def follow_verdicts(context: SweepContext, given: dict, rows: list[dict]) -> list[Verdict]:
    """Su's inverse-square result: at T = T* and the rule's λ, x_t = D_t (the lr multiplier itself)."""
    verdicts = []
    for row in (row for row in rows if row["schedule"] == "inverse_square"):
        name = f"{context.sweep.name} {row['variant']} seed {row['seed']}"
        mismatch = [f"{what} = {value:.4g} vs {target} = {matched:.4g}" for what, value, target, matched in
                    (("T", row["half_life"], "T* = (√2 − 1)/(α_0p)", given["T*"]), ("λ", given["λ"], "α_0/(2σ)", given["rule λ"]))
                    if abs(value / matched - 1) > MATCH_TOLERANCE]
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
                                f"≤ {FOLLOW_TOLERANCE:g} (x_t = D_t = 1/(1 + α_0pt)² with α_0 = η/σ = {given['α_0']:.4g}, "
                                f"p = √(2/π)/√(1 + ν²/B) = {given['p']:.4f})"))
    return verdicts


def recursion_verdicts(context: SweepContext, rows: list[dict]) -> list[Verdict]:
    """Every schedule: the final squared distance against the recursion run with its own η_t."""
    return [band_verdict("schedule_recursion", f"{context.sweep.name} {row['variant']} seed {row['seed']}", "final x",
                         row["final x"], relative_band(row["final x, recursion"], RECURSION_TOLERANCE),
                         f"the recursion's {row['final x, recursion']:.4g} ± {RECURSION_TOLERANCE:.0%}") for row in rows]


def closed_form_figure(context: SweepContext, rows: list[dict]):
    """x_t per schedule (first seed, solid), its recursion (dashed) and the inverse-square D_t (dotted)."""
    first_seed = min(row["seed"] for row in rows)
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for number, row in enumerate(row for row in rows if row["seed"] == first_seed):
        steps, measured, predicted, multiplier = row["_curves"]
        line, = axes.plot(steps, measured, marker=MARKERS[number % len(MARKERS)], markersize=3, markevery=5,
                          label=f"{row['variant']}: measured")
        axes.plot(steps, predicted, color=line.get_color(), linestyle="--", linewidth=1, label=f"{row['variant']}: recursion")
        if row["schedule"] == "inverse_square":
            axes.plot(steps, multiplier, color="black", linestyle=":", linewidth=1.5, label="D_t (Su: x_t = D_t)")
    axes.set(yscale="log", xlabel="step", ylabel="x_t = ‖θ_t − θ*‖² / ‖θ_0 − θ*‖²",
             title=f"{context.sweep.name} (seed {first_seed})\nsquared distance per schedule; dashed: closed-form recursion")
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
             ", ".join(f"{key} = {value:.4g}" for key, value in given.items()), "",
             "x = ‖θ‖²/‖θ_0‖²; the recursion is the mean-field x_{t+1} = (1 − η_tλ)²x_t − 2(1 − η_tλ)a_tp√x_t + a_t² "
             "with the run's η_t; the measured p is −update_weight_cosine (the mean over the run).", "",
             to_markdown(table), ""]
    report = cells_report(context, verdicts, lines, [closed_form_figure(context, rows)])
    report.data.update({"setting": given, "schedules": table.to_dict(orient="records")})
    return report


closed_form = Effect("schedule_closed_form", "docs/science/other-effects.md §3.4", "sweep", _closed_form_report,
                     summary="on a quadratic with a constant convergence rate, the squared distance x_t = D_t under "
                             "Su's inverse-square schedule; every schedule against its recursion")
