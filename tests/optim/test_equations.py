"""Optimizer updates against the equations of docs/science/optimizers.md, step by step."""

from types import SimpleNamespace

import copy
import pytest
import torch

from optlab.optim.groups import install_lazy_rows
from optlab.optim.lion import Lion
from optlab.optim.tiger import Tiger
from tests.helpers import gradient_sequence, run_optimizer

@pytest.mark.parametrize("lr,betas,weight_decay", [(1e-2, (0.9, 0.99), 0.0), (3e-3, (0.95, 0.98), 0.5), (1e-1, (0.5, 0.9), 2.0)])
def test_lion_matches_reference_equations(lr, betas, weight_decay):
    theta0 = torch.randn(5, 7)
    grads = gradient_sequence(theta0.shape)
    theta, momentum = theta0.clone(), torch.zeros_like(theta0)
    beta1, beta2 = betas
    for g in grads:
        theta = theta * (1 - lr * weight_decay)
        theta = theta - lr * torch.sign(beta1 * momentum + (1 - beta1) * g)
        momentum = beta2 * momentum + (1 - beta2) * g
    ours, optimizer = run_optimizer(Lion, theta0, grads, lr=lr, betas=betas, weight_decay=weight_decay)
    torch.testing.assert_close(ours, theta, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(optimizer.state[optimizer.param_groups[0]["params"][0]]["momentum"], momentum)


@pytest.mark.parametrize("lr,beta,weight_decay", [(1e-2, 0.965, 0.01), (5e-3, 0.9, 1.0), (2e-2, 0.99, 0.0)])
def test_basic_tiger_matches_reference_equations(lr, beta, weight_decay):
    theta0 = torch.randn(4, 6)
    grads = gradient_sequence(theta0.shape)
    theta, momentum = theta0.clone(), torch.zeros_like(theta0)
    for g in grads:
        momentum = beta * momentum + (1 - beta) * g
        theta = theta - lr * (torch.sign(momentum) + weight_decay * theta)
    ours, _ = run_optimizer(Tiger, theta0, grads, lr=lr, beta=beta, weight_decay=weight_decay, parameter_scaling=False)
    torch.testing.assert_close(ours, theta, rtol=1e-6, atol=1e-7)


def test_basic_tiger_equals_lion_with_equal_betas():
    theta0 = torch.randn(8, 3)
    grads = gradient_sequence(theta0.shape, steps=10)
    tiger, _ = run_optimizer(Tiger, theta0, grads, lr=1e-2, beta=0.9, weight_decay=0.3, parameter_scaling=False)
    lion, _ = run_optimizer(Lion, theta0, grads, lr=1e-2, betas=(0.9, 0.9), weight_decay=0.3)
    torch.testing.assert_close(tiger, lion, rtol=1e-6, atol=1e-7)  # same maths, different rounding order


def test_zero_gradient_with_fresh_state_gives_decay_only():
    theta0 = torch.randn(3, 3)
    for optimizer_class, kwargs in [(Lion, dict(betas=(0.9, 0.99))), (Tiger, dict(parameter_scaling=False))]:
        ours, _ = run_optimizer(optimizer_class, theta0, [torch.zeros(3, 3)], lr=0.1, weight_decay=0.5, **kwargs)
        torch.testing.assert_close(ours, theta0 * (1 - 0.1 * 0.5))


def test_grad_none_skips_parameter_entirely():
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = Tiger([param], lr=0.1, weight_decay=1.0, parameter_scaling=False)
    before = param.detach().clone()
    optimizer.step()
    assert torch.equal(param.detach(), before) and len(optimizer.state) == 0


def test_tiger_per_parameter_scaling_rules():
    """§2.3: bias 0.5·α and no decay; matrix α·RMS(θ); embedding α·RMS of each row."""
    alpha, beta, decay = 1e-2, 0.9, 0.1
    matrix, bias, embedding = torch.randn(4, 5), torch.randn(5), torch.randn(6, 3) * torch.arange(1, 7).unsqueeze(1)
    g_matrix, g_bias, g_embedding = torch.randn(4, 5), torch.randn(5), torch.randn(6, 3)
    params = [torch.nn.Parameter(t.clone()) for t in (matrix, bias, embedding)]
    groups = [{"params": [params[0]], "kind": "matrix"}, {"params": [params[1]], "kind": "bias"},
              {"params": [params[2]], "kind": "embedding"}]
    optimizer = Tiger(groups, lr=alpha, beta=beta, weight_decay=decay)
    for param, grad in zip(params, (g_matrix, g_bias, g_embedding)):
        param.grad = grad
    optimizer.step()
    m = lambda g: (1 - beta) * g  # noqa: E731  (first step from zero momentum)
    expected_matrix = matrix - alpha * matrix.pow(2).mean().sqrt() * (torch.sign(m(g_matrix)) + decay * matrix)
    expected_bias = bias - 0.5 * alpha * torch.sign(m(g_bias))
    row_rms = embedding.pow(2).mean(dim=1, keepdim=True).sqrt()
    expected_embedding = embedding - alpha * row_rms * (torch.sign(m(g_embedding)) + decay * embedding)
    for param, expected in zip(params, (expected_matrix, expected_bias, expected_embedding)):
        torch.testing.assert_close(param.detach(), expected, rtol=1e-6, atol=1e-7)


def test_tiger_zero_initialised_matrix_moves_with_floored_scale():
    param = torch.nn.Parameter(torch.zeros(3, 16))
    optimizer = Tiger([{"params": [param], "kind": "matrix"}], lr=1e-2)
    param.grad = torch.ones(3, 16)
    with pytest.warns(UserWarning, match="RMS 0"):
        optimizer.step()
    torch.testing.assert_close(param.detach(), torch.full((3, 16), -1e-2 * (1 / 16) ** 0.5))


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_tiger_nan_guard_keeps_momentum_and_shrinks(poison):
    weight, gain = torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(4) + 1)
    optimizer = Tiger([{"params": [weight], "kind": "matrix"}, {"params": [gain], "kind": "norm"}], lr=1e-2, shrink_ratio=0.99)
    weight.grad, gain.grad = torch.randn(3, 4), torch.randn(4)
    optimizer.step()
    momenta = [optimizer.state[p]["momentum"].clone() for p in (weight, gain)]
    before = [p.detach().clone() for p in (weight, gain)]
    weight.grad, gain.grad = torch.randn(3, 4), torch.randn(4)
    weight.grad[1, 2] = poison
    gain.grad[0] = poison
    optimizer.step()
    assert torch.equal(optimizer.state[weight]["momentum"], momenta[0])
    assert torch.equal(optimizer.state[gain]["momentum"], momenta[1])
    torch.testing.assert_close(weight.detach(), before[0] * 0.99)
    torch.testing.assert_close(gain.detach(), (before[1] - 1) * 0.99 + 1)
    weight.grad, gain.grad = torch.randn(3, 4), torch.randn(4)
    optimizer.step()  # training continues normally
    assert torch.isfinite(weight).all() and not torch.equal(optimizer.state[weight]["momentum"], momenta[0])


