"""Comparison tables across runs (pandas -> CSV and Markdown)."""

from __future__ import annotations

import pandas as pd

from optlab.runs import Run

BUCKETS = ("rare", "mid", "frequent")


def optimizer_label(run: Run) -> str:
    """e.g. 'tiger (lr 0.01, λ 1) + lazy rows, embeddings: adamw'"""
    spec = run.config.optimizer
    label = f"{spec.name} (lr {spec.lr:g}, λ {spec.weight_decay:g})"
    groups = run.config.param_groups
    if groups.lazy_embeddings:
        label += " + lazy rows"
    for rule in groups.resolved_rules():
        if rule.optimizer is not None:
            label += f", {rule.kind or rule.name}: {rule.optimizer.name}"
    if getattr(run.config.model, "tie_embeddings", "none") != "none":
        label += f", tied ({run.config.model.tie_embeddings})"
    return label


def comparison_table(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        final = run.summary.get("final", {})
        row = {
            "run": run.name,
            "optimizer": optimizer_label(run),
            "status": run.summary.get("status"),
            "steps": run.summary.get("steps_completed"),
            "wall_time_s": run.summary.get("wall_time_s"),
            "loss": final.get("loss"),
        }
        for bucket in BUCKETS:
            for metric in ("saturated_fraction", "max_abs_x_lambda", "rms_x_lambda"):
                key = f"embedding.{bucket}.{metric}"
                if key in final:
                    row[f"{bucket}.{metric}"] = final[key]
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".4g")
