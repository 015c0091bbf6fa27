"""The numbers a model knows exactly (`exact_metrics()` of the model protocol, optlab/models): the
population loss of the quadratics and of linear regression, and its exact noise scales; at θ_0 and at
every probe step."""

from __future__ import annotations

from optlab.probes.probe import Probe, ProbeContext


class ExactMetricsProbe(Probe):
    name = "exact_metrics"

    def __init__(self, context: ProbeContext):
        self.exact_metrics = context.capabilities.exact_metrics

    def at_start(self) -> dict:
        return self.exact_metrics()

    def measure(self, step: int, row: dict) -> dict:
        return self.exact_metrics()
