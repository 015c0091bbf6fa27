"""Experiment trackers (optlab/trackers.py) with the real libraries, offline: TensorBoard's event files read
back with TensorBoard's own reader, and the W&B offline run's transaction log read record by record with
W&B's protobuf definitions. The run directory stays the record: the trackers receive the same numbers."""

import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import optlab, sweep_and_report

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")

TINY = {"model": {"name": "bag", "embedding_dim": 8, "context": 3}, "data": {"name": "zipf", "vocab_size": 300},
        "optimizer": {"name": "tiger", "lr": 0.01, "weight_decay": 0.1},
        "training": {"steps": 30, "batch_size": 16}, "probes": {"every": 10}}


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def wandb_records(run_dir: Path) -> list:
    """Every record of the run's offline W&B log (a LevelDB-style log: a 7-byte file header, then in 32 KiB
    blocks records of crc32, length, type and payload; types 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for log in sorted((run_dir / "wandb").glob("offline-run-*/*.wandb")):  # the run, then each resumption
        data, block, position, pending = log.read_bytes(), 32768, 7, b""
        assert data[:4] == b":W&B"
        while position + 7 <= len(data):
            left = block - position % block
            _, length, kind = struct.unpack("<IHB", data[position:position + 7])
            if left < 7 or (length == 0 and kind == 0):  # block padding
                position += left
                continue
            pending += data[position + 7:position + 7 + length]
            position += 7 + length
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pending)
                records.append(record)
                pending = b""
    return records


def items(updates) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}


def test_sweep_trials_land_in_tensorboard_and_wandb(tmp_path, offline_wandb):
    """Two sweep trials with both loggers: in each trial's TensorBoard events the loss at every logged step
    equals metrics.csv and the hparams table is written; each W&B run carries the config, the same
    history, the final summary and the sweep's name as its group; `optlab report` adds the figures."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = {"name": "t/tracked", "base": "base.yaml", "grid": {"optimizer.lr": [0.01, 0.03]},
             "set": {"output.loggers": ["tensorboard", "wandb"]}, "metric": {"column": "loss", "reduce": "final"}}
    (tmp_path / "base.yaml").write_text(json.dumps(TINY))
    sweep["base"] = str(tmp_path / "base.yaml")
    _, folder = sweep_and_report(tmp_path, sweep)
    trials = sorted(p for p in (folder.parent / "trials").iterdir() if p.is_dir())
    assert len(trials) == 2
    for trial in trials:
        metrics = pd.read_csv(trial / "metrics.csv")
        summary = json.loads((trial / "summary.json").read_text())
        events = EventAccumulator(str(trial / "tensorboard")).Reload()
        logged = events.Scalars("loss")
        assert [event.step for event in logged] == metrics["step"].tolist() == [1, 11, 21, 30]
        assert [event.value for event in logged] == pytest.approx(metrics["loss"].tolist(), rel=1e-6)
        hparams = events.PluginTagToContent("hparams")
        assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams), hparams.keys()
        assert b"optimizer.lr" in hparams["_hparams_/experiment"] and b"final/loss" in hparams["_hparams_/experiment"]

        records = wandb_records(trial)
        (run,) = [record.run for record in records if record.WhichOneof("record_type") == "run"]
        config = items(run.config.update)
        assert run.run_group == "t/tracked" and run.run_id == trial.name
        assert config["optimizer"]["lr"] == summary["final"]["lr"] and config["training"]["steps"] == 30
        history = [items(record.history.item) for record in records if record.WhichOneof("record_type") == "history"]
        assert [row["_step"] for row in history] == [1, 11, 21, 30]
        assert [row["loss"] for row in history] == pytest.approx(metrics["loss"].tolist(), rel=1e-12)
        final = {}
        for record in records:
            if record.WhichOneof("record_type") == "summary":
                final.update(items(record.summary.update))
        assert final["final/loss"] == pytest.approx(summary["final"]["loss"], rel=1e-12) and final["status"] == "completed"
        assert any(record.WhichOneof("record_type") == "exit" for record in records)

    reported = optlab("report", str(trials[0]), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr[-2000:]
    logged = {key: value for record in wandb_records(trials[0]) if record.WhichOneof("record_type") == "history"
              for key, value in items(record.history.item).items()}
    assert logged["figures/loss/_type"] == "image-file" and logged["figures/loss/path"].endswith(".png")


def test_unknown_or_missing_logger_is_one_line(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**TINY, "output": {"loggers": ["mlflow"]}}))
    ran = optlab("validate", str(config), cwd=tmp_path)
    assert ran.returncode == 2 and "output.loggers" in ran.stderr and "Traceback" not in ran.stderr

    import importlib.util

    from optlab.config import validate_config
    from optlab.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"output.loggers.*wandb is not installed; pip install 'optlab\[wandb\]'"):
        validate_config({**TINY, "output": {"loggers": ["wandb"]}})
