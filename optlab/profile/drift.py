"""Panel: stale-row drift (docs/science/embedding-drift.md §2–6). Does the optimizer pin the embedding rows
of tokens absent from the batch at ±1/λ?

Each optimizer trains the bag-of-embeddings model on Zipf tokens at its own lr η and weight decay λ
(the references at the shipped demo's settings) for T = ⌈6/(ηλ)⌉ steps, capped (so ηλT = 6 and the
envelope 1 − (1 − ηλ)^T ≈ 1 where the cap allows). The rule is the embedding_drift effect's: "pins
idle rows at ±1/λ" when the rare bucket's saturated fraction (|w|·λ ≥ 0.9) is ≥ 0.3 and its
max|w|·λ lies in [0.99, 1.01] × the envelope; "idle rows settle" otherwise; not judged without weight
decay or when the capped run cannot saturate (envelope < 0.9).
"""

from __future__ import annotations

import math
from pathlib import Path

from optlab.effects.embedding_drift import RARE_MAX, RARE_SATURATED, drift_envelope, drift_observed
from optlab.probes.schema import SATURATION_LEVEL
from optlab.profile.panel import Battery, Finding, Panel, with_keywords
from optlab.report.figures import plt, save_figure
from optlab.runs import FINISHED, load_run

ETA_LAMBDA_T = 6.0
MAX_STEPS = {True: 800, False: 2000}  # quick, full
BASE = {"model": {"name": "bag", "embedding_dim": 32, "context": 4, "init_std": 0.02},
        "data": {"name": "zipf", "vocab_size": 4000, "exponent": 1.2, "bigram_prob": 0.0},
        "schedule": {"name": "constant"}, "training": {"batch_size": 64, "seed": 0},
        "probes": {"every": 50, "updates": False}}
REFERENCE_SETTINGS = {"adamw": {"lr": 3e-2, "weight_decay": 1 / 3}, "lion": {"lr": 1e-2, "weight_decay": 1.0},
                      "tiger": {"lr": 1e-2, "weight_decay": 1.0}, "sgd": {"lr": 1e-2, "weight_decay": 1.0},
                      "signsgd": {"lr": 1e-2, "weight_decay": 1.0}}


def variants(battery: Battery) -> dict[str, dict]:
    """{label: overrides}: each optimizer at its lr and decay (references at the demo's), run for ηλT = 6."""
    found = {}
    for label, section in battery.optimizers.items():
        if label != battery.profiled and section["name"] in REFERENCE_SETTINGS:
            section = with_keywords(section, **REFERENCE_SETTINGS[section["name"]])
        rate = float(section.get("lr", 1e-3)) * float(section.get("weight_decay") or 0.0)
        steps = MAX_STEPS[battery.quick] if rate <= 0 else min(MAX_STEPS[battery.quick], math.ceil(ETA_LAMBDA_T / rate))
        found[label] = {"optimizer": section, "training.steps": max(steps, 50)}
    return found


def measure(battery: Battery) -> dict[str, Finding]:
    trials, _ = battery.run_sweep("drift", {"base": BASE, "variants": variants(battery)})
    findings = {}
    for _, trial in trials.iterrows():
        label = trial["variant"]
        if trial["state"] not in FINISHED:
            findings[label] = Finding(f"not judged (run {trial['state']})", None)
            continue
        run = load_run(battery.directory / "drift" / "trials" / trial["trial"])
        final, envelope = run.summary.get("final", {}), drift_envelope(run)
        numbers = {"rare_saturated_fraction": final.get(RARE_SATURATED), "rare_max_abs_x_lambda": final.get(RARE_MAX),
                   "envelope": envelope, "steps": run.config.training.steps}
        if not final.get(RARE_MAX) or not math.isfinite(final[RARE_MAX]):
            findings[label] = Finding("not judged (no weight decay on the embedding: ±1/λ undefined)", None, numbers)
        elif envelope < SATURATION_LEVEL:
            findings[label] = Finding(f"not judged (ηλT too small: envelope {envelope:.2f} < {SATURATION_LEVEL})", None, numbers)
        else:
            pinned, _ = drift_observed(final, envelope)
            findings[label] = Finding("pins idle rows at ±1/λ" if pinned else "idle rows settle",
                                      final[RARE_SATURATED], numbers)
    return findings


def figure(battery: Battery, findings: dict[str, Finding], out: Path) -> Path | None:
    """Rare-bucket saturated fraction per optimizer, against the rule's 0.3."""
    labels = [label for label in findings if findings[label].value is not None]
    if not labels:
        return None
    fig, axis = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    values = [findings[label].value for label in labels]
    bars = axis.bar(labels, values, color=["tab:red" if v >= 0.3 else "tab:blue" for v in values])
    axis.bar_label(bars, fmt="%.2f")
    axis.axhline(0.3, color="black", linestyle="--", linewidth=1, label="rule: ≥ 0.3 pins rows at ±1/λ")
    axis.set(ylabel="rare rows with |w|·λ ≥ 0.9", ylim=(0, 1.05), title="Stale-row drift (bag model, Zipf tokens)")
    axis.legend(loc="upper right", fontsize=8)
    return save_figure(fig, out / "drift.png")


PANEL = Panel("drift", "Stale-row drift", "docs/science/embedding-drift.md §2–6",
              "pins idle rows at ±1/λ iff the rare bucket's saturated fraction ≥ 0.3 and max|w|·λ ∈ [0.99, 1.01] × "
              "the envelope 1 − Π(1 − η_tλ); run at the optimizer's lr and λ for ηλT = 6 (capped)", measure, figure)
