"""The two-batch gradient-noise-scale probe recovers tr(Σ)/|G|² where it is known exactly.

Linear regression, x ~ N(0, I_d), y = xᵀw* + σξ, at error e: G = e and
Σ = (|e|² + σ²)·I + e·eᵀ, so B_simple = tr(Σ)/|G|² = d·(1 + σ²/|e|²) + 1 (|e| = 1 here).
The lr is tiny, so the parameters (and the true value) stay put while the estimates average.
"""

import pandas as pd
import pytest
import torch

from optlab.config import validate_config
from optlab.train import train


@pytest.mark.parametrize("seed,label_noise", [(0, 0.0), (1, 0.0), (2, 1.0)])
def test_noise_scale_recovers_known_b_simple(tmp_path, seed, label_noise):
    dim = 63
    config = validate_config({
        "name": "noise/linreg", "model": {"name": "linreg", "init_distance": 1.0},
        "data": {"name": "linear-regression", "dim": dim, "label_noise": label_noise},
        "optimizer": {"name": "sgd", "lr": 1e-9, "momentum": 0.0},
        "training": {"steps": 1000, "batch_size": 128, "seed": seed, "dtype": "float64"},
        "probes": {"every": 1, "embedding": False, "updates": False, "noise_scale": True,
                   "noise_scale_small_batch": 32, "noise_scale_decay": 0.995},
        "output": {"runs_dir": str(tmp_path)},
    })
    metrics = pd.read_csv(train(config, show_progress=False).run_dir / "metrics.csv")
    expected = dim * (1 + label_noise**2) + 1
    assert metrics["noise_scale.b_simple"].iloc[-1] == pytest.approx(expected, rel=0.10)


def test_noise_scale_needs_a_smaller_batch(tmp_path):
    from optlab.errors import OptlabError

    config = validate_config({"model": {"name": "linreg"}, "data": {"name": "linear-regression"},
                              "training": {"steps": 2, "batch_size": 4},
                              "probes": {"noise_scale": True, "noise_scale_small_batch": 4},
                              "output": {"runs_dir": str(tmp_path)}})
    with pytest.raises(OptlabError, match="noise_scale_small_batch"):
        train(config, show_progress=False)


def test_exact_noise_scales_of_ill_conditioned_regression_match_per_example_gradients():
    """Exp D0: Σ = (eᵀHe + s²)H + He·eᵀH. Check B_simple = tr Σ/|G|² and B_noise = tr(HΣ)/(GᵀHG)
    against per-example gradients g_k = x_k(x_kᵀe − s·ξ_k) of 400 000 fresh examples."""
    from optlab.data import build_dataset
    from optlab.models import build_model

    config = validate_config({"model": {"name": "linreg", "start": "gaussian", "start_seed": 123},
                              "data": {"name": "linear-regression", "dim": 32, "label_noise": 0.5, "spectrum": "harmonic"}})
    data = build_dataset(config.data, seed=0)
    model = build_model(config.model, data)
    exact = model.exact_metrics()
    rows = data.sample(400_000, model.window_length)
    inputs, targets = rows[:, :32], rows[:, 32]
    residual = inputs @ model.weight[0].detach() - targets
    per_example = inputs * residual.unsqueeze(1)               # gradients of ½(xᵀw − y)²
    mean, variance = per_example.mean(0), per_example.var(0)
    h = model.hessian_diagonal
    b_simple = variance.sum() / mean.pow(2).sum()
    centred = per_example - mean
    b_noise = (centred.pow(2) * h).sum(1).mean() / (mean.pow(2) * h).sum()
    assert b_simple.item() == pytest.approx(exact["noise_scale.exact_b_simple"], rel=0.05)
    assert b_noise.item() == pytest.approx(exact["noise_scale.exact_b_noise"], rel=0.05)
    assert exact["relative_excess_loss"] == 1.0


def test_a_run_stops_when_its_target_is_reached(tmp_path):
    config = validate_config({
        "name": "stop/linreg", "model": {"name": "linreg"}, "data": {"name": "linear-regression", "dim": 8, "teacher": "zero"},
        "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.0},
        "training": {"steps": 500, "batch_size": 16, "dtype": "float64",
                     "stop_at_target": {"column": "relative_excess_loss", "value": 0.01}},
        "probes": {"every": 1, "embedding": False, "updates": False}, "output": {"runs_dir": str(tmp_path)}})
    result = train(config, show_progress=False)
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    assert result.status == "completed" and result.summary["reached_target_at_step"] == len(metrics) < 500
    assert metrics["relative_excess_loss"].iloc[-1] <= 0.01 < metrics["relative_excess_loss"].iloc[-2]


def test_sampled_noise_scales_recover_the_exact_ones_of_ill_conditioned_regression():
    """probes.sampled_noise_scale on Exp D0's instance: per-example gradients (1), two-batch pairs (2) and
    HVPs (3) against the closed forms of models/linreg.py (tr Σ/|G|² = 11.35, tr(HΣ)/(GᵀHG) = 6.09)."""
    from optlab.data import build_dataset
    from optlab.models import build_model
    from optlab.probes.sampled_noise_scale import sampled_noise_scales

    config = validate_config({"model": {"name": "linreg", "start": "gaussian", "start_seed": 123},
                              "data": {"name": "linear-regression", "dim": 32, "label_noise": 0.5, "spectrum": "harmonic"},
                              "probes": {"sampled_noise_scale": {"examples": 8192, "two_batch_repeats": 400,
                                                                 "hessian_examples": 2000}}})
    data = build_dataset(config.data, seed=0)
    model = build_model(config.model, data)
    exact = model.exact_metrics()
    measured = sampled_noise_scales(model, data, config.probes.sampled_noise_scale)
    assert measured["noise_scale.sampled_b_simple"] == pytest.approx(exact["noise_scale.exact_b_simple"], rel=0.05)
    assert measured["noise_scale.sampled_two_batch_b_simple"] == pytest.approx(exact["noise_scale.exact_b_simple"], rel=0.15)
    assert measured["noise_scale.sampled_b_noise"] == pytest.approx(exact["noise_scale.exact_b_noise"], rel=0.10)


