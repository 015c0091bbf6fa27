"""`optlab sweep`: many runs, a manifest and (through `optlab report`) a sweep report.

    runs/<sweep name>/
        sweep.yaml, base.yaml      the resolved sweep and the base config it expanded (overrides applied)
        manifest.jsonl / .json     every trial's state (manifest.py)
        trials/<trial id>/         one ordinary run directory per trial
        report/                    what `optlab report` writes

Re-running the same command resumes: completed and diverged trials are skipped, interrupted ones
restart (from their last checkpoint when there is one), failed ones rerun only with --retry-failed.
"""

from __future__ import annotations

import json
import math

import signal
import time
from pathlib import Path

import yaml

from optlab.config import apply_override, parse_override
from optlab.errors import ConfigError
from optlab.memory import check_memory
from optlab.sweep.population import trains_together
from optlab.runs import atomic_write_text
from optlab.sweep.manifest import Manifest
from optlab.sweep.spec import Trial, expand, load_sweep, total_steps

SWEEP_FILE = "sweep.yaml"


def is_sweep_dir(path: Path) -> bool:
    return (path / SWEEP_FILE).is_file() and (path / "manifest.jsonl").is_file()


def plan(path: Path, overrides: list[str]):
    """The sweep, its base config with the command-line overrides applied, and its trials."""
    sweep, base = load_sweep(path)
    for override in overrides:
        keys, value = parse_override(override)
        refuse_shadowed_override(sweep, ".".join(map(str, keys)), override, path)
        apply_override(base, keys, value, str(path))
    trials = expand(sweep, base, source=str(path))
    if not trials:
        raise ConfigError(f"{path}: the sweep expands to 0 trials (every cell matches an `exclude` rule); "
                          "loosen the exclusions")
    for trial in trials:
        check_memory(trial.config, f"{path} (trial {trial.id})")
    return sweep, base, trials


def refuse_shadowed_override(sweep, key: str, override: str, path: Path) -> None:
    """A command-line override changes the base config; a key the sweep itself sets for every trial (in
    `set`, an axis of `grid` or `zip`, or every variant) would silently win over it, so such an override is
    refused. (One that only some variants set still reaches the others.)"""

    def covers(other: str) -> bool:
        return other == key or other.startswith(key + ".") or key.startswith(other + ".")

    named = [(f"the sweep's {part}", k) for part in ("set", "grid", "zip") for k in getattr(sweep, part)]
    if sweep.variants and all(any(covers(k) for k in overrides) for overrides in sweep.variants.values()):
        named += [("every variant of the sweep", next(k for k in next(iter(sweep.variants.values())) if covers(k)))]
    for where, other in named:
        if covers(other):
            raise ConfigError(f"{override}: {where} sets {other} for every trial, so this override "
                              f"would be ignored; change {other} in {path} instead")


