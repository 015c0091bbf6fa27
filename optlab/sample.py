"""`optlab sample RUN --prompt TEXT`: text from a trained language model, to look at what it learned.

The run's model is rebuilt from its config.yaml and loaded from its last checkpoint (weights_only); the
prompt is encoded with the run's own vocabulary. Each new token is drawn from softmax(logits / T)
restricted to the `top_k` most likely tokens (T → 0: the most likely token), from a generator seeded by
`seed`, so the same command prints the same text.
"""

from __future__ import annotations

from pathlib import Path

import torch

from optlab.checkpoint import load_latest_checkpoint
from optlab.data import build_dataset
from optlab.errors import OptlabError
from optlab.models import build_model, capabilities
from optlab.runs import load_run


def sample(run_dir: Path, prompt: str, tokens: int, temperature: float, top_k: int | None, seed: int) -> str:
    run = load_run(run_dir)
    config = run.config
    data = build_dataset(config.data, config.training.seed)
    model = build_model(config.model, data)
    logits = capabilities(model).logits
    if logits is None:
        raise OptlabError(f"{run_dir}: model {config.model.name!r} gives no next-token logits; sample a language-model run "
                          "(model: gpt, or a model with logits(inputs))")
    encode, decode = getattr(data, "encode", None), getattr(data, "decode", None)
    if encode is None or decode is None:
        raise OptlabError(f"{run_dir}: data {config.data.name!r} has no text vocabulary (encode/decode); sample a run "
                          "trained on text (data: text or stdlib-text)")
    model.load_state_dict(load_latest_checkpoint(run_dir)["model"])
    model.eval()
    ids = encode(prompt) or [0]
    context = model.window_length - 1
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(tokens):
            window = torch.tensor([ids[-context:]])
            last = logits(window)[0, -1].double()
            if temperature == 0:
                ids.append(int(last.argmax()))
                continue
            if top_k is not None and top_k < len(last):
                last = last.masked_fill(last < last.topk(top_k).values[-1], float("-inf"))
            ids.append(int(torch.multinomial(torch.softmax(last / temperature, dim=0), 1, generator=generator)))
    return decode(ids)
