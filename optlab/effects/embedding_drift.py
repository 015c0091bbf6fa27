"""Rare-token embedding rows pinned at ±1/λ by sign-based optimizers, and its fixes
(docs/science/embedding-drift.md §2–7): `embedding_drift` judges the toy by frequency bucket (§6),
`embedding_drift_lm` a language model on real text by each row's idle time (§7, at the end of this module).

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
from optlab.report.figures import plt, run_labels, run_style, save_figure
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


def envelope_curve(run: Run) -> np.ndarray | None:
    """1 − Π_{s<t} (1 − η_s·λ) for t = 0..T, for the optimizer that updates the token embedding: the largest
    |w|·λ a constant-sign unit step with decoupled decay reaches from 0 in t steps (§3). None for Tiger with
    per-parameter scaling, whose step is α·RMS(row) (logistic growth to the same ±1/λ: no closed envelope)."""
    config = run.config
    placement = config.param_groups.place(config.optimizer, "token_embedding.weight", "embedding")
    if placement.spec.name == "tiger" and placement.spec.parameter_scaling:
        return None
    steps = int(run.summary.get("steps_completed") or config.training.steps)
    scale = config.training.lr_scale()
    factors = np.array([1 - placement.lr * scale * lr_multiplier(config.schedule, step, config.training.steps)
                        * placement.weight_decay for step in range(steps)])
    if (factors <= 0).any():  # ηλ ≥ 1 at some step: one step reaches the fixed point
        return np.where(np.arange(steps + 1) > np.argmax(factors <= 0), 1.0, 0.0)
    return 1 - np.exp(np.concatenate([[0.0], np.cumsum(np.log(factors))]))


def drift_envelope(run: Run) -> float:
    """The envelope at the run's last step (1.0 for scaled Tiger, see `envelope_curve`)."""
    curve = envelope_curve(run)
    return 1.0 if curve is None else float(curve[-1])


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
    """Per run, the saturated fraction and max|w|·λ of each frequency bucket at the final step (RMS·λ per
    bucket is in each run's metrics.csv)."""
    rows = []
    for run in runs:
        final = run.summary.get("final", {})
        row = {"run": run.name}
        for metric, short in (("saturated_fraction", "saturated"), ("max_abs_x_lambda", "λ·max abs(w)")):
            for bucket in BUCKETS:
                row[f"{short} {bucket}"] = final.get(f"embedding.{bucket}.{metric}")
        rows.append(row)
    return pd.DataFrame(rows)


