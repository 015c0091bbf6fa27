"""Lion's lr rule (Lion paper, arXiv 2302.06675; docs/science/other-effects.md §5 (ii)): with η·λ held
fixed, Lion's optimal lr is 3–10× below AdamW's (its update RMS is 1 against AdamW's ≈ 0.2). One lr
sweep per optimizer; η* per optimizer is the parabola vertex in log lr. PASS: η*_AdamW/η*_Lion ∈ [3, 10]
(the original proposed fixed band).
"""

from __future__ import annotations

from optlab.effects.core import Effect, SweepContext, band_verdict, cells_report
from optlab.effects.figures import variant_lines
from optlab.effects.fits import refine_optimum
from optlab.effects.init_scale import variant_optimizer

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
    return cells_report(context, verdicts, lines, [variant_lines(context, lr_key, context.sweep.metric.column, "metric_vs_lr")])


effect = Effect("lion_lr_rule", "docs/science/other-effects.md §5 (ii)", "sweep", _report,
                summary="Lion's optimal lr 3–10× below AdamW's at fixed η·λ")
