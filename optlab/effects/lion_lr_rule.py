"""Lion's lr rule (Lion paper, arXiv 2302.06675; docs/science/other-effects.md §5 (ii)): with η·λ held
fixed, Lion's optimal lr is 3–10× below AdamW's (its update RMS is 1 against AdamW's ≈ 0.2). One lr
sweep per optimizer; η* per optimizer is the parabola vertex in log lr. PASS: η*_AdamW/η*_Lion ∈ [3, 10]
(the original proposed fixed band).
"""

from __future__ import annotations

import numpy as np

from optlab.effects.core import Effect, SweepContext, band_verdict, cells_report
from optlab.effects.fits import refine_optimum
from optlab.effects.init_scale import variant_optimizer
from optlab.report.figures import plt, save_figure

RATIO_BAND = (3.0, 10.0)


def _report(context: SweepContext):
    lr_key = context.sweep.lr_key
    optima = {}
    for variant, rows in context.cells.groupby("variant", sort=False):
        rows = rows.sort_values(lr_key)
        optima[variant_optimizer(context, variant)] = refine_optimum(rows[lr_key].to_numpy(float), rows["mean"].to_numpy(float))
    lion, adamw = optima.get("lion"), optima.get("adamw")
    ratio = adamw.lr / lion.lr if lion and adamw and lion.lr and adamw.lr else None
    verdicts = [band_verdict("lion_lr_rule", context.sweep.name, "η*_AdamW/η*_Lion", ratio, RATIO_BAND,
                             basis="a proposed fixed band")]
    lines = ["η* per optimizer: " + ", ".join(f"{k} {o.lr:.3g}" if o.lr else f"{k} none ({o.flag})" for k, o in optima.items()), ""]
    return cells_report(context, verdicts, lines, [rule_figure(context, optima)])


def rule_figure(context: SweepContext, optima: dict):
    """The metric against lr per optimizer, each η* marked, and the band [η*_AdamW/10, η*_AdamW/3] where
    the rule puts Lion's η*."""
    lr_key = context.sweep.lr_key
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for index, (variant, rows) in enumerate(context.cells.groupby("variant", sort=False)):
        rows = rows.sort_values(lr_key)
        axes.plot(rows[lr_key], rows["mean"].where(np.isfinite(rows["mean"])), "o-", color=f"C{index}", label=variant)
        optimum = optima.get(variant_optimizer(context, variant))
        if optimum and optimum.lr:
            axes.axvline(optimum.lr, color=f"C{index}", linestyle=":", linewidth=1.2, label=f"η* {variant} = {optimum.lr:.3g}")
    adamw = optima.get("adamw")
    if adamw and adamw.lr:
        axes.axvspan(adamw.lr / RATIO_BAND[1], adamw.lr / RATIO_BAND[0], color="grey", alpha=0.2,
                     label=f"rule: η*_Lion ∈ η*_AdamW/[{RATIO_BAND[1]:g}, {RATIO_BAND[0]:g}]")
    axes.set(xscale="log", xlabel=lr_key, ylabel=f"{context.sweep.metric.column} (seed mean)",
             title=f"{context.sweep.name}: Lion's lr against AdamW's at fixed η·λ")
    axes.legend(fontsize=7)
    return save_figure(figure, context.out / "metric_vs_lr.png")


effect = Effect("lion_lr_rule", "docs/science/other-effects.md §5 (ii)", "sweep", _report,
                summary="Lion's optimal lr 3–10× below AdamW's at fixed η·λ")