def drift_vs_step(runs: list[Run], out: Path, bucket_rule: bool = True, filename: str = "embedding_drift.png") -> Path | None:
    """The effect at a glance, per frequency bucket over training: the saturated fraction (top; on the rare
    panel, with `bucket_rule`, §6's 0.3 and each fix's baseline/10) and max|w|·λ (bottom, with the envelope
    1 − Π(1 − η_tλ) that the max band follows)."""
    curves = [(index, run) for index, run in enumerate(runs) if RARE_MAX in run.metrics]
    if not curves:
        return None
    labels = run_labels(runs)
    figure, axes = plt.subplots(2, len(BUCKETS), figsize=(13, 7.5), sharex=True, sharey="row", layout="constrained")
    for column, bucket in enumerate(BUCKETS):
        for index, run in curves:
            for row, metric in enumerate(("saturated_fraction", "max_abs_x_lambda")):
                axes[row][column].plot(run.metrics["step"], run.metrics[f"embedding.{bucket}.{metric}"],
                                       label=labels[index], **run_style(index))
        axes[0][column].set(title=f"{bucket} tokens")
        axes[1][column].set(xlabel="step")
    envelopes = {}
    for _, run in curves:
        curve = envelope_curve(run)
        if curve is not None:
            envelopes.setdefault(tuple(np.round(curve, 6)), curve)
    for number, curve in enumerate(envelopes.values()):
        for axis in axes[1]:
            axis.plot(np.arange(len(curve)), curve, color="black", linewidth=1, linestyle=(0, (4, 2)),
                      label="envelope 1 − Π(1 − η_tλ)" if number == 0 else None)
    rare = axes[0][BUCKETS.index("rare")]
    if bucket_rule:
        rare.axhline(MIN_SATURATED_FRACTION, color="black", linewidth=1, linestyle=(0, (1, 1)),
                     label=f"reproduced: rare ≥ {MIN_SATURATED_FRACTION}")
    by_name = {run.name: run for run in runs}
    baselines = {run.config.effect.baseline for run in runs if run.config.effect and run.config.effect.expect == "fixed"}
    for name in sorted(baseline for baseline in baselines if baseline in by_name and bucket_rule):
        value = by_name[name].summary.get("final", {}).get(RARE_SATURATED)
        if value:
            rare.axhline(value / FIX_MIN_CUT, color="grey", linewidth=1, linestyle=(0, (5, 1, 1, 1)),
                         label=f"fix works: ≤ {name.split('/')[-1]}'s / {FIX_MIN_CUT:g}")
    axes[0][0].set(ylabel=f"saturated fraction (|w|·λ ≥ {SATURATION_LEVEL})")
    axes[1][0].set(ylabel="max |w|·λ")
    handles = {label: handle for axis in (axes[0][BUCKETS.index("rare")], axes[1][0])
               for handle, label in zip(*axis.get_legend_handles_labels())}
    figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=4, fontsize=8)
    figure.suptitle("Stale rows pinned at ±1/λ: share of saturated entries and the largest |w|·λ per bucket")
    return save_figure(figure, out / filename)


def embedding_panels(runs: list[Run], out: Path, filename: str, draw, ylabel: str) -> Path | None:
    """One panel per run with a saved final embedding (λ > 0), four to a row: draw(axis, weight × λ, ranks)."""
    panels = [(run, *saved) for run in runs if (saved := read_final_embedding(run.path)) is not None and saved[2] > 0]
    if not panels:
        return None
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.2 * rows), sharex=True, sharey=True,
                                squeeze=False)
    labels = dict(zip((run.path for run in runs), run_labels(runs)))
    for axis, (run, weight, rank, decay) in zip(axes.flat, panels):
        draw(axis, weight, rank)
        placement = run.config.param_groups.place(run.config.optimizer, "token_embedding.weight", "embedding")
        axis.set_title(f"{labels[run.path]}\n{placement.spec.name}, η {placement.lr:.3g}, λ {decay:.3g}", fontsize=9)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel(ylabel)
    return save_figure(figure, out / filename)


def rare_row_histograms(runs: list[Run], out: Path) -> Path | None:
    """Histogram of λ·w over the entries of rare-token rows (bottom 50 % of ranks): spikes at ±1 = drift."""

    def draw(axis, weight, rank):
        rare = weight[rank > len(rank) / 2].ravel()
        axis.hist(np.clip(rare, -1.2, 1.2), bins=np.linspace(-1.2, 1.2, 49), color="tab:purple")
        for edge in (-1, 1):
            axis.axvline(edge, color="black", linewidth=0.8, linestyle="--")
        axis.set(xlabel="λ·w (rare rows; dashed: ±1/λ)", yscale="log")

    return embedding_panels(runs, out, "rare_rows_hist.png", draw, "entries (log scale)")


def row_max_vs_rank(runs: list[Run], out: Path) -> Path | None:
    """Per-row max|E_i|·λ against the token's frequency rank (log axis)."""

    def draw(axis, weight, rank):
        axis.scatter(rank, np.abs(weight).max(axis=1), s=1, alpha=0.4)
        axis.axhline(1.0, color="black", linestyle="--", linewidth=1)
        axis.set(xscale="log", xlabel="frequency rank (1 = most frequent)")

    return embedding_panels(runs, out, "row_max_vs_rank.png", draw, "row max |w|·λ (dashed: 1/λ)")