def five_kind_model():
    """A tensor of every kind Tiger has a rule for, with gradients; returns (params, groups)."""
    generator = torch.Generator().manual_seed(3)
    shapes = {"embedding": (6, 4), "matrix": (4, 4), "head": (5, 4), "bias": (4,), "norm": (4,)}
    params = {kind: torch.nn.Parameter(torch.randn(shape, generator=generator) + (kind == "norm"))
              for kind, shape in shapes.items()}
    return params, [{"params": [param], "kind": kind} for kind, param in params.items()]


def step_with_gradients(optimizer, params, steps, poison_at=(), seed=4):
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for kind, param in params.items():
            param.grad = torch.randn(param.shape, generator=generator)
            if step in poison_at and kind in ("matrix", "norm"):
                param.grad.view(-1)[0] = float("nan")
        optimizer.step()


@pytest.mark.parametrize("poison_at", [(), (2,)])
def test_tiger_guard_as_a_device_mask_reads_nothing_back_and_equals_the_host_path(monkeypatch, poison_at):
    """On an accelerator the guard is a mask (no host sync): forced on CPU, it must give the same steps as the
    host path, with and without a flagged step, without reading a value back (item/tolist/bool)."""
    results = []
    for on_device in (False, True):
        params, groups = five_kind_model()
        optimizer = Tiger(groups, lr=1e-2, weight_decay=0.1, shrink_ratio=0.9)
        step_with_gradients(optimizer, params, steps=1, seed=5)  # the first step builds the plan (reads θ_0 once)
        if on_device:
            monkeypatch.setattr("optlab.optim.tiger.flags_are_free_to_read", lambda device: False)
            for name in ("item", "tolist", "__bool__"):
                monkeypatch.setattr(torch.Tensor, name, lambda *args: pytest.fail("the mask read a value back"))
        step_with_gradients(optimizer, params, steps=4, poison_at=poison_at)
        monkeypatch.undo()
        results.append({kind: (p.detach().clone(), optimizer.state[p]["momentum"].clone()) for kind, p in params.items()})
    for kind in results[0]:
        for host, device in zip(results[0][kind], results[1][kind]):
            torch.testing.assert_close(device, host, rtol=1e-6, atol=1e-7, msg=kind)


