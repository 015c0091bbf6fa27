"""optlab builds torch's Adam/AdamW fused wherever the kernel applies (optlab/optim/torch_adam.py): the same
update as torch's unfused path, the fused kernel chosen for floating-point CPU tensors, torch's default kept
where the kernel does not apply or the config says `fused: false`."""

import pytest
import torch

from optlab.optim.groups import build_optimizer
from optlab.optim.schema import AdamSpec, AdamWSpec


def parameters(dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator).to(dtype)) for shape in ((8, 5), (5,))]


@pytest.mark.parametrize("spec", [AdamWSpec(lr=1e-2, weight_decay=0.1), AdamSpec(lr=1e-2, weight_decay=0.1)])
def test_the_default_is_fused_and_steps_like_torchs_unfused_path(spec):
    fused_params, plain_params = parameters(), parameters()
    fused = build_optimizer(spec, [{"params": fused_params}])
    plain = build_optimizer(spec.model_copy(update={"fused": False}), [{"params": plain_params}])
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        grads = [torch.randn(p.shape, generator=generator) for p in fused_params]
        for params, optimizer in ((fused_params, fused), (plain_params, plain)):
            for param, grad in zip(params, grads):
                param.grad = grad.clone()
            optimizer.step()
    for one, other in zip(fused_params, plain_params):
        torch.testing.assert_close(one.detach(), other.detach(), rtol=1e-6, atol=1e-6)


def test_parameters_without_a_fused_kernel_keep_torchs_default():
    complex_param = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.complex64))
    optimizer = build_optimizer(AdamWSpec(lr=1e-2), [{"params": [complex_param]}])
    assert not optimizer.defaults["fused"]
    complex_param.grad = torch.ones_like(complex_param)
    before = complex_param.detach().clone()
    optimizer.step()
    assert not torch.equal(complex_param.detach(), before)