def _report(context: RunsContext) -> EffectReport:
    runs = context.runs
    verdicts = [drift_verdict(run, context.find_run) for run in runs]
    lines = ["## Embedding statistics per frequency bucket (final step)", "",
             "Buckets by frequency rank: frequent = top 5 %, mid = next 45 %, rare = bottom 50 %; saturated = "
             f"share of entries with |w|·λ ≥ {SATURATION_LEVEL}.", "", to_markdown(bucket_table(runs)), ""]
    figures = [drift_vs_step(runs, context.out), rare_row_histograms(runs, context.out),
               row_max_vs_rank(runs, context.out)]
    return EffectReport(verdicts, lines, figures)


effect = Effect(NAME, "docs/science/embedding-drift.md §6", "runs", _report,
                summary="rare-token embedding rows pinned at ±1/λ by sign optimizers; fixes cut it ≥ 10×",
                observes=lambda run: RARE_SATURATED in run.summary.get("final", {}))


# ------------------------------------------------------------------ on a real language model (§7)

LM_NAME = "embedding_drift_lm"
LONG_IDLE_SHARE = "embedding.long_idle.saturated_fraction"
LONG_IDLE_ROWS = "embedding.long_idle.rows"
MIN_LONG_IDLE_ROWS = 10
PINNED_MIN, ABSENT_MAX = 0.9, 0.1


def idle_steps_to_long(run: Run) -> float:
    """ln 20/(ηλ) at the embedding's base lr: the idle steps that make a row long-idle at constant lr."""
    placement = run.config.param_groups.place(run.config.optimizer, "token_embedding.weight", "embedding")
    rate = placement.lr * run.config.training.lr_scale() * placement.weight_decay
    return math.log(20) / rate if rate > 0 else math.inf


def lm_drift_verdict(run: Run, find_run: Callable[[str], Optional[Run]]) -> Verdict:
    """§7's rule: the saturated share of the long-idle rows' entries (≥ 0.9 reproduced, ≤ 0.1 absent), and a
    fix's cut of it against its baseline (≥ 10×)."""
    final, effect = run.summary.get("final", {}), run.config.effect
    expectation = effect.expect if effect else "—"
    if run.summary.get("status") not in FINISHED:
        return Verdict(LM_NAME, run.name, "not judged", False if effect else None,
                       f"run status is {run.summary.get('status')!r}", expectation)
    placement = run.config.param_groups.place(run.config.optimizer, "token_embedding.weight", "embedding")
    if placement.spec.name == "tiger" and placement.spec.parameter_scaling:
        return Verdict(LM_NAME, run.name, "not judged", None, "Tiger with parameter_scaling: a row's lr α·RMS(row) "
                       "has no envelope 1 − Π(1 − η_tλ)", "basic Tiger, Lion or another fixed-lr optimizer (§7)")
    rows, share = final.get(LONG_IDLE_ROWS), final.get(LONG_IDLE_SHARE)
    if rows is None:
        return Verdict(LM_NAME, run.name, "not judged", False if effect else None,
                       "no idle-time metrics (embedding probe off, or a run of an older optlab)", expectation)
    if rows < MIN_LONG_IDLE_ROWS:
        return Verdict(LM_NAME, run.name, "not judged", None,
                       f"{rows:.0f} long-idle rows (< {MIN_LONG_IDLE_ROWS}): few rows went idle for ln 20/(ηλ) ≈ "
                       f"{idle_steps_to_long(run):.0f} steps", "a run where rows go idle that long (§7)")
    measured = f"{rows:.0f} long-idle rows, saturated share of their entries {share:.3f}"
    if effect is None or effect.expect in ("reproduced", "absent"):
        observed = "reproduced" if share >= PINNED_MIN else ("absent" if share <= ABSENT_MAX else "partial")
        rule = f"reproduced: share ≥ {PINNED_MIN}; absent: ≤ {ABSENT_MAX}"
        return Verdict(LM_NAME, run.name, observed, None if effect is None else observed == effect.expect, measured,
                       f"{expectation} ({rule})")
    expected = f"fixed: long-idle saturated share ≤ 1/{FIX_MIN_CUT:g} of {effect.baseline}'s"
    baseline = find_run(effect.baseline)
    base_share = baseline.summary.get("final", {}).get(LONG_IDLE_SHARE) if baseline else None
    if base_share is None or not math.isfinite(base_share):
        return Verdict(f"{LM_NAME}.fix", run.name, "not judged", False,
                       f"baseline run {effect.baseline!r} not found or without a long-idle share; run it first", expected)
    works, cut = fix_cut(share, base_share)
    cut_text = "∞" if math.isinf(cut) else f"{cut:.1f}"
    return Verdict(f"{LM_NAME}.fix", run.name, "fix works" if works else "fix insufficient", works,
                   f"{measured} vs {base_share:.3f} for {effect.baseline} ({cut_text}× cut)", expected)


