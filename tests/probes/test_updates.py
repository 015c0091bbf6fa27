"""The updates probe (optlab/probes/updates.py): update_weight_cosine is the cosine between the step without its
decoupled decay and the weights, exactly, for a decoupled-decay optimizer."""

import pytest
import torch

from optlab.optim.signsgd import SignSGD
from optlab.probes.updates import parameter_lrs, snapshot, update_metrics


def test_update_weight_cosine_removes_the_decoupled_decay():
    generator = torch.Generator().manual_seed(0)
    matrix = torch.nn.Parameter(torch.randn(30, 20, generator=generator))
    bias = torch.nn.Parameter(torch.randn(20, generator=generator))
    parameters, kinds = {"w": matrix, "b": bias}, {"w": "matrix", "b": "bias"}
    optimizer = SignSGD([{"params": [matrix], "weight_decay": 0.5}, {"params": [bias], "weight_decay": 0.0}], lr=0.01)
    gradients = {"w": -matrix.detach() + 0.3 * torch.randn(30, 20, generator=generator), "b": torch.randn(20, generator=generator)}
    matrix.grad, bias.grad = gradients["w"].clone(), gradients["b"].clone()
    before, lrs = snapshot(parameters), parameter_lrs([optimizer])
    optimizer.step()
    metrics = update_metrics(before, parameters, kinds, lrs)
    for name, kind in kinds.items():
        step = -torch.sign(gradients[name])  # the step without its decay, θ ← θ(1 − ηλ) − η·sign(g)
        expected = (step * before[name]).sum() / (step.norm() * before[name].norm())
        assert metrics[f"update_weight_cosine.{kind}"] == pytest.approx(expected.item(), rel=1e-5)
    # a gradient pointing at −θ makes the sign steps point away from 0: the weights grow
    assert metrics["update_weight_cosine.matrix"] > 0.5
