"""The sweep manifest: the source of truth for every trial's state.

`manifest.jsonl` is a journal: one JSON line per state change (pending, running, completed, diverged,
failed, interrupted), appended and flushed by the coordinator alone, and fsynced at least every time the
coordinator polls its workers (`sync`; a sweep records thousands of events, and a lost unsynced event
only costs a lookup: a trial missing from the journal is placed from its own directory). Replaying it gives each
trial's latest state. A crash mid-write can leave the last line torn (no newline): the coordinator
repairs the tail before it appends (a complete event gets its newline, a torn fragment is cut off),
and replay also recovers the events of lines that an older optlab glued onto a torn one. A line that
is whole JSON but no journal event is an error naming the line. `manifest.json` is a compacted
snapshot written atomically (temp file + rename) at the end of every `optlab sweep` invocation.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from optlab.errors import RunDirError
from optlab.runs import write_json

STATES = ("pending", "running", "completed", "diverged", "failed", "interrupted")
EVENT_START = re.compile(r'\{"trial"')  # every event is written with "trial" as its first key


class Manifest:
    def __init__(self, sweep_dir: Path, repair: bool = False):
        """Replay the journal; with `repair` (the coordinator, holding the sweep's lock) mend a torn tail."""
        self.path = sweep_dir / "manifest.jsonl"
        self.trials: dict[str, dict] = {}
        self.torn_tail = False
        self._stream = None  # the journal, open for appending once the first event is recorded
        self._unsynced = False
        if not self.path.is_file():
            return
        text = self.path.read_text(encoding="utf-8")
        self.torn_tail = bool(text) and not text.endswith("\n")
        for number, line in enumerate(text.splitlines(), start=1):
            for event in _events(line):
                if not isinstance(event, dict) or not isinstance(event.get("trial"), str) or event.get("state") not in STATES:
                    raise RunDirError(f"{self.path}: line {number} is not a journal event (it needs a `trial` id and a "
                                      "`state`); delete that line to replay the rest")
                self.trials.setdefault(event["trial"], {}).update(event)
        if repair and self.torn_tail:
            self._repair_tail(text)

    def _repair_tail(self, text: str) -> None:
        """End the journal with a newline: keep a last event that is whole, cut a torn fragment off."""
        head, _, tail = text.rpartition("\n")
        with open(self.path, "r+", encoding="utf-8") as stream:
            if _events(tail):
                stream.seek(0, os.SEEK_END)
                stream.write("\n")
            else:
                stream.truncate(len((head + "\n").encode("utf-8")) if head else 0)
            stream.flush()
            os.fsync(stream.fileno())
        self.torn_tail = False

    def record(self, trial_id: str, state: str, *, sync: bool = True, **details) -> None:
        """Append one event (flushed); fsynced now, or with `sync: False` at the next `sync()`."""
        assert state in STATES, state
        event = {"trial": trial_id, "state": state, "time": round(time.time(), 3), **details}
        self.trials.setdefault(trial_id, {}).update(event)
        if self._stream is None:
            self._stream = open(self.path, "a", encoding="utf-8")
        self._stream.write(json.dumps(event) + "\n")
        self._stream.flush()
        self._unsynced = True
        if sync:
            self.sync()

    def sync(self) -> None:
        """fsync the events recorded since the last sync."""
        if self._unsynced:
            os.fsync(self._stream.fileno())
            self._unsynced = False

    def close(self) -> None:
        if self._stream is not None:
            self.sync()
            self._stream.close()
            self._stream = None

    def state(self, trial_id: str) -> str | None:
        return self.trials.get(trial_id, {}).get("state")

    def write_snapshot(self) -> None:
        write_json(self.path.with_suffix(".json"), {"trials": self.trials})


def _events(line: str) -> list:
    """The events of one journal line: the line itself, or, where a torn line had the next event glued
    onto it, every whole event that starts inside it. Nothing for a torn fragment."""
    try:
        return [json.loads(line)]
    except json.JSONDecodeError:
        pass
    decoder, events, end = json.JSONDecoder(), [], 0
    for match in EVENT_START.finditer(line):
        if match.start() < end:
            continue
        try:
            event, end = decoder.raw_decode(line, match.start())
        except json.JSONDecodeError:
            continue
        events.append(event)
    return events
