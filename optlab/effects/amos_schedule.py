"""Amos's implied schedule (docs/science/optimizers.md §5.3, docs/science/other-effects.md §3.5; Amos, arXiv
2210.11693): b_t grows as b_{t+1} = b_t + γ_t(1 + b_t) with γ_t = ξ²·c_t·(g²·r)_t, c_t = 1/√(1 + ζ√ξ·b_t),
and the lr factor is d_t = 1/(1 + ζ√(ξη)·b_t). With g²·r ≡ 1 (the step's g² equal to its running mean v̂)
this is a closed form of ξ, ζ alone: b ≈ exp(ξ²t) − 1 at first, so d stays flat for ≈ 1/ξ² steps, then
b ∝ t² and d ∝ 1/t².

Verdicts, per trial, from its own ξ, ζ, initial b and η = RMS(θ_0) of the matrices:
- flat: the logged d (mean over tensors) at the first probe step ≥ 1/ξ² is ≥ 0.9 (the closed form gives
  d(1/ξ²) = 1/(1 + ζ√(ξη)(e − 1)) ≈ 0.95 for ξη ≤ 0.01; it is flatter still where g²·r < 1).
- leaves the flat part: d at the last step ≤ ½ (the run is long enough to test the schedule at all).
Reported beside them: measured b and d against the closed form, the late exponent of d (slope of log d
against log t over t ≥ T/2; the closed form tends to −2) and the mean g²·r,
the premise of the closed form (< 1 where gradients shrink during training, which slows b).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optlab.effects.core import Effect, SweepContext, Verdict, cells_report, not_judged
from optlab.report.figures import MARKERS, plt, save_figure
from optlab.report.tables import to_markdown

FLAT_LEVEL = 0.9
LEFT_LEVEL = 0.5


def closed_form_b(lr: float, decay_speed: float, initial_b: float, finetune_rate: float, steps: int) -> np.ndarray:
    """b_t for t = 0 … steps with g²·r ≡ 1 (γ = √fr·c·ξ², b ← b + γ(fr + b))."""
    values = np.empty(steps + 1)
    b = values[0] = initial_b
    for step in range(1, steps + 1):
        gamma = math.sqrt(finetune_rate) * lr**2 / math.sqrt(1 + decay_speed * math.sqrt(lr) * b)
        b += gamma * (finetune_rate + b)
        values[step] = b
    return values


def late_exponent(steps: np.ndarray, values: np.ndarray) -> float:
    """Slope of log values against log steps over the run's last factor of 2 in t (t ≥ T/2)."""
    keep = (steps >= steps[-1] / 2) & (values > 0)
    return float(np.polyfit(np.log(steps[keep]), np.log(values[keep]), 1)[0]) if keep.sum() >= 3 else math.nan


def trial_rows(context: SweepContext) -> list[dict]:
    rows = []
    for _, trial in context.finished.iterrows():
        run = context.run(trial["trial"])
        optimizer = run.config.optimizer
        logged = run.metrics[["step", "amos.d", "amos.b", "amos.g2_over_v", "param_rms.matrix"]].dropna()
        steps = logged["step"].to_numpy(int)
        xi, zeta, eta = optimizer.lr, optimizer.decay_speed, float(logged["param_rms.matrix"].iloc[0])
        predicted_b = closed_form_b(xi, zeta, optimizer.initial_b, optimizer.finetune_rate, int(steps[-1]))[steps]
        predicted_d = 1 / (1 + zeta * math.sqrt(xi * eta) * predicted_b)
        flat_step = math.ceil(1 / xi**2)
        at_flat = logged[logged["step"] >= flat_step]
        rows.append({"trial": trial["trial"], "variant": trial["variant"], "seed": trial["training.seed"], "ξ": xi,
                     "ζ": zeta, "η": eta, "1/ξ²": flat_step, "steps": int(steps[-1]),
                     "d(1/ξ²)": float(at_flat["amos.d"].iloc[0]) if len(at_flat) else math.nan,
                     "d(1/ξ²) closed form": 1 / (1 + zeta * math.sqrt(xi * eta) * (math.e - 1)),
                     "d last": float(logged["amos.d"].iloc[-1]), "d last closed form": float(predicted_d[-1]),
                     "b last": float(logged["amos.b"].iloc[-1]), "b last closed form": float(predicted_b[-1]),
                     "late exponent of d": late_exponent(steps, logged["amos.d"].to_numpy(float)),
                     "late exponent closed form": late_exponent(steps, predicted_d),
                     "mean g²·r": float(logged["amos.g2_over_v"].iloc[1:].mean()),
                     "_curves": (steps, logged["amos.d"].to_numpy(float), predicted_d)})
    return rows


