"""The probe interface. The loop calls every probe's hooks at fixed points of a step and logs what
`measure` returns in the step's row of metrics.csv.

When each hook runs (probe steps: every `probes.every` steps, the first and the last):

    at_start()            once, at θ_0 of a new run: metrics for summary.json's `initial_metrics`
    before_step(step)     probe steps, before the forward pass (e.g. snapshot the parameters)
    on_batch(step, batch) every micro-batch of every step, with the training batch, before the optimizer
                          steps (cheap work only: it runs on every step)
    after_backward(batch) probe steps, once the step's gradient exists, before clipping and the step
    after_step(step)      every step, after the optimizer step and the lr schedule
    measure(step, row)    probe steps, after the step; returns {metric: value} (the row so far is given)
    at_end(run_dir)       once, when the run completed or diverged (e.g. write a final array)

A probe reads the run through `ProbeContext`; its own state (running averages, levels reached) goes
into checkpoints through state_dict / load_state_dict, so a resumed run measures exactly like an
uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class ProbeContext:
    """What probes may read of a run: the config, the model (its `forward` may be compiled) and its
    capabilities (optlab/models), the dataset, the optimizers, the named parameters and their kinds,
    `evaluate(windows) -> mean loss` without gradients, and the held-out examples."""

    config: Any
    model: Any
    forward: Callable
    capabilities: Any
    data: Any
    optimizers: list
    parameters: dict
    kinds: dict
    parameter_count: int
    micro_batches: int
    absorbing: bool  # an optimizer folds the micro-batches into its state: no summed gradient exists
    evaluate: Callable
    eval_windows: Any  # the fixed held-out examples of probes.eval_examples (None: no eval set)
    autocast: Any
    device: Any


class Probe:
    """No-op hooks; a probe overrides those it needs."""

    name = "probe"

    def at_start(self) -> dict:
        return {}

    def before_step(self, step: int) -> None:
        pass

    def on_batch(self, step: int, batch) -> None:
        pass

    def after_backward(self, batch) -> None:
        pass

    def after_step(self, step: int) -> None:
        pass

    def measure(self, step: int, row: dict) -> dict:
        return {}

    def at_end(self, run_dir: Path) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Probes:
    """The probes of a run, called in order (a later probe may read what an earlier one put in the row)."""

    def __init__(self, probes: list[Probe]):
        self.probes = probes
        self.batch_watchers = [probe for probe in probes if type(probe).on_batch is not Probe.on_batch]
        self.step_watchers = [probe for probe in probes if type(probe).after_step is not Probe.after_step]

    def at_start(self) -> dict:
        metrics: dict = {}
        for probe in self.probes:
            metrics.update(probe.at_start())
        return metrics

    def before_step(self, step: int) -> None:
        for probe in self.probes:
            probe.before_step(step)

    def on_batch(self, step: int, batch) -> None:
        for probe in self.batch_watchers:  # usually none: the loop pays nothing for this hook
            probe.on_batch(step, batch)

    def after_backward(self, batch) -> None:
        for probe in self.probes:
            probe.after_backward(batch)

    def after_step(self, step: int) -> None:
        for probe in self.step_watchers:  # called at every step: only the probes that use it
            probe.after_step(step)

    def measure(self, step: int, row: dict) -> dict:
        for probe in self.probes:
            row.update(probe.measure(step, row))
        return row

    def at_end(self, run_dir: Path) -> None:
        for probe in self.probes:
            probe.at_end(run_dir)

    def state_dict(self) -> dict:
        return {probe.name: probe.state_dict() for probe in self.probes}

    def load_state_dict(self, state: dict) -> None:
        for probe in self.probes:
            probe.load_state_dict(state.get(probe.name, {}))
