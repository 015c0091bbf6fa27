"""Where a number came from: the software and hardware of a run, recorded in its summary.json.

Python, torch, CUDA and cuDNN versions, the device and CPU model, the thread count, whether the CPU keeps
subnormal floats, the installed versions of optlab's own dependencies (read from its package metadata,
so the list follows pyproject.toml) and the git commit of the checkout with a `dirty` flag when it has
uncommitted changes. Asked once per process: a sweep's worker does not run git once per trial.
"""

from __future__ import annotations

import functools
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from optlab import __version__

CHECKOUT = Path(__file__).resolve().parent.parent


def denormal_mode() -> str:
    """Measured, not assumed: does the smallest subnormal float32 survive a multiplication by 1?"""
    survives = (torch.tensor([1e-45], dtype=torch.float32) * 1.0).item() != 0
    return "preserved" if survives else "flushed"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=CHECKOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """{commit, dirty} of the checkout optlab runs from; both None for an installed wheel (no checkout)."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": bool(status.strip()) if status is not None else None}


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux, sysctl on macOS), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def dependency_versions() -> dict[str, str | None]:
    """Installed version of each package optlab requires (its metadata's Requires-Dist, extras excluded);
    None for one that is not installed."""
    try:
        required = metadata.requires("optlab") or []
    except metadata.PackageNotFoundError:
        return {}
    versions = {}
    for requirement in required:
        if "extra ==" in requirement:
            continue
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(device: torch.device) -> dict:
    """The provenance block of summary.json for a run on `device`."""
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "denormals": denormal_mode(),
        "versions": {"optlab": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
                     "platform": platform.platform(), "dependencies": dependency_versions()},
        "git": git_state(),
    }
