"""Tied embeddings against untied ones (docs/science/embedding-drift.md §5 (b); Su, kexue.fm/archives/9736:
the half-swap tied model is "even a little better" than the untied one). A comparison, not a gate: per
variant (recognised by `model.tie_embeddings`) the sweep's metric over seeds (median, range), and each
tied variant's difference from the untied one seed by seed (the same seed: the same token stream and the
same initial weights wherever the shapes agree), with its median and range.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optlab.effects.core import Effect, SweepContext, TheoryDoesNotApply, Verdict, cells_report, not_judged
from optlab.report.figures import plt, save_figure
from optlab.report.tables import to_markdown

NAME = "tied_embeddings"


def tying_of(context: SweepContext) -> dict[str, str]:
    """{variant: none | plain | swap} from each variant's model config; exactly one untied variant."""
    tying = {variant: context.configs[rows["trial"].iloc[0]].model.tie_embeddings
             for variant, rows in context.finished.groupby("variant", sort=False)}
    if list(tying.values()).count("none") != 1:
        raise TheoryDoesNotApply("the comparison needs exactly one untied variant (model.tie_embeddings: none)")
    return tying


def paired_differences(context: SweepContext, tying: dict[str, str]) -> pd.DataFrame:
    """Per tied variant and seed: its metric minus the untied variant's at the same seed."""
    finished = context.finished.pivot_table(index="training.seed", columns="variant", values="metric")
    untied = next(variant for variant, kind in tying.items() if kind == "none")
    rows = [{"variant": variant, "seed": seed, "difference": finished.loc[seed, variant] - finished.loc[seed, untied]}
            for variant, kind in tying.items() if kind != "none" for seed in finished.index
            if np.isfinite(finished.loc[seed, variant] - finished.loc[seed, untied])]
    return pd.DataFrame(rows, columns=["variant", "seed", "difference"])


def comparison_figure(context: SweepContext, tying: dict[str, str]):
    """Each seed's final metric per variant (dots, one colour per seed) and the variants' medians (bars)."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    variants = list(tying)
    for position, variant in enumerate(variants):
        rows = context.finished[context.finished["variant"] == variant]
        axes.hlines(rows["metric"].median(), position - 0.3, position + 0.3, color="black", linewidth=2,
                    label="median over seeds" if position == 0 else None)
        for _, trial in rows.iterrows():
            axes.scatter(position, trial["metric"], color=f"C{int(trial['training.seed']) % 10}", zorder=3,
                         label=f"seed {trial['training.seed']}" if position == 0 else None)
    axes.set_xticks(range(len(variants)), [f"{variant}\n({tying[variant]})" for variant in variants])
    metric = context.sweep.metric
    axes.set(ylabel=f"{metric.column} ({metric.reduce}), one dot per seed", title=f"{context.sweep.name}: tied against untied")
    axes.legend(fontsize=7)
    return save_figure(figure, context.out / "tied_vs_untied.png")


def _report(context: SweepContext):
    try:
        tying = tying_of(context)
    except TheoryDoesNotApply as reason:
        return cells_report(context, [not_judged(NAME, context.sweep.name, str(reason))], [], [])
    differences = paired_differences(context, tying)
    verdicts = []
    for variant, rows in differences.groupby("variant", sort=False):
        median, low, high = rows["difference"].median(), rows["difference"].min(), rows["difference"].max()
        observed = "better" if high < 0 else ("worse" if low > 0 else "within the seed spread")
        verdicts.append(Verdict(NAME, f"{context.sweep.name} {variant}", observed, None,
                                f"{context.sweep.metric.column} − untied's, seed by seed: median {median:+.4f}, "
                                f"range [{low:+.4f}, {high:+.4f}] over {len(rows)} seeds",
                                "a comparison (Su: the half-swap tied model a little better than the untied one)"))
    lines = ["## Tied − untied, seed by seed", "", to_markdown(differences), ""]
    return cells_report(context, verdicts, lines, [comparison_figure(context, tying)])


effect = Effect(NAME, "docs/science/embedding-drift.md §5", "sweep", _report,
                summary="tied (plain, half-swap) against untied embeddings: the metric over seeds (report only)")
