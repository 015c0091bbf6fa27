"""The one list of probes a config can switch on (`probes:` in probes/schema.py), in the order their
metrics enter a row."""

from __future__ import annotations

from optlab.probes.curvature import AdamCurvatureProbe
from optlab.probes.embedding import EmbeddingProbe
from optlab.probes.eval_loss import EvalLossProbe
from optlab.probes.exact import ExactMetricsProbe
from optlab.probes.first_order import LossChangeProbe
from optlab.probes.noise_scale import NoiseScaleProbe
from optlab.probes.optimizer import OptimizerProbe
from optlab.probes.probe import Probe, ProbeContext, Probes
from optlab.probes.sampled_noise_scale import SampledNoiseScaleProbe
from optlab.probes.updates import UpdateProbe


def build_probes(context: ProbeContext) -> Probes:
    """The probes `context.config.probes` switches on, in the order their metrics enter a row (eval_loss
    before the noise-scale levels that read it)."""
    settings = context.config.probes
    probes: list[Probe] = []
    if settings.updates:
        probes.append(UpdateProbe(context))
    if settings.loss_change:
        probes.append(LossChangeProbe(context))
    if context.eval_windows is not None:
        probes.append(EvalLossProbe(context))
    if settings.sampled_noise_scale is not None:
        probes.append(SampledNoiseScaleProbe(context, settings.sampled_noise_scale))
    if settings.adam_curvature:
        probes.append(AdamCurvatureProbe(context))
    probes.append(OptimizerProbe(context))
    if settings.noise_scale:
        probes.append(NoiseScaleProbe(context, settings.noise_scale_small_batch, settings.noise_scale_decay))
    if context.capabilities.exact_metrics is not None:
        probes.append(ExactMetricsProbe(context))
    if settings.embedding and EmbeddingProbe.applies(context):
        probes.append(EmbeddingProbe(context))
    return Probes(probes)
