"""The training loop, in the spirit of nanoGPT's train.py: short, explicit, top to bottom.

config -> data -> model -> optimizers (+ param-group rules) -> loop with probes -> run directory.
"""

from __future__ import annotations

import functools
import math
import platform
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from optlab import __version__
from optlab.checkpoint import load_latest_checkpoint, remove_checkpoints, save_checkpoint
from optlab.config import ExperimentConfig
from optlab.data import build_dataset
from optlab.errors import OptlabError
from optlab.models import build_model
from optlab.optim.groups import build_optimizers, parameter_kinds
from optlab.probes.noise_scale import NoiseScaleProbe
from optlab.probes.sampled_noise_scale import sampled_noise_scales
from optlab.probes.embedding import bucket_masks, embedding_decay, embedding_metrics, stale_momentum_rows
from optlab.probes.optimizer import optimizer_metrics
from optlab.probes.curvature import AdamCurvatureProbe
from optlab.probes.first_order import first_order_metrics
from optlab.probes.updates import parameter_lrs, snapshot, update_metrics
from optlab.runs import (MetricsWriter, initial_summary, new_run_dir, prepare_run_dir, read_summary, truncate_metrics,
                         write_config, write_json)
from optlab.schedules import lr_multiplier

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass
class RunResult:
    run_dir: Path
    status: str
    summary: dict


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise OptlabError("training.device: cuda was requested but no CUDA GPU is available; use device: auto or cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def denormal_mode() -> str:
    """Measured, not assumed: does the smallest subnormal float32 survive a multiplication by 1?"""
    survives = (torch.tensor([1e-45], dtype=torch.float32) * 1.0).item() != 0
    return "preserved" if survives else "flushed"


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit, when optlab runs from one (asked once per process)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    commit = git_commit()
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "denormals": denormal_mode(),
        "versions": {"optlab": __version__, "git_commit": commit, "torch": torch.__version__, "python": platform.python_version()},
    }


