"""What every effect shares: the `Effect` record, its `Verdict`s, the `EffectReport` it returns and the
context it reads (a sweep's trials, or a group of runs). Run and sweep directories are read through
optlab/runs.py and optlab/sweep only."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from optlab.report.tables import to_markdown
from optlab.runs import FINISHED, Run, atomic_write_text, latest_run, load_run

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Verdict:
    """What was measured, what the effect's rule expected and whether the two agree (`passed`; None when
    nothing is expected: a report-only number, or a run that states no expectation)."""

    effect: str
    run: str
    observed: str
    passed: Optional[bool]
    measured: str
    expected: str

    def __post_init__(self):
        self.passed = None if self.passed is None else bool(self.passed)  # numpy booleans → JSON-able

    def line(self) -> str:
        outcome = {True: "PASS", False: "FAIL", None: "no expectation stated"}[self.passed]
        return f"{self.run}: {self.effect} {self.observed.upper()} ({self.measured}); expected {self.expected}: {outcome}"

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class EffectReport:
    """An effect's section of a report: verdicts, markdown lines, figures written into the report folder,
    and numbers for report.json."""

    verdicts: list[Verdict] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    figures: list[Optional[Path]] = field(default_factory=list)
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Effect:
    """One effect: its registry name, where docs/science states it, what it reads (`sweep`: a sweep's
    trials; `runs`: runs whose config names it) and the function that analyses, judges and draws it.
    `observes(run)` lets a runs-effect report (without expectation) on runs that logged its metrics
    without naming an effect."""

    name: str
    section: str
    scope: str
    report: Callable[[Any], EffectReport]
    summary: str = ""
    observes: Optional[Callable[[Run], bool]] = None


class TheoryDoesNotApply(Exception):
    """The closed form an effect judges by needs something this sweep or run does not have (one value
    of a parameter across trials, an isotropic spectrum, ...); the report says so instead of judging."""


def band_verdict(effect: str, run: str, name: str, value: Optional[float], band: tuple[float, float],
                 basis: str = "", unit: str = "") -> Verdict:
    """PASS iff `value` lies in `band`; `basis` says where the band comes from (the closed form and its
    tolerance, or "a fixed band")."""
    low, high = band
    passed = value is not None and math.isfinite(value) and low <= value <= high
    measured = f"{name} = {value:.4g}{unit}" if value is not None else f"{name} not measurable"
    expected = f"{name} ∈ [{low:.4g}, {high:.4g}]" + (f" ({basis})" if basis else "")
    return Verdict(effect, run, "in band" if passed else "out of band", passed, measured, expected)


def relative_band(prediction: float, tolerance: float) -> tuple[float, float]:
    """prediction·[1 − tolerance, 1 + tolerance]."""
    return prediction * (1 - tolerance), prediction * (1 + tolerance)


def not_judged(effect: str, run: str, reason: str) -> Verdict:
    return Verdict(effect, run, "not judged", None, reason, "a setting the closed form covers")


@dataclass
class SweepContext:
    """What a sweep effect reads: the sweep file, the trials of its current grid (cell, state, final
    metrics and `metric`, the trial's number under the sweep's metric), each trial's resolved config,
    the report folder, and each trial's run directory on demand."""

    sweep: Any  # optlab.sweep.spec.SweepConfig
    sweep_dir: Path
    out: Path
    trials: "pd.DataFrame"
    configs: dict[str, Any]  # trial id -> ExperimentConfig
    loaded: dict[str, Run] = field(default_factory=dict, repr=False)

    @cached_property
    def finished(self) -> "pd.DataFrame":
        """Trials that completed or diverged, with a `variant` column (a sweep without named variants is one)."""
        finished = self.trials[self.trials["state"].isin(FINISHED)]
        if "variant" not in finished:
            finished = finished.assign(variant=self.sweep.name.split("/")[-1])
        return finished

    @cached_property
    def keys(self) -> list[str]:
        """The cell keys: variant, then the grid and zip axes (seeds are aggregated over)."""
        return [key for key in ["variant", *self.sweep.grid, *self.sweep.zip] if key in self.finished]

    @cached_property
    def cells(self) -> "pd.DataFrame":
        from optlab.effects.fits import aggregate_seeds

        return aggregate_seeds(self.finished, self.keys)

    def run(self, trial_id: str) -> Run:
        """The trial's run directory, read once (config, summary, metrics table)."""
        if trial_id not in self.loaded:
            self.loaded[trial_id] = load_run(self.sweep_dir / "trials" / trial_id)
        return self.loaded[trial_id]

    def cell_trials(self, cell: dict) -> "pd.DataFrame":
        """The finished trials of one cell (a row of `cells`: its values of `keys`)."""
        matches = self.finished
        for key in self.keys:
            matches = matches[matches[key] == cell[key]]
        return matches

    def shared(self, what: str, value_of: Callable[[Any], Any]) -> Any:
        """The one value `value_of(config)` takes in every finished trial (a parameter a closed form
        needs); TheoryDoesNotApply if the trials disagree."""
        values = {repr(value_of(self.configs[trial])): value_of(self.configs[trial]) for trial in self.finished["trial"]}
        if len(values) != 1:
            raise TheoryDoesNotApply(f"the closed form needs one {what} for the whole sweep (got {', '.join(values) or 'none'})")
        return next(iter(values.values()))


@dataclass
class RunsContext:
    """What a runs effect reads: the runs that name it (or that it observes), every run of the report,
    and the report folder. `find_run(name)` looks a run up by config name, among the report's runs
    first, then as the latest run of that name in the same runs directory."""

    runs: list[Run]
    all_runs: list[Run]
    out: Path

    def find_run(self, name: str) -> Optional[Run]:
        for run in self.all_runs:
            if run.name == name:
                return run
        for run in self.all_runs:
            path = latest_run(Path(run.config.output.runs_dir), name)
            if path is not None:
                return load_run(path)
        return None


def setting(context: SweepContext, path: str) -> Any:
    """The value of a dotted config path (`data.dim`) shared by every finished trial; None where a
    trial's section has no such field."""

    def value_of(config):
        node = config
        for part in path.split("."):
            node = getattr(node, part, None)
        return node

    return context.shared(path, value_of)


def require(context: SweepContext, expected: dict[str, Any]) -> None:
    """TheoryDoesNotApply unless every dotted path has the expected value in every finished trial (the
    assumptions of a closed form)."""
    problems = [f"{path} = {setting(context, path)!r} (needs {value!r})" for path, value in expected.items()
                if setting(context, path) != value]
    if problems:
        raise TheoryDoesNotApply("the closed form assumes " + ", ".join(problems))


def cells_report(context: SweepContext, verdicts: list[Verdict], lines: list[str], figures: list) -> EffectReport:
    """The report of a variant sweep: the effect's verdicts, lines and figures, then the metric per cell
    (variant × grid values, seeds aggregated), also written to cells.csv and report.json."""
    atomic_write_text(context.out / "cells.csv", context.cells.to_csv(index=False))
    table = [f"## Metric per cell ({context.sweep.metric.column})", "", to_markdown(context.cells), ""]
    return EffectReport(verdicts, lines + table, figures, {"cells": context.cells.to_dict(orient="records")})
