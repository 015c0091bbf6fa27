"""Update RMS (docs/science/other-effects.md §5 (i); Su, kexue.fm/archives/11267): the median over the
second half of training of RMS(Δθ/η) of the hidden matrices (probes/updates.py), with weight decay 0 so
that Δθ is the update alone. Expected, by the optimizer each trial ran:

    Lion, Signum, SignSGD     1 exactly (a sign per entry; ± 1e-3)
    AdamW, Adam               √((1 − β1)/(1 + β1)) for pure-noise gradients (0.23 at β1 = 0.9), within
                              [0.65, 1.5] × that (the original [0.15, 0.35] at β1 = 0.9)
    Muon, scale exact_rms     0.2 exactly (± 1e-3)
    Muon, match_rms_adamw     [0.16, 0.19] (the original fixed band: Newton–Schulz's singular values ≈ 0.7–1.2)
"""

from __future__ import annotations

import math

import numpy as np

from optlab.effects.core import Effect, SweepContext, band_verdict, cells_report, not_judged
from optlab.effects.figures import first_seed_curves
from optlab.report.figures import plt, save_figure

SIGN_BAND, EXACT_RMS_BAND, MUON_MATCH_BAND = (0.999, 1.001), (0.199, 0.201), (0.16, 0.19)
ADAM_SHARE_BAND = (0.65, 1.5)


def expected_band(config) -> tuple[tuple[float, float], str] | None:
    """The band of RMS(Δθ/η) for the optimizer of `config`, and where it comes from (None: no prediction)."""
    optimizer = config.optimizer
    if optimizer.name in ("lion", "signum", "signsgd"):
        return SIGN_BAND, "sign update: 1"
    if optimizer.name in ("adamw", "adam"):
        beta1 = optimizer.betas[0]
        noise = math.sqrt((1 - beta1) / (1 + beta1))
        return (ADAM_SHARE_BAND[0] * noise, ADAM_SHARE_BAND[1] * noise), f"[0.65, 1.5] × √((1 − β1)/(1 + β1)) = {noise:.3f}"
    if optimizer.name == "muon" and optimizer.scale == "exact_rms":
        return EXACT_RMS_BAND, "exact_rms: 0.2"
    if optimizer.name == "muon" and optimizer.scale == "match_rms_adamw":
        return MUON_MATCH_BAND, "a fixed band (Newton–Schulz)"
    return None


def measured_vs_band(context: SweepContext, measured: dict, bands: dict):
    """The effect at a glance: each seed's median RMS(Δθ/η) per variant (dots) beside the band its
    optimizer predicts (grey bar); a variant without a prediction shows its dots alone."""
    figure, axes = plt.subplots(figsize=(1.3 * len(measured) + 3, 4.2))
    for position, (variant, values) in enumerate(measured.items()):
        if variant in bands:
            (low, high), _ = bands[variant]
            axes.bar(position, high - low, bottom=low, width=0.6, color="grey", alpha=0.35, label="predicted band")
        axes.scatter(np.full(len(values), position) + np.linspace(-0.1, 0.1, len(values)), values, color="C0", zorder=3,
                     label="measured (one dot per seed)")
    axes.set_xticks(range(len(measured)), list(measured), rotation=20, ha="right")
    axes.set(yscale="log", ylabel="median RMS(Δθ/η), matrices, second half", title="Update RMS against its prediction")
    unique = {label: handle for handle, label in zip(*axes.get_legend_handles_labels())}
    axes.legend(unique.values(), unique.keys(), fontsize=7)
    return save_figure(figure, context.out / "update_rms.png")


def _report(context: SweepContext):
    verdicts, measured, bands = [], {}, {}
    for _, trial in context.finished.iterrows():
        run = context.run(trial["trial"])
        late = run.metrics[run.metrics["step"] > run.config.training.steps / 2]
        value = float(late["update_rms_over_lr.matrix"].median())
        measured.setdefault(trial["variant"], []).append(value)
        name = f"{context.sweep.name} {trial['variant']} seed {trial['training.seed']}"
        band = expected_band(run.config)
        if band is None:
            continue
        bands[trial["variant"]] = band
        if run.config.optimizer.weight_decay:
            verdicts.append(not_judged("update_rms", name, "weight_decay > 0: Δθ/η includes the decay"))
            continue
        verdicts.append(band_verdict("update_rms", name, "median RMS(Δθ/η) of matrices, second half", value, band[0],
                                     basis=band[1]))
    lines = ["Median lr-normalised update RMS of the matrices over the second half: " +
             ", ".join(f"{v} {np.mean(x):.4f}" for v, x in measured.items()), ""]
    figures = [measured_vs_band(context, measured, bands),
               first_seed_curves(context, "update_rms_over_lr.matrix", "update_rms_curves", log_y=True)]
    return cells_report(context, verdicts, lines, figures)


effect = Effect("update_rms", "docs/science/other-effects.md §5 (i)", "sweep", _report,
                summary="lr-normalised update RMS: Lion 1, AdamW ≈ √((1 − β1)/(1 + β1)), Muon's 0.2 rule")
