"""Plots of finished runs (matplotlib, Agg backend: no display needed). Each function writes one PNG
and returns its path, or None when the runs hold nothing to plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optlab.runs import Run  # noqa: E402

BUCKETS = ("frequent", "mid", "rare")


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def metric_curves(runs: list[Run], out: Path, column: str, ylabel: str, title: str, filename: str,
                  log_y: bool = False) -> Path | None:
    """One line per run of `column` against the step."""
    curves = [run for run in runs if column in run.metrics and run.metrics[column].notna().any()]
    if not curves:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for run in curves:
        axes.plot(run.metrics["step"], run.metrics[column], label=run.name)
    axes.set(xlabel="step", ylabel=ylabel, title=title, yscale="log" if log_y else "linear")
    axes.legend(fontsize=7)
    return _save(figure, out / filename)


def loss_curves(runs: list[Run], out: Path) -> Path | None:
    return metric_curves(runs, out, "loss", "training loss", "Loss", "loss.png")


def stale_momentum_rows(runs: list[Run], out: Path) -> Path | None:
    return metric_curves(runs, out, "embedding.stale_momentum_rows", "rows with g = 0, m ≠ 0",
                         "Rows moved by stale momentum", "stale_momentum_rows.png")


def population_loss_curves(runs: list[Run], out: Path) -> Path | None:
    """Models with an exact population loss (linear regression) log it beside the batch loss."""
    return metric_curves(runs, out, "population_loss", "population loss", "Population loss", "population_loss.png",
                         log_y=True)


def embedding_max_vs_step(runs: list[Run], out: Path) -> Path | None:
    """max|w|·λ per frequency bucket over training, with the ±1/λ fixed point as a dashed line at 1."""
    curves = [run for run in runs if "embedding.rare.max_abs_x_lambda" in run.metrics]
    if not curves:
        return None
    figure, axes = plt.subplots(1, len(BUCKETS), figsize=(13, 4), sharey=True)
    for axis, bucket in zip(axes, BUCKETS):
        for run in curves:
            axis.plot(run.metrics["step"], run.metrics[f"embedding.{bucket}.max_abs_x_lambda"], label=run.name)
        axis.axhline(1.0, color="black", linestyle="--", linewidth=1, label="|w| = 1/λ")
        axis.set(xlabel="step", title=f"{bucket} tokens", ylabel="max |w|·λ" if bucket == BUCKETS[0] else None)
    axes[-1].legend(fontsize=7)
    return _save(figure, out / "embedding_max_vs_step.png")


def _final_embeddings(runs: list[Run]):
    for run in runs:
        path = run.path / "embedding.npz"
        if path.is_file():
            with np.load(path) as archive:
                if float(archive["decay"]) > 0:
                    yield run, archive["weight_x_lambda"], archive["token_rank"]


def embedding_panels(runs: list[Run], out: Path, filename: str, draw) -> Path | None:
    """One panel per run with a saved final embedding: draw(axis, run, weight × λ, token ranks)."""
    panels = list(_final_embeddings(runs))
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), sharey=True, squeeze=False)
    for axis, (run, weight, rank) in zip(axes[0], panels):
        draw(axis, weight, rank)
        axis.set_title(run.name.split("/")[-1])
    return _save(figure, out / filename)


def rare_row_histograms(runs: list[Run], out: Path) -> Path | None:
    """Histogram of λ·w over the entries of rare-token rows (bottom 50 % of ranks): spikes at ±1 = drift."""

    def draw(axis, weight, rank):
        rare = weight[rank > len(rank) / 2].ravel()
        axis.hist(np.clip(rare, -1.2, 1.2), bins=np.linspace(-1.2, 1.2, 49), color="tab:purple")
        axis.set(xlabel="λ·w (rare rows)", yscale="log")

    return embedding_panels(runs, out, "rare_rows_hist.png", draw)


def row_max_vs_rank(runs: list[Run], out: Path) -> Path | None:
    """Per-row max|E_i|·λ against the token's frequency rank (log axis)."""

    def draw(axis, weight, rank):
        axis.scatter(rank, np.abs(weight).max(axis=1), s=1, alpha=0.4)
        axis.axhline(1.0, color="black", linestyle="--", linewidth=1)
        axis.set(xscale="log", xlabel="frequency rank", ylabel="row max |w|·λ")

    return embedding_panels(runs, out, "row_max_vs_rank.png", draw)


ALL_PLOTS = (loss_curves, population_loss_curves, embedding_max_vs_step, stale_momentum_rows, rare_row_histograms, row_max_vs_rank)
