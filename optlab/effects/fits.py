"""Fits on sweep tables (docs/science/scaling-laws.md §2 "General protocol" and §3), shared by the effects.

- Seeds are aggregated first: per (batch size, lr) cell the mean and spread of the trial metric;
  diverged trials count as +inf and a cell with any +inf is +inf (it bounds η* from above).
- η*(B): the best grid lr, refined by a parabola through it and its two neighbours in log lr (the
  vertex). A best point at the edge of the grid is flagged and gives no η*; a cell whose neighbour
  is not finite keeps the grid value (flagged "coarse").
- B_noise: least squares of log η* on log[η_max/(1 + B_noise/B)] (scipy's curve_fit, started from a 1-D
  search over log B_noise with η_max in closed form, so it cannot stop in a far local minimum); standard
  errors from the fit's covariance (delta method for B_noise = exp(log B_noise)).
- Slopes: ordinary least squares of log η* on log B over a range of B.
- Steps vs examples (§1.3): S = S_min + E_min/B is linear in 1/B; B_crit = E_min/S_min, its standard error
  by the delta method from the covariance of (S_min, E_min); an interval over seeds by scipy's bootstrap.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats


def trial_metric(row: pd.Series, metric, metrics_table: pd.DataFrame | None = None) -> float:
    """One trial's number under `metric` (spec.MetricConfig) from its final metrics (or its table)."""
    if row["state"] == "diverged":
        return math.inf
    if row["state"] != "completed":
        return math.nan
    if metric.reduce == "final":
        value = row.get(f"final.{metric.column}", math.nan)
    else:
        column = metrics_table[metric.column]
        if metric.reduce == "mean_last":
            value = column.tail(metric.last_n).mean()
        else:
            hits = metrics_table["step"][column <= metric.target]
            value = float(hits.iloc[0]) if len(hits) else math.inf
    value = float(value) if value is not None else math.nan
    if not metric.minimize:
        value = -value
    return math.log(value) if metric.log and value > 0 else (-math.inf if metric.log and value == 0 else value)