def test_tiger_steps_all_groups_together_as_if_each_had_its_own_optimizer():
    """One pass over every kind equals one Tiger per kind (the per-kind rules are per-tensor step sizes)."""
    together, groups = five_kind_model()
    step_with_gradients(Tiger(groups, lr=1e-2, weight_decay=0.1), together, steps=3)
    separate, groups = five_kind_model()
    optimizers = [Tiger([group], lr=1e-2, weight_decay=0.1) for group in groups]
    step_with_gradients(SimpleNamespace(step=lambda: [o.step() for o in optimizers]), separate, steps=3)
    for kind in together:
        torch.testing.assert_close(together[kind].detach(), separate[kind].detach(), rtol=0, atol=0)


def test_drift_fixed_point_closed_form():
    """docs/science/embedding-drift.md §3: constant sign(m) = s, θ_t + s/λ = (1 − ηλ)^t (θ_0 + s/λ), |θ| → 1/λ."""
    lr, decay, steps = 1e-2, 1.0, 400
    param = torch.nn.Parameter(torch.full((1, 4), 0.01))
    optimizer = Tiger([param], lr=lr, beta=0.965, weight_decay=decay, parameter_scaling=False)
    param.grad = torch.full((1, 4), -1e-3)  # one occurrence: momentum negative, sign(m) = -1 forever after
    optimizer.step()
    theta1 = param.detach().clone()
    param.grad = torch.zeros(1, 4)
    for _ in range(steps):
        optimizer.step()
    sign = -1.0
    expected = (1 - lr * decay) ** steps * (theta1 + sign / decay) - sign / decay
    torch.testing.assert_close(param.detach(), expected, rtol=1e-5, atol=1e-6)
    assert (optimizer.state[param]["momentum"] != 0).all(), "fp32 denormals keep the stale momentum non-zero"


