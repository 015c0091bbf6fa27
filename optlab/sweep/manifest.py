"""The sweep manifest: the source of truth for every trial's state.

`manifest.jsonl` is a journal: one JSON line per state change (pending, running, completed, diverged,
failed, interrupted), appended, flushed and fsynced by the coordinator alone. Replaying it gives each
trial's latest state; a line cut short by a crash is ignored. `manifest.json` is a compacted snapshot
written atomically (temp file + rename) at the end of every `optlab sweep` invocation.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from optlab.runs import write_json

STATES = ("pending", "running", "completed", "diverged", "failed", "interrupted")


class Manifest:
    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / "manifest.jsonl"
        self.trials: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
                self.trials.setdefault(event["trial"], {}).update(event)

    def record(self, trial_id: str, state: str, **details) -> None:
        assert state in STATES, state
        event = {"trial": trial_id, "state": state, "time": round(time.time(), 3), **details}
        self.trials.setdefault(trial_id, {}).update(event)
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(event) + "\n")
            stream.flush()
            os.fsync(stream.fileno())

    def state(self, trial_id: str) -> str | None:
        return self.trials.get(trial_id, {}).get("state")

    def write_snapshot(self) -> None:
        write_json(self.path.with_suffix(".json"), {"trials": self.trials})
