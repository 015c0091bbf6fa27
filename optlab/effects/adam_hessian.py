"""Adam's second moment as a Hessian estimate (docs/science/other-effects.md §2; Su, kexue.fm/archives/10588).

Near θ*, g ≈ H(θ − θ*). The slope of log √v̂ against log h over the second half of training
(probes/curvature.py) says what v estimates, by regime — each read from the trial's own config:

    A  quadratic, the gradient taken at θ* + σz (point noise), exact g            slope 1   (v ∝ H²)
    B  quadratic, deterministic full batch (no noise): Adam keeps circling θ*       slope 1
    C  minibatch linear regression with label noise, at its noise floor            slope ½   (v ∝ h, Fisher-like)
    D  quadratic, additive gradient noise independent of H                          slope 0

PASS within ±0.1 of the regime's slope. Models without a known Hessian (the Hutchinson MLP) and mixed
settings are reported without a gate, with the rank correlation of √v̂ and |diag H|.
"""

from __future__ import annotations

import pandas as pd

from optlab.effects.core import Effect, SweepContext, Verdict, band_verdict, cells_report
from optlab.report.figures import plt, save_figure

EXPECTED_SLOPES = {"A": 1.0, "B": 1.0, "C": 0.5, "D": 0.0}
TOLERANCE = 0.1


def regime(config) -> str | None:
    """The regime of §2 a run is in, from its model and data (None: none of the four)."""
    model = config.model
    if model.name == "quadratic":
        if model.point_noise > 0 and model.gradient_noise == 0:
            return "A"
        if model.point_noise == 0 and model.gradient_noise == 0:
            return "B"
        if model.gradient_noise > 0 and model.point_noise == 0:
            return "D"
    if model.name == "linreg" and config.data.label_noise > 0:
        return "C"
    return None


def _report(context: SweepContext):
    verdicts = []
    for row in context.cells.to_dict(orient="records"):
        trials = context.cell_trials(row)
        regimes = {regime(context.configs[trial]) for trial in trials["trial"]}
        cell = " ".join(f"{k}={row[k]:g}" for k in context.keys[1:] if isinstance(row[k], float))
        name = f"{context.sweep.name} {row['variant']} {cell}".strip()
        found = regimes.pop() if len(regimes) == 1 else None
        if found is None:
            rank = trials.get("final.adam_sqrt_v_rank_correlation", pd.Series(dtype=float)).mean()
            verdicts.append(Verdict("adam_v_hessian", f"{context.sweep.name} {row['variant']}", "measured", None,
                                    f"slope of log √v̂ on log |diag H| = {row['mean']:.3f}, rank correlation {rank:.3f}",
                                    "report only (1 ⇒ v ∝ H², ½ ⇒ v ∝ |H|)"))
            continue
        expected = EXPECTED_SLOPES[found]
        verdicts.append(band_verdict("adam_v_hessian", name, "slope of log √v̂ on log h", row["mean"],
                                     (expected - TOLERANCE, expected + TOLERANCE), basis=f"regime {found}: {expected:g} ± {TOLERANCE}"))
    lines = ["Regime A and B reproduce Su's picture (√v ∝ |h|, v ∝ H²); regime C is the minibatch case at the "
             "noise floor, where v ∝ h (Fisher-like), and D the case where noise unrelated to H sets v. The claim "
             "is regime-dependent: all four are shown.", ""]
    return cells_report(context, verdicts, lines, [slope_bars(context)])


def slope_bars(context: SweepContext):
    figure, axes = plt.subplots(figsize=(6.5, 4))
    labels = [" ".join(str(v) for v in row) for row in context.cells[context.keys].itertuples(index=False)]
    axes.bar(range(len(labels)), context.cells["mean"], yerr=context.cells["std"], color="tab:blue")
    for slope in EXPECTED_SLOPES.values():
        axes.axhline(slope, color="grey", lw=0.5, ls="--")
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    axes.set(ylabel="slope of log √v̂ on log h", title="Adam's √v̂ against the Hessian diagonal")
    return save_figure(figure, context.out / "adam_v_slopes.png")


effect = Effect("adam_v_hessian", "docs/science/other-effects.md §2", "sweep", _report,
                summary="Adam's √v̂ against the Hessian diagonal: slope 1, ½ or 0 by noise regime")
