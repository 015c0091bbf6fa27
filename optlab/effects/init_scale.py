"""Learning rate ∝ parameter scale (docs/science/other-effects.md §3 (i); Amos, arXiv 2210.11693; Su,
kexue.fm/archives/9344): the same model with every matrix initialised × s. An optimizer whose steps are
relative to each tensor's scale (Tiger's lr × RMS(θ), Amos's η = RMS(θ_0)) should make the result
nearly independent of s; a fixed lr (Adam, AdamW) should not. PASS: the spread (max − min over s) of the
seed-mean final metric of each other optimizer ≤ ½ of the fixed-lr optimizer's spread (a relative
rule: there is no closed form for the spread).
"""

from __future__ import annotations

from optlab.effects.core import Effect, SweepContext, Verdict, cells_report
from optlab.effects.figures import variant_lines

SPREAD_SHARE = 0.5
FIXED_LR = ("adam", "adamw")


def variant_optimizer(context: SweepContext, variant: str) -> str:
    """The optimizer name of a variant's trials."""
    trials = context.finished[context.finished["variant"] == variant]["trial"]
    return context.configs[trials.iloc[0]].optimizer.name


def _report(context: SweepContext):
    scale_key = next(key for key in context.keys if key != "variant")
    spreads = {variant: float(rows["mean"].max() - rows["mean"].min())
               for variant, rows in context.cells.groupby("variant", sort=False)}
    fixed = [v for v in spreads if variant_optimizer(context, v) in FIXED_LR]
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
    lines = ["Spread = max − min over the init scales of the seed-mean final metric: " +
             ", ".join(f"{v} {s:.4f}" for v, s in spreads.items()), ""]
    figures = [variant_lines(context, scale_key, context.sweep.metric.column, "metric_vs_init_scale")]
    return cells_report(context, verdicts, lines, figures)


effect = Effect("lr_proportional_to_scale", "docs/science/other-effects.md §3 (i)", "sweep", _report,
                summary="scale-relative lrs (Tiger, Amos) make training invariant to the init scale; a fixed lr does not")
