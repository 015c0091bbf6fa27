"""The two-batch gradient-noise-scale probe recovers tr(Σ)/|G|² where it is known exactly.

Linear regression, x ~ N(0, I_d), y = xᵀw* + σξ, at error e: G = e and
Σ = (|e|² + σ²)·I + e·eᵀ, so B_simple = tr(Σ)/|G|² = d·(1 + σ²/|e|²) + 1 (|e| = 1 here).
The lr is tiny, so the parameters (and the true value) stay put while the estimates average.
"""

import pandas as pd
import pytest

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
