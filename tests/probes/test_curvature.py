"""Hutchinson's diagonal-Hessian estimator of the Adam-curvature probe (probes/curvature.py)."""

import pytest


def test_hutchinson_estimates_the_hessian_diagonal():
    """E[z ⊙ Hz] = diag H for Rademacher z; exact for a diagonal H, unbiased with off-diagonal terms."""
    import torch

    from optlab.probes.curvature import hutchinson_diagonal, rank_correlation

    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    hessian = matrix @ matrix.T / 6 + torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
    theta = torch.nn.Parameter(torch.randn(6, dtype=torch.float64, generator=generator))
    estimate = hutchinson_diagonal(lambda: 0.5 * theta @ hessian @ theta, [theta], 4000, generator)
    torch.testing.assert_close(estimate, hessian.diagonal(), rtol=0.05, atol=0.05)
    diagonal = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    h = torch.tensor([0.1, 1.0, 2.0, 5.0], dtype=torch.float64)
    exact = hutchinson_diagonal(lambda: 0.5 * (h * diagonal**2).sum(), [diagonal], 3, generator)
    torch.testing.assert_close(exact, h)
    assert rank_correlation(h, h**2) == pytest.approx(1.0) and rank_correlation(h, -h) == pytest.approx(-1.0)
