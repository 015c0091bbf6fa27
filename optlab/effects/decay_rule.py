"""Weight decay ≈ α_0²/2 per step (docs/science/other-effects.md §3.3; Su, kexue.fm/archives/9344):
for sign updates η = α_0·σ (σ the init scale, measured as the matrices' RMS at θ_0), so the rule's decay is
λ = α_0/(2σ) = η/(2σ²). A sweep of λ around it.

What the rule does, as a closed form (§3.3): it is the decay whose shrinking cancels the growth of ‖θ‖² that the
steps' second-order term η²‖u‖² causes. With a sign update (RMS(u) = 1) orthogonal to θ and decoupled decay,
    RMS²_{t+1} = (1 − ηλ)²·RMS²_t + η²·RMS(u)²,      RMS²_∞ = η/(λ(2 − ηλ)) ≈ η/(2λ),
so at λ = α_0/(2σ) the weights keep RMS σ, the per-step relative move stays α_0, and a λ k× the rule's
settles at σ/√k. Premise, measured: the cross term 2η·u·θ ≪ η²‖u‖², i.e. R = 2·cos(Δ_u, θ)·RMS(θ)/RMS(Δ)
(update_weight_cosine of the updates probe, mean over the run after its first tenth) has |R| ≤ 1.

Verdicts:
- norm closed form, on a model whose function ignores each matrix's scale (the decay is then auxiliary: it
  cannot change the function, only the weights' scale), per λ and per kind (matrix, head) where the premise
  holds: the final RMS within 15 % of the recursion started from the measured RMS(θ_0) at the run's η, λ.
  A kind where |R| > 1 is NOT JUDGED with its R.
- optimum (report only; the spec expects it near ×1): where the optimum of the metric (parabola vertex in
  log λ) falls relative to the rule.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optlab.effects.core import (Effect, SweepContext, TheoryDoesNotApply, Verdict, band_verdict, cells_report,
                                 not_judged, relative_band, setting)
from optlab.effects.figures import variant_lines
from optlab.effects.fits import refine_optimum
from optlab.report.figures import MARKERS, plt, save_figure
from optlab.report.tables import to_markdown

NORM_TOLERANCE = 0.15
PREMISE_LIMIT = 1.0
KINDS = ("matrix", "head")
SETTLING_FRACTION = 0.1  # the premise's cosine is averaged over the run after its first tenth


def rms_recursion(rms_0: float, lr: float, decay: float, steps: int) -> np.ndarray:
    """RMS_t for t = 0 … steps of RMS²_{t+1} = (1 − ηλ)²·RMS²_t + η² (sign update ⊥ θ, decoupled decay)."""
    steps_taken = np.arange(steps + 1)
    keep = (1 - lr * decay) ** 2
    if keep == 1:
        return np.sqrt(rms_0**2 + lr**2 * steps_taken)
    equilibrium = lr**2 / (1 - keep)
    return np.sqrt(equilibrium + (rms_0**2 - equilibrium) * keep**steps_taken)


def measured_sigma(context: SweepContext) -> float:
    """σ of the rule: the RMS of the matrices at θ_0 (the first logged param_rms.matrix), mean over trials."""
    values = [context.run(trial).metrics["param_rms.matrix"].dropna().iloc[0] for trial in context.finished["trial"]
              if "param_rms.matrix" in context.run(trial).metrics]
    if not values:
        raise TheoryDoesNotApply("σ is read from param_rms.matrix at θ_0: turn the updates probe on (probes.updates: true)")
    return float(np.mean(values))


def norm_rows(context: SweepContext, decay_key: str, lr: float) -> pd.DataFrame:
    """Per trial and kind: the final RMS, the recursion's prediction and the premise ratio R."""
    rows = []
    for _, trial in context.finished.iterrows():
        metrics = context.run(trial["trial"]).metrics
        decay = float(trial[decay_key])
        for kind in KINDS:
            if f"param_rms.{kind}" not in metrics or f"update_weight_cosine.{kind}" not in metrics:
                continue
            logged = metrics[["step", f"param_rms.{kind}", f"update_rms.{kind}", f"update_weight_cosine.{kind}"]].dropna()
            first_step, last_step = int(logged["step"].iloc[0]), int(logged["step"].iloc[-1])
            settled = logged[logged["step"] >= first_step + SETTLING_FRACTION * (last_step - first_step)]
            premise = float((2 * settled[f"update_weight_cosine.{kind}"] * settled[f"param_rms.{kind}"]
                             / settled[f"update_rms.{kind}"]).mean())
            # param_rms at a probe step is the RMS before that step's update: RMS_{step − 1}
            predicted = rms_recursion(float(logged[f"param_rms.{kind}"].iloc[0]), lr, decay, last_step - first_step)[-1]
            rows.append({decay_key: decay, "seed": trial["training.seed"], "kind": kind,
                         "final RMS": float(logged[f"param_rms.{kind}"].iloc[-1]), "predicted RMS": float(predicted),
                         "premise R": premise})
    return pd.DataFrame(rows)