def lm_table(runs: list[Run]) -> pd.DataFrame:
    """Per run: the long-idle rows and their saturated share; each bucket's saturated fraction with, in
    brackets, its share of long-idle rows (§7's lower bound); max|w|·λ of the rare bucket, the other
    weights' saturated share and the held-out loss."""

    def number(value) -> str:
        return "—" if value is None or not math.isfinite(value) else f"{value:.3g}"

    rows = []
    for run in runs:
        final = run.summary.get("final", {})
        rows_idle = final.get(LONG_IDLE_ROWS)
        row = {"run": run.name, "long-idle rows": "—" if rows_idle is None else f"{rows_idle:.0f}",
               "their saturated share": number(final.get(LONG_IDLE_SHARE))}
        for bucket in BUCKETS:
            row[f"saturated {bucket} (≥ long-idle)"] = (f"{number(final.get(f'embedding.{bucket}.saturated_fraction'))} "
                                                        f"({number(final.get(f'embedding.{bucket}.long_idle_share'))})")
        row["λ·max abs(w) rare"] = number(final.get(RARE_MAX))
        row["other weights saturated"] = number(final.get("weights.saturated_fraction"))
        row["eval_loss"] = number(final.get("eval_loss"))
        rows.append(row)
    return pd.DataFrame(rows)


def pinned_tokens(run: Run, shown: int = 12) -> list[str]:
    """The words of the pinned rows (≥ PINNED_MIN of their entries at |w|·λ ≥ 0.9), the most frequent and the
    rarest, with their training-text counts and idle steps at the end (from embedding.npz and the run's own
    dataset)."""
    from optlab.data import build_dataset

    saved = np.load(run.path / "embedding.npz") if (run.path / "embedding.npz").is_file() else None
    if saved is None or "last_seen" not in saved or float(saved["decay"]) <= 0:
        return []
    data = build_dataset(run.config.data, run.config.training.seed)
    vocabulary, counts = getattr(data, "vocabulary", None), getattr(data, "counts", None)
    if vocabulary is None or counts is None:
        return []
    share = (np.abs(saved["weight_x_lambda"]) >= SATURATION_LEVEL).mean(axis=1)
    pinned = np.flatnonzero(share >= PINNED_MIN)
    if not len(pinned):
        return [f"- {run.name}: no row has ≥ {PINNED_MIN:.0%} of its entries at |w|·λ ≥ {SATURATION_LEVEL}"]
    train_counts, last_seen = counts().numpy(), saved["last_seen"]
    steps = int(run.summary.get("steps_completed") or 0)
    order = sorted(pinned, key=lambda token: -train_counts[token])
    words = [f"`{vocabulary[token]}` ({train_counts[token]}×, idle {steps - 1 - int(last_seen[token])})"
             if last_seen[token] >= 0 else f"`{vocabulary[token]}` (never seen)" for token in order]
    tail = words[-shown:] if len(words) > 2 * shown else words[shown:]
    return [f"- {run.name}: {len(pinned)} of {len(vocabulary)} rows pinned (≥ {PINNED_MIN:.0%} of their entries at "
            f"|w|·λ ≥ {SATURATION_LEVEL}); most frequent: {', '.join(words[:shown])}"
            + (f"; rarest: {', '.join(tail)}" if tail else "")]