@pytest.mark.parametrize("make", [
    lambda p: Tiger(p, lr=1e-2, weight_decay=0.5, parameter_scaling=False),
    lambda p: Lion(p, lr=1e-2, weight_decay=0.5),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.5),
])
def test_lazy_rows_leave_idle_rows_untouched(make):
    """Fix (a): rows with an all-zero gradient get no decay, no momentum change and no move."""
    torch.manual_seed(0)
    lazy = torch.nn.Parameter(torch.randn(6, 3))
    dense = torch.nn.Parameter(lazy.detach().clone())
    lazy_optimizer = make([{"params": [lazy], "lazy_rows": True}])
    install_lazy_rows(lazy_optimizer)
    dense_optimizer = make([dense])
    active_first, active_second = [0, 1, 4], [1, 2]
    for active in (active_first, active_second):
        grad = torch.zeros(6, 3)
        grad[active] = torch.randn(len(active), 3)
        lazy.grad, dense.grad = grad.clone(), grad.clone()
        before = lazy.detach().clone()
        state_before = {k: v.clone() for k, v in lazy_optimizer.state[lazy].items() if torch.is_tensor(v) and v.ndim == 2}
        lazy_optimizer.step()
        dense_optimizer.step()
        idle = [row for row in range(6) if row not in active]
        assert torch.equal(lazy.detach()[idle], before[idle])
        for key, value in lazy_optimizer.state[lazy].items():
            if torch.is_tensor(value) and value.ndim == 2:
                previous = state_before.get(key, torch.zeros_like(value))
                assert torch.equal(value[idle], previous[idle]), key
    # rows active in both steps match the non-lazy optimizer exactly
    assert torch.equal(lazy.detach()[1], dense.detach()[1])


def test_works_with_lr_scheduler():
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = Tiger([param], lr=0.1, weight_decay=0.0, parameter_scaling=False)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    for expected_lr in (0.1, 0.05, 0.025):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected_lr)
        param.grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
    torch.testing.assert_close(param.detach(), torch.full((2,), 1 - 0.175))


def test_state_is_float32_for_bfloat16_parameters():
    param = torch.nn.Parameter(torch.randn(3, 3).bfloat16())
    optimizer = Lion([param], lr=1e-2)
    param.grad = torch.randn(3, 3).bfloat16()
    optimizer.step()
    assert optimizer.state[param]["momentum"].dtype == torch.float32 and param.dtype == torch.bfloat16


def test_tiger_reloading_a_state_into_the_same_optimizer_steps_from_the_reloaded_momenta():
    """Tiger keeps its tensors in a step plan between steps; load_state_dict must replace the plan's momenta."""
    params, groups = five_kind_model()
    optimizer = Tiger(groups, lr=1e-2, weight_decay=0.1)
    step_with_gradients(optimizer, params, steps=2)
    saved = copy.deepcopy(optimizer.state_dict())
    weights = {kind: p.detach().clone() for kind, p in params.items()}
    step_with_gradients(optimizer, params, steps=2, seed=7)
    expected = {kind: p.detach().clone() for kind, p in params.items()}
    with torch.no_grad():
        for kind, p in params.items():
            p.copy_(weights[kind])
    optimizer.load_state_dict(saved)
    step_with_gradients(optimizer, params, steps=2, seed=7)
    for kind, p in params.items():
        torch.testing.assert_close(p.detach(), expected[kind], rtol=0, atol=0, msg=kind)


def test_tiger_fused_update_equals_the_eager_path_guard_and_scales_included():
    """The compiled update (guard and RMS scales inside one fused pass per tensor) against the eager path, on
    every kind, accumulating 2 micro-batches, through flagged steps at a cycle's start and inside a cycle."""
    results = []
    for is_compiled in (False, True):
        params, groups = five_kind_model()
        optimizer = Tiger(groups, lr=1e-2, weight_decay=0.1, shrink_ratio=0.9, accumulation_steps=2, compiled=is_compiled)
        step_with_gradients(optimizer, params, steps=8, poison_at=(2, 5))
        results.append({kind: (p.detach().clone(), optimizer.state[p]["momentum"].clone()) for kind, p in params.items()})
    for kind in results[0]:
        for eager, fused in zip(results[0][kind], results[1][kind]):
            torch.testing.assert_close(fused, eager, rtol=1e-6, atol=1e-7, msg=kind)