def test_sampled_noise_scales_are_measured_at_the_levels_without_changing_the_run(tmp_path):
    """Measured at θ_0 and once at the first probe step at or below each eval-loss level, from the probe
    split: the run's losses are exactly those of the same run without the probe."""
    import json

    def run(probe):
        config = validate_config({
            "name": "sampled/linreg", "model": {"name": "linreg", "start": "gaussian", "start_seed": 123},
            "data": {"name": "linear-regression", "dim": 32, "label_noise": 0.5, "spectrum": "harmonic"},
            "optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.0},
            "training": {"steps": 60, "batch_size": 16, "dtype": "float64"},
            "probes": {"every": 2, "embedding": False, "updates": False, "eval_examples": 512, **probe},
            "output": {"runs_dir": str(tmp_path)}})
        run_dir = train(config, show_progress=False).run_dir
        return pd.read_csv(run_dir / "metrics.csv"), json.loads((run_dir / "summary.json").read_text())

    levels = [0.8, 0.6, 0.5]
    plain, _ = run({})
    probed, summary = run({"sampled_noise_scale": {"examples": 256, "two_batch_repeats": 10, "hessian_examples": 20,
                                                   "hessian_batch": 512, "at_eval_loss": levels}})
    assert plain["loss"].tolist() == probed["loss"].tolist()
    assert summary["initial_metrics"]["noise_scale.sampled_b_simple"] > 0
    measured = probed[probed["noise_scale.sampled_b_simple"].notna()]
    first_below = sorted({int(probed.index[probed["eval_loss"] <= level][0]) for level in levels})
    assert measured.index.tolist() == first_below


def test_sampled_noise_scale_levels_need_the_eval_loss():
    from optlab.errors import ConfigError

    with pytest.raises(ConfigError, match="eval_examples"):
        validate_config({"probes": {"sampled_noise_scale": {"at_eval_loss": [1.0]}}})


@pytest.mark.parametrize("model,data", [
    ({"name": "gpt", "embedding_dim": 16, "context": 8, "n_layer": 1, "n_head": 2}, {"name": "zipf", "vocab_size": 50}),
    ({"name": "mlp", "width": 16}, {"name": "teacher-classification"}),
])
def test_per_example_gradients_sum_to_the_batch_gradient(model, data):
    """The vmap'd per-example gradients of probes.sampled_noise_scale (a loop for CPU attention) are the
    true ones: their sum is N × the gradient of the batch-mean loss, and their moments give a positive
    tr Σ with |G|² ≤ |ḡ|²."""
    from optlab.data import build_dataset
    from optlab.models import build_model
    from optlab.probes.sampled_noise_scale import per_example_gradient_moments, per_example_noise_scale

    config = validate_config({"model": model, "data": data})
    torch.manual_seed(0)
    dataset = build_dataset(config.data, seed=0)
    net = build_model(config.model, dataset)
    examples = dataset.sample(300, net.window_length, split="probe")
    total, squares, kept = per_example_gradient_moments(net, examples, keep=5)
    batch_gradient = torch.autograd.grad(net(examples), list(net.parameters()))
    flat = torch.cat([g.flatten() for g in batch_gradient]).double()
    assert torch.allclose(total / len(examples), flat, rtol=1e-4, atol=1e-6)
    assert kept.shape == (5, flat.numel())
    one = torch.autograd.grad(net(examples[:1]), list(net.parameters()))
    assert torch.allclose(kept[0], torch.cat([g.flatten() for g in one]).double(), rtol=1e-4, atol=1e-6)
    metrics = per_example_noise_scale(total, squares, len(examples))
    assert metrics["noise_scale.sampled_trace_cov"] > 0
    assert 0 < metrics["noise_scale.sampled_grad_norm_sq"] <= flat.pow(2).sum().item()


def test_a_resumed_run_measures_the_remaining_levels_exactly_as_an_uninterrupted_one(tmp_path):
    """The probe split's generator and the levels still pending travel in the checkpoint."""
    def config(steps):
        return validate_config({
            "name": "sampled/resume", "model": {"name": "linreg", "start": "gaussian", "start_seed": 123},
            "data": {"name": "linear-regression", "dim": 32, "label_noise": 0.5, "spectrum": "harmonic"},
            "optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.0},
            "training": {"steps": steps, "batch_size": 16, "dtype": "float64"},
            "probes": {"every": 1, "embedding": False, "updates": False, "eval_examples": 512,
                       "sampled_noise_scale": {"examples": 128, "two_batch_repeats": 5, "hessian_examples": 10,
                                               "hessian_batch": 256, "at_eval_loss": [1.0, 0.6, 0.5, 0.4]}},
            "output": {"runs_dir": str(tmp_path)}})

    whole = pd.read_csv(train(config(60), show_progress=False).run_dir / "metrics.csv").drop(columns="elapsed_s")
    first_half = train(config(8), show_progress=False).run_dir
    resumed = pd.read_csv(train(config(60), show_progress=False, resume=first_half).run_dir / "metrics.csv")
    pd.testing.assert_frame_equal(resumed.drop(columns="elapsed_s"), whole)
    assert whole["noise_scale.sampled_b_simple"].notna().sum() >= 3
