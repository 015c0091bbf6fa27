"""`eval_loss`: the mean loss over the fixed held-out examples of `probes.eval_examples` (drawn once at
the start from the dataset's `val` split: the same examples at every probe step, whatever the batch size)."""

from __future__ import annotations

from optlab.probes.probe import Probe, ProbeContext


class EvalLossProbe(Probe):
    name = "eval_loss"

    def __init__(self, context: ProbeContext):
        self.context = context

    def at_start(self) -> dict:
        return {"eval_loss": self.context.evaluate(self.context.eval_windows)}  # L_init of Exp D

    def measure(self, step: int, row: dict) -> dict:
        return {"eval_loss": self.context.evaluate(self.context.eval_windows)}
