"""What every panel of a behaviour card shares: the battery of optimizers it measures, a finding per
optimizer, and running a panel's experiments as an ordinary sweep (cached by trial id, resumable).

A panel is a module of optlab/profile/ with a `PANEL = Panel(...)`: its `measure(battery)` returns one
Finding per optimizer of the battery, judged by the rule the panel states in `rule`, and its `figure`
draws the panel's PNG. The optimizers of a battery are YAML optimizer sections: the profiled one (a
built-in name, an import path or a file) and the references it is compared with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd


@dataclass
class Finding:
    """One optimizer's result on one panel: the short finding, the number that decides it, and more numbers."""

    finding: str
    value: float | None
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Battery:
    """The optimizers of one card ({label: optimizer section}, the profiled one first), where its runs go,
    and how hard to try: `quick` (the small grids), `workers` (1: trials in this process)."""

    optimizers: dict[str, dict]
    directory: Path
    quick: bool = False
    workers: int = 1
    console: Any = None

    @property
    def profiled(self) -> str:
        return next(iter(self.optimizers))

    def run_sweep(self, name: str, sweep: dict) -> tuple[pd.DataFrame, dict]:
        """Run (or resume: finished trials are reused) `sweep`, named `name`, under the card's directory;
        return (one row per trial with its cell, variant, state and final metrics; {trial id: config}).
        Variants with identical overrides run once and are reported under each of their labels."""
        import yaml
        from rich.console import Console

        from optlab.errors import OptlabError
        from optlab.sweep import run_sweep, trial_results

        variants, copies, resolved = {}, {}, {}  # optimizers with identical settings run once (one trial id)
        for label, overrides in sweep.get("variants", {}).items():
            key = _resolved(overrides, set(sweep.get("grid", {})))
            if key in resolved:
                copies[label] = resolved[key]
            else:
                variants[label], resolved[key] = overrides, label
        sweep = {**sweep, "variants": variants} if variants else sweep
        path = self.directory / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"name": name, "runs_dir": str(self.directory), **sweep}, sort_keys=False))
        console = self.console or Console(stderr=True, quiet=True)
        code = run_sweep(path, [], workers=self.workers, executor="inline" if self.workers == 1 else "local",
                         console=console)
        if code == 130:
            raise KeyboardInterrupt
        _, trials, configs = trial_results(self.directory / name)
        for label, same in copies.items():
            trials = pd.concat([trials, trials[trials["variant"] == same].assign(variant=label)], ignore_index=True)
        if code != 0 and not trials["state"].isin(("completed", "diverged")).any():
            raise OptlabError(f"profile panel {name}: no trial finished ({trials['error'].dropna().iloc[0]})")
        return trials, configs


def _resolved(overrides: dict, grid_keys: set[str]) -> str:
    """A variant's overrides as a comparable key: its optimizer section resolved (defaults filled in),
    without the keywords the grid sets anyway (the lr of a batch × lr grid)."""
    import json

    from optlab.config import validate_config

    optimizer = overrides.get("optimizer")
    if optimizer is not None:
        section = validate_config({"optimizer": optimizer}).optimizer.model_dump(mode="json")
        overrides = {**overrides, "optimizer": {key: value for key, value in section.items()
                                                if f"optimizer.{key}" not in grid_keys}}
    return json.dumps(overrides, sort_keys=True, default=str)


def with_keywords(section: dict, **keywords) -> dict:
    """A copy of an optimizer section with `keywords` set (only those it accepts, for weight decay:
    an optimizer without one keeps none)."""
    from optlab.config import validate_config

    updated = copy.deepcopy(section)
    accepted = validate_config({"optimizer": section}).optimizer.model_dump()
    for key, value in keywords.items():
        if key in accepted or key == "lr":
            updated[key] = value
    return updated


def own_lr(section: dict) -> float:
    """The section's lr, or its optimizer's default."""
    from optlab.config import validate_config

    return float(validate_config({"optimizer": section}).optimizer.lr)


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    section: str  # where docs/science/ explains it
    rule: str  # the rule its findings follow, as the card prints it
    measure: Callable[[Battery], dict[str, Finding]]
    figure: Callable[[Battery, dict[str, Finding], Path], Path | None]
