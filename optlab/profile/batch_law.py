"""Panel: the batch-size law (docs/science/scaling-laws.md §1.2–1.6, the noisy quadratic of Exp B/C).
How does the optimal learning rate of one step grow with the batch size, and does it surge?

One step of each optimizer (weight decay 0) on the noisy quadratic with ρ = 0.1, d = 64, κ² = 1000
(β_noise = 0.40 < 1, where sign updates surge), over a batch × lr grid wide enough for SGD-like and
sign-like optimizers; η*(B) per optimizer as in every scaling-law effect. The rule, from the closed
forms of this setting: the small-B exponent (slope of log η* over B ∈ [1, 16]) is "≈ ½ (sign-like)"
within ±0.08 of the sign closed form's slope, "≈ 1 (SGD-like)" within ±0.08 of SGD's, "between"
otherwise; "surges" when η*(B) has an interior maximum above 1.02 × its value at the largest batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optlab.effects.fits import aggregate_seeds, log_log_slope, trial_metric
from optlab.effects.lr_vs_batch import curve, optimal_lrs
from optlab.effects.noisy_quadratic import NO_SURGE_BAND, SLOPE_RANGE, SLOPE_TOLERANCE, NoisyQuadratic
from optlab.profile.panel import Battery, Finding, Panel, with_keywords
from optlab.report.figures import plt, save_figure
from optlab.sweep.spec import MetricConfig

PROBLEM = NoisyQuadratic(correlation=0.1, dim=64, gradient_scale=1.0, noise_std=1000**0.5)
BATCHES = {True: [1, 4, 16, 128, 1024, 8192], False: [1, 2, 4, 8, 16, 64, 256, 1024, 4096, 16384]}
LRS = {True: [1e-5, 1e4, 28], False: [1e-5, 1e4, 46]}  # logspace: SGD's η* at B = 1 to Adam's at ε = 1e3
REPLICAS = {True: 1000, False: 4000}
METRIC = MetricConfig(column="population_loss", reduce="final")


def base(quick: bool) -> dict:
    return {"model": {"name": "nqm", "correlation": PROBLEM.correlation, "gradient_scale": PROBLEM.gradient_scale,
                      "noise_std": PROBLEM.noise_std},
            "data": {"name": "gaussian-noise", "dim": PROBLEM.dim, "replicas": REPLICAS[quick]},
            "optimizer": {"name": "sgd"}, "schedule": {"name": "constant"},
            "training": {"steps": 1, "batch_size": 1, "seed": 0, "dtype": "float64", "divergence_factor": 1e12},
            "probes": {"every": 1, "embedding": False, "updates": False}}


def predicted_slopes() -> dict[str, float]:
    """The small-B slopes of log η* of sign updates (exact form) and of SGD in this setting."""
    batches = np.arange(SLOPE_RANGE[0], SLOPE_RANGE[1] + 1, dtype=float)
    return {"sign": log_log_slope(batches, PROBLEM.sign_optimum(batches)),
            "sgd": log_log_slope(batches, PROBLEM.sgd_optimum(batches))}


def classify(slope: float | None, slopes: dict[str, float]) -> str:
    if slope is None:
        return "not judged (no η* at small batches)"
    if abs(slope - slopes["sign"]) <= SLOPE_TOLERANCE:
        return "≈ ½ (sign-like)"
    if abs(slope - slopes["sgd"]) <= SLOPE_TOLERANCE:
        return "≈ 1 (SGD-like)"
    return "between sign-like and SGD-like"


def measure(battery: Battery) -> dict[str, Finding]:
    variants = {label: {"optimizer": with_keywords(section, weight_decay=0.0)} for label, section in battery.optimizers.items()}
    low, high, count = LRS[battery.quick]
    trials, _ = battery.run_sweep("batch_law", {
        "base": base(battery.quick), "variants": variants,
        "grid": {"training.batch_size": BATCHES[battery.quick], "optimizer.lr": {"logspace": [low, high, count]}},
        "metric": METRIC.model_dump(), "fit_noise_scale": False})
    trials["metric"] = [trial_metric(row, METRIC) for _, row in trials.iterrows()]
    slopes, findings = predicted_slopes(), {}
    for label, group in trials.groupby("variant", sort=False):
        optima = optimal_lrs(aggregate_seeds(group, ["training.batch_size", "optimizer.lr"]), "training.batch_size", "optimizer.lr")
        batches, eta = curve(optima, "training.batch_size")
        small = (batches >= SLOPE_RANGE[0]) & (batches <= SLOPE_RANGE[1]) & np.isfinite(eta)
        slope = log_log_slope(batches[small], eta[small]) if small.sum() >= 2 else None
        usable = np.isfinite(eta)
        ratio = float(np.nanmax(eta) / eta[usable][-1]) if usable.any() else None
        interior = usable.any() and 0 < int(np.nanargmax(eta)) < len(eta) - 1
        surges = bool(interior and ratio is not None and ratio > NO_SURGE_BAND[1])
        exponent = classify(slope, slopes)
        findings[label] = Finding(f"{exponent}, {'surges' if surges else 'no surge'}", slope,
                                  {"slope": slope, "surge_ratio": ratio, "surges": surges,
                                   "eta_star": dict(zip(batches.tolist(), eta.tolist()))})
    return findings


def figure(battery: Battery, findings: dict[str, Finding], out: Path) -> Path | None:
    """η*(B) per optimizer on log-log axes, with the closed forms of sign updates and SGD."""
    fig, axis = plt.subplots(figsize=(6.8, 4.4), layout="constrained")
    markers, styles = "osD^v<>", ("-", "--", "-.", ":")
    for index, (label, finding) in enumerate(findings.items()):
        points = sorted((b, e) for b, e in finding.numbers.get("eta_star", {}).items() if np.isfinite(e))
        if points:
            batches, eta = zip(*points)
            slope = finding.value
            axis.plot(batches, eta, marker=markers[index % len(markers)], linestyle=styles[index % len(styles)],
                      markersize=9 - 1.5 * index, markerfacecolor="none" if index else None,  # curves that coincide stay visible
                      label=f"{label}: slope {slope:.2f}" if slope is not None else label)
    grid = np.logspace(0, np.log10(max(BATCHES[battery.quick])), 100)
    axis.plot(grid, PROBLEM.sign_optimum(grid), color="black", linestyle="--", linewidth=1, label="sign updates (exact)")
    axis.plot(grid, PROBLEM.sgd_optimum(grid), color="gray", linestyle=":",
              linewidth=1.2, label="SGD (closed form)")
    axis.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="optimal lr η*(B)",
             title="Batch-size law (one step, noisy quadratic, β_noise = 0.40)")
    axis.legend(fontsize=8)
    return save_figure(fig, out / "batch_law.png")


PANEL = Panel("batch_law", "Batch-size law", "docs/science/scaling-laws.md §1.2–1.6, §2",
              "small-B exponent of η*(B) over B ∈ [1, 16] within ±0.08 of the sign closed form (≈ ½) or of SGD's (≈ 1), "
              "else between; surges iff η*(B) has an interior maximum > 1.02 × η* at the largest B (ρ = 0.1, "
              "β_noise = 0.40)", measure, figure)
