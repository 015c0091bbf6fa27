"""Panel: update size (docs/science/other-effects.md §5). How large is one update per unit of lr, per
parameter kind, and which lr gives AdamW's update size?

Each optimizer trains the small GPT of the other-effects experiments (pydoc text) at its own lr with
weight decay 0, and the update probe logs RMS(Δθ)/η per kind; the panel takes the median over the
probe steps after the first. With u = that RMS for the optimizer and u_A for AdamW at lr η_A, the lr
that gives AdamW's update RMS is η_A·u_A/u (Lion: u = 1 exactly, AdamW ≈ √((1 − β1)/(1 + β1))).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from optlab.profile.panel import Battery, Finding, Panel, with_keywords
from optlab.report.figures import plt, save_figure
from optlab.runs import FINISHED, read_metrics

STEPS = {True: 30, False: 120}
BASE = {"model": {"name": "gpt", "embedding_dim": 64, "context": 32, "n_layer": 2, "n_head": 2, "init_std": 0.02},
        "data": {"name": "stdlib-text", "tokenizer": "words", "vocab_size": 2048},
        "schedule": {"name": "constant"}, "training": {"batch_size": 16, "device": "cpu", "seed": 0},
        "probes": {"embedding": False, "updates": True}}
KINDS = ("matrix", "embedding", "head", "bias", "norm")


def measure(battery: Battery) -> dict[str, Finding]:
    steps = STEPS[battery.quick]
    variants = {label: {"optimizer": with_keywords(section, weight_decay=0.0)} for label, section in battery.optimizers.items()}
    base = {**BASE, "training": {**BASE["training"], "steps": steps}, "probes": {**BASE["probes"], "every": max(steps // 6, 1)}}
    trials, configs = battery.run_sweep("update_size", {"base": base, "variants": variants})
    sizes, lrs = {}, {}
    for _, trial in trials.iterrows():
        if trial["state"] in FINISHED:
            metrics = read_metrics(battery.directory / "update_size" / "trials" / trial["trial"]).iloc[1:]
            sizes[trial["variant"]] = {kind: float(np.median(metrics[column])) for kind in ("all", *KINDS)
                                       if (column := "update_rms_over_lr" + ("" if kind == "all" else f".{kind}")) in metrics}
            lrs[trial["variant"]] = configs[trial["trial"]].optimizer.lr
    adamw = next((label for label in sizes if battery.optimizers[label]["name"] == "adamw"), None)
    findings = {}
    for label in battery.optimizers:
        if label not in sizes:
            findings[label] = Finding("not judged (run did not finish)", None)
            continue
        size = sizes[label]["all"]
        numbers = {"update_rms_over_lr": sizes[label], "lr": lrs[label]}
        text = f"update RMS ≈ {size:.3g}·lr"
        if adamw is not None and math.isfinite(size) and size > 0:
            matched = lrs[adamw] * sizes[adamw]["all"] / size
            numbers["adamw_matched_lr"] = matched
            text += f"; AdamW's update size at lr {matched:.3g} (= {matched / lrs[adamw]:.3g} × AdamW's {lrs[adamw]:.3g})"
        findings[label] = Finding(text, size, numbers)
    return findings


def figure(battery: Battery, findings: dict[str, Finding], out: Path) -> Path | None:
    """RMS(Δθ)/lr per parameter kind, one group of bars per optimizer."""
    labels = [label for label, finding in findings.items() if finding.value is not None]
    if not labels:
        return None
    kinds = [kind for kind in KINDS if any(kind in findings[l].numbers["update_rms_over_lr"] for l in labels)]
    fig, axis = plt.subplots(figsize=(7.2, 4.4), layout="constrained")
    width = 0.8 / len(labels)
    for index, label in enumerate(labels):
        values = [findings[label].numbers["update_rms_over_lr"].get(kind, math.nan) for kind in kinds]
        axis.bar(np.arange(len(kinds)) + index * width, values, width, label=label)
    axis.axhline(1.0, color="black", linestyle="--", linewidth=1, label="sign update (Lion): 1")
    axis.set_xticks(np.arange(len(kinds)) + width * (len(labels) - 1) / 2, kinds)
    axis.set(yscale="log", ylabel="RMS(Δθ) / lr", title="Update size per parameter kind (small GPT, weight decay 0)")
    fig.legend(*axis.get_legend_handles_labels(), loc="outside lower center", ncol=len(labels) + 1, fontsize=8)
    return save_figure(fig, out / "update_size.png")


PANEL = Panel("update_size", "Update size", "docs/science/other-effects.md §5",
              "median RMS(Δθ)/lr over probe steps per kind on the small GPT (weight decay 0); AdamW-matched lr = "
              "η_AdamW·u_AdamW/u", measure, figure)
