"""Rare-token embedding rows pinned at ±1/λ by sign-based optimizers, and its fixes
(docs/science/embedding-drift.md §2–6).

A row whose gradient is exactly zero keeps being moved by a stale momentum; under Lion or Tiger the
move is a full-size sign step, and decoupled decay gives it the fixed point θ* = ∓1/λ:
θ_t + s/λ = (1 − ηλ)^t (θ_0 + s/λ). From θ_0 ≈ 0 an entry under a constant sign can reach at most

    |w|·λ ≤ 1 − Π_t (1 − η_t λ)        (the envelope; ≈ 1 − e^(−ηλT) at constant lr)

after the run's T steps. The rule of §6, with its band restated around that envelope for the run's own
η, λ, schedule and length (the original [0.99, 1.01] is the envelope at ηλT = 20, where it is 1):

- reproduced: rare-bucket saturated fraction (|w|·λ ≥ 0.9) ≥ 0.3 (the original fixed share: the stream,
  not a closed form, sets how many rare rows go idle long enough) AND rare-bucket max|w|·λ ∈
  [0.99, 1.01] × envelope;
- not judged when the envelope stays below 0.9 (the run is too short for any entry to saturate:
  ηλT < ln 10); Tiger with per-parameter scaling moves rows by α·RMS(row) (logistic growth, §3), whose
  fixed point is the same ±1/λ: its envelope is taken as 1;
- fix works: rare saturated fraction ≤ 1/10 of the baseline run's (the same optimizer without the fix).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from optlab.effects.core import Effect, EffectReport, RunsContext, Verdict
from optlab.probes.schema import FREQUENCY_BUCKETS, SATURATION_LEVEL
from optlab.report.figures import plt, save_figure
from optlab.report.tables import to_markdown
from optlab.runs import FINISHED, Run, read_final_embedding
from optlab.schedules import lr_multiplier

NAME = "embedding_drift"
MIN_SATURATED_FRACTION = 0.3
MAX_ABS_BAND = (0.99, 1.01)
FIX_MIN_CUT = 10.0
RARE_SATURATED = "embedding.rare.saturated_fraction"
RARE_MAX = "embedding.rare.max_abs_x_lambda"
BUCKETS = tuple(FREQUENCY_BUCKETS)


def drift_envelope(run: Run) -> float:
    """1 − Π_t (1 − η_t·λ) over the run's steps for the optimizer that updates the token embedding: the
    largest |w|·λ a constant-sign unit step with decoupled decay reaches from 0 (§3)."""
    config = run.config
    placement = config.param_groups.place(config.optimizer, "token_embedding.weight", "embedding")
    if placement.spec.name == "tiger" and placement.spec.parameter_scaling:
        return 1.0
    steps = int(run.summary.get("steps_completed") or config.training.steps)
    scale = config.training.lr_scale()
    survival = 0.0  # Σ log(1 − η_t λ)
    for step in range(steps):
        factor = 1 - placement.lr * scale * lr_multiplier(config.schedule, step, config.training.steps) * placement.weight_decay
        if factor <= 0:
            return 1.0
        survival += math.log(factor)
    return 1 - math.exp(survival)


def drift_observed(final: dict, envelope: float = 1.0) -> tuple[bool, str]:
    """Apply the anomaly rule to a run's final metrics. Returns (reproduced, the numbers that show it)."""
    saturated, max_abs = final.get(RARE_SATURATED), final.get(RARE_MAX)
    if saturated is None or max_abs is None or not (math.isfinite(saturated) and math.isfinite(max_abs)):
        return False, "rare-bucket metrics undefined (weight decay λ = 0 on the embedding, or no embedding probe)"
    low, high = (bound * envelope for bound in MAX_ABS_BAND)
    reproduced = saturated >= MIN_SATURATED_FRACTION and low <= max_abs <= high
    return reproduced, f"rare-token saturated fraction {saturated:.3f}, max|w|·λ = {max_abs:.3f}"


def fix_cut(fixed: float, baseline: float) -> tuple[bool, float]:
    """(works, cut factor): works iff fixed ≤ baseline / 10; a fixed fraction of 0 is an infinite cut."""
    cut = math.inf if fixed == 0 else baseline / fixed
    return fixed <= baseline / FIX_MIN_CUT and baseline > 0, cut


def drift_verdict(run: Run, find_run: Callable[[str], Optional[Run]]) -> Verdict:
    final, effect = run.summary.get("final", {}), run.config.effect
    if run.summary.get("status") not in FINISHED:
        return Verdict(NAME, run.name, "not judged", False if effect else None,
                       f"run status is {run.summary.get('status')!r}", effect.expect if effect else "—")
    envelope = drift_envelope(run)
    if envelope < SATURATION_LEVEL:
        return Verdict(NAME, run.name, "not judged", None,
                       f"max reachable |w|·λ = 1 − Π(1 − η_tλ) = {envelope:.3f} < {SATURATION_LEVEL}: too short to saturate",
                       "a run with ηλT ≥ ln 10 (§3)")
    reproduced, measured = drift_observed(final, envelope)
    observed = "reproduced" if reproduced else "absent"
    if effect is None or effect.expect in ("reproduced", "absent"):
        band = "" if envelope > 0.999 else f" (max|w|·λ band × envelope {envelope:.4f})"
        expected = (effect.expect if effect else "—") + band
        return Verdict(NAME, run.name, observed, None if effect is None else observed == effect.expect, measured, expected)
    baseline = find_run(effect.baseline)
    expected = f"fixed: rare saturated fraction ≤ 1/{FIX_MIN_CUT:g} of {effect.baseline}"
    if baseline is None:
        return Verdict(f"{NAME}.fix", run.name, "not judged", False,
                       f"baseline run {effect.baseline!r} not found; run it first", expected)
    base_value, value = baseline.summary.get("final", {}).get(RARE_SATURATED), final.get(RARE_SATURATED)
    if base_value is None or value is None:
        return Verdict(f"{NAME}.fix", run.name, "not judged", False, "saturated fraction undefined", expected)
    works, cut = fix_cut(value, base_value)
    cut_text = "∞" if math.isinf(cut) else f"{cut:.1f}"
    return Verdict(f"{NAME}.fix", run.name, "fix works" if works else "fix insufficient", works,
                   f"rare saturated fraction {value:.3f} vs {base_value:.3f} for {effect.baseline} ({cut_text}× cut)",
                   expected)


