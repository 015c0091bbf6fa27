"""Will a run fit in memory? An estimate from the config alone, before anything is allocated or written.

    bytes ≈ 4·P·s              parameters, gradients and two optimizer states (P numbers of s bytes)
          + b·(a + w)·s        one micro-batch of b examples: what the backward pass keeps (a a example), the batch
          + f·s                numbers the model holds whatever the batch (a per-replica gradient)
          + max(b, 256)·a·s    one chunk of the eval probe's forward pass
          + E·w·8              the held-out examples the eval probe keeps (E = probes.eval_examples)
          + D·8                the dataset's own tables (a Zipf table, a corpus)

The sizes come from the schemas (`ModelSpec.footprint`, `DatasetSpec.held_numbers`); a model named by
import path has no footprint, and only the data's terms are counted. The estimate aims at the order
of magnitude: it refuses a vocabulary of 10⁹ or a batch of 10¹², not a run at 90 % of memory. A run
whose estimate exceeds the memory this machine has available is refused with one line naming the
field furthest above its default; `training.check_memory: false` tries anyway. Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from optlab.config import ExperimentConfig
from optlab.errors import ConfigError

EVAL_CHUNK = 256  # examples per forward pass of the eval probe (at least; train.build's evaluate)


@dataclass
class Term:
    what: str
    bytes: float
    fields: list[str]  # the config keys this term grows with


def estimate(config: ExperimentConfig) -> list[Term]:
    """The terms of the estimate above, in bytes."""
    size = 8 if config.training.dtype == "float64" else 4
    _, micro_batch = config.training.accumulation()
    model, data = _sized_fields("model", config.model), _sized_fields("data", config.data)
    terms = [Term("dataset tables", 8 * config.data.held_numbers(), data)]
    footprint = config.model.footprint(config.data)
    if footprint is None:
        return terms
    batch_fields = ["training.batch_size"] if micro_batch == config.training.batch_size else []
    eval_examples = config.probes.eval_examples
    return terms + [
        Term("parameters and optimizer state", 4 * footprint.parameters * size, model + data),
        Term(f"a micro-batch of {micro_batch}", (micro_batch * (footprint.per_example + footprint.example_size)
                                                 + footprint.fixed) * size, batch_fields + model + data),
        Term("the eval probe", (max(micro_batch, EVAL_CHUNK) * footprint.per_example * size if eval_examples else 0)
             + eval_examples * footprint.example_size * 8, ["probes.eval_examples"] + model + data),
    ]


def available_bytes() -> int:
    """Memory available to a new process: MemAvailable of /proc/meminfo, else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 1 << 62  # unknown: refuse nothing


def check_memory(config: ExperimentConfig, source: str = "<config>") -> None:
    """Refuse, in one line, a run whose estimate exceeds the available memory (unless training.check_memory
    is off)."""
    if not config.training.check_memory:
        return
    terms = estimate(config)
    needed, available = sum(term.bytes for term in terms), available_bytes()
    if needed <= available:
        return
    largest = max(terms, key=lambda term: term.bytes)
    field = max(largest.fields, key=lambda key: _above_default(config, key), default="training.batch_size")
    parts = ", ".join(f"{term.what} {readable(term.bytes)}" for term in terms if term.bytes)
    raise ConfigError(f"{source}: {field}: the run needs about {readable(needed)} of memory ({parts}), more than the "
                      f"{readable(available)} available here; lower {field}, or set training.check_memory=false to try anyway")


def _sized_fields(section: str, spec) -> list[str]:
    """The integer fields of a component section (the sizes: vocab_size, embedding_dim, n_layer...)."""
    return [f"{section}.{name}" for name, field in type(spec).model_fields.items()
            if isinstance(field.default, int) and not isinstance(field.default, bool)]


def _above_default(config: ExperimentConfig, key: str) -> float:
    """How many times its default a size field is (the likeliest culprit is furthest above it)."""
    section, name = key.split(".")
    spec = getattr(config, section)
    return getattr(spec, name) / max(type(spec).model_fields[name].default or 0, 1)


def readable(count: float) -> str:
    """Bytes in decimal units: 12 B, 3.4 MB, 1.2e+03 PB."""
    units = ("B", "KB", "MB", "GB", "TB", "PB")
    power = 0
    while count >= 1000 and power < len(units) - 1:
        count, power = count / 1000, power + 1
    return f"{count:.3g} {units[power]}"