def run_sweep(path: Path, overrides: list[str], workers: int = 1, executor: str = "local", dry_run: bool = False,
              retry_failed: bool = False, address: str | None = None, trial_cpus: float | None = None,
              trial_gpus: float | None = None, population: bool = True, console=None) -> int:
    """Run (or resume) a sweep; returns the exit code: 0 when every trial finished (completed or diverged),
    1 if any failed or did not finish (a worker stopped by a signal), 130 when the sweep itself is stopped.
    `trial_cpus`, `trial_gpus` (Ray, SLURM) replace the sweep file's `resources`. `population` (local and
    inline executors): train the trials that differ only in their optimizer together (optlab/population.py)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    sweep, base, trials = plan(path, overrides)
    sweep_dir = Path(sweep.runs_dir) / sweep.name
    if dry_run:
        console.print(trial_table(trials))
        console.print(f"{len(trials)} trials, {total_steps(trials)} optimizer steps in total; would write {sweep_dir}")
        return 0
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(sweep_dir)  # held until this function returns
    try:
        manifest = Manifest(sweep_dir, repair=True)  # a damaged journal is refused before anything is written
    except BaseException:
        lock.close()
        raise
    (sweep_dir / "trials").mkdir(exist_ok=True)
    recorded = {**sweep.model_dump(mode="json", exclude={"base"}), "base": "base.yaml"}
    atomic_write_text(sweep_dir / SWEEP_FILE, yaml.safe_dump(recorded, sort_keys=False, allow_unicode=True))
    atomic_write_text(sweep_dir / "base.yaml", yaml.safe_dump(base, sort_keys=False, allow_unicode=True))
    for trial in trials:
        if manifest.state(trial.id) is None:  # new, or lost from the journal: its own directory says which
            found = finished_trial(sweep_dir / "trials" / trial.id)
            manifest.record(trial.id, found.pop("state") if found else "pending", sync=False, overrides=trial.overrides,
                            **(found or {}))
    manifest.sync()
    rerun = ("pending", "running", "interrupted") + (("failed",) if retry_failed else ())
    todo = [trial for trial in trials if manifest.state(trial.id) in rerun]
    skipped = len(trials) - len(todo)
    console.print(f"sweep {sweep.name}: {len(trials)} trials, {skipped} already recorded "
                  f"({', '.join(f'{n} {s}' for s, n in _counts(manifest, trials).items())}), running {len(todo)}")
    jobs = [(t.id, t.config.model_dump(mode="json"), str(sweep_dir / "trials" / t.id)) for t in todo]
    together = (trains_together([t.config for t in todo], workers) if population and executor in ("local", "inline")
                else [[index] for index in range(len(todo))])
    batches = [[jobs[index] for index in members] for members in together]
    started = time.perf_counter()
    progress = _SweepProgress(console, sweep.name, manifest, trials, len(todo))

    def on_start(trial_id, details):
        manifest.record(trial_id, "running", sync=False, **details)

    def on_done(trial_id, result):
        status = result.pop("status")
        manifest.record(trial_id, status, sync=False, **result)
        if status == "completed":  # a diverged trial's last row may come from between probe steps
            check_metric_column(sweep.metric.column, result.get("final"), source=str(path))

    def on_poll():
        manifest.sync()
        progress.refresh()

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)  # SIGTERM stops a sweep like Ctrl-C
    try:
        with progress:
            if executor == "ray":
                from optlab.sweep.executors import run_ray

                resources = sweep.resources
                run_ray(jobs, address, resources.cpus if trial_cpus is None else trial_cpus,
                        resources.gpus if trial_gpus is None else trial_gpus, on_start, on_done, on_poll)
            elif executor == "slurm":
                from optlab.sweep.executors import run_slurm

                resources = sweep.resources
                run_slurm(jobs, sweep_dir / "slurm", sweep.slurm, resources.cpus if trial_cpus is None else trial_cpus,
                          resources.gpus if trial_gpus is None else trial_gpus, on_start, on_done, on_poll)
            elif executor == "inline":
                from optlab.sweep.executors import run_inline

                run_inline(batches, on_start, on_done, on_poll)
            else:
                from optlab.sweep.executors import run_local

                run_local(batches, workers, on_start, on_done, on_poll)
    except KeyboardInterrupt:
        for trial in todo:
            if manifest.state(trial.id) == "running":
                manifest.record(trial.id, "interrupted")
        console.print(f"sweep {sweep.name}: interrupted; run the same command again to resume")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        manifest.close()
        manifest.write_snapshot()
        lock.close()
    failed = [t for t in trials if manifest.state(t.id) == "failed"]
    unfinished = [t for t in trials if manifest.state(t.id) in ("pending", "running", "interrupted")]
    console.print(f"sweep {sweep.name}: {', '.join(f'{n} {s}' for s, n in _counts(manifest, trials).items())} "
                  f"in {time.perf_counter() - started:.1f} s → {sweep_dir}")
    if failed:
        console.print(failure_table(failed, manifest))
    if unfinished:  # a worker was stopped (SIGTERM to it): the sweep is not done
        console.print(f"sweep {sweep.name}: {len(unfinished)} of {len(trials)} trials did not finish "
                      f"({', '.join(t.id for t in unfinished[:5])}{' ...' if len(unfinished) > 5 else ''}); "
                      "run the same command again to resume them")
    return 1 if failed or unfinished else 0


def finished_trial(trial_dir: Path) -> dict | None:
    """The journal record of a trial that finished, read from its own directory (summary.json), or None."""
    from optlab.errors import RunDirError
    from optlab.runs import FINISHED, read_summary

    try:
        summary = read_summary(trial_dir)
    except RunDirError:
        return None
    if summary.get("status") not in FINISHED:
        return None
    return {"state": summary["status"], "final": summary.get("final", {}), "wall_time_s": summary.get("wall_time_s"),
            "steps_completed": summary.get("steps_completed"), "run_dir": str(trial_dir), "placed_from": "directory"}


def _lock(sweep_dir: Path):
    """Two coordinators would run the same trials twice."""
    from optlab.runs import lock_directory

    return lock_directory(sweep_dir, "another `optlab sweep` is running on this sweep; wait for it or stop it")


def _counts(manifest: Manifest, trials: list[Trial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials:
        state = manifest.state(trial.id) or "pending"
        counts[state] = counts.get(state, 0) + 1
    return counts


def trial_table(trials: list[Trial]):
    from rich.table import Table

    table = Table(title="trials")
    keys = list(trials[0].overrides) if trials else []
    for column in ["id", *keys, "steps"]:
        table.add_column(column)
    for trial in trials[:200]:
        table.add_row(trial.id, *[f"{trial.overrides[k]:.4g}" if isinstance(trial.overrides[k], float)
                                  else str(trial.overrides[k]) for k in keys], str(trial.config.training.steps))
    if len(trials) > 200:
        table.caption = f"first 200 of {len(trials)}"
    return table


def failure_table(failed: list[Trial], manifest: Manifest):
    from rich.table import Table

    table = Table(title="failed trials (rerun with --retry-failed)")
    table.add_column("id")
    table.add_column("cell")
    table.add_column("error")
    for trial in failed:
        cell = ", ".join(f"{k}={v}" for k, v in trial.overrides.items())
        table.add_row(trial.id, cell, str(manifest.trials[trial.id].get("error", "")))
    return table


class _SweepProgress:
    """The sweep's progress on stderr. On a terminal a live rich table: totals, then the trials running now
    with their step, loss and ETA. In a log or CI (not a terminal, where a live table prints nothing) a plain
    line at the first refresh and then at most every PLAIN_EVERY_S seconds: trials finished by state, ETA."""

    PLAIN_EVERY_S = 30.0

    def __init__(self, console, name: str, manifest: Manifest, trials: list[Trial], todo: int):
        from rich.live import Live

        self.console, self.name, self.manifest, self.trials = console, name, manifest, {t.id: t for t in trials}
        self.todo, self.started = todo, time.perf_counter()
        self.plain = not console.is_terminal
        self.live = None if self.plain else Live(console=console, refresh_per_second=2, transient=True)
        self.last, self.printed_at = 0.0, -math.inf

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc) if self.live is not None else None

    def refresh(self) -> None:
        if self.plain:
            self._print_line()
            return
        if time.perf_counter() - self.last < 0.5:
            return
        self.last = time.perf_counter()
        from rich.table import Table

        counts = _counts(self.manifest, list(self.trials.values()))
        table = Table(title=" · ".join(f"{n} {s}" for s, n in counts.items()))
        for column in ("trial", "cell", "step", "loss", "ETA"):
            table.add_column(column)
        running = [tid for tid, info in self.manifest.trials.items() if info.get("state") == "running"]
        for trial_id in running[:8]:
            step, loss, eta = _progress_of(Path(self.manifest.trials[trial_id].get("run_dir", "")),
                                           self.trials[trial_id].config.training.steps)
            cell = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                             for k, v in self.trials[trial_id].overrides.items())
            table.add_row(trial_id, cell, step, loss, eta)
        self.live.update(table)

    def _print_line(self) -> None:
        now = time.perf_counter()
        if now - self.printed_at < self.PLAIN_EVERY_S:
            return
        self.printed_at = now
        counts = _counts(self.manifest, list(self.trials.values()))
        left = sum(counts.get(state, 0) for state in ("pending", "running", "interrupted"))
        done_now = self.todo - left  # finished in this invocation: the rate the ETA extrapolates
        eta = f"ETA {(now - self.started) / done_now * left:.0f} s" if done_now > 0 else "ETA —"
        self.console.print(f"sweep {self.name}: {len(self.trials) - left} of {len(self.trials)} trials finished "
                           f"({', '.join(f'{n} {s}' for s, n in counts.items())}), {now - self.started:.0f} s elapsed, {eta}", soft_wrap=True, highlight=False)


def _progress_of(run_dir: Path, steps: int) -> tuple[str, str, str]:
    """Step, loss and ETA from the last complete row of a running trial's metrics.csv."""
    try:
        lines = (run_dir / "metrics.csv").read_text().splitlines()
        header, last = lines[0].split(","), lines[-1].split(",")
        row = dict(zip(header, last))
        step, elapsed = int(row["step"]), float(row["elapsed_s"])
        eta = elapsed / step * (steps - step)
        return str(step), f"{float(row['loss']):.4g}", f"{eta:.0f} s"
    except (OSError, IndexError, KeyError, ValueError):
        return "—", "—", "—"


