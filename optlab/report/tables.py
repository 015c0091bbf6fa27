"""Tables across runs (pandas -> CSV and Markdown)."""

from __future__ import annotations

import math

import pandas as pd


def optimizer_label(run) -> str:
    """e.g. 'tiger (lr 0.01, λ 1) + lazy rows, embedding: adamw'"""
    spec = run.config.optimizer
    decay = getattr(spec, "weight_decay", None)
    label = f"{spec.name} (lr {spec.lr:.3g}" + (f", λ {decay:.3g})" if decay is not None else ")")
    groups = run.config.param_groups
    if groups.lazy_embeddings:
        label += " + lazy rows"
    for rule in groups.resolved_rules():
        if rule.optimizer is not None:
            label += f", {rule.kind or rule.name}: {rule.optimizer.name}"
    if getattr(run.config.model, "tie_embeddings", "none") != "none":
        label += f", tied ({run.config.model.tie_embeddings})"
    return label


def comparison_table(runs: list) -> pd.DataFrame:
    """One row per run: its optimizer, status, steps, time and final losses."""
    rows = []
    for run in runs:
        final = run.summary.get("final", {})
        status, steps = run.summary.get("status"), run.summary.get("steps_completed") or 0
        if status in ("running", "interrupted"):  # not finished: say how far it got
            steps = f"{steps} of {run.config.training.steps} (unfinished)"
        row = {"run": run.name, "optimizer": optimizer_label(run), "status": status,
               "steps": steps, "wall_time_s": run.summary.get("wall_time_s"),
               "loss": final.get("loss")}
        if "eval_loss" in final:
            row["eval_loss"] = final["eval_loss"]
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".4g")


def plus_minus(name: str, value: float, error: float) -> str:
    """`name = value ± error`, or `(error undetermined)` where the covariance gave none."""
    return f"{name} = {value:.4g} ± {error:.2g}" if math.isfinite(error) else f"{name} = {value:.4g} (error undetermined)"
