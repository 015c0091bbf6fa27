"""Behaviour cards side by side: one Markdown table, a row per profiled optimizer, a column per panel.

    python scripts/profile_table.py runs/profiles/*/card.json

Each cell is the profiled optimizer's finding on that panel (the references of each card are left out:
profile them as optimizers of their own to give them a row).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SETTINGS = ("lr", "weight_decay")  # the keywords the table shows (card.json has every one)


def main(paths: list[str]) -> None:
    cards = [json.loads(Path(path).read_text()) for path in paths]
    panels = {}
    for card in cards:
        for name, panel in card["panels"].items():
            panels.setdefault(name, panel["title"])
    print("| optimizer | settings | " + " | ".join(panels.values()) + " |")
    print("|---" * (len(panels) + 2) + "|")
    for card in cards:
        settings = ", ".join(f"{key}={card['optimizer'][key]}" for key in SETTINGS if key in card["optimizer"])
        cells = [card["panels"][name]["findings"][card["label"]]["finding"] if name in card["panels"] else "—"
                 for name in panels]
        print(f"| {card['label']} | {settings} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
