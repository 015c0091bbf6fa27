"""The conformance suite: every optimizer the registry knows (optlab/optim/schema.py, BUILTIN_OPTIMIZERS),
built with its defaults, against the torch.optim contract — closure, groups without gradients, None and
zero gradients, sparse gradients (supported or refused clearly), bf16/fp16 parameters, a mid-run
state_dict round trip, lr schedulers, invalid hyper-parameters, complex parameters, and the fast path
against the readable one. A new optimizer is covered the day its spec is listed."""

import copy
import inspect
import math

import pytest
import torch

from optlab.optim.schema import BUILTIN_OPTIMIZERS

NAMES = [spec.model_fields["name"].default for spec in BUILTIN_OPTIMIZERS]
SPECS = dict(zip(NAMES, BUILTIN_OPTIMIZERS))
SHAPE = (6, 4)  # a matrix: Muon takes nothing else


def make(name, params, **overrides):
    spec = SPECS[name]()
    return spec.factory()(params, **{**spec.keywords(), **overrides})


def parameters_of(name):
    return set(inspect.signature(SPECS[name]().factory()).parameters)


def quadratic_loss(param, target):
    return ((param.float() - target) ** 2).mean()


def train_steps(optimizer, param, target, steps, scheduler=None):
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = quadratic_loss(param, target)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", NAMES)
def test_step_with_a_closure_returns_its_loss_and_moves(name):
    param = torch.nn.Parameter(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    target, before = torch.zeros(SHAPE), param.detach().clone()
    optimizer = make(name, [param])

    def closure():
        optimizer.zero_grad()
        loss = quadratic_loss(param, target)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert torch.is_tensor(loss) and math.isfinite(loss.item())
    assert not torch.equal(param.detach(), before)


@pytest.mark.parametrize("name", NAMES)
def test_a_group_without_gradients_is_skipped(name):
    """A frozen or unused part of a model: its group has no gradient this step."""
    moving, frozen = (torch.nn.Parameter(torch.randn(SHAPE)) for _ in range(2))
    optimizer = make(name, [{"params": [moving]}, {"params": [frozen]}])
    before = frozen.detach().clone()
    moving.grad = torch.randn(SHAPE)
    optimizer.step()
    assert torch.equal(frozen.detach(), before) and len(optimizer.state[frozen]) == 0


@pytest.mark.parametrize("name", NAMES)
def test_none_gradient_is_skipped_and_a_zero_gradient_is_a_step(name):
    skipped, zero = (torch.nn.Parameter(torch.randn(SHAPE)) for _ in range(2))
    optimizer = make(name, [skipped, zero])
    before = skipped.detach().clone()
    zero.grad = torch.zeros(SHAPE)
    optimizer.step()
    assert torch.equal(skipped.detach(), before) and len(optimizer.state[skipped]) == 0
    assert torch.isfinite(zero).all()


@pytest.mark.parametrize("name", NAMES)
def test_sparse_gradients_are_supported_or_refused_clearly(name):
    embedding = torch.nn.Embedding(10, 4, sparse=True)
    optimizer = make(name, embedding.parameters())
    embedding(torch.tensor([1, 3])).sum().backward()
    try:
        optimizer.step()
    except (RuntimeError, ValueError) as error:
        assert "sparse" in str(error).lower(), error
    else:
        assert torch.isfinite(embedding.weight).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_parameters_train(name, dtype):
    generator = torch.Generator().manual_seed(1)
    param = torch.nn.Parameter((torch.randn(SHAPE, generator=generator) * 2).to(dtype))
    target = torch.randn(SHAPE, generator=generator) * 0.5
    optimizer = make(name, [param], lr=1e-2)
    losses = train_steps(optimizer, param, target, 30)
    assert param.dtype == dtype and torch.isfinite(param.float()).all()
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_mid_run_continues_bit_identically(name):
    generator = torch.Generator().manual_seed(2)
    grads = [torch.randn(SHAPE, generator=generator) for _ in range(8)]
    grads[2] = torch.zeros(SHAPE)
    param = torch.nn.Parameter(torch.randn(SHAPE, generator=generator))
    optimizer = make(name, [param])
    for grad in grads[:4]:
        param.grad = grad.clone()
        optimizer.step()
    resumed_param = torch.nn.Parameter(param.detach().clone())
    resumed = make(name, [resumed_param])
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    for grad in grads[4:]:
        param.grad, resumed_param.grad = grad.clone(), grad.clone()
        optimizer.step()
        resumed.step()
    assert torch.equal(param.detach(), resumed_param.detach())


@pytest.mark.parametrize("schedule", ["lambda", "one_cycle"])
@pytest.mark.parametrize("name", NAMES)
def test_lr_schedulers_drive_the_lr(name, schedule):
    param = torch.nn.Parameter(torch.randn(SHAPE))
    optimizer = make(name, [param], lr=1e-2)
    scheduler = (torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step)) if schedule == "lambda" else
                 torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=20, cycle_momentum=False))
    for _ in range(10):
        train_steps(optimizer, param, torch.zeros(SHAPE), 1, scheduler)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(scheduler.get_last_lr()[0])
    assert torch.isfinite(param).all()


