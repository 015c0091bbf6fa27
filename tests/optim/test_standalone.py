"""optlab's optimizers outside optlab: imported from optlab.optim, on any nn.Module, in a plain PyTorch loop."""

import warnings

import pytest
import torch
from torch import nn

from optlab.optim import Amos, Lion, Muon, SignSGD, Signum, Tiger, parameter_groups


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 20)

    def forward(self, tokens):
        return nn.functional.cross_entropy(self.head(self.norm(self.embed(tokens[:, 0]))), tokens[:, 1])


def test_parameter_groups_name_the_kinds_and_spare_biases_and_norms_from_decay():
    groups = {group["kind"]: group for group in parameter_groups(Net(), weight_decay=0.1)}
    assert set(groups) == {"embedding", "norm", "bias", "head"}
    assert groups["embedding"]["param_names"] == ["embed.weight"] and groups["head"]["param_names"] == ["head.weight"]
    assert groups["bias"]["weight_decay"] == groups["norm"]["weight_decay"] == 0.0
    assert groups["embedding"]["weight_decay"] == groups["head"]["weight_decay"] == 0.1


def test_tiger_on_plain_parameters_says_what_it_assumes():
    """Without kinds, Tiger takes ≥ 2-D tensors as matrices (lr × RMS) and 1-D ones as biases (0.5·lr, no
    decay), and warns that embeddings and norm gains need parameter_groups."""
    torch.manual_seed(0)
    matrix, vector = nn.Parameter(torch.randn(4, 5)), nn.Parameter(torch.randn(5))
    with pytest.warns(UserWarning, match="parameter_groups"):
        tiger = Tiger([matrix, vector], lr=1e-2, beta=0.9, weight_decay=0.1)
    before = [matrix.detach().clone(), vector.detach().clone()]
    matrix.grad, vector.grad = torch.randn(4, 5), torch.randn(5)
    tiger.step()
    rms = before[0].pow(2).mean().sqrt()
    torch.testing.assert_close(matrix.detach(), before[0] - 1e-2 * rms * (matrix.grad.sign() + 0.1 * before[0]))
    torch.testing.assert_close(vector.detach(), before[1] - 0.5e-2 * vector.grad.sign())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Tiger(parameter_groups(Net()), lr=1e-3)  # kinds given: nothing assumed
        Tiger([matrix], lr=1e-3, parameter_scaling=False)  # basic Tiger has no per-kind rules


def test_amos_warns_only_where_the_kind_matters():
    net = Net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Amos(net.parameters(), lr=0.01)  # η = RMS(θ_0) for every ≥ 2-D tensor: the kind does not enter
    with pytest.warns(UserWarning, match="parameter_groups"):
        Amos(net.parameters(), lr=0.01, eta_rule="fan_in")


@pytest.mark.parametrize("make", [
    lambda net: Lion(parameter_groups(net, weight_decay=0.1), lr=3e-3),
    lambda net: Tiger(parameter_groups(net, weight_decay=0.01), lr=1e-2),
    lambda net: Amos(parameter_groups(net), lr=0.05),
    lambda net: SignSGD(net.parameters(), lr=3e-3),
    lambda net: Signum(net.parameters(), lr=3e-3),
])
def test_a_plain_pytorch_loop_trains_with_each_optimizer(make):
    torch.manual_seed(0)
    net = Net()
    optimizer = make(net)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))
    tokens = torch.randint(0, 20, (256, 2))
    tokens[:, 1] = (tokens[:, 0] * 7 + 3) % 20  # a learnable next token
    losses = []
    for step in range(150):
        batch = tokens[torch.randint(0, 256, (32,))]
        loss = net(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


def test_muon_takes_the_matrices_and_refuses_vectors():
    net = Net()
    matrices = [p for name, p in net.named_parameters() if p.ndim == 2 and name.startswith("head")]
    Muon(matrices, lr=0.02)
    with pytest.raises(ValueError, match="route vectors to AdamW"):
        Muon(net.parameters(), lr=0.02)
