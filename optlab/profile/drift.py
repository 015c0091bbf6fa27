"""Panel: stale-row drift (docs/science/embedding-drift.md §2–6, docs/science/profile.md §1). Does the
optimizer pin the embedding rows of tokens absent from the batch at ±1/λ?

Each optimizer trains the bag-of-embeddings model on the same Zipf token stream of T = 600 steps (quick
and full card alike) at its own lr η (the references at the shipped demo's), with the decay set for the panel to
λ = 6/(ηT), so that ηλT = 6 and the envelope 1 − (1 − ηλ)^T ≈ 1 for every optimizer, and the rows'
initial std set to 0.02/λ (the demo's 0.02 at λ = 1): for a sign update, whose step ignores the gradient's
size, every lr then runs the demo's experiment in the units θ·λ. The stream is
fixed because the rule's share is a property of it: how many rare rows stay idle for the ≈ 3/(ηλ) steps
pinning takes depends on the stream's length, not on a closed form. The rule is the embedding_drift
effect's: "pins idle rows at ±1/λ" when the rare bucket's saturated fraction (|w|·λ ≥ 0.9) is ≥ 0.3 and
its max|w|·λ lies in [0.99, 1.01] × the envelope; "idle rows settle" otherwise; not judged for an
optimizer without decoupled weight decay. The card adds what the optimizer's own λ implies: idle rows
reach ±1/λ after ≈ 3/(ηλ) idle steps.
"""

from __future__ import annotations

import math
from pathlib import Path

from optlab.effects.embedding_drift import RARE_MAX, RARE_SATURATED, drift_envelope, drift_observed
from optlab.probes.schema import SATURATION_LEVEL
from optlab.profile.panel import Battery, Finding, Panel, own_lr, with_keywords
from optlab.report.figures import plt, save_figure
from optlab.runs import FINISHED, load_run

ETA_LAMBDA_T = 6.0
INIT_STD_X_LAMBDA = 0.02  # the demo's rows start at std 0.02 with λ = 1: the same ratio to ±1/λ at every λ
STEPS = 600  # quick and full card alike: the stream the rule's share is judged on
BASE = {"model": {"name": "bag", "embedding_dim": 32, "context": 4, "init_std": 0.02},
        "data": {"name": "zipf", "vocab_size": 4000, "exponent": 1.2, "bigram_prob": 0.0},
        "schedule": {"name": "constant"}, "training": {"batch_size": 64, "seed": 0},
        "probes": {"every": 50, "updates": False}}
REFERENCE_LRS = {"adamw": 3e-2, "lion": 1e-2, "tiger": 1e-2, "sgd": 1e-2, "signsgd": 1e-2}


def variants(battery: Battery) -> dict[str, dict]:
    """{label: overrides}: each optimizer at its lr (references at the demo's), λ = 6/(ηT), init std 0.02/λ."""
    steps, found = STEPS, {}
    for label, section in battery.optimizers.items():
        lr = REFERENCE_LRS[label] if label != battery.profiled and label in REFERENCE_LRS \
            else own_lr(section)
        decay = ETA_LAMBDA_T / (lr * steps)
        found[label] = {"optimizer": with_keywords(section, lr=lr, weight_decay=decay), "training.steps": steps,
                        "model.init_std": INIT_STD_X_LAMBDA / decay}
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
            findings[label] = Finding(("pins idle rows at ±1/λ" if pinned else "idle rows settle") + own_decay(
                battery.optimizers[label], label == battery.profiled), final[RARE_SATURATED], numbers)
    return findings


def own_decay(section: dict, profiled: bool) -> str:
    """What the profiled optimizer's own λ implies: ≈ 3/(ηλ) idle steps to reach ±1/λ (95 % of the way)."""
    decay = section.get("weight_decay")
    if not profiled or decay is None:
        return ""
    if decay <= 0:
        return " (at its own λ = 0: no pull to ±1/λ)"
    return f" (at its own λ = {decay:.3g}: after ≈ {3 / (own_lr(section) * decay):.3g} idle steps)"


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
              "the envelope 1 − Π(1 − η_tλ); the same stream of T steps for every optimizer, at its lr with λ = 6/(ηT)", measure, figure)
