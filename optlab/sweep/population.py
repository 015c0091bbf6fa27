"""Which trials of a sweep train together: the batches that the local and inline executors hand to
optlab/population.py. Trials with equal `ExperimentConfig.population_key` (they differ only in their
optimizer, its rules and its schedule) form a population where it pays (`pays_to_train_together`),
split so that its memory estimate stays under POPULATION_MEMORY (64 MiB), it holds at most
POPULATION_SIZE trials, and every worker gets a batch.

A population saves the per-step overhead of the runs' forward and backward passes (one vectorised
call for all) and the batch draws; it does not share what each run does alone (its optimizer step,
its probes, its evaluations), and past the caches a vectorised step over big tensors is bandwidth-bound.
Measured on 2 cores (docs/benchmarks.md §4): Exp A's linear regression (≤ 1.3·10⁵ numbers a step)
trains 3.8-6.5× faster per trial; Exp D0's 1.9×; the noisy quadratic's 4000 replicas (1.3·10⁶ numbers)
0.5-0.8×, the bag embedding model (6.4·10⁴ parameters, their gradients a step's bulk) 0.8× and the
teacher MLP, whose eval probe does 40× the work of its step, 0.9×: they are trained one by one."""

from __future__ import annotations

import math

from optlab.config import ExperimentConfig
from optlab.memory import estimate

POPULATION_MEMORY = 2**26  # bytes: the memory estimates (optlab/memory.py) of a population's runs together, at most:
# beyond the caches' reach the vectorised step is bandwidth-bound, and slower than the runs one by one
POPULATION_SIZE = 64  # runs trained together, at most
STEP_NUMBERS_THAT_PAY = 2**18  # a run whose training step touches more numbers than this is trained alone
PARAMETERS_THAT_PAY = 2**14  # a run with more parameters than this is trained alone


def step_numbers(config: ExperimentConfig) -> tuple[int, float, float] | None:
    """(parameters, numbers one training step touches, numbers the eval probe touches per step on
    average), from the model's footprint (optlab/models/schema.py); None for a model without one (named
    by import path)."""
    footprint = config.model.footprint(config.data)
    if footprint is None:
        return None
    step = (footprint.parameters + config.training.batch_size * (footprint.per_example + footprint.example_size)
            + footprint.fixed)
    return footprint.parameters, step, config.probes.eval_examples * footprint.per_example / config.probes.every


def pays_to_train_together(config: ExperimentConfig) -> bool:
    """Small models and steps, whose shared work is at least the per-run evaluation work (see the module
    docstring).
    A model named by import path has no footprint to judge by: its runs are trained one by one (a
    population of big models is slower, not faster)."""
    numbers = step_numbers(config)
    if numbers is None:
        return False
    parameters, step, evaluation = numbers
    return parameters <= PARAMETERS_THAT_PAY and step <= STEP_NUMBERS_THAT_PAY and evaluation <= step


def population_size(config: ExperimentConfig) -> int:
    """How many runs like `config` one population may hold (1: it does not pay)."""
    if not pays_to_train_together(config):
        return 1
    one_run = sum(term.bytes for term in estimate(config))
    return max(1, min(POPULATION_SIZE, int(POPULATION_MEMORY // max(one_run, 1.0))))


def trains_together(configs: list[ExperimentConfig], workers: int = 1) -> list[list[int]]:
    """The indices of `configs` in populations (lists, in the configs' order), at most
    ⌈len(configs)/workers⌉ each so that every worker gets one; a config without a population key is a
    population of one."""
    most = max(1, math.ceil(len(configs) / workers))
    groups: dict[str, list[int]] = {}
    populations = []
    for index, config in enumerate(configs):
        key = config.population_key()
        if key is None:
            populations.append([index])
        else:
            groups.setdefault(key, []).append(index)
    for members in groups.values():
        size = min(most, population_size(configs[members[0]]))
        populations += [members[start:start + size] for start in range(0, len(members), size)]
    return sorted(populations, key=lambda population: population[0])