def norm_verdicts(context: SweepContext, table: pd.DataFrame, decay_key: str) -> list[Verdict]:
    verdicts = []
    means = table.groupby([decay_key, "kind"], sort=True)[["final RMS", "predicted RMS", "premise R"]].mean().reset_index()
    for _, row in means.iterrows():
        run = f"{context.sweep.name} λ={row[decay_key]:g} {row['kind']}"
        if abs(row["premise R"]) > PREMISE_LIMIT:
            verdicts.append(not_judged("decay_rule_norm", run,
                                       f"premise fails: the cross term 2η·u·θ is {row['premise R']:.2g}× the second-order "
                                       f"term η²‖u‖² (|R| must be ≤ {PREMISE_LIMIT:g})"))
            continue
        verdicts.append(band_verdict("decay_rule_norm", run, "final RMS (seed mean)", row["final RMS"],
                                     relative_band(row["predicted RMS"], NORM_TOLERANCE),
                                     f"RMS² recursion (1 − ηλ)²·RMS² + η² from RMS(θ_0), R = {row['premise R']:.2g}; "
                                     f"±{NORM_TOLERANCE:.0%}"))
    return verdicts


def norm_figure(context: SweepContext, decay_key: str, lr: float, sigma: float):
    """The matrices' RMS over steps for each λ (first seed), the recursion dashed, σ dotted."""
    first_seed = context.finished["training.seed"].min()
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    trials = context.finished[context.finished["training.seed"] == first_seed].sort_values(decay_key)
    for number, (_, trial) in enumerate(trials.iterrows()):
        logged = context.run(trial["trial"]).metrics[["step", "param_rms.matrix"]].dropna()
        line, = axes.plot(logged["step"], logged["param_rms.matrix"], marker=MARKERS[number % len(MARKERS)],
                          markersize=3, label=f"λ = {trial[decay_key]:g}")
        steps = int(logged["step"].iloc[-1] - logged["step"].iloc[0])
        predicted = rms_recursion(float(logged["param_rms.matrix"].iloc[0]), lr, float(trial[decay_key]), steps)
        axes.plot(logged["step"].iloc[0] + np.arange(steps + 1), predicted, color=line.get_color(), linestyle="--",
                  linewidth=1, alpha=0.8)
    axes.axhline(sigma, color="black", linestyle=":", linewidth=1, label=f"σ = {sigma:.3g}: kept at the rule's λ = {lr / (2 * sigma**2):.3g}")
    axes.set(yscale="log", xlabel="step", ylabel="RMS of the matrices",
             title=f"{context.sweep.name} (seed {first_seed})\nweight scale per λ; dashed: the closed form")
    axes.legend(fontsize=7)
    return save_figure(figure, context.out / "weight_rms_vs_step.png")


def _report(context: SweepContext):
    decay_key = next(key for key in context.keys if key != "variant")
    metric = context.sweep.metric.column
    try:
        sigma, lr = measured_sigma(context), setting(context, "optimizer.lr")
        if setting(context, "schedule.name") != "constant":
            raise TheoryDoesNotApply("the closed forms assume a constant lr (schedule: {name: constant})")
    except TheoryDoesNotApply as reason:
        figures = [variant_lines(context, decay_key, metric, "metric_vs_weight_decay")]
        return cells_report(context, [not_judged("decay_rule", context.sweep.name, str(reason))], [], figures)
    rule = lr / (2 * sigma**2)
    cells = context.cells.sort_values(decay_key)
    optimum = refine_optimum(cells[decay_key].to_numpy(float), cells["mean"].to_numpy(float))
    chosen = optimum.lr if optimum.lr is not None else optimum.grid_lr
    measured = (f"optimum λ* = {chosen:.4g} ({optimum.flag or 'refined'}) = {chosen / rule:.3g} × the rule's "
                f"λ = α_0/(2σ) = {rule:.4g} (σ = RMS(θ_0) of the matrices = {sigma:.4g}, α_0 = η/σ = {lr / sigma:.3g}, "
                f"ηλ = α_0²/2 = {lr * rule:.3g} per step)")
    verdicts = [Verdict("decay_rule", context.sweep.name, f"optimum at ×{chosen / rule:.2g}", None, measured,
                        "report only (expected near ×1)")]
    table = norm_rows(context, decay_key, lr)
    invariant_model = all(type(config.model).scale_invariant for config in context.configs.values())
    if invariant_model and len(table):
        verdicts += norm_verdicts(context, table, decay_key)
    lines = []
    if len(table):
        means = table.groupby([decay_key, "kind"], sort=True)[["final RMS", "predicted RMS", "premise R"]].mean().reset_index()
        lines = ["## The weights' scale against the closed form (docs/science/other-effects.md §3.3)", "",
                 ("The model's function ignores each matrix's scale: the decay is auxiliary and the closed form is judged."
                  if invariant_model else
                  "The model's function depends on its weights' scale, so the decay also regularises the function: the "
                  "closed form is reported, not judged."),
                 f"Equilibrium at the rule's λ: RMS = σ = {sigma:.4g}; R = cross term / second-order term.", "",
                 to_markdown(means), ""]
    figures = [variant_lines(context, decay_key, metric, "metric_vs_weight_decay",
                             marks=((rule, f"rule λ = α_0/(2σ) = {rule:.3g}"), (chosen, f"optimum λ* = {chosen:.3g}")))]
    if len(table):
        figures.append(norm_figure(context, decay_key, lr, sigma))
    report = cells_report(context, verdicts, lines, figures)
    report.data.update({"rule_weight_decay": rule, "sigma": sigma, "optimum_over_rule": chosen / rule,
                        "norms": table.to_dict(orient="records")})
    return report


effect = Effect("decay_rule", "docs/science/other-effects.md §3.3", "sweep", _report,
                summary="Su's λ = α_0/(2σ): the weights' scale against its closed form, and where the optimal decay falls (report)")