def saturation_by_envelope(runs: list[Run], out: Path) -> Path | None:
    """§7 at a glance: the saturated share of a row's entries against the row's own envelope since it was
    last seen, per run, with the prediction (every entry saturated from e_row ≥ 0.95; from θ = 0 from 0.9)."""
    panels = [(run, np.load(run.path / "embedding.npz")) for run in runs if (run.path / "embedding.npz").is_file()]
    panels = [(run, saved) for run, saved in panels if "row_envelope" in saved and float(saved["decay"]) > 0]
    if not panels:
        return None
    labels = dict(zip((run.path for run in runs), run_labels(runs)))
    edges = np.linspace(0, 1, 21)
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for index, (run, saved) in enumerate(panels):
        envelope, weight = saved["row_envelope"], saved["weight_x_lambda"]
        seen = np.isfinite(envelope)
        share = (np.abs(weight) >= SATURATION_LEVEL).mean(axis=1)
        which = np.clip(np.digitize(envelope[seen], edges) - 1, 0, len(edges) - 2)
        means = [share[seen][which == b].mean() if (which == b).any() else np.nan for b in range(len(edges) - 1)]
        axes.plot((edges[:-1] + edges[1:]) / 2, means, label=labels[run.path], **run_style(index))
    axes.axvspan(SATURATION_LEVEL, 0.95, color="grey", alpha=0.15, label="saturated from θ = 0 (e ≥ 0.9)")
    axes.axvspan(0.95, 1.0, color="grey", alpha=0.35, label="long-idle: saturated from any start (e ≥ 0.95)")
    axes.axhline(PINNED_MIN, color="black", linestyle="--", linewidth=1, label=f"reproduced: share ≥ {PINNED_MIN}")
    axes.set(xlabel="row envelope e = 1 − Π(1 − η_tλ) over the steps since the token was last seen",
             ylabel=f"share of the row's entries with |w|·λ ≥ {SATURATION_LEVEL}", ylim=(-0.02, 1.02),
             title="Rows pinned at ±1/λ against their idle time (rows seen at least once)")
    axes.legend(fontsize=7, loc="upper left")
    return save_figure(figure, out / "saturation_by_idle_time.png")


def _lm_report(context: RunsContext) -> EffectReport:
    runs = context.runs
    verdicts = [lm_drift_verdict(run, context.find_run) for run in runs]
    lines = ["## Long-idle rows and frequency buckets (final step)", "",
             f"Long-idle: rows seen at least once whose envelope since they were last seen, 1 − Π(1 − η_tλ), is ≥ 0.95 "
             f"(≈ ln 20/(ηλ) idle steps); every entry of such a row is driven to |w|·λ ≥ {SATURATION_LEVEL} by a stale "
             "sign. Per bucket: the saturated fraction beside the share of long-idle rows, its lower bound (§7).", "",
             to_markdown(lm_table(runs)), "", "## Pinned tokens", ""]
    lines += [line for run in runs for line in pinned_tokens(run)] + [""]
    figures = [saturation_by_envelope(runs, context.out), drift_vs_step(runs, context.out, bucket_rule=False, filename="drift_by_step.png"),
               rare_row_histograms(runs, context.out), row_max_vs_rank(runs, context.out)]
    return EffectReport(verdicts, lines, figures)


language_model_effect = Effect(LM_NAME, "docs/science/embedding-drift.md §7", "runs", _lm_report,
                               summary="on real text: rows idle ≥ ln 20/(ηλ) steps pinned at ±1/λ by sign optimizers; "
                                       "fixes cut it ≥ 10×",
                               observes=lambda run: (run.summary.get("final", {}).get(LONG_IDLE_ROWS) or 0) >= MIN_LONG_IDLE_ROWS)
