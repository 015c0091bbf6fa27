"""Reports of the sweeps behind ../shared/science/other-effects.md (clipping, Adam's v, Amos's rules,
Tiger's accumulation, update RMS): a table of the metric per cell (variant × grid values, seeds
aggregated), the effect's verdicts and its figures. One function per effect; each quotes the spec's rule.

A sweep names its effect (`effect:` in the sweep file) and describes its cells with named `variants`
(other-effects.md's regimes, optimizers or variants a–e) crossed with its grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from optlab.report.fits import aggregate_seeds, refine_optimum  # noqa: E402
from optlab.report.verdicts import Verdict, _band_verdict  # noqa: E402
from optlab.runs import Run, atomic_write_text, load_run  # noqa: E402


@dataclass
class EffectSweep:
    """What an effect's rule reads: the sweep, its finished trials (with `metric`), the seed-aggregated
    cells over `keys`, and each trial's run (config, summary, metrics table) on demand."""

    sweep: object
    trials: pd.DataFrame
    keys: list[str]
    sweep_dir: Path
    out: Path

    @cached_property
    def cells(self) -> pd.DataFrame:
        return aggregate_seeds(self.trials, self.keys)

    @cached_property
    def runs(self) -> dict[str, Run]:
        return {trial: load_run(self.sweep_dir / "trials" / trial) for trial in self.trials["trial"]}

    def save(self, figure, name: str) -> Path:
        figure.tight_layout()
        figure.savefig(self.out / f"{name}.png", dpi=110)
        plt.close(figure)
        return self.out / f"{name}.png"


