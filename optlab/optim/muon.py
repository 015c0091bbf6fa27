"""Muon for hidden 2-D matrices: Keller Jordan 2024 (KellerJordan/Muon); Su, kexue.fm/archives/10592
and 10739; Moonshot, "Muon is Scalable for LLM Training" (arXiv 2502.16982); docs/science/optimizers.md §6.

Step t for W ∈ R^{n×m} (n = rows):
    M ← β·M + G                                  (sum form, as torch.optim.Muon)
    N = G + β·M if nesterov else M
    O = NS5(N) ≈ msign(N) = U·V_rᵀ               (Newton–Schulz quintic, below)
    W ← W·(1 − ηλ)                               (decay uses the unadjusted η)
    W ← W − η·s(n, m)·O
Scale s: `original` sqrt(max(1, n/m)) (Keller; Muon's own lr), `match_rms_adamw` 0.2·sqrt(max(n, m))
(Moonshot; reuse AdamW's lr and λ), `exact_rms` 0.2/RMS(O) (update RMS exactly 0.2).

Embeddings, the head, biases and norm gains do not belong here: optlab's routing sends them to the
auxiliary AdamW of the Muon config automatically. Conv weights are flattened to [out, in·kh·kw].
"""

from __future__ import annotations

import math

import torch

from optlab.optim._common import (check, check_beta, check_choice, check_non_negative, check_positive,
                                  check_real_parameters, closure_loss, gradients_with_state)

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrix: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """NS5 (§6.3): X ← N/(‖N‖_F + 1e-7); repeat: A = XXᵀ, B = bA + cA², X ← aX + BX; on the wide orientation.

    Each singular value follows σ ← aσ + bσ³ + cσ⁵; the coefficients maximise the slope at 0, so the
    outputs land roughly in [0.7, 1.2] rather than converging to 1.
    """
    a, b, c = NS_COEFFICIENTS
    x = matrix.to(dtype)
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if transposed else x).to(matrix.dtype)


def scale_factor(rows: int, cols: int, mode: str, orthogonalised: torch.Tensor) -> float | torch.Tensor:
    if mode == "original":
        return math.sqrt(max(1.0, rows / cols))
    if mode == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    rms = orthogonalised.pow(2).mean().sqrt()
    return torch.where(rms > 0, 0.2 / rms, torch.zeros_like(rms))


class Muon(torch.optim.Optimizer):
    """Muon for hidden matrices. Per step, with momentum M (zeros at the start):

        M ← β·M + G;   O = NS5(G + β·M if nesterov else M);   W ← W·(1 − ηλ) − η·s·O

    NS5 the quintic Newton–Schulz iteration (≈ the orthogonal factor U·Vᵀ), s by `scale`: original
    √max(1, n/m), match_rms_adamw 0.2·√max(n, m), exact_rms 0.2/RMS(O). lr η > 0, momentum β in [0, 1),
    weight_decay λ ≥ 0, ns_steps ≥ 1. Tensors of fewer than 2 dimensions are refused."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, scale: str = "original", ns_steps: int = 5, ns_dtype: str = "float32"):
        check_positive("lr", lr)
        check_beta("momentum", momentum)
        check_non_negative("weight_decay", weight_decay)
        check_choice("scale", scale, ("original", "match_rms_adamw", "exact_rms"))
        check("ns_steps", ns_steps, isinstance(ns_steps, int) and ns_steps >= 1, "an integer ≥ 1")
        check_choice("ns_dtype", ns_dtype, ("float32", "bfloat16"))
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      scale=scale, ns_steps=ns_steps, ns_dtype=ns_dtype))
        check_real_parameters(self)
        for group in self.param_groups:
            for param in group["params"]:
                if param.ndim < 2:
                    raise ValueError(f"Muon updates matrices only; got a tensor of shape {tuple(param.shape)} "
                                     "(route vectors to AdamW)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, momenta = gradients_with_state(self, group, "momentum")
            lr, beta = group["lr"], group["momentum"]
            for param, grad, momentum in zip(params, grads, momenta):
                momentum.mul_(beta).add_(grad)
                direction = grad.add(momentum, alpha=beta) if group["nesterov"] else momentum
                matrix = direction.reshape(direction.shape[0], -1)
                orthogonalised = newton_schulz(matrix, group["ns_steps"], getattr(torch, group["ns_dtype"]))
                scale = scale_factor(*matrix.shape, group["scale"], orthogonalised)
                if group["weight_decay"]:
                    param.mul_(1 - lr * group["weight_decay"])
                param.add_((orthogonalised * scale).view_as(param).to(param.dtype), alpha=-lr)
        return loss