def train(config: ExperimentConfig, show_progress: bool = True, resume: Path | None = None,
          run_dir: Path | None = None) -> RunResult:
    """Train `config` into a new run directory (or into `run_dir`, which a sweep names after the trial),
    or continue the run in `resume` from its last checkpoint."""
    # ---- set-up: everything is seeded from training.seed
    called = time.perf_counter()
    training = config.training
    device = resolve_device(training.device)
    torch.manual_seed(training.seed)
    data = build_dataset(config.data, training.seed)
    model = build_model(config.model, data).to(device=device, dtype=DTYPES[training.dtype])
    optimizers = build_optimizers(model, config)
    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: training.lr_scale() * lr_multiplier(config.schedule, step, training.steps))
        for opt in optimizers
    ]
    parameters = dict(model.named_parameters())
    kinds = parameter_kinds(model)
    forward = torch.compile(model) if training.compile else model  # compile time shows in first_step_s
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=training.autocast)
    pin = device.type == "cuda"
    parameter_count = sum(p.numel() for p in parameters.values())
    probe_embedding = config.probes.embedding and hasattr(model, "token_embedding")
    if probe_embedding:
        embedding = model.token_embedding.weight
        decay = embedding_decay(embedding, optimizers)
        masks = {bucket: mask.to(device) for bucket, mask in bucket_masks(data.token_rank).items()}
    accumulation_steps, micro_batch = training.accumulation()
    absorbing = [opt for opt in optimizers if getattr(opt, "absorbs_accumulation", False)]
    noise_scale = None
    if config.probes.noise_scale:
        if absorbing:
            raise OptlabError("probes.noise_scale needs the step's whole gradient; turn off absorb_accumulation")
        small = config.probes.noise_scale_small_batch or max(1, micro_batch // 4)
        noise_scale = NoiseScaleProbe(min(small, micro_batch), training.batch_size, config.probes.noise_scale_decay)
    if config.probes.loss_change and accumulation_steps > 1:
        raise OptlabError("probes.loss_change compares losses on the step's batch; it needs one micro-batch per step "
                          "(drop grad_accum_steps / max_micro_batch)")
    curvature = AdamCurvatureProbe(model, optimizers, training.steps) if config.probes.adam_curvature else None
    sampled = config.probes.sampled_noise_scale
    levels_pending = sorted(sampled.at_eval_loss, reverse=True) if sampled else []  # eval-loss levels not yet reached
    eval_windows = (data.sample(config.probes.eval_examples, model.window_length, split="val").to(device)
                    if config.probes.eval_examples else None)  # drawn before a resume restores the generators

    def evaluate(windows: torch.Tensor) -> float:
        """Mean loss over `windows` (in chunks of at least 256 examples; equal chunks give the exact mean)."""
        with torch.no_grad(), autocast:
            chunks = windows.split(max(micro_batch, 256))
            return (sum(forward(chunk) * len(chunk) for chunk in chunks) / len(windows)).item()

    def checkpoint_state(step: int) -> dict:
        return {"step": step, "model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
                "schedulers": [s.state_dict() for s in schedulers], "data": data.state_dict(),
                "torch_rng": torch.get_rng_state(), "initial_loss": initial_loss,
                "curvature_probe": curvature.state_dict() if curvature is not None else None,
                "noise_scale_levels_pending": levels_pending,
                "elapsed_s": elapsed_before + time.perf_counter() - started}

    # ---- a new run directory, or the state of the run being resumed
    if resume is None:
        run_dir = new_run_dir(config) if run_dir is None else prepare_run_dir(run_dir)
        start_step, initial_loss, elapsed_before = 0, None, 0.0
        write_config(run_dir, config)
        summary = initial_summary(config, environment(device))
        summary["initial_metrics"] = model.extra_metrics() if hasattr(model, "extra_metrics") else {}
        if eval_windows is not None:  # θ_0's numbers, e.g. the exact noise scales, L_init of Exp D
            summary["initial_metrics"]["eval_loss"] = evaluate(eval_windows)
        if sampled:
            summary["initial_metrics"].update(sampled_noise_scales(model, data, sampled))
    else:
        run_dir, checkpoint = resume, load_latest_checkpoint(resume)
        model.load_state_dict(checkpoint["model"])
        for optimizer, state in zip(optimizers, checkpoint["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(schedulers, checkpoint["schedulers"]):
            scheduler.load_state_dict(state)
        data.load_state_dict(checkpoint["data"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if curvature is not None:
            curvature.load_state_dict(checkpoint["curvature_probe"])
        start_step, initial_loss, elapsed_before = checkpoint["step"], checkpoint["initial_loss"], checkpoint["elapsed_s"]
        levels_pending = checkpoint.get("noise_scale_levels_pending", levels_pending)
        truncate_metrics(run_dir / "metrics.csv", start_step)
        summary = {**read_summary(run_dir), **environment(device), "status": "running", "resumed_from_step": start_step}
    summary["micro_batches"] = {"count": accumulation_steps, "size": micro_batch}
    summary["parameter_count"] = parameter_count
    if accumulation_steps > 1 and show_progress:
        print(f"batch_size {training.batch_size} runs as {accumulation_steps} micro-batches of {micro_batch}")
    write_json(run_dir / "summary.json", summary)
    writer = MetricsWriter(run_dir / "metrics.csv")

    status, started = "completed", time.perf_counter()
    progress = _progress_bar(show_progress, config.name, training.steps)
    stop = StopRequest()
    try:
        for step in range(start_step, training.steps):
            is_probe_step = step % config.probes.every == 0 or step == training.steps - 1
            watch_step = is_probe_step and (config.probes.updates or config.probes.loss_change)
            before = snapshot(parameters) if watch_step else None
            lrs = parameter_lrs(optimizers) if watch_step else None
            lr = optimizers[0].param_groups[0]["lr"]
            # ---- forward/backward over the micro-batches (gradient accumulation)
            loss = torch.zeros((), device=device)
            for _ in range(accumulation_steps):
                windows = data.sample(micro_batch, model.window_length)
                windows = (windows.pin_memory() if pin else windows).to(device, non_blocking=True)
                with autocast:
                    micro_loss = forward(windows) / accumulation_steps
                micro_loss.backward()
                loss += micro_loss.detach()
                for optimizer in absorbing:  # Tiger's accumulation in the momentum: a step per micro-batch
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            noise_row = {}
            if noise_scale is not None and is_probe_step:  # before clipping: the raw batch-mean gradient
                big = sum(p.grad.double().pow(2).sum() for p in model.parameters() if p.grad is not None).item()
                with autocast:
                    small = noise_scale.small_batch_gradient_norm_sq(model, forward, windows)
                noise_row = noise_scale.update(small, big)
            # ---- clip, step, schedule
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            raw_grads = [g.clone() for g in grads] if is_probe_step and config.probes.loss_change else None
            grad_norm = None
            if training.grad_clip is not None:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
            elif is_probe_step:
                grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.tensor(math.nan)
            for optimizer in optimizers:
                if optimizer not in absorbing:
                    optimizer.step()
            for scheduler in schedulers:
                scheduler.step()
            if curvature is not None:
                curvature.update(step)
            # ---- probes and logging (only on probe steps: no host-device sync otherwise)
            if is_probe_step:
                loss_value = loss.item()
                row = {"step": step + 1, "examples": (step + 1) * training.batch_size, "loss": loss_value,
                       "lr": lr, "grad_norm": grad_norm.item(),
                       "elapsed_s": elapsed_before + time.perf_counter() - started}
                if before is not None and config.probes.updates:
                    row.update(update_metrics(before, parameters, kinds, lrs))
                if raw_grads is not None:
                    stepped = [p for p in parameters.values() if p.grad is not None]
                    row.update(first_order_metrics(raw_grads, [before[n] for n, p in parameters.items() if p.grad is not None],
                                                   [p.detach() for p in stepped], loss_value, evaluate(windows)))
                if eval_windows is not None:
                    row["eval_loss"] = evaluate(eval_windows)
                if sampled and (not sampled.at_eval_loss or (levels_pending and row["eval_loss"] <= levels_pending[0])):
                    row.update(sampled_noise_scales(model, data, sampled))  # once for all the levels this step reached
                    levels_pending = [level for level in levels_pending if row["eval_loss"] > level]
                if curvature is not None:
                    if curvature.needs_hessian and step == training.steps - 1:  # Hutchinson, once, on held-out data
                        curvature.estimate_hessian(lambda: forward(eval_windows if eval_windows is not None else windows),
                                                   training.seed)
                    row.update(curvature.metrics())
                row.update(optimizer_metrics(optimizers, parameter_count))
                row.update(noise_row)
                if hasattr(model, "extra_metrics"):
                    row.update(model.extra_metrics())
                if probe_embedding:
                    row.update(embedding_metrics(embedding, decay, masks))
                    row["embedding.stale_momentum_rows"] = stale_momentum_rows(embedding, optimizers)
                writer.append(row)
                initial_loss = loss_value if initial_loss is None else initial_loss
                summary.update(final=row, steps_completed=step + 1)
                if not math.isfinite(loss_value) or loss_value > training.divergence_factor * initial_loss:
                    status = "diverged"
                    summary["diverged_at_step"] = step + 1
                    break
                target = training.stop_at_target
                if target is not None and row.get(target.column, math.inf) <= target.value:
                    summary["reached_target_at_step"] = step + 1
                    break
                progress.update(step + 1, loss_value, lr)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            if step == start_step:
                summary["first_step_s"] = round(time.perf_counter() - called, 4)
            summary["steps_completed"] = step + 1
            every = config.output.checkpoint_every
            if stop.requested or (every and (step + 1) % every == 0 and step + 1 < training.steps):
                save_checkpoint(run_dir, checkpoint_state(step + 1), config.output.keep_checkpoints)
            if stop.requested:
                status = "interrupted"
                break
        if status == "completed" and config.output.final_checkpoint:
            save_checkpoint(run_dir, checkpoint_state(summary["steps_completed"]), config.output.keep_checkpoints)
        elif status in ("completed", "diverged") and not config.output.final_checkpoint:
            remove_checkpoints(run_dir)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, without a checkpoint
        status = "interrupted"
        raise
    except Exception as error:
        status = "failed"
        summary["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        stop.restore()
        progress.close()
        writer.close()
        summary.update(status=status, wall_time_s=round(elapsed_before + time.perf_counter() - started, 3))
        if status in ("completed", "diverged") and probe_embedding:
            _save_embedding(run_dir, embedding, decay, data.token_rank)
        write_json(run_dir / "summary.json", summary)
    return RunResult(run_dir, status, summary)


class StopRequest:
    """First SIGINT/SIGTERM: finish the current step, checkpoint, exit cleanly. Second: stop at once."""

    def __init__(self):
        self.requested = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _save_embedding(run_dir: Path, embedding: torch.Tensor, decay: float, token_rank: torch.Tensor) -> None:
    """The final embedding (× λ when λ > 0) for the report's per-row plots, written atomically."""
    import numpy as np

    scale = decay if decay else 1.0
    temporary = run_dir / ".embedding.tmp.npz"
    np.savez_compressed(temporary, weight_x_lambda=(embedding.detach().float().cpu() * scale).numpy(),
                        token_rank=token_rank.numpy(), decay=np.float64(decay))
    temporary.replace(run_dir / "embedding.npz")


class _progress_bar:
    """A rich progress bar with loss, lr and ETA (silent when disabled)."""

    def __init__(self, enabled: bool, name: str, total: int):
        self.progress = None
        if enabled:
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

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
