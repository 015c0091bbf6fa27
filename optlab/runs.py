"""Everything that reads or writes a run directory. The run directory is the database.

    runs/<config name>/<run id>/
        config.yaml      the fully resolved config
        metrics.csv      one row per logged step, appended line by line and flushed
        summary.json     status (running|completed|diverged|failed|interrupted), steps, wall time,
                         final metrics, versions, device, seed
        embedding.npz    final token-embedding matrix × λ and token ranks (embedding probes on)
        report/          what `optlab report` writes

Whole files are written to a temporary file and renamed, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from optlab.config import ExperimentConfig, dump_config, read_yaml_mapping, validate_config

if TYPE_CHECKING:
    import pandas as pd
from optlab.errors import RunDirError

STATUSES = ("running", "completed", "diverged", "failed", "interrupted")
FINISHED = ("completed", "diverged")  # a run (or trial) that ended on its own: a result, never rerun


def _umask() -> int:
    """The process's umask (read by setting it, then put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Write through a temporary file and a rename, so a crash or kill leaves the old file or the new one,
    never a mix; `durable` also fsyncs the data before the rename, so that it survives a power loss or an
    OS crash (~1 ms here). The file gets the permissions any other tool would give it (0666 less the
    umask), not mkstemp's private 0600, so collaborators can read the runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict, durable: bool = True) -> None:
    atomic_write_text(path, json.dumps(_finite_or_none(data), indent=2, sort_keys=False) + "\n", durable)


def _finite_or_none(value):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def new_run_dir(config: ExperimentConfig) -> Path:
    """runs_dir/<name>/<UTC timestamp>-<config fingerprint>[-n], created empty; stays inside runs_dir."""
    root = Path(config.output.runs_dir).resolve()
    parent = (root / config.name).resolve()
    if root not in parent.parents:
        raise RunDirError(f"name {config.name!r} would write outside {root}; use a relative name without '..'")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{config.fingerprint()}"
    for attempt in range(1000):
        candidate = parent / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
        except OSError as error:
            raise RunDirError(f"output.runs_dir: cannot create {candidate} ({error.strerror}); choose a writable runs_dir") from None
    raise RunDirError(f"{parent}: too many runs with the same timestamp")


