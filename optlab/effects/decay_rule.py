"""Weight decay ≈ α_0²/2 per step (docs/science/other-effects.md §3 (iii); Su, kexue.fm/archives/9344): for
sign updates η = α_0·σ (σ the init std), so the rule's decay is λ = α_0/(2σ) = η/(2σ²). A sweep of λ
around it; the report gives where the optimum (parabola vertex in log λ) falls relative to the rule,
from the sweep's own η and σ (no gate; expected near ×1).
"""

from __future__ import annotations

from optlab.effects.core import Effect, SweepContext, TheoryDoesNotApply, Verdict, cells_report, not_judged, setting
from optlab.effects.figures import variant_lines
from optlab.effects.fits import refine_optimum


def _report(context: SweepContext):
    decay_key = next(key for key in context.keys if key != "variant")
    metric = context.sweep.metric.column
    try:
        sigma, lr = setting(context, "model.init_std"), setting(context, "optimizer.lr")
    except TheoryDoesNotApply as reason:
        figures = [variant_lines(context, decay_key, metric, "metric_vs_weight_decay")]
        return cells_report(context, [not_judged("decay_rule", context.sweep.name, str(reason))], [], figures)
    rule = lr / (2 * sigma**2)
    cells = context.cells.sort_values(decay_key)
    optimum = refine_optimum(cells[decay_key].to_numpy(float), cells["mean"].to_numpy(float))
    chosen = optimum.lr if optimum.lr is not None else optimum.grid_lr
    measured = (f"optimum λ* = {chosen:.4g} ({optimum.flag or 'refined'}) = {chosen / rule:.3g} × the rule's "
                f"λ = α_0/(2σ) = {rule:.4g} (α_0 = η/σ = {lr / sigma:.3g}, ηλ = α_0²/2 = {lr * rule:.3g} per step)")
    verdicts = [Verdict("decay_rule", context.sweep.name, f"optimum at ×{chosen / rule:.2g}", None, measured,
                        "report only (expected near ×1)")]
    figures = [variant_lines(context, decay_key, metric, "metric_vs_weight_decay",
                             marks=((rule, f"rule λ = α_0/(2σ) = {rule:.3g}"), (chosen, f"optimum λ* = {chosen:.3g}")))]
    return cells_report(context, verdicts, [], figures)


effect = Effect("decay_rule", "docs/science/other-effects.md §3 (iii)", "sweep", _report,
                summary="where the optimal decay falls relative to Su's λ = α_0/(2σ) (report only)")