@pytest.mark.parametrize("name", NAMES)
def test_one_cycle_momentum_cycling_drives_the_momentum(name):
    """OneCycleLR's default `cycle_momentum` writes group["betas"][0] or group["momentum"]; an optimizer
    with a momentum must accept it and step exactly as if built with that value (SignSGD has none: refused
    by torch, as for any optimizer without one)."""
    param = torch.nn.Parameter(torch.randn(SHAPE))
    optimizer = make(name, [param], lr=1e-2)
    if name == "signsgd":
        with pytest.raises(ValueError, match="momentum"):
            torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=20)
        return
    torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=20, base_momentum=0.5, max_momentum=0.5)
    group = optimizer.param_groups[0]
    if "momentum" in optimizer.defaults:
        keyword = {"momentum": 0.5}
    else:
        keyword = {"beta": 0.5} if "beta" in parameters_of(name) else {"betas": (0.5, *group["betas"][1:])}
    twin = torch.nn.Parameter(param.detach().clone())
    fixed = make(name, [twin], lr=group["lr"], **keyword)
    for step in range(3):
        grad = torch.randn(SHAPE, generator=torch.Generator().manual_seed(step))
        param.grad, twin.grad = grad.clone(), grad.clone()
        optimizer.step()
        fixed.step()
    assert torch.equal(param.detach(), twin.detach())


INVALID = {"lr": -1e-3, "weight_decay": -0.1, "betas": (0.9, 1.5), "beta": 1.5, "momentum": -0.5, "eps": -1.0,
           "accumulation_steps": 0, "update_every": 0, "shrink_ratio": 0.0, "decay_speed": -1.0, "ns_steps": 0,
           "finetune_rate": 0.0, "initial_b": -1.0, "clip_value": -1.0, "scale": "huge", "state_shape": "cubic"}
NAMED_AS = {"lr": ("lr", "learning rate"), "betas": ("beta",)}


@pytest.mark.parametrize("name,keyword", [(name, keyword) for name in NAMES for keyword in INVALID
                                          if keyword in parameters_of(name)])
def test_invalid_hyperparameters_raise_value_error_naming_the_argument(name, keyword):
    with pytest.raises(ValueError) as raised:
        make(name, [torch.nn.Parameter(torch.randn(SHAPE))], **{keyword: INVALID[keyword]})
    assert any(word in str(raised.value) for word in NAMED_AS.get(keyword, (keyword,))), raised.value


@pytest.mark.parametrize("name", NAMES)
def test_complex_parameters_are_optimized_or_refused_clearly(name):
    param = torch.nn.Parameter(torch.randn(SHAPE, dtype=torch.complex64))
    try:
        optimizer = make(name, [param])
    except ValueError as error:
        assert "complex" in str(error), error
        return
    before = param.detach().clone()
    param.grad = torch.full(SHAPE, 1 + 1j, dtype=torch.complex64)
    optimizer.step()
    assert not torch.equal(param.detach().imag, before.imag), "the imaginary part of the gradient was dropped"


