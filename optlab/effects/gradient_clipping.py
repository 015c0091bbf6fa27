"""Gradient clipping at norm 1 (docs/science/other-effects.md §1; Su, kexue.fm/archives/10657).

For every width and optimizer without clipping: the share of logged steps with ‖g‖ > 1 in the last half
of training; PASS ≤ 0.1 (a diverged run fails). For each width: the final metric at τ = 1 within 2 % of
the best of the clipping thresholds tried with the same optimizer. Reported: the per-decile shares, the
median ratio of the measured to the first-order loss change g·Δθ, their correlation and cos(sign(g), g).
The thresholds are the original fixed numbers (it has no closed form for them).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optlab.effects.core import Effect, SweepContext, Verdict, band_verdict, cells_report
from optlab.effects.figures import first_seed_curves
from optlab.report.figures import plt, save_figure
from optlab.report.tables import to_markdown
from optlab.runs import atomic_write_text

LATE_SHARE_MAX = 0.1
BEST_TOLERANCE = 0.02


def trial_row(context: SweepContext, trial: pd.Series, width_key: str) -> dict:
    """The gradient-norm and first-order statistics of one trial."""
    run = context.run(trial["trial"])
    metrics = run.metrics.dropna(subset=["grad_norm"])
    steps = run.config.training.steps
    deciles = np.minimum((metrics["step"] - 1) * 10 // steps, 9)
    late = metrics[metrics["step"] > steps / 2]
    logged_change = "loss_change" in metrics
    ratio = metrics["loss_change"] / metrics["loss_change_predicted"] if logged_change else pd.Series(dtype=float)
    return {"variant": trial["variant"], width_key: trial[width_key], "seed": trial["training.seed"],
            "optimizer": run.config.optimizer.name, "clip": run.config.training.grad_clip,
            "status": run.summary.get("status"), "parameters": run.summary.get("parameter_count"),
            "late_share_above_1": float((late["grad_norm"] > 1).mean()),
            **{f"decile_{d}": float((metrics["grad_norm"][deciles == d] > 1).mean()) for d in range(10)},
            "median_dL_ratio": float(ratio.median()) if len(ratio) else math.nan,
            "dL_correlation": float(metrics["loss_change"].corr(metrics["loss_change_predicted"])) if logged_change else math.nan,
            "same_sign_share": float((np.sign(metrics["loss_change"]) == np.sign(metrics["loss_change_predicted"])).mean())
            if logged_change else math.nan,
            "sign_cosine": float(metrics["grad_sign_cosine"].median()) if "grad_sign_cosine" in metrics else math.nan,
            "median_grad_norm": float(late["grad_norm"].median())}


def _report(context: SweepContext):
    width_key = next(key for key in context.keys if key != "variant")
    table = pd.DataFrame([trial_row(context, trial, width_key) for _, trial in context.finished.iterrows()])
    atomic_write_text(context.out / "gradient_norms.csv", table.to_csv(index=False))
    verdicts = []
    for (optimizer, width), rows in table[table["clip"].isna()].groupby(["optimizer", width_key]):
        name = f"{context.sweep.name} {optimizer} {width_key}={width:g}"
        if (rows["status"] == "diverged").any():
            verdicts.append(Verdict("grad_norm_below_1", name, "diverged", False, "the run diverged (NaN/inf loss)",
                                    f"share of late steps with ‖g‖ > 1 ≤ {LATE_SHARE_MAX}"))
            continue
        verdicts.append(band_verdict("grad_norm_below_1", name, "share of late steps with ‖g‖ > 1",
                                     rows["late_share_above_1"].max(), (0.0, LATE_SHARE_MAX)))
    clip_of = table.drop_duplicates("variant").set_index("variant")[["optimizer", "clip"]]
    for width, cells in context.cells.groupby(width_key):
        for optimizer in clip_of["optimizer"].unique():
            variants = clip_of[clip_of["optimizer"] == optimizer]
            at_one = [v for v in variants.index if variants.loc[v, "clip"] == 1.0]
            if not at_one or len(variants) < 2:
                continue
            means = cells.set_index("variant")["mean"].reindex(variants.index)
            best, value = means.min(), means[at_one[0]]
            passed = value <= best * (1 + BEST_TOLERANCE)
            verdicts.append(Verdict("clip_at_1_near_best", f"{context.sweep.name} {optimizer} {width_key}={width:g}",
                                    "near best" if passed else "not near best", passed,
                                    f"τ = 1: {value:.4f}; best {means.idxmin()}: {best:.4f}",
                                    f"within {BEST_TOLERANCE:.0%} of the best τ"))
    columns = ["variant", width_key, "parameters", "seed", "status", "late_share_above_1", "median_grad_norm",
               "median_dL_ratio", "dL_correlation", "same_sign_share", "sign_cosine"]
    lines = ["## Gradient norms and first-order loss change per trial", "",
             "ΔL ratio = measured loss change of a step on its own batch ÷ the first-order prediction g·Δθ "
             "(−η‖g‖² for SGD, −η·u·g in general); sign cosine = ‖g‖₁/(√N‖g‖₂).", "", to_markdown(table[columns]), ""]
    figures = [decile_plot(table, width_key, context), first_seed_curves(context, "grad_norm", "grad_norm_curves", log_y=True)]
    return cells_report(context, verdicts, lines, figures)


def decile_plot(table: pd.DataFrame, width_key: str, context: SweepContext):
    """Share of steps with ‖g‖ > 1 per tenth of training (unclipped runs, seed mean), with the rule's
    ≤ LATE_SHARE_MAX over the late half."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for (optimizer, width), rows in table[table["clip"].isna()].groupby(["optimizer", width_key]):
        axes.plot(range(1, 11), rows[[f"decile_{d}" for d in range(10)]].mean(), "o-", label=f"{optimizer} {width:g}")
    axes.axvspan(5.5, 10.5, color="grey", alpha=0.12)
    axes.hlines(LATE_SHARE_MAX, 5.5, 10.5, color="black", linestyle="--", linewidth=1,
                label=f"rule: late half ≤ {LATE_SHARE_MAX:g}")
    axes.set(xlabel="training decile", ylabel="share of steps with ‖g‖ > 1", title="no clipping", ylim=(-0.02, 1.02))
    axes.legend(fontsize=7)
    return save_figure(figure, context.out / "grad_norm_deciles.png")


effect = Effect("gradient_clipping", "docs/science/other-effects.md §1", "sweep", _report,
                summary="late gradient norms below 1 at every width, and τ = 1 clipping near the best τ")
