"""Experiment trackers: the run's metrics mirrored into TensorBoard and Weights & Biases.

The run directory stays the record (metrics.csv, summary.json); a tracker only receives copies, so a
run trains and reports the same with or without one. `output.loggers: [tensorboard, wandb]` picks them:

- tensorboard (`pip install 'optlab[tensorboard]'`): event files in RUN/tensorboard, one scalar per
  numeric metric at its step, and at the end an hparams table (the config's scalar settings against the
  final metrics). A resumed run purges the events after its checkpoint's step. Look with
  `tensorboard --logdir runs/` (a sweep's trials are side by side under runs/<sweep>/trials/).
- wandb (`pip install 'optlab[wandb]'`): a W&B run in RUN/wandb with the config, the metrics, the final
  summary and, once `optlab report RUN` has drawn them, the run's figures. Its id is the run directory's
  name (a resumed run continues it), its group the experiment's name (a sweep's trials share one), its
  project $WANDB_PROJECT or `optlab`; `WANDB_MODE=offline` keeps everything on disk (`wandb sync` later).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # logger name -> the package it needs


def flat_settings(data: dict, prefix: str = "") -> dict:
    """Dotted key -> value for every scalar leaf of a nested config (lists joined as text)."""
    settings = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            settings.update(flat_settings(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            settings[name] = ", ".join(map(str, value))
        else:
            settings[name] = value
    return settings


def numeric(row: dict) -> dict:
    """The finite numbers of a metrics row, without its step."""
    return {key: float(value) for key, value in row.items()
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


class TensorBoardTracker:
    def __init__(self, run_dir: Path, config: dict, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.config = config
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def log(self, row: dict) -> None:
        for key, value in numeric(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["step"]))

    def finish(self, summary: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        settings = {key: value for key, value in flat_settings(self.config).items()
                    if value is None or isinstance(value, (bool, int, float, str))}
        settings["status"] = summary.get("status", "")
        final = {f"final/{key}": value for key, value in numeric(summary.get("final", {})).items()}
        for part in hparams(settings, final):  # into this run's own event file, not a new subfolder
            self.writer.file_writer.add_summary(part)
        for key, value in final.items():
            self.writer.add_scalar(key, value)
        self.writer.close()


class WandbTracker:
    def __init__(self, run_dir: Path, config: dict, start_step: int):
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "optlab"), id=run_dir.name, name=run_dir.name,
                              group=config.get("name"), config=config, dir=str(run_dir), resume="allow",
                              reinit="create_new", settings=wandb.Settings(silent=True, console="off"))

    def log(self, row: dict) -> None:
        self.run.log(numeric(row), step=int(row["step"]))

    def finish(self, summary: dict) -> None:
        self.run.summary.update({"status": summary.get("status"), "steps_completed": summary.get("steps_completed"),
                                 **{f"final/{key}": value for key, value in numeric(summary.get("final", {})).items()}})
        self.run.finish(exit_code=0 if summary.get("status") in ("completed", "diverged") else 1)


TRACKERS = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}


class Trackers:
    """The trackers of one run, called where the loop writes a metrics row and when it ends."""

    def __init__(self, names: Iterable[str], run_dir: Path, config: dict, start_step: int = 0):
        self.trackers = [TRACKERS[name](run_dir, config, start_step) for name in names]

    def log(self, row: dict) -> None:
        for tracker in self.trackers:
            tracker.log(row)

    def finish(self, summary: dict) -> None:
        for tracker in self.trackers:
            tracker.finish(summary)


def upload_figures(run_dir: Path, loggers: list[str], figures: list[Path]) -> None:
    """The figures `optlab report` drew for a report that includes this run, added to its W&B run (resumed by
    id) when the run logs to W&B."""
    if "wandb" not in loggers or not figures:
        return
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "optlab"), id=run_dir.name, dir=str(run_dir),
                     resume="allow", reinit="create_new", settings=wandb.Settings(silent=True, console="off"))
    run.log({f"figures/{path.stem}": wandb.Image(str(path)) for path in figures})
    run.finish()
