"""The behaviour card: card.md (a table per panel, a row per optimizer, the rule under it) and card.json."""

from __future__ import annotations

import math

from optlab.runs import atomic_write_text, write_json


def _number(value) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"


def write_card(battery, section: dict, results: dict, quick: bool) -> dict:
    """results: {panel name: (panel, {label: Finding}, figure path or None)}."""
    profiled = battery.profiled
    lines = [f"# Behaviour card: {profiled}", "",
             f"Optimizer section: `{section}`. Compared with {', '.join(l for l in battery.optimizers if l != profiled)}, "
             f"measured in the same battery ({'quick' if quick else 'full'} grids). Every finding follows the rule "
             "printed under its table; docs/science/profile.md explains each panel.", ""]
    card = {"optimizer": section, "label": profiled, "quick": quick, "panels": {}}
    header, lines = lines, []
    summary = ["| panel | " + " | ".join(battery.optimizers) + " |", "|---" * (len(battery.optimizers) + 1) + "|"]
    for name, (panel, findings, figure) in results.items():
        lines += [f"## {panel.title}", "", "| optimizer | finding | deciding number |", "|---|---|---|"]
        lines += [f"| {label} | {finding.finding} | {_number(finding.value)} |"
                  for label, finding in findings.items()]
        lines += ["", f"Rule: {panel.rule} ({panel.section}).", ""]
        if figure is not None:
            lines += [f"![{panel.title}]({figure.name})", ""]
        summary.append(f"| {panel.title} | " + " | ".join(findings[label].finding if label in findings else "—"
                                                           for label in battery.optimizers) + " |")
        card["panels"][name] = {"title": panel.title, "rule": panel.rule, "section": panel.section,
                                "figure": figure.name if figure else None,
                                "findings": {label: {"finding": f.finding, "value": f.value, **f.numbers}
                                             for label, f in findings.items()}}
    text = "\n".join([*header, "## Summary", "", *summary, "", *lines]) + "\n"
    atomic_write_text(battery.directory / "card.md", text)
    write_json(battery.directory / "card.json", card)
    return card
