"""The training loop, in the spirit of nanoGPT's train.py: short, explicit, top to bottom.

config -> data -> model -> optimizers (+ param-group rules) -> loop with probes -> run directory.
`build` makes everything from the config (seeded); `train` runs the loop; measurement lives in the
probes (optlab/probes), which the loop calls at fixed points of each step.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import signal
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from optlab.checkpoint import load_latest_checkpoint, remove_checkpoints, save_checkpoint
from optlab.config import ExperimentConfig
from optlab.data import build_dataset
from optlab.errors import OptlabError
from optlab.memory import check_memory
from optlab.models import build_model, capabilities
from optlab.optim.groups import absorbs_accumulation, build_optimizers, parameter_kinds
from optlab.probes.catalog import build_probes
from optlab.probes.probe import ProbeContext, Probes
from optlab.provenance import environment
from optlab.trackers import Trackers
from optlab.runs import (FINISHED, MetricsWriter, initial_summary, lock_directory, new_run_dir, prepare_run_dir,
                         read_summary, truncate_metrics, write_config, write_json)
from optlab.schedules import is_constant, lr_multiplier

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
DIVERGENCE_CHECK_EVERY = 8  # steps between reads of the divergence flag (one host sync each)


@dataclass
class RunResult:
    run_dir: Path
    status: str
    summary: dict


@dataclass
class Setup:
    """Everything a run is made of, built from its config by `build`."""

    config: ExperimentConfig
    device: torch.device
    data: object
    model: torch.nn.Module
    forward: torch.nn.Module  # the model, or its torch.compile'd version
    autocast: AbstractContextManager
    optimizers: list[torch.optim.Optimizer]
    per_micro_batch: list[torch.optim.Optimizer]  # optimizers that absorb accumulation (stepped per micro-batch)
    schedulers: list
    probes: Probes

    def state_dict(self, step: int, initial_loss: float | None, elapsed_s: float) -> dict:
        """A checkpoint: everything needed to continue bit-identically."""
        return {"step": step, "model": self.model.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers], "data": self.data.state_dict(),
                "torch_rng": torch.get_rng_state(), "probes": self.probes.state_dict(), "initial_loss": initial_loss,
                "elapsed_s": elapsed_s}

    def load_state_dict(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        for optimizer, state in zip(self.optimizers, checkpoint["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(self.schedulers, checkpoint["schedulers"]):
            scheduler.load_state_dict(state)
        self.data.load_state_dict(checkpoint["data"])
        torch.set_rng_state(checkpoint["torch_rng"])
        self.probes.load_state_dict(checkpoint["probes"])


def build(config: ExperimentConfig) -> Setup:
    """Data, model, optimizers, lr schedules and probes of `config`, all seeded from training.seed."""
    training = config.training
    check_memory(config, config.name or "<config>")  # before anything is allocated
    keep_freed_memory()
    device = resolve_device(training.device)
    seed_everything(training.seed, device)
    data = build_dataset(config.data, training.seed)
    model = build_model(config.model, data).to(device=device, dtype=DTYPES[training.dtype])
    optimizers = build_optimizers(model, config)
    if is_constant(config.schedule):  # nothing to step: the lr is set once (a tiny trial's steps are ~0.3 ms)
        schedulers = []
        for group in (group for optimizer in optimizers for group in optimizer.param_groups):
            group["lr"] *= training.lr_scale()
    else:
        schedulers = [torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: training.lr_scale() * lr_multiplier(config.schedule, step, training.steps))
            for optimizer in optimizers]
    micro_batches, micro_batch = training.accumulation()
    per_micro_batch = [optimizer for optimizer in optimizers if absorbs_accumulation(optimizer, micro_batches)]
    if per_micro_batch and training.grad_clip is not None:
        raise OptlabError("training.grad_clip cannot be used with an optimizer that absorbs accumulation (the summed "
                          "gradient never exists); drop one of them")
    forward = torch.compile(model) if training.compile else model  # compile time shows in first_step_s
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if training.autocast else contextlib.nullcontext()

    def evaluate(windows: torch.Tensor) -> float:
        """Mean loss over `windows` (in chunks of at least 256 examples; equal chunks give the exact mean)."""
        with torch.no_grad(), autocast:
            chunks = windows.split(max(micro_batch, 256))
            return (sum(forward(chunk) * len(chunk) for chunk in chunks) / len(windows)).item()

    parameters = dict(model.named_parameters())
    eval_windows = (data.sample(config.probes.eval_examples, model.window_length, split="val").to(device)
                    if config.probes.eval_examples else None)  # drawn before a resume restores the generators
    context = ProbeContext(config, model, forward, capabilities(model), data, optimizers, parameters,
                           parameter_kinds(model), sum(p.numel() for p in parameters.values()), micro_batches,
                           bool(per_micro_batch), evaluate, eval_windows, autocast, device)
    return Setup(config, device, data, model, forward, autocast, optimizers, per_micro_batch, schedulers,
                 build_probes(context))


def train(config: ExperimentConfig, show_progress: bool = True, resume: Path | None = None,
          run_dir: Path | None = None) -> RunResult:
    """Train `config` into a new run directory (or into `run_dir`, which a sweep names after the trial),
    or continue the run in `resume` from its last checkpoint."""
    with StopRequest() as stop:  # from here a Ctrl-C is a request, honoured before the next step, set-up included
        return _train_until_stopped(config, show_progress, resume, run_dir, stop)


def _train_until_stopped(config: ExperimentConfig, show_progress: bool, resume: Path | None, run_dir: Path | None,
                         stop: "StopRequest") -> RunResult:
    called = time.perf_counter()
    training = config.training
    run = build(config)
    model, data, probes = run.model, run.data, run.probes
    micro_batches, micro_batch = training.accumulation()
    per_step = [optimizer for optimizer in run.optimizers if optimizer not in run.per_micro_batch]
    record = RunRecord(run, resume or (new_run_dir(config) if run_dir is None else run_dir), resume is not None,
                       show_progress)
    status = "completed"
    progress = _progress_bar(show_progress, config.name, training.steps)
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)  # non-finite once any step's loss has been nan or inf
    try:
        for step in range(record.start_step, training.steps):
            if stop.requested:  # Ctrl-C or SIGTERM, during the last step or before the first: checkpoint, stop
                record.checkpoint(step)
                status = "interrupted"
                break
            probe_step = step % config.probes.every == 0 or step == training.steps - 1
            if probe_step:
                probes.before_step(step)
            lr = run.optimizers[0].param_groups[0]["lr"]
            # ---- forward/backward over the micro-batches (gradient accumulation)
            loss = None
            for _ in range(micro_batches):
                batch = data.sample(micro_batch, model.window_length)
                if run.device.type != "cpu":
                    batch = (batch.pin_memory() if run.device.type == "cuda" else batch).to(run.device, non_blocking=True)
                probes.on_batch(step, batch)
                with run.autocast:
                    micro_loss = run.forward(batch) if micro_batches == 1 else run.forward(batch) / micro_batches
                micro_loss.backward()
                loss = micro_loss.detach() if loss is None else loss + micro_loss.detach()
                for optimizer in run.per_micro_batch:  # folds this micro-batch into its state (Tiger §2.4)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            if probe_step:
                probes.after_backward(batch)  # the raw gradient of the step, before clipping
            # ---- clip, step, schedule
            grad_norm = gradient_norm(model, training.grad_clip, measure=probe_step)
            for optimizer in per_step:
                optimizer.step()
            for scheduler in run.schedulers:
                scheduler.step()
            probes.after_step(step)
            # ---- log (on probe steps, and where the divergence flag is read: no host-device sync otherwise)
            loss_sum += loss  # kept on the device (one add); the factor rule is applied on probe steps
            if probe_step or ((step + 1) % DIVERGENCE_CHECK_EVERY == 0 and not math.isfinite(loss_sum.item())):
                loss_value = loss.item()
                ending = record.log(step, loss_value, lr, grad_norm, probe_step, math.isfinite(loss_sum.item()))
                if ending is not None:
                    status = ending
                    break
                progress.update(step + 1, loss_value, lr)
            for optimizer in run.optimizers:
                optimizer.zero_grad(set_to_none=True)
            record.step_done(step, called)
            every = config.output.checkpoint_every
            if every and (step + 1) % every == 0 and step + 1 < training.steps and not stop.requested:
                record.checkpoint(step + 1)
        if status == "completed" and config.output.final_checkpoint:
            record.checkpoint(record.summary["steps_completed"])
        elif status in FINISHED and not config.output.final_checkpoint:
            remove_checkpoints(record.run_dir)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, without a checkpoint
        status = "interrupted"
        raise
    except Exception as error:
        status = "failed"
        record.summary["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        progress.close()
        record.close(status)
    return RunResult(record.run_dir, status, record.summary)


class RunRecord:
    """What a run writes while it trains, into its locked run directory: config.yaml and the first
    summary when it opens, a metrics.csv row (and the trackers' log) per logged step, checkpoints, and
    the final summary. `log` applies the stop rules to each row: diverged when the running loss sum is
    non-finite or the loss exceeds training.divergence_factor × the first logged loss; stopped when
    training.stop_at_target is reached. The population trainer (optlab/population.py) keeps one per trial."""

    def __init__(self, run: Setup, run_dir: Path, resuming: bool, show_progress: bool):
        self.run, self.run_dir = run, run_dir
        self.lock = lock_run_dir(run_dir)
        try:
            self.summary, self.start_step, self.initial_loss, self.elapsed_before = open_run_dir(
                run, run_dir, resuming, show_progress)
        except BaseException:
            self.lock.close()
            raise
        self.writer = MetricsWriter(run_dir / "metrics.csv")
        self.trackers = Trackers(run.config.output.loggers, run_dir, run.config.model_dump(mode="json"), self.start_step)
        self.started = time.perf_counter()

    def elapsed_s(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def log(self, step: int, loss_value: float, lr: float, grad_norm: torch.Tensor | None, probe_step: bool,
            loss_sum_finite: bool) -> str | None:
        """Write the row of `step` (the probes measure on probe steps); 'diverged' or 'completed' (target
        reached) when the run stops here, else None."""
        training = self.run.config.training
        row = {"step": step + 1, "examples": (step + 1) * training.batch_size, "loss": loss_value, "lr": lr,
               "grad_norm": math.nan if grad_norm is None else grad_norm.item(), "elapsed_s": self.elapsed_s()}
        row = self.run.probes.measure(step, row) if probe_step else row
        self.writer.append(row)
        self.trackers.log(row)
        self.initial_loss = loss_value if self.initial_loss is None else self.initial_loss
        self.summary.update(final=row, steps_completed=step + 1)
        if not loss_sum_finite or loss_value > training.divergence_factor * self.initial_loss:
            self.summary["diverged_at_step"] = step + 1
            return "diverged"
        target = training.stop_at_target
        if target is not None and row.get(target.column, math.inf) <= target.value:
            self.summary["reached_target_at_step"] = step + 1
            return "completed"
        return None

    def step_done(self, step: int, called: float) -> None:
        """After the step's gradients are cleared; `called`: when set-up began (first_step_s counts it)."""
        if step == self.start_step:
            self.summary["first_step_s"] = round(time.perf_counter() - called, 4)
        self.summary["steps_completed"] = step + 1

    def checkpoint(self, step: int) -> None:
        """Everything needed to continue bit-identically from `step`."""
        save_checkpoint(self.run_dir, self.run.state_dict(step, self.initial_loss, self.elapsed_s()),
                        self.run.config.output.keep_checkpoints)

    def close(self, status: str) -> None:
        """The final summary (fsynced), the probes' end-of-run files, the trackers; then the lock is released."""
        self.writer.close()
        self.summary.update(status=status, wall_time_s=round(self.elapsed_s(), 3))
        try:
            if status in FINISHED:
                self.run.probes.at_end(self.run_dir)
            write_json(self.run_dir / "summary.json", self.summary)
            self.trackers.finish(self.summary)
        finally:
            self.lock.close()


def gradient_norm(model: torch.nn.Module, clip: float | None, measure: bool) -> torch.Tensor | None:
    """Clip the gradient to norm `clip` (returning its norm before clipping), or only measure the norm."""
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if not measure:
        return None
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.tensor(math.nan)


def lock_run_dir(run_dir: Path):
    """Created if new, then locked for the whole run: a second `optlab train` (or `--resume`) of it is refused."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OptlabError(f"{run_dir}: cannot create the run directory ({error.strerror})") from None
    return lock_directory(run_dir, "another optlab process is training this run; wait for it to finish or stop it")


def open_run_dir(run: Setup, run_dir: Path, resuming: bool, show_progress: bool):
    """Write a new run's config and first summary (θ_0's metrics) into `run_dir`, or restore the state
    of the run being resumed. Returns (summary, start step, first logged loss, seconds already run)."""
    config = run.config
    micro_batches, micro_batch = config.training.accumulation()
    if not resuming:
        prepare_run_dir(run_dir)
        write_config(run_dir, config, durable=False)  # atomic, not fsynced (the final summary is: 1 ms a file)
        summary = initial_summary(config, environment(run.device))
        summary["initial_metrics"] = run.probes.at_start()  # e.g. the exact noise scales, L_init of Exp D
        start_step, initial_loss, elapsed_before = 0, None, 0.0
    else:
        checkpoint = load_latest_checkpoint(run_dir)
        run.load_state_dict(checkpoint)
        write_config(run_dir, config)  # the config it continues with (`--resume --force` may change it)
        start_step, initial_loss, elapsed_before = checkpoint["step"], checkpoint["initial_loss"], checkpoint["elapsed_s"]
        truncate_metrics(run_dir / "metrics.csv", start_step)
        summary = {**read_summary(run_dir), **environment(run.device), "status": "running", "resumed_from_step": start_step}
    summary["micro_batches"] = {"count": micro_batches, "size": micro_batch}
    summary["parameter_count"] = sum(p.numel() for p in run.model.parameters())
    if micro_batches > 1 and show_progress:
        print(f"batch_size {config.training.batch_size} runs as {micro_batches} micro-batches of {micro_batch}")
    write_json(run_dir / "summary.json", summary, durable=False)  # rewritten, and fsynced, when the run ends
    return summary, start_step, initial_loss, elapsed_before


def seed_everything(seed: int, device: torch.device) -> None:
    """torch.manual_seed, without its lazy seeding of every accelerator backend torch knows (CUDA, XPU, MTIA:
    each records a traceback, ~1 ms, a tenth of a tiny sweep trial's set-up): the CPU generator, and the
    CUDA ones when the run uses CUDA."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)


KEEP_FREED_BYTES = 2**28  # 256 MiB: malloc's mmap and trim thresholds while training (glibc: ≤ 32 MiB, 128 KiB)


@functools.cache
def keep_freed_memory() -> None:
    """Let freed tensor memory be reused by the process instead of going back to the OS (glibc's malloc,
    once per process; nothing elsewhere). By default glibc serves every allocation above its mmap threshold
    (at most 32 MiB) with fresh pages and unmaps them when they are freed, so a big temporary made at every
    step, such as a language model's (tokens × vocabulary) logits (67 MB at batch 256 of the shipped LM), is
    page-faulted and zeroed again each time: measured here, that doubled the time of the output layer's
    forward and backward pass. Allocations below KEEP_FREED_BYTES now come from the heap, and up to that
    much freed memory is kept for reuse. The cost is resident memory: an lm_adamw trial's peak went from
    0.66 to 0.96 GB at batch 256 (1.6× faster) and from 2.3 to 2.6 GB at batch 32 with its noise-scale
    probe; a threshold of 1 GiB was no faster and kept 0.1-0.4 GB more."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): its own allocator's policy stands
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, KEEP_FREED_BYTES)
    mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise OptlabError("training.device: cuda was requested but no CUDA GPU is available; use device: auto or cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class StopRequest:
    """First SIGINT/SIGTERM: finish the current step, checkpoint, exit cleanly. Second: stop at once.

    A handler that only sets a flag cannot be lost: a KeyboardInterrupt raised while Python runs a
    finaliser (`__del__`, a weakref callback) is printed and dropped, which let a Ctrl-C during set-up
    go unheard and the run train on."""

    def __enter__(self) -> "StopRequest":
        self.requested = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exception) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class _progress_bar:
    """Progress of a run on stderr: a rich bar with loss, lr and ETA on a terminal; in a log or CI (stderr
    not a terminal) a plain line at the first logged step and then at most every PLAIN_EVERY_S seconds
    (silent when disabled)."""

    PLAIN_EVERY_S = 30.0

    def __init__(self, enabled: bool, name: str, total: int):
        import sys

        self.progress, self.name, self.total = None, name, total
        self.plain = enabled and not sys.stderr.isatty()
        self.started, self.printed_at = time.perf_counter(), -math.inf
        if enabled and not self.plain:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(),
            )
            self.task = self.progress.add_task(name, total=total, loss=float("nan"), lr=float("nan"))
            self.progress.start()

    def update(self, completed: int, loss: float, lr: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, loss=loss, lr=lr)
        elif self.plain and time.perf_counter() - self.printed_at >= self.PLAIN_EVERY_S:
            import sys

            self.printed_at = now = time.perf_counter()
            elapsed = now - self.started
            remaining = elapsed / max(completed, 1) * (self.total - completed)
            print(f"{self.name}: step {completed}/{self.total} ({100 * completed / self.total:.0f}%), loss {loss:.4f}, "
                  f"lr {lr:.2e}, {elapsed:.0f} s elapsed, ETA {remaining:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