FAST = [(name, kind) for name in NAMES if "compiled" in parameters_of(name)
        for kind in (("matrix", "embedding") if "parameter_scaling" in parameters_of(name) else ("matrix",))]


@pytest.mark.parametrize("name,kind", FAST)
def test_the_compiled_fast_path_equals_the_readable_path(name, kind):
    """A changing lr must not break (or recompile) the compiled update."""
    shapes = [SHAPE, (4,)]
    pairs = []
    for is_compiled in (False, True):
        params = [torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(i))) for i, s in enumerate(shapes)]
        groups = [{"params": params[:1], "kind": kind}, {"params": params[1:], "kind": "bias"}]
        optimizer = make(name, groups, compiled=is_compiled, lr=1e-2, weight_decay=0.1)
        pairs.append((params, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))))
    for _ in range(4):
        grads = [torch.randn(s) for s in shapes]
        for params, optimizer, scheduler in pairs:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
            scheduler.step()
    for eager, fused in zip(pairs[0][0], pairs[1][0]):
        torch.testing.assert_close(fused.detach(), eager.detach(), rtol=1e-6, atol=1e-7)


COMPILABLE = [name for name in NAMES if "compiled" in parameters_of(name)]


@pytest.mark.parametrize("name", COMPILABLE)
def test_compiles_by_default_only_where_the_run_is_long_enough_to_pay_for_it(name):
    """`compiled: null`: compile on CPU when parameters × steps ≥ COMPILE_PAYS_AT; an explicit value stays."""
    from optlab.optim.schema import COMPILE_PAYS_AT

    auto = SPECS[name]()
    assert auto.compiled is None
    assert auto.for_run(10**6, int(COMPILE_PAYS_AT / 10**6), "cpu").compiled is True
    assert auto.for_run(10**6, int(COMPILE_PAYS_AT / 10**6) - 1, "cpu").compiled is False
    assert auto.for_run(10**9, 10**6, "cuda").compiled is False
    assert SPECS[name](compiled=False).for_run(10**9, 10**6, "cpu").compiled is False
    assert SPECS[name](compiled=True).for_run(10, 10, "cpu").compiled is True


def test_every_sign_optimizer_can_compile():
    assert set(COMPILABLE) == {"lion", "tiger", "signum", "signsgd"}


@pytest.mark.parametrize("name", COMPILABLE)
def test_a_tiny_run_stays_eager(make_config, name):
    from optlab.optim.groups import build_optimizers
    from optlab.models import build_model
    from optlab.data import build_dataset

    config = make_config(optimizer={"name": name}, training={"steps": 50, "batch_size": 4})
    data = build_dataset(config.data, 0)
    (optimizer,) = build_optimizers(build_model(config.model, data), config)
    assert all(group["compiled"] is False for group in optimizer.param_groups)


@pytest.mark.parametrize("name", COMPILABLE)
def test_a_failed_compile_falls_back_to_the_eager_update_with_a_warning(monkeypatch, name):
    """The step whose compile fails, and every step after it, equal the eager optimizer's."""
    import optlab.optim._common as common

    def failing_compile(function, **options):
        def run(*args, **kwargs):
            raise torch._dynamo.exc.BackendCompilerFailed(lambda: None, RuntimeError("no C++ compiler"), None)
        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    monkeypatch.setattr(common, "_compiled", {})
    results = []
    for is_compiled in (False, True):
        param = torch.nn.Parameter(torch.ones(3, 2))
        optimizer = make(name, [param], compiled=is_compiled, lr=1e-2, weight_decay=0.1)
        for step in range(3):
            param.grad = torch.full((3, 2), 0.5 - step)
            if is_compiled and step == 0:
                with pytest.warns(UserWarning, match="torch.compile of .*update_ failed.*using the eager update"):
                    optimizer.step()
            else:
                optimizer.step()
        results.append(param.detach().clone())
    torch.testing.assert_close(results[1], results[0], rtol=1e-6, atol=1e-7)