def effect_section(sweep, trials: pd.DataFrame, sweep_dir: Path, out: Path, summary: dict) -> list[str]:
    from optlab.report.tables import to_markdown

    finished = trials[trials["state"].isin(["completed", "diverged"])]
    if finished.empty:
        return ["No trial has finished yet: nothing to judge.", ""]
    if "variant" not in finished:  # a sweep without named variants is one variant
        finished = finished.assign(variant=sweep.name.split("/")[-1])
    keys = [key for key in ["variant", *sweep.grid, *sweep.zip] if key in finished]
    context = EffectSweep(sweep, finished, keys, sweep_dir, out)
    atomic_write_text(out / "cells.csv", context.cells.to_csv(index=False))
    verdicts, lines, figures = EFFECTS[sweep.effect](context)
    summary.update(cells=context.cells.to_dict(orient="records"), verdicts=[v.as_json() for v in verdicts])
    head = ["## Verdicts", ""] + [f"- {v.line()}" for v in verdicts] + [""] if verdicts else []
    return head + lines + [f"## Metric per cell ({sweep.metric.column})", "", to_markdown(context.cells), "",
                           "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures if p] + [""]


def _variant_lines(context: EffectSweep, x: str, ylabel: str, name: str, xscale: str = "log") -> Path:
    """The metric (seed mean) against grid axis `x`, one line per variant."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for variant, rows in context.cells.groupby("variant", sort=False):
        rows = rows.sort_values(x)
        axes.plot(rows[x], rows["mean"].where(np.isfinite(rows["mean"])), "o-", label=variant)
    axes.set(xscale=xscale, xlabel=x, ylabel=ylabel, title=context.sweep.name)
    axes.legend(fontsize=7)
    return context.save(figure, name)


def _curves(context: EffectSweep, column: str, name: str, log_y: bool = False) -> Path | None:
    """`column` over steps for the first seed's trial of each variant (or cell); None if no run logs it."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    first_seed = context.trials["training.seed"].min()
    shown = 0
    for _, row in context.trials[context.trials["training.seed"] == first_seed].iterrows():
        metrics = context.runs[row["trial"]].metrics
        if column in metrics:
            label = " ".join(f"{row[k]:g}" if isinstance(row[k], float) else str(row[k]) for k in context.keys)
            axes.plot(metrics["step"], metrics[column], label=label)
            shown += 1
    if not shown:
        plt.close(figure)
        return None
    axes.set(xlabel="step", ylabel=column, yscale="log" if log_y else "linear", title=f"{column} (seed {first_seed})")
    axes.legend(fontsize=6)
    return context.save(figure, name)


# ------------------------------------------------------------------------------------------------
# §2 Adam's second moment as a Hessian estimate. Slope of log √v̂ against log h over the second half
# of training, per regime (the variant name starts with its letter). PASS: within ±0.1 of
#   A (θ − θ* ~ N(0, σ²I), exact g) 1.00;  B (deterministic full batch) 1.00;
#   C (minibatch regression + label noise at the noise floor) 0.50;  D (additive gradient noise) 0.00.
ADAM_HESSIAN_SLOPES = {"A": 1.0, "B": 1.0, "C": 0.5, "D": 0.0}
ADAM_HESSIAN_TOLERANCE = 0.1


def adam_hessian(context: EffectSweep):
    verdicts = []
    for row in context.cells.to_dict(orient="records"):
        regime = str(row["variant"])[0].upper()
        if regime not in ADAM_HESSIAN_SLOPES or str(row["variant"])[1:2] != "_":  # e.g. the Hutchinson MLP
            trials = context.trials[context.trials["variant"] == row["variant"]]
            rank = trials.get("final.adam_sqrt_v_rank_correlation", pd.Series(dtype=float)).mean()
            verdicts.append(Verdict("adam_v_hessian", f"{context.sweep.name} {row['variant']}", "measured", None,
                                    f"slope of log √v̂ on log |diag H| = {row['mean']:.3f}, rank correlation {rank:.3f}",
                                    "report only (1 ⇒ v ∝ H², ½ ⇒ v ∝ |H|)"))
            continue
        expected = ADAM_HESSIAN_SLOPES[regime]
        cell = " ".join(f"{k}={row[k]:g}" for k in context.keys[1:] if isinstance(row[k], float))
        band = (expected - ADAM_HESSIAN_TOLERANCE, expected + ADAM_HESSIAN_TOLERANCE)
        verdicts.append(_band_verdict("adam_v_hessian", f"{context.sweep.name} {row['variant']} {cell}".strip(),
                                      "slope of log √v̂ on log h", row["mean"], band))
    lines = ["Regime A and B reproduce Su's picture (√v ∝ |h|, v ∝ H²); regime C is the minibatch case at the "
             "noise floor, where v ∝ h (Fisher-like), and D the case where noise unrelated to H sets v. The claim "
             "is regime-dependent: all four are shown.", ""]
    return verdicts, lines, [_slope_bars(context)]


def _slope_bars(context: EffectSweep) -> Path:
    figure, axes = plt.subplots(figsize=(6.5, 4))
    labels = [" ".join(str(v) for v in row) for row in context.cells[context.keys].itertuples(index=False)]
    axes.bar(range(len(labels)), context.cells["mean"], yerr=context.cells["std"], color="tab:blue")
    for regime, slope in ADAM_HESSIAN_SLOPES.items():
        axes.axhline(slope, color="grey", lw=0.5, ls="--")
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    axes.set(ylabel="slope of log √v̂ on log h", title="Adam's √v̂ against the Hessian diagonal")
    return context.save(figure, "adam_v_slopes")


# ------------------------------------------------------------------------------------------------
# §3 (i) Learning rate ∝ parameter scale: the same model with every matrix init × s. PASS: the spread
# (max − min over s) of the final metric of each scale-aware optimizer ≤ ½ of AdamW's spread.
INIT_SCALE_SPREAD_SHARE = 0.5


def _variant_optimizer(context: EffectSweep, variant: str) -> str:
    rows = context.trials[context.trials["variant"] == variant]
    return context.runs[rows["trial"].iloc[0]].config.optimizer.name


def init_scale_invariance(context: EffectSweep):
    scale_key = next(key for key in context.keys if key != "variant")
    spreads = {}
    for variant, rows in context.cells.groupby("variant", sort=False):
        spreads[variant] = float(rows["mean"].max() - rows["mean"].min())
    fixed = [v for v in spreads if _variant_optimizer(context, v) in ("adam", "adamw")]
    verdicts = []
    for reference in fixed:
        for variant, spread in spreads.items():
            if variant in fixed:
                continue
            limit = INIT_SCALE_SPREAD_SHARE * spreads[reference]
            verdicts.append(Verdict("lr_proportional_to_scale", f"{context.sweep.name} {variant}",
                                    "invariant" if spread <= limit else "not invariant", spread <= limit,
                                    f"spread over {scale_key} = {spread:.4f} vs {spreads[reference]:.4f} for {reference}",
                                    f"≤ {INIT_SCALE_SPREAD_SHARE:g} × {reference}'s spread"))
    lines = ["Spread = max − min over the init scales of the seed-mean final metric: " +
             ", ".join(f"{v} {s:.4f}" for v, s in spreads.items()), ""]
    return verdicts, lines, [_variant_lines(context, scale_key, context.sweep.metric.column, "metric_vs_init_scale")]


# ------------------------------------------------------------------------------------------------
# §3 (ii) Schedules with the same half-life (report, no gate): final metric per schedule, loss and lr
# curves, and Amos's implied schedule d_t from its state when an Amos variant ran.
def schedules(context: EffectSweep):
    means = context.cells.set_index("variant")["mean"]
    best = means.idxmin()
    verdicts = [Verdict("schedules", context.sweep.name, f"best: {best}", None,
                        ", ".join(f"{v} {m:.4f}" for v, m in means.items()), "report only (no prior numbers)")]
    figures = [_curves(context, column, f"{column}_curves", log_y=column == "lr")
               for column in ("eval_loss", "loss", "lr", "amos.d", "amos.decay_per_step")]
    return verdicts, [], figures


# ------------------------------------------------------------------------------------------------
# §3 (iii) Decay ≈ α_0²/2 per step: with sign updates η = α_0σ, the rule's λ = α_0/(2σ) = η/(2σ²),
# σ the init std. Sweep λ around it; report where the optimum falls (no gate; expected near ×1).
def decay_rule(context: EffectSweep):
    decay_key = next(key for key in context.keys if key != "variant")
    config = next(iter(context.runs.values())).config
    sigma, lr = config.model.init_std, config.optimizer.lr
    rule = lr / (2 * sigma**2)
    cells = context.cells.sort_values(decay_key)
    optimum = refine_optimum(cells[decay_key].to_numpy(float), cells["mean"].to_numpy(float))
    chosen = optimum.lr if optimum.lr is not None else optimum.grid_lr
    measured = (f"optimum λ* = {chosen:.4g} ({optimum.flag or 'refined'}) = {chosen / rule:.3g} × the rule's "
                f"λ = α_0/(2σ) = {rule:.4g} (α_0 = η/σ = {lr / sigma:.3g}, ηλ = α_0²/2 = {lr * rule:.3g} per step)")
    verdicts = [Verdict("decay_rule", context.sweep.name, f"optimum at ×{chosen / rule:.2g}", None, measured,
                        "report only (spec: optimum near ×1)")]
    return verdicts, [], [_variant_lines(context, decay_key, context.sweep.metric.column, "metric_vs_weight_decay")]


# ------------------------------------------------------------------------------------------------
# §4 Tiger's accumulation, "fewer updates, better". Variants a (plain), b (β̃ only), c (update every k
# only), d (both), e (true accumulation) and Tiger's absorbed form (≡ e), at each grid cell (e.g. each
# lr). PASS: seed-mean final metric of c and of e ≤ that of a. Reported: the ranking, |absorbed − e|.
def accumulation_variants(context: EffectSweep):
    grid_keys = [key for key in context.keys if key != "variant"]
    groups = context.cells.groupby(grid_keys, sort=False) if grid_keys else [((), context.cells)]
    verdicts, lines = [], []
    for values, cells in groups:
        where = " ".join(f"{k}={v:g}" for k, v in zip(grid_keys, values if isinstance(values, tuple) else (values,)))
        means = cells.set_index("variant")["mean"]
        by_letter = {str(v)[0]: m for v, m in means.items() if str(v)[1:2] == "_"}
        for letter in ("c", "e"):
            if letter in by_letter and "a" in by_letter:
                passed = by_letter[letter] <= by_letter["a"]
                verdicts.append(Verdict("fewer_updates_better", f"{context.sweep.name} {where} {letter} vs a".replace("  ", " "),
                                        "not worse" if passed else "worse", passed,
                                        f"mean final {context.sweep.metric.column} {by_letter[letter]:.4f} vs {by_letter['a']:.4f}",
                                        f"{letter} ≤ a"))
        lines += [f"Ranking at {where or 'the base config'} (best first): " +
                  ", ".join(f"{v} {m:.4f}" for v, m in means.sort_values().items()), ""]
        absorbed = [v for v in means.index if "absorb" in str(v)]
        true = [v for v in means.index if str(v).startswith("e_")]
        if absorbed and true:
            lines += [f"Tiger's absorbed accumulation vs true accumulation: |Δ mean final metric| = "
                      f"{abs(means[absorbed[0]] - means[true[0]]):.2e} (the same algorithm up to rounding).", ""]
    if grid_keys:
        best = context.cells.groupby("variant", sort=False)["mean"].min().sort_values()
        lines += ["Each variant at its best grid cell (best first): " + ", ".join(f"{v} {m:.4f}" for v, m in best.items()), ""]
    figure = (_variant_lines(context, grid_keys[0], context.sweep.metric.column, "metric_by_variant") if grid_keys
              else _curves(context, "eval_loss", "eval_loss_curves"))
    return verdicts, lines, [figure]


# ------------------------------------------------------------------------------------------------
# §1 Gradient clipping at norm 1. For every width and optimizer without clipping: share of logged steps
# with ‖g‖ > 1 in the last 50 % of training; PASS ≤ 0.1. For each width: the final metric at τ = 1
# within 2 % of the best of {no clip, τ = 0.1, 1, 10} (same optimizer). Reported: per-decile shares, the
# median ratio of measured to first-order loss change, their correlation, and cos(sign(g), g) per width.
CLIP_LATE_SHARE_MAX = 0.1
CLIP_BEST_TOLERANCE = 0.02


def gradient_clipping(context: EffectSweep):
    width_key = next(key for key in context.keys if key != "variant")
    rows = []
    for _, trial in context.trials.iterrows():
        run = context.runs[trial["trial"]]
        metrics = run.metrics.dropna(subset=["grad_norm"])
        deciles = np.minimum((metrics["step"] - 1) * 10 // run.config.training.steps, 9)
        late = metrics[metrics["step"] > run.config.training.steps / 2]
        ratio = metrics["loss_change"] / metrics["loss_change_predicted"] if "loss_change" in metrics else pd.Series(dtype=float)
        rows.append({"variant": trial["variant"], width_key: trial[width_key], "seed": trial["training.seed"],
                     "optimizer": run.config.optimizer.name, "clip": run.config.training.grad_clip,
                     "status": run.summary.get("status"),
                     "parameters": run.summary.get("parameter_count"),
                     "late_share_above_1": float((late["grad_norm"] > 1).mean()),
                     **{f"decile_{d}": float((metrics["grad_norm"][deciles == d] > 1).mean()) for d in range(10)},
                     "median_dL_ratio": float(ratio.median()) if len(ratio) else math.nan,
                     "dL_correlation": float(metrics["loss_change"].corr(metrics["loss_change_predicted"]))
                     if "loss_change" in metrics else math.nan,
                     "same_sign_share": float((np.sign(metrics["loss_change"]) == np.sign(metrics["loss_change_predicted"])).mean())
                     if "loss_change" in metrics else math.nan,
                     "sign_cosine": float(metrics["grad_sign_cosine"].median()) if "grad_sign_cosine" in metrics else math.nan,
                     "median_grad_norm": float(late["grad_norm"].median())})
    table = pd.DataFrame(rows)
    atomic_write_text(context.out / "gradient_norms.csv", table.to_csv(index=False))
    verdicts = []
    for (optimizer, width), rows in table[table["clip"].isna()].groupby(["optimizer", width_key]):
        run = f"{context.sweep.name} {optimizer} {width_key}={width:g}"
        if (rows["status"] == "diverged").any():
            verdicts.append(Verdict("grad_norm_below_1", run, "diverged", False, "the run diverged (NaN/inf loss)",
                                    f"share of late steps with ‖g‖ > 1 ≤ {CLIP_LATE_SHARE_MAX}"))
            continue
        verdicts.append(_band_verdict("grad_norm_below_1", run, "share of late steps with ‖g‖ > 1",
                                      rows["late_share_above_1"].max(), (0.0, CLIP_LATE_SHARE_MAX)))
    clip_of = table.drop_duplicates("variant").set_index("variant")[["optimizer", "clip"]]
    for width, cells in context.cells.groupby(width_key):
        for optimizer in clip_of["optimizer"].unique():
            variants = clip_of[clip_of["optimizer"] == optimizer]
            at_one = [v for v in variants.index if variants.loc[v, "clip"] == 1.0]
            if not at_one or len(variants) < 2:
                continue
            means = cells.set_index("variant")["mean"].reindex(variants.index)
            best, value = means.min(), means[at_one[0]]
            passed = value <= best * (1 + CLIP_BEST_TOLERANCE)
            verdicts.append(Verdict("clip_at_1_near_best", f"{context.sweep.name} {optimizer} {width_key}={width:g}",
                                    "near best" if passed else "not near best", passed,
                                    f"τ = 1: {value:.4f}; best {means.idxmin()}: {best:.4f}",
                                    f"within {CLIP_BEST_TOLERANCE:.0%} of the best τ"))
    from optlab.report.tables import to_markdown

    summary_columns = ["variant", width_key, "parameters", "seed", "status", "late_share_above_1", "median_grad_norm", "median_dL_ratio",
                       "dL_correlation", "same_sign_share", "sign_cosine"]
    lines = ["## Gradient norms and first-order loss change per trial", "",
             "ΔL ratio = measured loss change of a step on its own batch ÷ the first-order prediction g·Δθ "
             "(−η‖g‖² for SGD, −η·u·g in general); sign cosine = ‖g‖₁/(√N‖g‖₂).", "",
             to_markdown(table[summary_columns]), ""]
    return verdicts, lines, [_decile_plot(table, width_key, context), _curves(context, "grad_norm", "grad_norm_curves", log_y=True)]


def _decile_plot(table: pd.DataFrame, width_key: str, context: EffectSweep) -> Path:
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    unclipped = table[table["clip"].isna()]
    for (optimizer, width), rows in unclipped.groupby(["optimizer", width_key]):
        axes.plot(range(1, 11), rows[[f"decile_{d}" for d in range(10)]].mean(), "o-", label=f"{optimizer} {width:g}")
    axes.set(xlabel="training decile", ylabel="share of steps with ‖g‖ > 1", title="no clipping", ylim=(-0.02, 1.02))
    axes.legend(fontsize=7)
    return context.save(figure, "grad_norm_deciles")


# ------------------------------------------------------------------------------------------------
# §5 (i) Update RMS: median over the second half of the probed steps of RMS(Δθ/η) of the matrices
# (weight decay 0). PASS: Lion/Signum 1 (± 1e-3; zero sign arguments are absent for dense matrices),
# AdamW in [0.15, 0.35], Muon match_rms_adamw in [0.16, 0.19], Muon exact_rms 0.2 ± 1e-3.
UPDATE_RMS_BANDS = {"lion": (0.999, 1.001), "signum": (0.999, 1.001), "signsgd": (0.999, 1.001),
                    "adamw": (0.15, 0.35), "adam": (0.15, 0.35),
                    "muon match_rms_adamw": (0.16, 0.19), "muon exact_rms": (0.199, 0.201)}


def _optimizer_key(run: Run) -> str:
    spec = run.config.optimizer
    return f"{spec.name} {spec.scale}" if spec.name == "muon" else spec.name


def update_rms(context: EffectSweep):
    verdicts, measured = [], {}
    for _, trial in context.trials.iterrows():
        run = context.runs[trial["trial"]]
        late = run.metrics[run.metrics["step"] > run.config.training.steps / 2]
        value = float(late["update_rms_over_lr.matrix"].median())
        key = _optimizer_key(run)
        measured.setdefault(trial["variant"], []).append(value)
        if key in UPDATE_RMS_BANDS:
            verdicts.append(_band_verdict("update_rms", f"{context.sweep.name} {trial['variant']} seed {trial['training.seed']}",
                                          "median RMS(Δθ/η) of matrices, second half", value, UPDATE_RMS_BANDS[key]))
    lines = ["Median lr-normalised update RMS of the matrices over the second half: " +
             ", ".join(f"{v} {np.mean(x):.4f}" for v, x in measured.items()), ""]
    return verdicts, lines, [_curves(context, "update_rms_over_lr.matrix", "update_rms_curves")]


# ------------------------------------------------------------------------------------------------
# §5 (ii) Lion's lr rule: an lr sweep for Lion and AdamW with η·λ fixed; η* per optimizer (parabola
# vertex in log lr). PASS (proposed gate): η*_AdamW/η*_Lion ∈ [3, 10].
LION_LR_RATIO_BAND = (3.0, 10.0)


def lion_lr_rule(context: EffectSweep):
    lr_key = context.sweep.lr_key
    optima = {}
    for variant, rows in context.cells.groupby("variant", sort=False):
        rows = rows.sort_values(lr_key)
        optimum = refine_optimum(rows[lr_key].to_numpy(float), rows["mean"].to_numpy(float))
        optima[_variant_optimizer(context, variant)] = optimum
    lion, adamw = optima.get("lion"), optima.get("adamw")
    ratio = adamw.lr / lion.lr if lion and adamw and lion.lr and adamw.lr else None
    verdicts = [_band_verdict("lion_lr_rule", context.sweep.name, "η*_AdamW/η*_Lion", ratio, LION_LR_RATIO_BAND)]
    lines = ["η* per optimizer: " + ", ".join(f"{k} {o.lr:.3g}" if o.lr else f"{k} none ({o.flag})"
                                             for k, o in optima.items()), ""]
    return verdicts, lines, [_variant_lines(context, lr_key, context.sweep.metric.column, "metric_vs_lr")]


EFFECTS = {
    "adam_v_hessian": adam_hessian,
    "lr_proportional_to_scale": init_scale_invariance,
    "schedules": schedules,
    "decay_rule": decay_rule,
    "accumulation_variants": accumulation_variants,
    "gradient_clipping": gradient_clipping,
    "update_rms": update_rms,
    "lion_lr_rule": lion_lr_rule,
}
