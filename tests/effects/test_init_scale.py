"""lr ∝ parameter scale (docs/science/other-effects.md §3 (i)), the measured direction on the small LM:
AdamW's absolute steps forget the init scale, while Tiger's scale-relative steps keep a small init small
(the claim's gate fails here; see the report)."""

from tests.helpers import cells, shipped_sweep, sweep_and_report


def test_init_scale_spreads_as_measured(tmp_path):
    variants = shipped_sweep("effects/init_scale.yaml")["variants"]
    sweep = shipped_sweep("effects/init_scale.yaml", name="t/init_scale", seeds=[0], grid={"model.init_std": [0.005, 0.08]},
                          variants={k: variants[k] for k in ("adamw", "tiger")})
    report, folder = sweep_and_report(tmp_path, sweep, "training.steps=150", "model.embedding_dim=32", "data.vocab_size=512", "model.n_layer=1", workers=2)
    table = cells(folder)
    spread = {v: rows["mean"].max() - rows["mean"].min() for v, rows in table.groupby("variant")}
    small_init = table[table["model.init_std"] == 0.005].set_index("variant")["mean"]
    assert spread["tiger"] > spread["adamw"] and small_init["tiger"] > small_init["adamw"]
    assert report["verdicts"][0]["passed"] is False