def check_metric_column(column: str, final: dict | None, source: str) -> None:
    """Stop a sweep at its first completed trial when `metric.column` is not among the columns it logged
    (a typo would otherwise run every trial for a report that cannot be made)."""
    import difflib

    if final and column not in final:
        guess = difflib.get_close_matches(column, list(final), n=1)
        hint = f"did you mean `{guess[0]}`?" if guess else f"logged columns: {', '.join(sorted(final))}"
        raise ConfigError(f"{source}: metric.column {column!r}: the trials do not log it; {hint} "
                          "(the finished trial is kept; fix the sweep file and run it again)")


def trial_results(sweep_dir: Path):
    """(sweep config, tidy DataFrame, {trial id: resolved config}): one row per trial of the sweep, its
    cell, state and final metrics. Only the cells of the sweep file last run are kept: trials of an
    earlier version of the file (another grid, another probe setting) stay in the journal and on disk
    but not in the report. A cell recorded under an older id (an optlab version with other config
    defaults) counts unless the current id ran too; its config is the cell's as the file expands now."""
    import pandas as pd

    sweep, base = load_sweep(sweep_dir / SWEEP_FILE)
    manifest = Manifest(sweep_dir)
    current = {_cell_key(t.overrides): t for t in expand(sweep, base, source=str(sweep_dir / SWEEP_FILE))}
    rows, configs, placed = [], {}, set()
    for trial_id, info in manifest.trials.items():
        trial = current.get(_cell_key(info.get("overrides", {})))
        if trial is None or (trial.id != trial_id and trial.id in manifest.trials):
            continue
        rows.append(_trial_row(trial_id, info))
        configs[trial_id] = trial.config
        placed.add(_cell_key(trial.overrides))
    for key, trial in current.items():  # cells the journal does not have: from their own directory, or not run
        if key not in placed:
            info = finished_trial(sweep_dir / "trials" / trial.id) or {"state": "pending"}
            rows.append(_trial_row(trial.id, {**info, "overrides": trial.overrides}))
            configs[trial.id] = trial.config
    return sweep, pd.DataFrame(rows), configs


def _trial_row(trial_id: str, info: dict) -> dict:
    row = {"trial": trial_id, "state": info.get("state"), **info.get("overrides", {})}
    row.update({f"final.{k}": v for k, v in (info.get("final") or {}).items()})
    row["error"] = info.get("error")
    return row


def _cell_key(overrides: dict) -> str:
    return json.dumps(overrides, sort_keys=True, default=str)
