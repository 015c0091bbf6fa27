"""Gradient clipping (docs/science/other-effects.md §1): pre-clip norms are logged, and the measured loss
change of a step follows its first-order prediction g·Δθ."""

import pandas as pd

from tests.helpers import shipped_sweep, sweep_and_report


def test_gradient_norm_and_first_order_loss_change(tmp_path):
    variants = shipped_sweep("effects/gradient_clipping.yaml")["variants"]
    keep = {name: variants[name] for name in ("adamw_no_clip", "adamw_clip_1", "sgd_no_clip")}
    sweep = shipped_sweep("effects/gradient_clipping.yaml", name="t/gradient_clipping",
                          grid={"model.embedding_dim": [32]}, variants=keep)
    report, folder = sweep_and_report(tmp_path, sweep, "training.steps=100", "model.n_layer=1", "data.vocab_size=512")
    norms = pd.read_csv(folder / "gradient_norms.csv").set_index("variant")
    for variant in keep:  # curvature makes the measured decrease a bit smaller than g·Δθ predicts
        assert 0.3 < norms.loc[variant, "median_dL_ratio"] < 1.1
        assert norms.loc[variant, "same_sign_share"] >= 0.9
        assert 0 < norms.loc[variant, "sign_cosine"] < 1
    kinds = [v["effect"] for v in report["verdicts"]]
    assert kinds.count("grad_norm_below_1") == 2 and kinds.count("clip_at_1_near_best") == 1
