"""Panel: learning-rate sensitivity and speed (docs/science/profile.md §4). Over which range of lr
does the optimizer train well, does its best lr carry over to a wider model, and how fast does it get
where AdamW gets?

Each optimizer trains the small GPT (pydoc text, weight decay 0, constant lr) at two widths over an lr
grid of multiples of its own lr, half a decade apart, and logs the held-out loss L every T/12 steps
(T/6 in the quick card).
With L_0 the first held-out loss and L* the lowest final one at a width:

- basin: the contiguous run of grid lrs around the best whose final L ≤ L* + 0.1·(L_0 − L*), as its
  width in decades (marked "≥" when it reaches the end of the grid);
- transfer: "transfers" when the best grid lr at the wide model is the narrow model's, "shifts ×r"
  otherwise (r = wide best / narrow best);
- speed: the target is AdamW's held-out loss at its best lr (wide model) half-way through training; the
  speed is (AdamW's steps to the target) / (the optimizer's, at its own best lr), steps interpolated
  between evaluations; < ½ when it does not reach the target in T steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from optlab.profile.panel import Battery, Finding, Panel, own_lr, with_keywords
from optlab.report.figures import plt, save_figure
from optlab.runs import FINISHED, read_metrics

WIDTHS = {True: (32, 64), False: (32, 128)}
MULTIPLIERS = {True: (0.1, 10**-0.5, 1.0, 10**0.5, 10.0),
               False: (10**-1.5, 0.1, 10**-0.5, 1.0, 10**0.5, 10.0, 10**1.5)}
STEPS = {True: 60, False: 240}
EVALUATIONS = {True: 6, False: 12}  # held-out loss every T/6 (quick) or T/12 steps
EVAL_EXAMPLES = {True: 128, False: 256}
BASIN_FRACTION = 0.1  # within 10 % of the improvement L_0 − L* from the best final loss
BASE = {"model": {"name": "gpt", "context": 32, "n_layer": 2, "n_head": 2, "init_std": 0.02},
        "data": {"name": "stdlib-text", "tokenizer": "words", "vocab_size": 2048},
        "schedule": {"name": "constant"}, "training": {"batch_size": 16, "device": "cpu", "seed": 0},
        "probes": {"embedding": False, "updates": False}}


def variants(battery: Battery) -> dict[str, tuple[str, float, dict]]:
    """{variant name: (optimizer label, lr multiplier, overrides)}: each optimizer at each multiple of its lr."""
    found = {}
    for label, section in battery.optimizers.items():
        lr = own_lr(section)
        for multiplier in MULTIPLIERS[battery.quick]:
            found[f"{label} @ {multiplier:.3g}×lr"] = (label, multiplier, {
                "optimizer": with_keywords(section, weight_decay=0.0, lr=lr * multiplier)})
    return found


def reached_at(steps: np.ndarray, losses: np.ndarray, target: float) -> float:
    """The first step where the held-out loss reaches `target`, interpolated linearly between evaluations
    (inf when it never does)."""
    for index in np.flatnonzero(losses <= target):
        if index == 0:
            return float(steps[0])
        before, after = losses[index - 1], losses[index]
        return float(steps[index - 1] + (steps[index] - steps[index - 1]) * (before - target) / (before - after))
    return math.inf


def basin(lrs: np.ndarray, finals: np.ndarray, initial: float) -> tuple[int, float, bool]:
    """(index of the best lr, the basin's width in decades, whether the basin reaches the grid's end)."""
    best = int(np.nanargmin(np.where(np.isfinite(finals), finals, np.inf)))
    good = finals <= finals[best] + BASIN_FRACTION * (initial - finals[best])
    low = high = best
    while low > 0 and good[low - 1]:
        low -= 1
    while high < len(lrs) - 1 and good[high + 1]:
        high += 1
    return best, float(np.log10(lrs[high] / lrs[low])), low == 0 or high == len(lrs) - 1


def measure(battery: Battery) -> dict[str, Finding]:
    steps, widths = STEPS[battery.quick], WIDTHS[battery.quick]
    named = variants(battery)
    base = {**BASE, "training": {**BASE["training"], "steps": steps},
            "probes": {**BASE["probes"], "every": steps // EVALUATIONS[battery.quick],
                       "eval_examples": EVAL_EXAMPLES[battery.quick]}}
    trials, configs = battery.run_sweep("lr_sensitivity", {
        "base": base, "variants": {name: overrides for name, (_, _, overrides) in named.items()},
        "grid": {"model.embedding_dim": list(widths)}})
    curves = {}  # {(label, width): [(lr, eval steps, held-out losses, final held-out loss)] in lr order}
    for _, trial in trials.sort_values("variant", key=lambda v: v.map(lambda n: named[n][1])).iterrows():
        label, width = named[trial["variant"]][0], int(trial["model.embedding_dim"])
        eval_steps, losses = np.array([]), np.array([])
        if trial["state"] in FINISHED:
            metrics = read_metrics(battery.directory / "lr_sensitivity" / "trials" / trial["trial"])
            if "eval_loss" in metrics:
                metrics = metrics[np.isfinite(metrics["eval_loss"])]
                eval_steps, losses = metrics["step"].to_numpy(float), metrics["eval_loss"].to_numpy(float)
        reached_the_end = trial["state"] == "completed" and len(eval_steps) and eval_steps[-1] >= steps
        final = float(losses[-1]) if reached_the_end else math.inf  # a diverged run has no final loss
        curves.setdefault((label, width), []).append((configs[trial["trial"]].optimizer.lr, eval_steps, losses, final))
    return judge(battery, curves, widths, steps)


def judge(battery: Battery, curves: dict, widths: tuple[int, int], steps: int) -> dict[str, Finding]:
    """The findings from the held-out curves of every (optimizer, width), by the rules of the module docstring."""
    summaries = {}
    for label in battery.optimizers:
        per_width = {}
        for width in widths:
            points = curves.get((label, width), [])
            finals = np.array([final for *_, final in points])
            initials = [losses[0] for _, _, losses, _ in points if len(losses)]
            if not points or not np.isfinite(finals).any() or not initials:
                break
            lrs = np.array([lr for lr, *_ in points])
            best, decades, at_edge = basin(lrs, finals, float(np.median(initials)))
            per_width[width] = {"lrs": lrs.tolist(), "final_eval_loss": finals.tolist(), "best_lr": float(lrs[best]),
                                "best_loss": float(finals[best]), "basin_decades": decades, "basin_at_grid_edge": at_edge,
                                "best_curve": points[best][1:3]}
        summaries[label] = per_width
    adamw = "adamw" if "adamw" in battery.optimizers else next(
        (label for label, section in battery.optimizers.items() if section["name"] == "adamw"), None)
    wide = widths[-1]
    target = None
    if adamw is not None and wide in summaries[adamw]:
        adamw_steps, adamw_losses = summaries[adamw][wide]["best_curve"]
        target = float(np.interp(steps / 2, adamw_steps, adamw_losses))
        adamw_time = reached_at(adamw_steps, adamw_losses, target)
    findings = {}
    for label, per_width in summaries.items():
        if len(per_width) < len(widths):
            findings[label] = Finding("not judged (no run finished at one of the widths)", None)
            continue
        narrow = per_width[widths[0]]
        ratio = per_width[wide]["best_lr"] / narrow["best_lr"]
        transfer = "transfers across width" if math.isclose(ratio, 1.0) else f"best lr shifts ×{ratio:.2g} at {widths[0]}→{wide} wide"
        decades, best = per_width[wide]["basin_decades"], per_width[wide]["best_lr"]
        lrs = per_width[wide]["lrs"]
        edge = "≥ " if best == lrs[-1] else "≤ " if best == lrs[0] else ""
        text = (f"best lr {edge}{best:.2g}" + (" (the grid's edge: profile again with that lr)" if edge else "")
                + f", basin {'≥ ' if per_width[wide]['basin_at_grid_edge'] else ''}{decades:.1f} decades; {transfer}")
        numbers = {"widths": {str(width): {key: value for key, value in summary.items() if key != "best_curve"}
                              for width, summary in per_width.items()}, "best_lr_ratio_wide_over_narrow": ratio}
        if target is not None:
            own_steps, own_losses = per_width[wide]["best_curve"]
            speed = adamw_time / reached_at(own_steps, own_losses, target)
            numbers.update(target_eval_loss=target, speed_vs_adamw=speed,
                           best_curve={"step": list(map(float, own_steps)), "eval_loss": list(map(float, own_losses))})
            text += (f"; {speed:.2g}× AdamW's speed to L = {target:.3g}" if speed > 0
                     else f"; does not reach AdamW's half-way L = {target:.3g} in {steps} steps (< ½× its speed)")
        findings[label] = Finding(text, decades, numbers)
    return findings


def figure(battery: Battery, findings: dict[str, Finding], out: Path) -> Path | None:
    """Left: final held-out loss against lr / the optimizer's own lr, both widths. Right: held-out loss
    against steps at each optimizer's best lr (wide model), with AdamW's half-way target."""
    judged = {label: finding for label, finding in findings.items() if finding.value is not None}
    if not judged:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, finding) in enumerate(judged.items()):
        color = colors[index % len(colors)]
        for style, (width, summary) in zip((":", "-"), finding.numbers["widths"].items()):
            lrs = np.array(summary["lrs"])
            finals = np.array(summary["final_eval_loss"])
            left.plot(lrs / own_lr(battery.optimizers[label]), np.where(np.isfinite(finals), finals, np.nan), style, marker="o",
                      color=color, markersize=4, label=f"{label}, width {width}")
        curve = finding.numbers.get("best_curve")
        if curve:
            right.plot(curve["step"], curve["eval_loss"], color=color, label=label)
    target = next((f.numbers["target_eval_loss"] for f in judged.values() if "target_eval_loss" in f.numbers), None)
    if target is not None:
        right.axhline(target, color="black", linestyle="--", linewidth=1, label="AdamW's half-way loss")
    left.set(xscale="log", xlabel="lr / the optimizer's own lr", ylabel="final held-out loss",
             title="Learning-rate sensitivity (dotted: narrow, solid: wide)")
    right.set(xlabel="step", ylabel="held-out loss", title="Speed at the best lr (wide model)")
    left.legend(fontsize=7, ncol=2)
    right.legend(fontsize=8)
    return save_figure(fig, out / "lr_sensitivity.png")


PANEL = Panel("lr_sensitivity", "Learning-rate sensitivity and speed", "docs/science/profile.md §4",
              "small GPT at two widths over lr = own lr × 10^(k/2); basin: contiguous lrs with final held-out loss ≤ "
              "L* + 0.1·(L_0 − L*), in decades; transfers iff the best grid lr is the same at both widths; speed = "
              "AdamW's steps / the optimizer's to AdamW's half-way held-out loss, each at its best lr", measure, figure)
