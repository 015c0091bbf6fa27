"""Parameter kinds and routing rules."""

from types import SimpleNamespace

import torch

from optlab.config import validate_config
from optlab.models import build_model
from optlab.optim.groups import build_optimizers, parameter_kinds
from optlab.optim.lion import Lion


def gpt_config(**param_groups):
    return validate_config({"model": {"name": "gpt", "embedding_dim": 16, "context": 8, "n_layer": 1},
                            "optimizer": {"name": "lion", "lr": 1e-4, "weight_decay": 0.5},
                            "param_groups": param_groups})


def groups_by_name(optimizers):
    return {name: (type(opt).__name__, group) for opt in optimizers for group in opt.param_groups
            for name in group["param_names"]}


def test_parameter_kinds_of_the_gpt():
    config = gpt_config()
    kinds = parameter_kinds(build_model(config.model, SimpleNamespace(vocab_size=50)))
    assert kinds["token_embedding.weight"] == kinds["position_embedding.weight"] == "embedding"
    assert kinds["head.weight"] == "head" and kinds["head.bias"] == "bias"
    assert kinds["blocks.0.norm1.weight"] == "norm" and kinds["blocks.0.norm1.bias"] == "bias"
    assert kinds["blocks.0.mlp.0.weight"] == "matrix"


def test_rules_route_by_kind_and_name_with_lr_scale_and_decay():
    config = gpt_config(rules=[{"name": r"mlp\.2\.weight$", "lr_scale": 16},
                               {"kind": "embedding", "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.1}},
                               {"kind": "head", "weight_decay": 0.0}])
    placed = groups_by_name(build_optimizers(build_model(config.model, SimpleNamespace(vocab_size=50)), config))
    assert placed["blocks.0.mlp.2.weight"][1]["lr"] == 16e-4
    assert placed["blocks.0.mlp.0.weight"][1]["lr"] == 1e-4 and placed["blocks.0.mlp.0.weight"][1]["weight_decay"] == 0.5
    assert placed["token_embedding.weight"][0] == "AdamW" and placed["token_embedding.weight"][1]["lr"] == 3e-3
    assert placed["head.weight"][0] == "Lion" and placed["head.weight"][1]["weight_decay"] == 0.0
    assert placed["blocks.0.norm1.weight"][1]["weight_decay"] == 0.0, "norm gains get no decay by default"
    assert placed["blocks.0.mlp.0.bias"][1]["weight_decay"] == 0.0, "biases get no decay by default"


def test_embedding_optimizer_shorthand_equals_the_rule():
    shorthand = gpt_config(embedding_optimizer={"name": "adamw", "lr": 0.03})
    rule = gpt_config(rules=[{"kind": "embedding", "optimizer": {"name": "adamw", "lr": 0.03}}])
    a, b = (groups_by_name(build_optimizers(build_model(c.model, SimpleNamespace(vocab_size=50)), c)) for c in (shorthand, rule))
    assert {k: (v[0], v[1]["lr"], v[1]["weight_decay"]) for k, v in a.items()} == \
           {k: (v[0], v[1]["lr"], v[1]["weight_decay"]) for k, v in b.items()}


def test_every_parameter_is_in_exactly_one_optimizer():
    config = gpt_config(embedding_optimizer={"name": "adamw"})
    model = build_model(config.model, SimpleNamespace(vocab_size=50))
    seen = [p for opt in build_optimizers(model, config) for g in opt.param_groups for p in g["params"]]
    assert len(seen) == len({id(p) for p in seen}) == len(list(model.parameters()))
    assert any(isinstance(o, Lion) for o in build_optimizers(model, config))
    assert all(isinstance(p, torch.nn.Parameter) for p in seen)
