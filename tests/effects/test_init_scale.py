"""lr ∝ parameter scale (docs/science/other-effects.md §3.2), the measured direction on the small LM:
AdamW's absolute steps forget the init scale, while Tiger's scale-relative steps keep a small init small
(the claim's gate fails here; see the report)."""

import pytest
import torch
import yaml

from tests.helpers import CONFIGS, cells, shipped_sweep, sweep_and_report


def test_init_scale_spreads_as_measured(tmp_path):
    variants = shipped_sweep("effects/init_scale.yaml")["variants"]
    sweep = shipped_sweep("effects/init_scale.yaml", name="t/init_scale", seeds=[0], grid={"model.init_std": [0.005, 0.08]},
                          variants={k: variants[k] for k in ("adamw", "tiger")})
    report, folder = sweep_and_report(tmp_path, sweep, "training.steps=150", "model.embedding_dim=32", "data.vocab_size=512", "model.n_layer=1")
    table = cells(folder)
    spread = {v: rows["mean"].max() - rows["mean"].min() for v, rows in table.groupby("variant")}
    small_init = table[table["model.init_std"] == 0.005].set_index("variant")["mean"]
    assert spread["tiger"] > spread["adamw"] and small_init["tiger"] > small_init["adamw"]
    assert report["verdicts"][0]["passed"] is False


def _normalized_model(init_scale=1.0, seed=0):
    from optlab.config import ExperimentConfig
    from optlab.data import build_dataset
    from optlab.models import build_model

    base = yaml.safe_load((CONFIGS / "effects/normalized_base.yaml").read_text())
    config = ExperimentConfig.model_validate({**base, "model": {**base["model"], "init_scale": init_scale}})
    data = build_dataset(config.data, seed)
    torch.manual_seed(seed)
    return build_model(config.model, data), data.sample(64, 0)


def test_the_normalized_model_ignores_each_matrix_scale():
    """f(…, s·W, …) = f(…, W, …) for each matrix separately, and ∇L(sW) = ∇L(W)/s (docs/science/other-effects.md §3.2)."""
    model, batch = _normalized_model()
    loss = model(batch)
    reference = torch.autograd.grad(loss, list(model.parameters()))
    for number, param in enumerate(model.parameters()):
        with torch.no_grad():
            param.mul_(4.0)
        scaled_loss = model(batch)
        grads = torch.autograd.grad(scaled_loss, list(model.parameters()))
        assert scaled_loss.item() == pytest.approx(loss.item(), rel=1e-6)
        torch.testing.assert_close(grads[number], reference[number] / 4.0, rtol=1e-4, atol=1e-7)
        with torch.no_grad():
            param.div_(4.0)


def test_init_scale_on_the_scale_invariant_model_keeps_tiger_exactly_invariant(tmp_path):
    """Tiger's trajectory is the same at every init scale to the bit; AdamW's fixed lr is not (the gate of §3.2)."""
    shipped = shipped_sweep("effects/init_scale_normalized.yaml")
    sweep = shipped_sweep("effects/init_scale_normalized.yaml", name="t/init_scale_normalized", seeds=[0],
                          variants={k: shipped["variants"][k] for k in ("adamw", "tiger")})
    report, _ = sweep_and_report(tmp_path, sweep, "training.steps=150", "probes.every=50", "probes.eval_examples=1024")
    trajectory = [v for v in report["verdicts"] if v["effect"] == "scale_invariant_trajectory"]
    assert [v["passed"] for v in trajectory] == [True] and "(bit-identical)" in trajectory[0]["measured"]
    assert report["trajectory_deviations"]["tiger"] == 0 < report["trajectory_deviations"]["adamw"]
    # Tiger keeps the init's scale (k = 1): the trained weights are s × those of s = 1
    assert report["retention_exponents"]["tiger matrix"] == pytest.approx(1.0, abs=1e-6)
    assert report["retention_exponents"]["adamw matrix"] < 0.95
