"""The optimizer zoo against the spec's equations, its identities and the reference packages."""

from types import SimpleNamespace

import math

import pytest
import torch

from optlab.config import validate_config
from optlab.optim.amos import Amos
from optlab.optim.groups import build_optimizers
from optlab.optim.lion import Lion
from optlab.optim.muon import Muon, newton_schulz
from optlab.optim.signsgd import SignSGD, Signum
from optlab.optim.tiger import Tiger
from tests.helpers import gradient_sequence, run_optimizer


def test_signum_equals_basic_tiger_and_lion_with_equal_betas():
    theta0 = torch.randn(6, 5)
    grads = gradient_sequence(theta0.shape, steps=8)
    signum, _ = run_optimizer(Signum, theta0, grads, lr=1e-2, beta=0.9, weight_decay=0.2)
    tiger, _ = run_optimizer(Tiger, theta0, grads, lr=1e-2, beta=0.9, weight_decay=0.2, parameter_scaling=False)
    lion, _ = run_optimizer(Lion, theta0, grads, lr=1e-2, betas=(0.9, 0.9), weight_decay=0.2)
    torch.testing.assert_close(signum, lion, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(signum, tiger, rtol=1e-6, atol=1e-7)


def test_signsgd_equals_lion_with_beta1_zero_and_adam_without_memory():
    theta0 = torch.randn(6, 5, dtype=torch.float64)
    grads = [g.double() for g in gradient_sequence(theta0.shape, steps=5, zero_steps=())]
    signsgd, optimizer = run_optimizer(SignSGD, theta0, grads, lr=1e-2, weight_decay=0.0)
    assert not optimizer.state, "SignSGD keeps no state"
    lion, _ = run_optimizer(Lion, theta0, grads, lr=1e-2, betas=(0.0, 0.99))
    adam, _ = run_optimizer(torch.optim.Adam, theta0, grads, lr=1e-2, betas=(0.0, 0.0), eps=1e-12)
    torch.testing.assert_close(signsgd, lion)
    torch.testing.assert_close(signsgd, adam, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scaling", [False, True])
def test_tiger_absorbed_accumulation_equals_standard_accumulation(scaling):
    """§2.4: Tiger(k) fed each micro-batch's g/k ≡ Tiger(1) fed the mean gradient; one state tensor."""
    k, cycles = 4, 5
    generator = torch.Generator().manual_seed(0)
    micro = [[torch.randn(5, 3, generator=generator) for _ in range(k)] for _ in range(cycles)]
    theta0 = torch.randn(5, 3)
    kwargs = dict(lr=1e-2, beta=0.9, weight_decay=0.1, parameter_scaling=scaling)
    absorbed = torch.nn.Parameter(theta0.clone())
    tiger_k = Tiger([{"params": [absorbed], "kind": "matrix"}], accumulation_steps=k, **kwargs)
    for cycle in micro:
        for g in cycle:
            absorbed.grad = g / k
            tiger_k.step()
    reference, _ = run_optimizer(Tiger, theta0, [torch.stack(c).mean(0) for c in micro], **kwargs)
    torch.testing.assert_close(absorbed.detach(), reference, rtol=1e-6, atol=1e-7)
    assert set(tiger_k.state[absorbed]) == {"momentum"}


def test_tiger_update_every_k_moves_the_momentum_every_step_and_the_parameters_every_kth():
    """Variant c of docs/science/other-effects.md §4: m ← βm + (1 − β)g at every step, θ ← θ − η·sign(m) only when k | t."""
    k, lr, beta = 4, 1e-2, 0.9
    theta0 = torch.randn(5, 3)
    grads = gradient_sequence(theta0.shape, steps=8, zero_steps=())
    param = torch.nn.Parameter(theta0.clone())
    tiger = Tiger([{"params": [param], "kind": "matrix"}], lr=lr, beta=beta, weight_decay=0.0,
                  parameter_scaling=False, update_every=k)
    theta, momentum = theta0.clone(), torch.zeros_like(theta0)
    for t, g in enumerate(grads, start=1):
        param.grad = g
        tiger.step()
        momentum = beta * momentum + (1 - beta) * g
        if t % k == 0:
            theta = theta - lr * momentum.sign()
        torch.testing.assert_close(tiger.state[param]["momentum"], momentum)
        torch.testing.assert_close(param.detach(), theta)


def test_generic_accumulation_emulation_is_close_to_but_not_exactly_true_accumulation():
    """Variant d (β̃ = 1 − (1 − β)/k every micro-step, update every k) vs e (true accumulation, Tiger's
    absorbed form): the momenta agree to first order in (1 − β) but differ, since β̃^k ≠ β."""
    k, beta = 4, 0.9
    generator = torch.Generator().manual_seed(1)
    micro = [torch.randn(6, 4, generator=generator) + 1.0 for _ in range(8 * k)]
    generic = torch.nn.Parameter(torch.zeros(6, 4))
    absorbed = torch.nn.Parameter(torch.zeros(6, 4))
    tiger_d = Tiger([generic], lr=1e-3, beta=1 - (1 - beta) / k, weight_decay=0.0, parameter_scaling=False, update_every=k)
    tiger_e = Tiger([absorbed], lr=1e-3, beta=beta, weight_decay=0.0, parameter_scaling=False, accumulation_steps=k)
    for g in micro:
        generic.grad, absorbed.grad = g, g / k
        tiger_d.step()
        tiger_e.step()
    m_d, m_e = tiger_d.state[generic]["momentum"], tiger_e.state[absorbed]["momentum"]
    relative = ((m_d - m_e).norm() / m_e.norm()).item()
    assert 1e-4 < relative < 0.1


def test_absorbed_accumulation_in_the_training_loop_matches_standard(make_config):
    """A Tiger run with grad_accum_steps=4 absorbed gives the same metrics as with a gradient buffer."""
    from optlab.train import train

    def run(absorb):
        config = make_config(
            name=f"accum/{absorb}", model={"name": "bag", "embedding_dim": 8}, data={"name": "zipf", "vocab_size": 200},
            optimizer={"name": "tiger", "lr": 1e-2, "accumulation_steps": 4 if absorb else 1},
            training={"steps": 20, "batch_size": 32, "grad_accum_steps": 4}, probes={"every": 5, "updates": False})
        return train(config, show_progress=False).summary["final"]

    absorbed, standard = run(True), run(False)
    assert absorbed["loss"] == pytest.approx(standard["loss"], rel=1e-5)
    assert absorbed["embedding.rare.rms_x_lambda"] == pytest.approx(standard["embedding.rare.rms_x_lambda"], rel=1e-4)


@pytest.mark.parametrize("training,message", [({"grad_accum_steps": 4, "grad_clip": 1.0}, "grad_clip cannot be used"),
                                              ({"grad_accum_steps": 2}, "set training.grad_accum_steps: 4")])
def test_absorbed_accumulation_needs_its_micro_batches_and_no_clipping(make_config, training, message):
    from optlab.errors import OptlabError
    from optlab.train import train

    config = make_config(model={"name": "bag", "embedding_dim": 8}, data={"name": "zipf", "vocab_size": 50},
                         optimizer={"name": "tiger", "accumulation_steps": 4}, training={"steps": 2, "batch_size": 8, **training})
    with pytest.raises(OptlabError, match=message):
        train(config, show_progress=False)


def amos_reference(theta0, grads, xi, eta, beta=0.999, zeta=0.25, reduce_rows=False, momentum=0.0):
    """docs/science/optimizers.md §5.2 written out, elementwise or with v, b per row (and the EMA of updates)."""
    theta = theta0.clone().double()
    average = torch.zeros_like(theta)
    shape = (theta.shape[0], 1) if reduce_rows else theta.shape
    v, b = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    for t, g in enumerate(grads, start=1):
        g = g.double()
        g2 = g.pow(2).mean(dim=1, keepdim=True) if reduce_rows else g.pow(2)
        v = beta * v + (1 - beta) * g2
        r = (1 - beta**t) / torch.clamp(v, min=2.0**-125)
        c = 1 / torch.sqrt(1 + zeta * math.sqrt(xi) * b)
        gamma = c * xi**2 * r * g2
        a = xi * eta
        d = 1 / (1 + zeta * math.sqrt(a) * b)
        average = momentum * average + (1 - momentum) * d * (-a * torch.sqrt(r) * g - 0.5 * gamma * theta)
        theta = theta + average
        b = b + gamma * (1 + b)
    return theta.float()


@pytest.mark.parametrize("state_shape,reduce_rows", [("full", False), ("reduced", True)])
def test_amos_matches_reference_equations(state_shape, reduce_rows):
    theta0 = torch.randn(4, 6) * 0.3
    grads = gradient_sequence(theta0.shape, steps=10)
    eta = theta0.pow(2).mean().sqrt().item()
    ours, optimizer = run_optimizer(Amos, theta0, grads, lr=0.05, state_shape=state_shape)
    expected = amos_reference(theta0, grads, xi=0.05, eta=eta, reduce_rows=reduce_rows)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    assert state["v"].shape == ((4, 1) if reduce_rows else (4, 6))


def test_amos_update_average_matches_reference_equations():
    theta0 = torch.randn(4, 6) * 0.3
    grads = gradient_sequence(theta0.shape, steps=10)
    eta = theta0.pow(2).mean().sqrt().item()
    ours, _ = run_optimizer(Amos, theta0, grads, lr=0.05, momentum=0.9)
    expected = amos_reference(theta0, grads, xi=0.05, eta=eta, reduce_rows=True, momentum=0.9)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def amos_pair():
    """A matrix and a bias (fresh parameters, the same every call)."""
    generator = torch.Generator().manual_seed(1)
    return [torch.nn.Parameter(torch.randn(5, 3, generator=generator) * 0.2),
            torch.nn.Parameter(torch.randn(3, generator=generator) * 0.1)]


def feed(optimizer, params, steps, skip_bias_at=(), seed=2):
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        if step in skip_bias_at:
            params[1].grad = None
        optimizer.step()


def test_amos_steps_tensors_together_as_if_each_had_its_own_optimizer():
    """One concatenated state for all tensors, with different step counts (a tensor without gradient on
    some steps), equals one Amos per tensor."""
    together = amos_pair()
    feed(Amos([{"params": [p]} for p in together], lr=0.05), together, steps=6, skip_bias_at=(1, 2))
    separate = amos_pair()
    optimizers = [Amos([p], lr=0.05) for p in separate]
    feed(SimpleNamespace(step=lambda: [o.step() for o in optimizers]), separate, steps=6, skip_bias_at=(1, 2))
    for a, b in zip(together, separate):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-8)


def test_amos_continues_bit_identically_from_a_saved_state(tmp_path):
    """Its state tensors are views into one vector: a save/load round trip must rebuild that layout."""
    straight = amos_pair()
    feed(Amos(straight, lr=0.05, momentum=0.5), straight, steps=6)
    first = amos_pair()
    optimizer = Amos(first, lr=0.05, momentum=0.5)
    feed(optimizer, first, steps=3)
    torch.save({"params": [p.detach() for p in first], "optimizer": optimizer.state_dict()}, tmp_path / "state.pt")
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    resumed = [torch.nn.Parameter(p.clone()) for p in saved["params"]]
    optimizer = Amos(resumed, lr=0.05, momentum=0.5)
    optimizer.load_state_dict(saved["optimizer"])
    generator_state = torch.Generator().manual_seed(2)
    for _ in range(3):  # the gradients the straight run drew for its first three steps
        for param in resumed:
            torch.randn(param.shape, generator=generator_state)
    for step in range(3):
        for param in resumed:
            param.grad = torch.randn(param.shape, generator=generator_state)
        optimizer.step()
    for a, b in zip(straight, resumed):
        assert torch.equal(a.detach(), b.detach())


def test_amos_matches_pytorch_optimizer_in_scalar_configuration():
    reference_module = pytest.importorskip("pytorch_optimizer", reason="pytorch_optimizer is a test dependency")
    torch.manual_seed(0)
    weight, bias = torch.randn(5, 8) * 0.5, torch.randn(8) * 0.1
    ours = [torch.nn.Parameter(weight.clone()), torch.nn.Parameter(bias.clone())]
    theirs = [torch.nn.Parameter(weight.clone()), torch.nn.Parameter(bias.clone())]
    amos = Amos([{"params": [ours[0]], "kind": "matrix"}, {"params": [ours[1]], "kind": "bias"}],
                lr=0.02, beta=0.98, state_shape="scalar", eta_rule="fan_in")
    reference = reference_module.Amos(theirs, lr=0.02, beta=0.98, foreach=False)
    for step in range(12):
        grads = [torch.randn(5, 8), torch.randn(8)]
        for a, b, g in zip(ours, theirs, grads):
            a.grad, b.grad = g.clone(), g.clone()
        amos.step()
        reference.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_amos_zero_gradient_moves_nothing_and_state_is_small():
    param = torch.nn.Parameter(torch.randn(64, 256) * 0.05)
    amos = Amos([param], lr=0.01)
    param.grad = torch.randn(64, 256)
    amos.step()
    before, b_before = param.detach().clone(), amos.state[param]["b"].clone()
    param.grad = torch.zeros(64, 256)
    amos.step()
    assert torch.equal(param.detach(), before) and torch.equal(amos.state[param]["b"], b_before)
    state_bytes = sum(v.numel() * v.element_size() for v in amos.state[param].values() if torch.is_tensor(v) and v.ndim)
    assert state_bytes / param.numel() <= 0.1


def test_newton_schulz_matches_svd_directions():
    """§6.3: NS5(N) = U·diag(s')·Vᵀ with N = U·S·Vᵀ; s' in the documented band, off-diagonals ≈ 0."""
    torch.manual_seed(0)
    for shape in [(128, 64), (64, 128)]:
        matrix = torch.randn(*shape, dtype=torch.float64)
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        core = u.T @ newton_schulz(matrix, dtype=torch.float64) @ vh.T
        diagonal = torch.diagonal(core)
        assert ((core - torch.diag(diagonal)).abs().max() < 1e-8)
        assert diagonal.min() > 0.6 and diagonal.max() < 1.25


def test_muon_matches_torch_muon():
    """torch.optim.Muon: EMA momentum and bf16 Newton–Schulz; ours: sum form, same direction."""
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("torch.optim.Muon needs torch >= 2.9")
    torch.manual_seed(0)
    weight = torch.randn(32, 16) * 0.1
    ours, theirs = torch.nn.Parameter(weight.clone()), torch.nn.Parameter(weight.clone())
    muon = Muon([ours], lr=0.02, momentum=0.95, weight_decay=0.1, ns_dtype="bfloat16")
    reference = torch.optim.Muon([theirs], lr=0.02, momentum=0.95, weight_decay=0.1)
    for _ in range(5):
        grad = torch.randn(32, 16)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        muon.step()
        reference.step()
    moved = (theirs.detach() - weight).abs().mean()
    difference = (ours.detach() - theirs.detach()).abs()
    # bf16 Newton–Schulz alone differs by 1-3 % between input scalings; a wrong rule would differ by ~100 %
    assert difference.mean() < 0.05 * moved, "same update up to bf16 rounding"


@pytest.mark.parametrize("scale,expected", [("match_rms_adamw", (0.15, 0.2)), ("exact_rms", (0.2, 0.2))])
def test_muon_update_rms_under_the_adamw_matching_rules(scale, expected):
    param = torch.nn.Parameter(torch.zeros(256, 128))
    muon = Muon([param], lr=1.0, momentum=0.0, nesterov=False, scale=scale)
    param.grad = torch.randn(256, 128)
    muon.step()
    rms = param.detach().pow(2).mean().sqrt().item()
    assert expected[0] - 1e-4 <= rms <= expected[1] + 1e-4


def test_muon_routes_everything_but_hidden_matrices_to_adamw():
    config = validate_config({"model": {"name": "gpt", "embedding_dim": 16, "context": 8, "n_layer": 1},
                              "optimizer": {"name": "muon"}})
    from optlab.models import build_model

    model = build_model(config.model, SimpleNamespace(vocab_size=50))
    optimizers = build_optimizers(model, config)
    muon = next(o for o in optimizers if isinstance(o, Muon))
    adamw = next(o for o in optimizers if not isinstance(o, Muon))
    muon_names = {n for g in muon.param_groups for n in g["param_names"]}
    assert len(optimizers) == 2 and isinstance(adamw, torch.optim.AdamW)
    assert muon_names == {"blocks.0.attention.qkv.weight", "blocks.0.attention.proj.weight",
                          "blocks.0.mlp.0.weight", "blocks.0.mlp.2.weight"}
    assert adamw.param_groups[0]["lr"] == 3e-4


def test_lion_matches_lion_pytorch():
    lion_pytorch = pytest.importorskip("lion_pytorch", reason="lion-pytorch is a test dependency")
    theta0 = torch.randn(7, 5)
    grads = gradient_sequence(theta0.shape, steps=10)
    ours, _ = run_optimizer(Lion, theta0, grads, lr=3e-3, betas=(0.95, 0.98), weight_decay=0.3)
    theirs, _ = run_optimizer(lion_pytorch.Lion, theta0, grads, lr=3e-3, betas=(0.95, 0.98), weight_decay=0.3,
                              use_triton=False, decoupled_weight_decay=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["Lion", "Tiger"])
def test_lion_and_basic_tiger_match_pytorch_optimizer(name):
    reference_module = pytest.importorskip("pytorch_optimizer", reason="pytorch_optimizer is a test dependency")
    theta0 = torch.randn(6, 4)
    grads = gradient_sequence(theta0.shape, steps=10)
    if name == "Lion":
        ours, _ = run_optimizer(Lion, theta0, grads, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.2)
        theirs, _ = run_optimizer(reference_module.Lion, theta0, grads, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.2,
                                  weight_decouple=True, fixed_decay=False, foreach=False)
    else:
        ours, _ = run_optimizer(Tiger, theta0, grads, lr=1e-2, beta=0.965, weight_decay=0.2, parameter_scaling=False)
        theirs, _ = run_optimizer(reference_module.Tiger, theta0, grads, lr=1e-2, beta=0.965, weight_decay=0.2,
                                  weight_decouple=True, fixed_decay=False, foreach=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", [{"name": n} for n in ("adamw", "adam", "sgd", "signsgd", "signum", "lion", "tiger", "amos", "muon")])
def test_every_optimizer_trains_from_yaml(make_config, optimizer):
    from optlab.train import train

    config = make_config(name=f"zoo/{optimizer['name']}",
                         model={"name": "gpt", "embedding_dim": 16, "context": 8, "n_layer": 1, "n_head": 2},
                         data={"name": "zipf", "vocab_size": 64}, optimizer=optimizer,
                         training={"steps": 12, "batch_size": 8}, probes={"every": 4})
    result = train(config, show_progress=False)
    final = result.summary["final"]
    assert result.status == "completed" and math.isfinite(final["loss"])
    assert final["update_rms.matrix"] > 0 and final["update_rms.embedding"] > 0, "every kind of parameter moved"


