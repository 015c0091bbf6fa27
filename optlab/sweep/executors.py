"""Executors run trials and hand back their results; only the coordinator writes the manifest.

- local: worker processes (spawned), each with cores/workers torch threads so that N workers do not
  oversubscribe the machine; workers die with the coordinator (Linux parent-death signal).
- inline: one trial after another in the coordinator's own process (a debugger or profiler sees the
  trials; a small sweep skips the start of worker processes).
- ray: the same trial function as Ray tasks on an existing cluster (`--address`) or a local one.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable


def run_trial(config_data: dict, trial_dir: str, threads: int | None = None) -> dict:
    """Train one trial into `trial_dir`, resuming from its last checkpoint if it has one. Never raises:
    a failure comes back as {"status": "failed", "error": ...}."""
    import torch

    from optlab.checkpoint import checkpoint_paths
    from optlab.config import validate_config
    from optlab.train import train

    if threads:
        torch.set_num_threads(threads)
    directory = Path(trial_dir)
    try:
        config = validate_config(config_data)
        resume = directory if checkpoint_paths(directory) and (directory / "summary.json").is_file() else None
        result = train(config, show_progress=False, resume=resume, run_dir=None if resume else directory)
        summary = result.summary
        return {"status": result.status, "final": summary.get("final", {}), "wall_time_s": summary.get("wall_time_s"),
                "steps_completed": summary.get("steps_completed")}
    except Exception as error:  # one failing trial never stops the others
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}


def _init_local_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C
    try:  # die with the coordinator, so a killed sweep leaves no orphan writing into trial dirs
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


Job = tuple[str, dict, str]  # trial id, config data, trial dir
Callback = Callable[[str, dict], None]


def run_local(jobs: Iterable[Job], workers: int, on_start: Callback, on_done: Callback, on_poll: Callable[[], None]) -> None:
    threads = threads_per_worker(workers)
    jobs = list(jobs)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_init_local_worker, initargs=(threads,))
    try:
        pending, queue = {}, iter(jobs)

        def submit_next() -> bool:
            job = next(queue, None)
            if job is None:
                return False
            trial_id, config_data, trial_dir = job
            on_start(trial_id, {"run_dir": trial_dir})
            pending[pool.submit(run_trial, config_data, trial_dir)] = trial_id
            return True

        for _ in range(2 * workers):  # keep every worker busy, dispatch the rest as they finish
            if not submit_next():
                break
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                on_done(pending.pop(future), future.result())
                submit_next()
            on_poll()
    except BaseException:  # Ctrl-C or a crash: stop the workers now (the caller records what was cut short)
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def run_inline(jobs: Iterable[Job], on_start: Callback, on_done: Callback, on_poll: Callable[[], None]) -> None:
    for trial_id, config_data, trial_dir in jobs:
        on_start(trial_id, {"run_dir": trial_dir})
        on_done(trial_id, run_trial(config_data, trial_dir))
        on_poll()


def run_ray(jobs: Iterable[Job], address: str | None, on_start: Callback, on_done: Callback,
            on_poll: Callable[[], None]) -> None:
    try:
        import ray
    except ImportError:
        from optlab.errors import OptlabError

        raise OptlabError("--executor ray needs Ray: pip install 'optlab[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote_trial = ray.remote(num_cpus=1)(run_trial)
    pending = {}
    for trial_id, config_data, trial_dir in jobs:
        on_start(trial_id, {"run_dir": trial_dir})
        pending[remote_trial.remote(config_data, trial_dir, 1)] = trial_id
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for reference in done:
            on_done(pending.pop(reference), ray.get(reference))
        on_poll()
