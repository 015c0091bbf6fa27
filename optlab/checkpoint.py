"""Checkpoints: everything needed to continue a run bit-identically.

A checkpoint holds the model, every optimizer and lr-scheduler state, the step, the data generators'
states (the data position), torch's global RNG state, the first logged loss (the divergence reference)
and the elapsed time. It is written to a temporary file and renamed, the last `keep` are kept, and it
is loaded with `torch.load(weights_only=True)`: no code runs when a checkpoint is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from optlab.errors import RunDirError

CHECKPOINTS = "checkpoints"
NAME = re.compile(r"step_(\d+)\.pt")


def checkpoint_paths(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = run_dir / CHECKPOINTS
    found = [p for p in folder.iterdir() if NAME.fullmatch(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(NAME.fullmatch(p.name).group(1)))


def save_checkpoint(run_dir: Path, state: dict, keep: int) -> Path:
    folder = run_dir / CHECKPOINTS
    folder.mkdir(exist_ok=True)
    path = folder / f"step_{state['step']:08d}.pt"
    temporary = folder / f".{path.name}.tmp"
    torch.save(state, temporary)
    with open(temporary, "rb") as stream:
        os.fsync(stream.fileno())
    os.replace(temporary, path)
    for old in checkpoint_paths(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def remove_checkpoints(run_dir: Path) -> None:
    """Delete a finished run's checkpoints (used when the config keeps no final checkpoint)."""
    for path in checkpoint_paths(run_dir):
        path.unlink(missing_ok=True)
    folder = run_dir / CHECKPOINTS
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def load_latest_checkpoint(run_dir: Path) -> dict:
    paths = checkpoint_paths(run_dir)
    if not paths:
        raise RunDirError(f"{run_dir}: holds no checkpoint to resume from (checkpoints/step_*.pt); start a new run instead")
    path = paths[-1]
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, wrong format, unpickling refused: all mean "unusable"
        raise RunDirError(
            f"{path}: checkpoint is corrupted or truncated ({type(error).__name__}); delete it to resume from an earlier one"
        ) from None
