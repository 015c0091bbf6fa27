"""Learning rate ∝ parameter scale (docs/science/other-effects.md §3.2; Amos, arXiv 2210.11693; Su,
kexue.fm/archives/9344): the same model with every matrix initialised × s. An optimizer whose steps are
relative to each tensor's scale (Tiger's lr × RMS(θ), Amos's η = RMS(θ_0)) should make the result
nearly independent of s; a fixed lr (Adam, AdamW) should not.

Verdicts:
- spread: the spread (max − min over s) of the seed-mean final metric of each scale-relative optimizer
  ≤ ½ of the fixed-lr optimizer's spread (the spec's rule; there is no closed form for the spread).
- trajectory, only on a model whose function ignores each matrix's scale (its schema's `scale_invariant`,
  §3.2): there the rule's premise holds exactly, ∇L(sθ) = ∇L(θ)/s, and a scale-relative update makes
  θ_t(s) = s·θ_t(1) (Tiger: sign(m) unchanged, RMS(θ) × s; Amos: up to d_t, which reads √(ξη)), so the
  eval-loss curve is the same at every s. PASS: the largest deviation of a seed's curve from its s = s_ref
  curve ≤ 1/20 of the fixed-lr optimizer's.

What the report measures to explain a failure (§3.2): the initial eval loss per s (does the function at
init depend on s?) and, per parameter kind, the retention exponent k of the trained scale, the slope of
log RMS(θ_final) against log s: k = 1 the run keeps the init's scale (what a scale-relative rule does by
design, so a wrong init scale stays wrong), k = 0 it finds the scale the loss wants whatever the init.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optlab.effects.core import Effect, SweepContext, Verdict, cells_report
from optlab.effects.figures import variant_lines
from optlab.report.figures import plt, save_figure
from optlab.report.tables import to_markdown

SPREAD_SHARE = 0.5
TRAJECTORY_SHARE = 0.05
FIXED_LR = ("adam", "adamw")
RMS_PREFIX = "param_rms."
SCALE_DEPENDENT_READING = (
    "This model's function depends on its weights' scale (its schema is not `scale_invariant`): the head's scale is "
    "the softmax temperature, attention logits grow with s², and the residual stream adds unnormalised outputs. The "
    "rule takes the init scale for the model-oriented scale, the scale the *trained* weights should have; an optimizer "
    "with k ≈ 1 keeps a wrong init scale wrong, one with k ≈ 0 repairs it. Compare the head's k across variants.")
SCALE_INVARIANT_READING = (
    "This model's function ignores each matrix's scale (`scale_invariant`): k = 1 costs nothing, and a "
    "scale-relative optimizer should show k = 1 with the same loss at every s.")


def variant_optimizer(context: SweepContext, variant: str) -> str:
    """The optimizer name of a variant's trials."""
    trials = context.finished[context.finished["variant"] == variant]["trial"]
    return context.configs[trials.iloc[0]].optimizer.name


def reference_scale(scales: list[float]) -> float:
    """The grid value the trajectories are compared with: 1 if the grid has it, else its geometric middle."""
    return 1.0 if 1.0 in scales else min(scales, key=lambda s: abs(math.log(s) - np.mean(np.log(scales))))


def trajectory_deviations(context: SweepContext, scale_key: str) -> dict[str, float]:
    """Per variant: max over seeds, s and probe steps of |eval_loss_s(t) − eval_loss_ref(t)|."""
    deviations = {}
    reference = reference_scale(sorted(context.finished[scale_key].unique()))
    for variant, trials in context.finished.groupby("variant", sort=False):
        largest = 0.0
        for _, seed_trials in trials.groupby("training.seed"):
            curves = {row[scale_key]: context.run(row["trial"]).metrics.set_index("step")["eval_loss"].dropna()
                      for _, row in seed_trials.iterrows()}
            for scale, curve in curves.items():
                largest = max(largest, float((curve - curves[reference]).abs().max()))
        deviations[variant] = largest
    return deviations


def scale_diagnostics(context: SweepContext, scale_key: str) -> tuple[list[dict], dict[tuple[str, str], float]]:
    """Per (variant, s): the seed-mean initial eval loss and final RMS of each parameter kind; and per
    (variant, kind) the retention exponent, the slope of log final RMS against log s."""
    rows = []
    for (variant, scale), trials in context.finished.groupby(["variant", scale_key], sort=False):
        runs = [context.run(trial) for trial in trials["trial"]]
        row = {"variant": variant, scale_key: scale,
               "initial eval_loss": np.mean([run.summary.get("initial_metrics", {}).get("eval_loss", math.nan) for run in runs])}
        for column in runs[0].metrics.columns:
            if column.startswith(RMS_PREFIX):
                row[f"final RMS {column[len(RMS_PREFIX):]}"] = np.mean([run.metrics[column].dropna().iloc[-1] for run in runs])
        rows.append(row)
    exponents = {}
    for variant in dict.fromkeys(row["variant"] for row in rows):
        mine = [row for row in rows if row["variant"] == variant]
        log_scales = np.log([row[scale_key] for row in mine])
        for column in (c for c in mine[0] if c.startswith("final RMS ")):
            values = np.array([row[column] for row in mine], dtype=float)
            if len(mine) > 1 and np.all(values > 0):
                exponents[(variant, column[len("final RMS "):])] = float(np.polyfit(log_scales, np.log(values), 1)[0])
    return rows, exponents