def aggregate_seeds(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, median, standard deviation, lowest and highest value, count and diverged count of `metric`
    per cell over seeds (a seed that diverged, or never reached a target, makes the mean and highest +inf)."""

    def summarise(values: pd.Series) -> pd.Series:
        finite = values[np.isfinite(values)]
        diverged = int(np.isposinf(values).sum())
        mean = math.inf if diverged else (finite.mean() if len(finite) else math.nan)
        return pd.Series({"mean": mean, "median": float(np.median(values)) if len(values) else math.nan,
                          "std": finite.std(ddof=1) if len(finite) > 1 else 0.0,
                          "low": float(values.min()) if len(values) else math.nan,
                          "high": float(values.max()) if len(values) else math.nan,
                          "seeds": len(values), "diverged": diverged})

    return trials.groupby(keys)["metric"].apply(summarise).unstack().reset_index()


@dataclass
class Optimum:
    lr: float | None
    grid_lr: float | None
    value: float | None
    flag: str  # "" | "edge" | "coarse" | "no finite cell"


def refine_optimum(lrs: np.ndarray, values: np.ndarray) -> Optimum:
    """η* from one batch size's metric-vs-lr curve (lrs sorted ascending; smaller is better)."""
    finite = np.isfinite(values)
    if not finite.any():
        return Optimum(None, None, None, "no finite cell")
    best = int(np.nanargmin(np.where(finite, values, np.inf)))
    if best in (0, len(lrs) - 1):
        return Optimum(None, float(lrs[best]), float(values[best]), "edge")
    x = np.log(lrs[best - 1: best + 2])
    y = values[best - 1: best + 2]
    if not np.isfinite(y).all():
        return Optimum(float(lrs[best]), float(lrs[best]), float(values[best]), "coarse")
    curvature, slope, _ = np.polyfit(x, y, 2)
    if curvature <= 0:
        return Optimum(float(lrs[best]), float(lrs[best]), float(values[best]), "coarse")
    vertex = float(np.clip(-slope / (2 * curvature), x[0], x[2]))
    return Optimum(math.exp(vertex), float(lrs[best]), float(values[best]), "")


def fit_noise_scale(batch_sizes: np.ndarray, optimal_lrs: np.ndarray) -> dict:
    """{B_noise, eta_max} minimising Σ [log η* − log η_max + log(1 + B_noise/B)]², with standard errors
    {B_noise_se, eta_max_se} (NaN where three points leave the covariance undetermined or infinite)."""
    log_eta = np.log(optimal_lrs)
    log_noises = np.linspace(math.log(1e-3), math.log(1e7), 2001)  # the search: log η_max optimal per row
    shifts = np.log1p(np.exp(log_noises)[:, None] / batch_sizes[None, :])
    log_maxima = np.mean(log_eta + shifts, axis=1)
    best = int(np.argmin(np.sum((log_eta - log_maxima[:, None] + shifts) ** 2, axis=1)))

    def law(size, log_max, log_noise):
        return log_max - np.log1p(np.exp(log_noise) / size)

    try:
        with warnings.catch_warnings():  # an undetermined covariance is reported as NaN errors, not a warning
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            (log_max, log_noise), covariance = optimize.curve_fit(law, batch_sizes, log_eta,
                                                                  p0=(log_maxima[best], log_noises[best]))
    except (RuntimeError, ValueError):  # no convergence: keep the search's optimum, no error bars
        log_max, log_noise, covariance = log_maxima[best], log_noises[best], np.full((2, 2), np.nan)
    errors = np.sqrt(np.diag(covariance)) if np.isfinite(covariance).all() else np.full(2, np.nan)
    noise, maximum = math.exp(log_noise), math.exp(log_max)
    return {"B_noise": noise, "B_noise_se": float(noise * errors[1]), "eta_max": maximum,
            "eta_max_se": float(maximum * errors[0])}


def log_log_slope(x, y) -> float | None:
    """OLS slope of log y on log x over the finite points (None with fewer than two)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0]) if keep.sum() >= 2 else None


def fit_hyperbola(batch_sizes: np.ndarray, steps: np.ndarray, relative: bool = False) -> dict:
    """S_min, E_min and B_crit = E_min/S_min from S(B) = S_min + E_min/B (least squares in 1/B; with
    `relative`, residuals weighted by 1/S as in docs/science/scaling-laws.md §2, Exp D), each with its
    standard error (`_se`; NaN with no residual degree of freedom)."""
    def hyperbola(size, s_min, e_min):
        return s_min + e_min / size

    with warnings.catch_warnings():  # three points of two parameters and a perfect fit leave no error: NaN
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        (s_min, e_min), covariance = optimize.curve_fit(hyperbola, batch_sizes, steps, sigma=steps if relative else None)
    fit = {"S_min": float(s_min), "E_min": float(e_min), "B_crit": float(e_min / s_min) if s_min > 0 else math.nan}
    if not np.isfinite(covariance).all() or s_min <= 0:
        return {**fit, "S_min_se": math.nan, "E_min_se": math.nan, "B_crit_se": math.nan}
    gradient = np.array([-e_min / s_min ** 2, 1 / s_min])  # ∂B_crit/∂(S_min, E_min)
    return {**fit, "S_min_se": float(math.sqrt(covariance[0, 0])), "E_min_se": float(math.sqrt(covariance[1, 1])),
            "B_crit_se": float(math.sqrt(gradient @ covariance @ gradient))}


def bootstrap_critical_batch(trials: pd.DataFrame, batch: str, lr: str, resamples: int = 200,
                             seed: int = 0) -> tuple[float, float] | None:
    """5–95 % interval of B_crit when each (B, lr) cell's seeds are resampled with replacement and S(B),
    the minimum over lr of the seed median, is refitted (docs/science/scaling-laws.md §3, "bootstrap over
    seeds"). scipy's bootstrap draws the resamples, one independent sample per cell; the percentiles are
    taken over the resamples whose fit gives a finite B_crit."""
    cells = [(size, values.to_numpy(float)) for (size, _), values in trials.groupby([batch, lr])["metric"]]
    varied = [index for index, (_, values) in enumerate(cells) if len(values) >= 2]
    if not varied:
        return None  # one seed per cell: nothing to resample

    def critical_batch(*samples) -> float:
        medians = [float(np.median(values)) for _, values in cells]
        for index, sample in zip(varied, samples):
            medians[index] = float(np.median(sample))
        steps: dict[float, float] = {}
        for (size, _), median in zip(cells, medians):
            steps[size] = min(steps.get(size, math.inf), median)
        sizes = np.array(sorted(steps), dtype=float)
        best = np.array([steps[size] for size in sorted(steps)])
        usable = np.isfinite(best)
        return fit_hyperbola(sizes[usable], best[usable], relative=True)["B_crit"] if usable.sum() >= 3 else math.nan

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples (all seeds alike) and non-finite fits are expected
        result = stats.bootstrap([cells[index][1] for index in varied], critical_batch, n_resamples=resamples,
                                 vectorized=False, method="percentile", rng=np.random.default_rng(seed))
    finite = result.bootstrap_distribution[np.isfinite(result.bootstrap_distribution)]
    return (float(np.percentile(finite, 5)), float(np.percentile(finite, 95))) if len(finite) else None