def lock_directory(path: Path, busy: str):
    """An exclusive lock on a run or sweep directory (`.lock`, flock), held until the returned handle is
    closed or the process ends, however it ends. Two processes writing one directory would interleave
    their rows; the second is refused with `busy`."""
    import fcntl

    handle = open(path / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunDirError(f"{path}: {busy}") from None
    return handle


def prepare_run_dir(path: Path) -> Path:
    """A run directory chosen by the caller (a sweep trial, created and locked by then), emptied of a run
    that never checkpointed, so the new run does not append to stale rows."""
    try:
        for stale in ("metrics.csv", "summary.json", "embedding.npz"):
            (path / stale).unlink(missing_ok=True)
    except OSError as error:
        raise RunDirError(f"{path}: cannot prepare the run directory ({error.strerror})") from None
    return path


class MetricsWriter:
    """Appends rows to metrics.csv, one line at a time, flushed: a kill loses at most the current row.
    A metric that first appears in a later row widens the table: the file is rewritten once with the
    new column (earlier rows get nan), through a temporary file and a rename."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] | None = None
        self.stream = open(path, "a", newline="", encoding="utf-8")

    def append(self, row: dict) -> None:
        if self.columns is None:
            self.columns = list(row)
            if self.path.stat().st_size == 0:
                self.stream.write(",".join(self.columns) + "\n")
            else:  # a resumed run: keep the file's own columns
                with open(self.path, encoding="utf-8") as existing:
                    self.columns = existing.readline().rstrip("\n").split(",")
        added = [key for key in row if key not in self.columns]
        if added:
            self._widen(added)
        writer = csv.DictWriter(self.stream, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writerow({key: _format(row.get(key, math.nan)) for key in self.columns})
        self.stream.flush()

    def _widen(self, added: list[str]) -> None:
        self.stream.close()
        lines = self.path.read_text(encoding="utf-8").splitlines()
        padding = ",nan" * len(added)
        self.columns = self.columns + added
        body = [",".join(self.columns)] + [line + padding for line in lines[1:]]
        atomic_write_text(self.path, "\n".join(body) + "\n")
        self.stream = open(self.path, "a", newline="", encoding="utf-8")

    def close(self) -> None:
        self.stream.close()


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass
class Run:
    """A finished (or interrupted) run as read back from its directory."""

    path: Path
    config: ExperimentConfig
    summary: dict
    metrics: "pd.DataFrame"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def label(self) -> str:
        return f"{self.config.name}/{self.path.name}"


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "summary.json").is_file()


def load_run(path: Path) -> Run:
    if not is_run_dir(path):
        raise RunDirError(f"{path}: not an optlab run directory (needs config.yaml and summary.json)")
    config = validate_config(read_yaml_mapping(path / "config.yaml"), source=str(path / "config.yaml"))
    read_final_embedding(path)  # a damaged embedding.npz is found before any report file is written
    return Run(path, config, read_summary(path), read_metrics(path))


def find_runs(paths: list[Path]) -> list[Path]:
    """Expand each path to the run directories it holds: a run itself, or any folder above runs
    (for a config name with several runs, the latest run)."""
    found = []
    for path in paths:
        if not path.exists():
            raise RunDirError(f"{path}: no such directory; give a run directory such as runs/<name>/<run id>")
        if is_run_dir(path):
            found.append(path)
            continue
        parents = sorted({summary.parent.parent for summary in path.rglob("summary.json") if is_run_dir(summary.parent)})
        for parent in parents:
            found.append(sorted(p for p in parent.iterdir() if is_run_dir(p))[-1])
        if not parents:
            raise RunDirError(f"{path}: holds no optlab runs (no config.yaml + summary.json below it)")
    return found


def latest_run(runs_dir: Path, name: str) -> Path | None:
    parent = runs_dir / name
    runs = sorted(p for p in parent.iterdir() if is_run_dir(p)) if parent.is_dir() else []
    return runs[-1] if runs else None


def initial_summary(config: ExperimentConfig, environment: dict) -> dict:
    return {
        "name": config.name,
        "status": "running",
        "steps_completed": 0,
        "steps_planned": config.training.steps,
        "seed": config.training.seed,
        "wall_time_s": 0.0,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **environment,
        "final": {},
    }


def read_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunDirError(f"{path}: cannot be read ({error}); restore it, or delete the run directory") from None
    if not isinstance(summary, dict):
        raise RunDirError(f"{path}: holds a {type(summary).__name__}, not a run summary (a mapping); restore it, "
                          "or delete the run directory")
    return summary


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop rows logged after `last_step` (they will be logged again on resume), atomically."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines:
        return
    header, rows = lines[0], lines[1:]
    step_column = header.rstrip("\n").split(",").index("step")
    kept = [row for row in rows if row.endswith("\n") and int(row.split(",")[step_column]) <= last_step]
    atomic_write_text(path, header + "".join(kept))


def write_config(run_dir: Path, config: ExperimentConfig, durable: bool = True) -> None:
    atomic_write_text(run_dir / "config.yaml", dump_config(config), durable)


def read_final_embedding(run_dir: Path):
    """(weight × λ, token ranks, λ) of the final embedding a finished run saved (embedding.npz), or None."""
    import numpy as np

    path = run_dir / "embedding.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as archive:
            return archive["weight_x_lambda"], archive["token_rank"], float(archive["decay"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise RunDirError(f"{path}: cannot be read ({type(error).__name__}: {error}); it is damaged or the run has not "
                          "finished: rerun the run, or delete the file to report without it") from None


def read_metrics(run_dir: Path) -> "pd.DataFrame":
    """A run's metrics.csv (empty when it logged nothing yet)."""
    import pandas as pd

    path = run_dir / "metrics.csv"
    try:
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
    except (OSError, ValueError) as error:
        raise RunDirError(f"{path}: cannot be read ({error})") from None