def bucket_table(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        final = run.summary.get("final", {})
        row = {"run": run.name}
        for bucket in BUCKETS:
            for metric in ("saturated_fraction", "max_abs_x_lambda", "rms_x_lambda"):
                row[f"{bucket}.{metric}"] = final.get(f"embedding.{bucket}.{metric}")
        rows.append(row)
    return pd.DataFrame(rows)


LINE_STYLES = ("-", "--", ":", "-.")


def max_vs_step(runs: list[Run], out: Path) -> Path | None:
    """max|w|·λ per frequency bucket over training, with the ±1/λ fixed point as a dashed line at 1."""
    curves = [run for run in runs if RARE_MAX in run.metrics]
    if not curves:
        return None
    figure, axes = plt.subplots(1, len(BUCKETS), figsize=(13, 4.6), sharey=True, layout="constrained")
    for axis, bucket in zip(axes, BUCKETS):
        for index, run in enumerate(curves):
            axis.plot(run.metrics["step"], run.metrics[f"embedding.{bucket}.max_abs_x_lambda"], label=run.name,
                      linestyle=LINE_STYLES[index % len(LINE_STYLES)])
        axis.axhline(1.0, color="black", linestyle="--", linewidth=1, label="|w| = 1/λ")
        axis.set(xlabel="step", title=f"{bucket} tokens", ylabel="max |w|·λ" if bucket == BUCKETS[0] else None)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8)
    return save_figure(figure, out / "embedding_max_vs_step.png")


def stale_rows(runs: list[Run], out: Path) -> Path | None:
    curves = [run for run in runs if "embedding.stale_momentum_rows" in run.metrics]
    if not curves:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for index, run in enumerate(curves):
        axes.plot(run.metrics["step"], run.metrics["embedding.stale_momentum_rows"], label=run.name,
                  linestyle=LINE_STYLES[index % len(LINE_STYLES)])
    axes.set(xlabel="step", ylabel="rows with g = 0, m ≠ 0", title="Rows moved by stale momentum")
    axes.legend(fontsize=7)
    return save_figure(figure, out / "stale_momentum_rows.png")


def embedding_panels(runs: list[Run], out: Path, filename: str, draw) -> Path | None:
    """One panel per run with a saved final embedding (λ > 0): draw(axis, weight × λ, token ranks)."""
    panels = [(run, *saved) for run in runs if (saved := read_final_embedding(run.path)) is not None and saved[2] > 0]
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), sharey=True, squeeze=False)
    for axis, (run, weight, rank, _) in zip(axes[0], panels):
        draw(axis, weight, rank)
        axis.set_title(run.name.split("/")[-1])
    return save_figure(figure, out / filename)


def rare_row_histograms(runs: list[Run], out: Path) -> Path | None:
    """Histogram of λ·w over the entries of rare-token rows (bottom 50 % of ranks): spikes at ±1 = drift."""

    def draw(axis, weight, rank):
        rare = weight[rank > len(rank) / 2].ravel()
        axis.hist(np.clip(rare, -1.2, 1.2), bins=np.linspace(-1.2, 1.2, 49), color="tab:purple")
        axis.set(xlabel="λ·w (rare rows)", yscale="log")

    return embedding_panels(runs, out, "rare_rows_hist.png", draw)


def row_max_vs_rank(runs: list[Run], out: Path) -> Path | None:
    """Per-row max|E_i|·λ against the token's frequency rank (log axis)."""

    def draw(axis, weight, rank):
        axis.scatter(rank, np.abs(weight).max(axis=1), s=1, alpha=0.4)
        axis.axhline(1.0, color="black", linestyle="--", linewidth=1)
        axis.set(xscale="log", xlabel="frequency rank", ylabel="row max |w|·λ")

    return embedding_panels(runs, out, "row_max_vs_rank.png", draw)


def _report(context: RunsContext) -> EffectReport:
    runs = context.runs
    verdicts = [drift_verdict(run, context.find_run) for run in runs]
    lines = ["## Embedding statistics per frequency bucket (final step)", "",
             "Buckets by frequency rank: frequent = top 5 %, mid = next 45 %, rare = bottom 50 %; saturated = "
             f"share of entries with |w|·λ ≥ {SATURATION_LEVEL}.", "", to_markdown(bucket_table(runs)), ""]
    figures = [max_vs_step(runs, context.out), stale_rows(runs, context.out),
               rare_row_histograms(runs, context.out), row_max_vs_rank(runs, context.out)]
    return EffectReport(verdicts, lines, figures)


effect = Effect(NAME, "docs/science/embedding-drift.md §6", "runs", _report,
                summary="rare-token embedding rows pinned at ±1/λ by sign optimizers; fixes cut it ≥ 10×",
                observes=lambda run: RARE_SATURATED in run.summary.get("final", {}))
