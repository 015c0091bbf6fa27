"""`optlab profile`: a behaviour card for any optimizer, built from the effects the lab reproduces.

    runs/profiles/<optimizer id>/
        <panel>.yaml, <panel>/     each sweep-based panel's sweep (ordinary trials, cached by id, resumable)
        card.md, card.json         every finding of every optimizer, with the number that decides it
        <panel>.png                one figure per panel

The optimizer id is its name and a hash of its resolved section, so the same optimizer with the same
keywords finds its finished trials again. The panels are the modules listed in PANELS (each states its
rule); the references are measured in the same battery, beside the profiled optimizer.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from pathlib import Path

PANELS = ("drift", "batch_law", "update_size", "lr_sensitivity", "cost", "gradients")
REFERENCES = {  # the reference optimizers' sections (a panel may set its own lr and decay for them)
    "adamw": {"name": "adamw", "lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 0.0},
    "lion": {"name": "lion", "lr": 3e-4, "betas": [0.9, 0.99], "weight_decay": 0.0},
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "signsgd": {"name": "signsgd", "lr": 1e-3},
    "tiger": {"name": "tiger", "lr": 3e-4, "beta": 0.965, "weight_decay": 0.0},
}
DEFAULT_AGAINST = ("adamw", "lion", "sgd")


def load_panel(name: str):
    return importlib.import_module(f"optlab.profile.{name}").PANEL


def optimizer_id(section: dict) -> str:
    """`<name>-<hash of the resolved section>`: the card's folder."""
    text = json.dumps(section, sort_keys=True, default=str)
    short = re.sub(r"[^A-Za-z0-9_.-]+", "_", section["name"].split(":")[-1]).strip("_").lower() or "optimizer"
    return f"{short}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def battery_optimizers(section: dict, against: list[str]) -> dict[str, dict]:
    """{label: section}: the profiled optimizer (labelled by its name) first, then the references."""
    from optlab.errors import ConfigError

    unknown = [name for name in against if name not in REFERENCES]
    if unknown:
        raise ConfigError(f"--against {','.join(unknown)}: unknown reference; choose from {', '.join(REFERENCES)}")
    label = section["name"].split(":")[-1]
    if label in against:  # the profiled one keeps its own keywords beside the reference of the same name
        label = f"{label} (profiled)"
    return {label: section, **{name: dict(REFERENCES[name]) for name in against}}


def profile(section: dict, against: list[str], panels: list[str], runs_dir: Path, quick: bool, workers: int,
            console) -> tuple[Path, dict]:
    """Measure every panel for the profiled optimizer and the references; write the card. Returns
    (the card's folder, the card as data)."""
    from optlab.profile.card import write_card
    from optlab.profile.panel import Battery

    directory = runs_dir / "profiles" / optimizer_id(section)
    directory.mkdir(parents=True, exist_ok=True)
    battery = Battery(battery_optimizers(section, against), directory, quick=quick, workers=workers)
    results = {}
    for name in panels:
        panel = load_panel(name)
        console.print(f"profile: {panel.title} ...")
        findings = panel.measure(battery)
        results[name] = (panel, findings, panel.figure(battery, findings, directory))
    return directory, write_card(battery, section, results, quick)