def schedule_figure(context: SweepContext, rows: list[dict]):
    """d_t measured (markers) and its closed form (dashed) on log–log axes, 1/ξ² marked per trial."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for number, row in enumerate(rows):
        steps, measured, predicted = row["_curves"]
        line, = axes.plot(steps, measured, marker=MARKERS[number % len(MARKERS)], markersize=3,
                          label=f"ξ = {row['ξ']:g} (seed {row['seed']})")
        axes.plot(steps, predicted, color=line.get_color(), linestyle="--", linewidth=1)
        axes.axvline(row["1/ξ²"], color=line.get_color(), linestyle=":", linewidth=1)
    reference = np.array([rows[0]["1/ξ²"], rows[0]["steps"]], dtype=float)
    axes.plot(reference, 0.5 * (reference / reference[0]) ** -2.0, color="grey", linewidth=1, label="∝ 1/t²")
    axes.set(xscale="log", yscale="log", xlabel="step", ylabel="d_t (mean over tensors)",
             title=f"{context.sweep.name}\nAmos's lr factor d_t; dashed: closed form (g²·r ≡ 1), dotted: t = 1/ξ²")
    axes.legend(fontsize=7)
    return save_figure(figure, context.out / "amos_schedule.png")


def _report(context: SweepContext):
    if any(config.optimizer.name != "amos" for config in context.configs.values()):
        return cells_report(context, [not_judged("amos_schedule", context.sweep.name, "every trial must train with Amos")], [], [])
    rows, verdicts = trial_rows(context), []
    for row in rows:
        name = f"{context.sweep.name} ξ={row['ξ']:g} seed {row['seed']}"
        if math.isnan(row["d(1/ξ²)"]):
            verdicts.append(not_judged("amos_schedule_flat", name, f"the run ends before 1/ξ² = {row['1/ξ²']} steps"))
        else:
            verdicts.append(Verdict("amos_schedule_flat", name, "flat" if row["d(1/ξ²)"] >= FLAT_LEVEL else "not flat",
                                    row["d(1/ξ²)"] >= FLAT_LEVEL,
                                    f"d = {row['d(1/ξ²)']:.3f} at the first probe step ≥ 1/ξ² = {row['1/ξ²']} "
                                    f"(closed form {row['d(1/ξ²) closed form']:.3f})", f"d ≥ {FLAT_LEVEL:g}"))
        verdicts.append(Verdict("amos_schedule_decays", name, "left the flat part" if row["d last"] <= LEFT_LEVEL else "still flat",
                                row["d last"] <= LEFT_LEVEL,
                                f"d = {row['d last']:.3f} at step {row['steps']} (closed form {row['d last closed form']:.3f}); "
                                f"late exponent {row['late exponent of d']:.2f} (closed form {row['late exponent closed form']:.2f}); "
                                f"mean g²·r = {row['mean g²·r']:.3f}", f"d ≤ {LEFT_LEVEL:g} by the last step"))
    table = pd.DataFrame([{k: v for k, v in row.items() if not k.startswith("_") and k != "trial"} for row in rows])
    lines = ["## d_t and b_t against the closed form (docs/science/optimizers.md §5.3)", "",
             "The closed form takes g²·r ≡ 1; where the measured mean is below 1, b grows more slowly and d stays "
             "higher than it predicts.", "", to_markdown(table), ""]
    report = cells_report(context, verdicts, lines, [schedule_figure(context, rows)])
    report.data["schedule"] = table.to_dict(orient="records")
    return report


effect = Effect("amos_schedule", "docs/science/optimizers.md §5.3", "sweep", _report,
                summary="Amos's implied schedule: flat for ≈ 1/ξ² steps, then falling; against its closed form")
