"""Executors run trials and hand back their results; only the coordinator writes the manifest.

- local: worker processes (spawned), each with cores/workers torch threads so that N workers do not
  oversubscribe the machine; a worker takes a batch of trials, which it trains together where they
  share their data and weights (optlab/population.py: trials that differ only in the optimizer) and
  otherwise one after another; workers die with the coordinator (Linux parent-death signal), and a worker
  that dies is replaced (its trial is run again, a bounded number of times).
- inline: the batches one after another in the coordinator's own process (a debugger or profiler sees
  the trials; a small sweep skips the start of worker processes).
- ray: the same trial function as Ray tasks on an existing cluster (`--address`) or a local one. The
  task ships with optlab's code (Ray's runtime_env) and the trial's resolved config; it trains in a
  temporary directory on its worker and returns the run directory's files, which the coordinator writes
  into runs/: the cluster needs no shared file system, and only the coordinator writes runs/ and the
  journal. Each task asks for the sweep's `resources` (CPUs, fractional GPUs) and a task lost with its
  worker or node is retried RAY_RETRIES times before the trial is recorded failed.
- slurm: a SLURM job array through submitit, one task per trial, writing into runs/ on the cluster's
  shared disk (SLURM's usual set-up); the coordinator polls the jobs and alone writes the journal. A task
  preempted or at its time limit (submitit's SIGUSR2) checkpoints at the end of its current step and is
  requeued; the requeued task resumes from that checkpoint.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import signal
import tempfile
import time
from collections import Counter, deque
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
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
        return _result(train(config, show_progress=False, resume=resume, run_dir=None if resume else directory))
    except Exception as error:  # one failing trial never stops the others
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}


def _result(run) -> dict:
    summary = run.summary
    return {"status": run.status, "final": summary.get("final", {}), "wall_time_s": summary.get("wall_time_s"),
            "steps_completed": summary.get("steps_completed")}


def run_batch(batch: list[tuple[dict, str]]) -> list[dict]:
    """Train a batch of trials (config data, trial dir): as one population (optlab/population.py) when
    there are several and they can be trained together, else one by one (run_trial). A trial that has a
    checkpoint resumes on its own. Never raises."""
    if len(batch) > 1:
        results = _run_population(batch)
        if results is not None:
            return results
    return [run_trial(config_data, trial_dir) for config_data, trial_dir in batch]


def _run_population(batch: list[tuple[dict, str]]) -> list[dict] | None:
    """The batch trained together, or None where it cannot be: a trial to resume, configs that do not
    share a population, a model that cannot be vectorised, or an error (each trial then runs alone,
    and an error that is a trial's own is recorded with that trial)."""
    from optlab.checkpoint import checkpoint_paths
    from optlab.config import validate_config
    from optlab.population import train_population

    try:
        if any(checkpoint_paths(Path(trial_dir)) for _, trial_dir in batch):
            return None
        configs = [validate_config(config_data) for config_data, _ in batch]
        return [_result(run) for run in train_population(configs, [Path(trial_dir) for _, trial_dir in batch])]
    except Exception:  # PopulationUnsupported, or an error that a trial's own run then records
        return None


def _init_local_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C
    try:  # die with the coordinator, so a killed sweep leaves no orphan writing into trial dirs
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_loop(connection: Connection, threads: int) -> None:
    """A worker process: run the batches of trials the coordinator sends, one at a time, until it is
    stopped. A SIGTERM during a trial (the coordinator stopping) ends it at the end of its step,
    checkpointed (a population: not checkpointed), and the worker with it; an idle worker dies of it at once."""
    _init_local_worker(threads)
    while True:
        results = run_batch(connection.recv())
        connection.send(results)
        if any(result["status"] == "interrupted" for result in results):
            return


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


Job = tuple[str, dict, str]  # trial id, config data, trial dir
Batch = list[Job]  # trials one worker trains, together where they can be (run_batch)
Callback = Callable[[str, dict], None]
STOP_GRACE_S = 30  # how long a stopped worker may take to finish its step and checkpoint before it is killed
WORKER_DEATHS_ALLOWED = 2  # a trial whose worker dies this many times is recorded failed (the OOM killer, a crash)


class _Worker:
    """One spawned worker process, the pipe to it, and the batch of trials it is running."""

    def __init__(self, context, threads: int):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_loop, args=(child, threads), daemon=True)
        self.process.start()
        child.close()
        self.batch: Batch | None = None

    def start(self, batch: Batch) -> bool:
        """Send the worker a batch; False if it has died (it was idle) and cannot take it."""
        try:
            if self.process.is_alive():
                self.connection.send([job[1:] for job in batch])
                self.batch = batch
                return True
        except (BrokenPipeError, ConnectionResetError):
            pass
        return False

    def results(self) -> list[dict] | None:
        """The finished batch's results, or None if the process died before sending them."""
        try:
            return self.connection.recv()
        except (EOFError, OSError, pickle.UnpicklingError):  # died before or while sending
            return None

    def death(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return f"worker process killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        return f"worker process died (exit code {code})"

    def stop(self) -> None:
        """Ask the worker to stop (its trial checkpoints at the end of the current step), then make sure."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=STOP_GRACE_S)
            if self.process.is_alive():
                self.process.kill()
        self.connection.close()


def run_local(batches: Iterable[Batch], workers: int, on_start: Callback, on_done: Callback,
              on_poll: Callable[[], None]) -> None:
    """Batches of trials on `workers` worker processes. A worker that dies (kill -9, the OOM killer) takes
    only its own batch down: its trials are recorded interrupted with the cause and run again in a fresh
    worker; after WORKER_DEATHS_ALLOWED deaths they are recorded failed. Every other batch runs on."""
    context, threads = get_context("spawn"), threads_per_worker(workers)
    queue, deaths = deque(batches), Counter()
    pool = [_Worker(context, threads) for _ in range(min(workers, len(queue)))]
    try:
        while queue or any(worker.batch for worker in pool):
            for index, worker in enumerate(pool):
                if worker.batch is None and queue:
                    if not worker.start(queue[0]):  # it died while idle: a fresh one takes the batch next pass
                        worker.stop()
                        pool[index] = _Worker(context, threads)
                        continue
                    for trial_id, _, trial_dir in queue.popleft():
                        on_start(trial_id, {"run_dir": trial_dir})
            busy = [worker for worker in pool if worker.batch]
            ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout=0.5)
            for index, worker in enumerate(pool):
                if worker.batch is None or (worker.connection not in ready and worker.process.sentinel not in ready):
                    continue
                batch, worker.batch = worker.batch, None
                results = worker.results() if worker.connection.poll() else None
                if results is not None:
                    for (trial_id, _, _), result in zip(batch, results):
                        on_done(trial_id, result)
                    continue
                cause = worker.death()
                deaths[batch[0][0]] += 1
                if deaths[batch[0][0]] < WORKER_DEATHS_ALLOWED:
                    for trial_id, _, _ in batch:
                        on_done(trial_id, {"status": "interrupted", "error": cause})
                    queue.appendleft(batch)  # again, first: from their last checkpoints if they wrote any
                else:
                    for trial_id, _, _ in batch:
                        on_done(trial_id, {"status": "failed", "error": f"{cause}, {deaths[batch[0][0]]} times"})
                worker.stop()
                pool[index] = _Worker(context, threads)
            on_poll()
    finally:  # done (the workers are idle), or Ctrl-C or a crash (the caller records what was cut short)
        for worker in pool:
            worker.stop()


def run_inline(batches: Iterable[Batch], on_start: Callback, on_done: Callback, on_poll: Callable[[], None]) -> None:
    for batch in batches:
        for trial_id, _, trial_dir in batch:
            on_start(trial_id, {"run_dir": trial_dir})
        for (trial_id, _, _), result in zip(batch, run_batch([job[1:] for job in batch])):
            on_done(trial_id, result)
        on_poll()


RAY_RETRIES = 2  # a Ray task lost with its worker or node runs again this many times


def run_trial_returning_files(config_data: dict, threads: int) -> dict:
    """A trial trained in a private temporary directory; its result with `files`, every file of the run
    directory as {relative path: bytes} (checkpoints left out: a finished trial is never resumed)."""
    with tempfile.TemporaryDirectory(prefix="optlab-trial-") as folder:
        trial_dir = Path(folder) / "run"
        result = run_trial(config_data, str(trial_dir), threads)
        result["files"] = {path.relative_to(trial_dir).as_posix(): path.read_bytes() for path in sorted(trial_dir.rglob("*"))
                           if path.is_file() and "checkpoints" not in path.relative_to(trial_dir).parts}
    return result


def receive_files(files: dict[str, bytes], trial_dir: Path) -> None:
    """Write a returned trial's files as `trial_dir`: into a fresh sibling folder, then renamed into place
    (a half-written trial directory is never left behind by a crash of the coordinator)."""
    incoming = trial_dir.with_name(f".{trial_dir.name}.incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    for relative, content in files.items():
        path = incoming / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    shutil.rmtree(trial_dir, ignore_errors=True)
    incoming.rename(trial_dir)


def run_ray(jobs: Iterable[Job], address: str | None, cpus: float, gpus: float, on_start: Callback, on_done: Callback,
            on_poll: Callable[[], None]) -> None:
    try:
        import ray
    except ImportError:
        from optlab.errors import OptlabError

        raise OptlabError("--executor ray needs Ray: pip install 'optlab[ray]'") from None
    import optlab

    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(Path(optlab.__file__).parent)]})
    remote_trial = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RAY_RETRIES)(run_trial_returning_files)
    pending = {}
    for trial_id, config_data, trial_dir in jobs:
        on_start(trial_id, {"run_dir": trial_dir})
        pending[remote_trial.remote(config_data, max(1, int(cpus)))] = (trial_id, Path(trial_dir))
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for reference in done:
            trial_id, trial_dir = pending.pop(reference)
            try:
                result = ray.get(reference)
                receive_files(result.pop("files"), trial_dir)
            except Exception as error:  # lost RAY_RETRIES + 1 times (ray.exceptions.WorkerCrashedError, node lost...)
                result = {"status": "failed", "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
            on_done(trial_id, result)
        on_poll()


class SlurmTrial:
    """One trial as a submitit job. SIGUSR2 (submitit's signal for preemption and for the time limit) asks
    the training loop to stop as on SIGTERM: it checkpoints after its current step and returns
    `interrupted`; submitit's own handler then requeues the job (calling `checkpoint` for the resubmission),
    and the requeued job resumes from the checkpoint (run_trial resumes any trial directory that has one)."""

    def __call__(self, config_data: dict, trial_dir: str, threads: int) -> dict:
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's checkpoint-and-requeue
        preempted = []

        def stop_training(signum, frame):
            preempted.append(signum)
            os.kill(os.getpid(), signal.SIGTERM)  # the loop's stop request: finish the step, checkpoint, return

        signal.signal(signal.SIGUSR2, stop_training)
        result = run_trial(config_data, trial_dir, threads)
        signal.signal(signal.SIGUSR2, requeue)
        if preempted and result["status"] == "interrupted" and callable(requeue):
            requeue(signal.SIGUSR2, None)  # exits the job process: requeued
        return result

    def checkpoint(self, *arguments):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *arguments)


def run_slurm(jobs: Iterable[Job], folder: Path, options, cpus: float, gpus: float, on_start: Callback,
              on_done: Callback, on_poll: Callable[[], None]) -> None:
    """Trials as one job array (spec.SlurmOptions); the submission files and logs go to `folder`."""
    from optlab.errors import OptlabError

    try:
        import submitit
    except ImportError:
        raise OptlabError("--executor slurm needs submitit: pip install 'optlab[slurm]'") from None
    if options.cluster == "slurm" and shutil.which("sbatch") is None:
        raise OptlabError("--executor slurm: no SLURM here (sbatch not found); to try the sweep's job array on this "
                          "machine set `slurm: {cluster: local}` in the sweep file")
    executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster, slurm_max_num_timeout=options.max_timeouts)
    executor.update_parameters(timeout_min=options.time_minutes, mem_gb=options.mem_gb, cpus_per_task=math.ceil(cpus),
                               gpus_per_node=math.ceil(gpus), slurm_array_parallelism=options.array_parallelism,
                               slurm_partition=options.partition, name="optlab")
    jobs = list(jobs)
    with executor.batch():
        submitted = [executor.submit(SlurmTrial(), config_data, trial_dir, math.ceil(cpus)) for _, config_data, trial_dir in jobs]
    pending = {}
    for (trial_id, _, trial_dir), job in zip(jobs, submitted):
        on_start(trial_id, {"run_dir": trial_dir, "slurm_job": job.job_id})
        pending[trial_id] = job
    while pending:
        for trial_id, job in list(pending.items()):
            if job.done():
                try:
                    result = job.result()
                except Exception as error:  # the job failed outside the trial (node failure, out of time, cancelled)
                    result = {"status": "failed", "error": f"{type(error).__name__}: {str(error).strip().splitlines()[-1]}"}
                on_done(trial_id, result)
                del pending[trial_id]
        on_poll()
        time.sleep(0.5)
