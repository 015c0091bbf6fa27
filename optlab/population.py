"""Train a population: several runs that differ only in their optimizer, stepped together.

Runs whose configs agree on everything but the optimizer, its parameter-group rules and the lr schedule
(`ExperimentConfig.population_key`) see the same examples in the same order and start from the same weights: a sweep's
trials over lr, ε or optimizer at one batch size and seed. `train_population` draws each step's batch once,
evaluates every run's loss in one vectorised forward pass (torch.func.vmap over the runs' parameters,
stacked along a leading dimension) and one backward pass, and then steps each run's own optimizer,
schedule and probes on its own parameters, which are views into the stacked tensors. Each run therefore
executes its optimizer's own code on its own state, and writes its own run directory exactly as
`optlab.train.train` does; the results agree with training the runs one by one up to the rounding of
batched against single matrix products (tests/test_population.py: 1e-12 relative in float64).

What is shared, and why it is exact: the batch is drawn from the first run's dataset; the others would
draw the same numbers (same data config, seed and batch size), and their own datasets stay untouched
for their probes' held-out and probe splits. A run stops on its own (diverged, target reached); its
parameters then get their own storage, and the stack is rebuilt from the runs still training.

Where it does not apply, the runs are trained one by one (`PopulationUnsupported` says why): a model
whose forward pass draws random numbers (dropout: vmap's randomness="error") or cannot be vectorised,
buffers that differ between the runs, an optimizer that absorbs gradient accumulation (it steps per
micro-batch), torch.compile, and runs that checkpoint (a population stopped by Ctrl-C or SIGTERM records
its runs interrupted without a checkpoint; `optlab sweep` starts them again from step 0).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from optlab.config import ExperimentConfig
from optlab.train import (DIVERGENCE_CHECK_EVERY, RunRecord, RunResult, Setup, StopRequest, build, gradient_norm)


class PopulationUnsupported(Exception):
    """These runs cannot be trained together; the message says why (they are trained one by one)."""


class Population:
    """The runs' parameters stacked along a leading dimension, and the vectorised loss of all of them.
    Each run's own parameters are views into the stack (its optimizer updates the stack in place)."""

    def __init__(self, setups: list[Setup]):
        template = setups[0].model
        self.names = [name for name, _ in template.named_parameters()]
        self.parameters = [dict(setup.model.named_parameters()) for setup in setups]
        for name, buffer in template.named_buffers():
            for setup in setups[1:]:
                if not torch.equal(buffer, setup.model.get_buffer(name)):
                    raise PopulationUnsupported(f"the runs' buffer {name} differs")

        def run_loss(parameters: dict, batch: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(template, parameters, (batch,))

        self.losses = torch.func.vmap(run_loss, in_dims=(0, None), randomness="error")
        self.stack(range(len(setups)))

    def stack(self, members) -> None:
        """Stack the parameters of runs `members` (indices) and point each run's parameters at its slice."""
        self.members = list(members)
        self.stacked = {}
        for name in self.names:
            stacked = torch.stack([self.parameters[member][name].detach() for member in self.members])
            for slot, member in enumerate(self.members):
                self.parameters[member][name].data = stacked[slot]
            self.stacked[name] = stacked.requires_grad_()

    def release(self, member: int) -> None:
        """Give a run that stopped training its own copy of its parameters."""
        for parameter in self.parameters[member].values():
            parameter.data = parameter.data.clone()

    def check(self, batch: torch.Tensor) -> None:
        """Raise PopulationUnsupported unless the members' loss and its gradient can be vectorised (tried
        on the first two members)."""
        pair = {name: stacked[:2] for name, stacked in self.stacked.items()}
        try:
            losses = self.losses(pair, batch)
            if losses.shape != (2,):
                raise PopulationUnsupported(f"the model's loss has shape {tuple(losses.shape[1:])}, not a scalar")
            torch.autograd.grad(losses.sum(), list(self.stacked.values()), allow_unused=True)
        except RuntimeError as error:  # random numbers in the forward pass, an op vmap cannot batch, .item()
            raise PopulationUnsupported(f"the model's forward pass cannot be vectorised over runs "
                                        f"({str(error).splitlines()[0]})") from None

    def backward(self, batch: torch.Tensor, micro_batches: int) -> torch.Tensor:
        """The members' losses on `batch` ÷ micro_batches (a vector, as the loop divides a micro-batch's
        loss), after adding their gradients to the stack's."""
        losses = self.losses(self.stacked, batch)
        if micro_batches > 1:
            losses = losses / micro_batches
        losses.sum().backward()
        return losses.detach()

    def link_gradients(self) -> None:
        """Each member's .grad: a view of its slice of the stack's gradient."""
        for name, stacked in self.stacked.items():
            if stacked.grad is None:
                continue
            gradient = stacked.grad if stacked.grad.is_contiguous() else stacked.grad.contiguous()
            for slot, member in enumerate(self.members):
                self.parameters[member][name].grad = gradient[slot]

    def zero_grad(self) -> None:
        for name, stacked in self.stacked.items():
            stacked.grad = None
            for member in self.members:
                self.parameters[member][name].grad = None


def train_population(configs: list[ExperimentConfig], run_dirs: list[Path]) -> list[RunResult]:
    """Train `configs` (equal population_key) together into `run_dirs`; raises PopulationUnsupported,
    before any run directory is written, where they cannot be."""
    keys = {config.population_key() for config in configs}
    if None in keys or len(keys) != 1:
        raise PopulationUnsupported("the configs differ in more than the optimizer and its schedule")
    with StopRequest() as stop:
        return _train_until_stopped(configs, run_dirs, stop)


def _train_until_stopped(configs: list[ExperimentConfig], run_dirs: list[Path], stop: StopRequest) -> list[RunResult]:
    called = time.perf_counter()
    setups = [build(config) for config in configs]  # each seeds torch's generator as its solo run does
    if any(setup.per_micro_batch for setup in setups):
        raise PopulationUnsupported("an optimizer absorbs gradient accumulation (it steps per micro-batch)")
    population = Population(setups)
    first, training = setups[0], configs[0].training
    micro_batches, micro_batch = training.accumulation()
    with first.autocast:  # on a batch of the last run's stream, which the population never trains on
        population.check(setups[-1].data.sample(micro_batch, first.model.window_length).to(first.device))
    records = [RunRecord(setup, run_dir, resuming=False, show_progress=False) for setup, run_dir in zip(setups, run_dirs)]
    statuses = ["completed"] * len(setups)
    loss_sums = torch.zeros(len(setups), dtype=torch.float64, device=first.device)
    try:
        for step in range(training.steps):
            members = population.members
            if not members:
                break
            if stop.requested:  # no checkpoint: the sweep starts the interrupted runs again
                for member in members:
                    statuses[member] = "interrupted"
                break
            probe_step = step % configs[0].probes.every == 0 or step == training.steps - 1
            if probe_step:
                for member in members:
                    setups[member].probes.before_step(step)
            lrs = [setups[member].optimizers[0].param_groups[0]["lr"] for member in members]
            # ---- one batch, one vectorised forward/backward for every member
            losses = None
            for _ in range(micro_batches):
                batch = first.data.sample(micro_batch, first.model.window_length)
                if first.device.type != "cpu":
                    batch = batch.to(first.device)
                for member in members:
                    setups[member].probes.on_batch(step, batch)
                with first.autocast:
                    micro_losses = population.backward(batch, micro_batches)
                losses = micro_losses if losses is None else losses + micro_losses
            population.link_gradients()
            # ---- each member's own probes, clipping, optimizer and schedule
            grad_norms = []
            for member in members:
                run = setups[member]
                if probe_step:
                    run.probes.after_backward(batch)
                grad_norms.append(gradient_norm(run.model, training.grad_clip, measure=probe_step))
                for optimizer in run.optimizers:
                    optimizer.step()
                for scheduler in run.schedulers:
                    scheduler.step()
                run.probes.after_step(step)
            # ---- log and stop rules, per member (train.py's, with a vector of running loss sums)
            loss_sums[members] += losses.to(torch.float64)
            check = (step + 1) % DIVERGENCE_CHECK_EVERY == 0
            finite = torch.isfinite(loss_sums[members]).tolist() if probe_step or check else None
            values = losses.tolist() if probe_step or (check and not all(finite)) else None
            stopped = []
            for slot, member in enumerate(members):
                if probe_step or (check and not finite[slot]):
                    ending = records[member].log(step, values[slot], lrs[slot], grad_norms[slot], probe_step,
                                                 finite[slot])
                    if ending is not None:
                        statuses[member] = ending
                        stopped.append(member)
            population.zero_grad()
            for member in members:
                records[member].step_done(step, called)
            if stopped:
                for member in stopped:
                    population.release(member)
                population.stack(member for member in members if member not in stopped)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once
        for member in population.members:
            statuses[member] = "interrupted"
        raise
    except Exception as error:
        for member in population.members:
            statuses[member] = "failed"
            records[member].summary["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        for member in population.members:
            population.release(member)
        for member, record in enumerate(records):
            record.summary["population"] = {"size": len(setups), "member": member}
            record.close(statuses[member])
    return [RunResult(record.run_dir, status, record.summary) for record, status in zip(records, statuses)]