def _report(context: SweepContext):
    scale_key = next(key for key in context.keys if key != "variant")
    spreads = {variant: float(rows["mean"].max() - rows["mean"].min())
               for variant, rows in context.cells.groupby("variant", sort=False)}
    fixed = [v for v in spreads if variant_optimizer(context, v) in FIXED_LR]
    invariant_model = all(type(config.model).scale_invariant for config in context.configs.values())
    deviations = trajectory_deviations(context, scale_key) if invariant_model else {}
    verdicts = []
    for reference in fixed:
        for variant, spread in spreads.items():
            if variant in fixed:
                continue
            limit = SPREAD_SHARE * spreads[reference]
            verdicts.append(Verdict("lr_proportional_to_scale", f"{context.sweep.name} {variant}",
                                    "invariant" if spread <= limit else "not invariant", spread <= limit,
                                    f"spread over {scale_key} = {spread:.4f} vs {spreads[reference]:.4f} for {reference}",
                                    f"≤ {SPREAD_SHARE:g} × {reference}'s spread"))
            if invariant_model:
                deviation, limit = deviations[variant], TRAJECTORY_SHARE * deviations[reference]
                exact = " (bit-identical)" if deviation == 0 else ""
                verdicts.append(Verdict("scale_invariant_trajectory", f"{context.sweep.name} {variant}",
                                        "same trajectory" if deviation <= limit else "different trajectory",
                                        deviation <= limit,
                                        f"max |Δ eval_loss| against s = {reference_scale(sorted(context.finished[scale_key].unique())):g} "
                                        f"over every probe step = {deviation:.3g}{exact} vs {deviations[reference]:.3g} "
                                        f"for {reference}",
                                        f"≤ {TRAJECTORY_SHARE:g} × {reference}'s (the function ignores each matrix's "
                                        "scale: a scale-relative update gives θ_t(s) = s·θ_t(1))"))
    rows, exponents = scale_diagnostics(context, scale_key)
    kinds = list(dict.fromkeys(kind for _, kind in exponents))
    lines = ["Spread = max − min over the init scales of the seed-mean final metric: " +
             ", ".join(f"{v} {s:.4f}" for v, s in spreads.items()), "",
             "## Why (docs/science/other-effects.md §3.2)", "",
             "Retention exponent k of the trained scale per parameter kind (slope of log final RMS against log s; "
             "1 = the init's scale is kept, 0 = the loss sets it whatever the init):", "",
             to_markdown(_exponent_table(exponents, kinds)), "",
             (SCALE_INVARIANT_READING if invariant_model else SCALE_DEPENDENT_READING), "",
             "Initial eval loss and final RMS per variant and init scale (seed means):", "",
             to_markdown(pd.DataFrame(rows)), ""]
    figures = [variant_lines(context, scale_key, context.sweep.metric.column, "metric_vs_init_scale"),
               trajectories_figure(context, scale_key, deviations)]
    data = {"spreads": spreads, "trajectory_deviations": deviations,
            "retention_exponents": {f"{variant} {kind}": k for (variant, kind), k in exponents.items()}}
    report = cells_report(context, verdicts, lines, figures)
    report.data.update(data)
    return report


def trajectories_figure(context: SweepContext, scale_key: str, deviations: dict[str, float]):
    """One panel per variant: the first seed's eval-loss curve at each init scale, drawn so that curves
    that coincide show as one (solid, dashed, dotted on top of each other)."""
    variants = list(dict.fromkeys(context.finished["variant"]))
    first_seed = context.finished["training.seed"].min()
    figure, axes = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 3.6), sharey=True, squeeze=False)
    for panel, variant in zip(axes[0], variants):
        trials = context.finished[(context.finished["variant"] == variant) & (context.finished["training.seed"] == first_seed)]
        for number, (_, row) in enumerate(trials.sort_values(scale_key).iterrows()):
            curve = context.run(row["trial"]).metrics.set_index("step")["eval_loss"].dropna()
            panel.plot(curve.index, curve.values, linestyle=("-", "--", ":", "-.")[number % 4], linewidth=2.5 - 0.6 * (number % 3),
                       label=f"s = {row[scale_key]:g}")
        deviation = deviations.get(variant)
        panel.set(title=variant + (f"\nmax |Δ| vs s = 1: {deviation:.2g}" if deviation is not None else ""), xlabel="step")
        panel.legend(fontsize=7)
    axes[0][0].set_ylabel(f"eval_loss (seed {first_seed})")
    low = min(line.get_ydata().min() for panel in axes[0] for line in panel.get_lines())
    high = max(line.get_ydata()[len(line.get_ydata()) // 10:].max() for panel in axes[0] for line in panel.get_lines())
    axes[0][0].set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    figure.suptitle(f"{context.sweep.name}: the loss curve at each init scale s")
    return save_figure(figure, context.out / "eval_loss_by_init_scale.png")


def _exponent_table(exponents: dict[tuple[str, str], float], kinds: list[str]) -> pd.DataFrame:
    variants = list(dict.fromkeys(variant for variant, _ in exponents))
    return pd.DataFrame([{"variant": v, **{kind: exponents.get((v, kind), math.nan) for kind in kinds}} for v in variants])


effect = Effect("lr_proportional_to_scale", "docs/science/other-effects.md §3.2", "sweep", _report,
                summary="scale-relative lrs (Tiger, Amos) make training invariant to the init scale; a fixed lr does not")
