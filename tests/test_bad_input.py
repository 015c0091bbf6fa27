"""Bad input, as a hostile user or a crashed machine leaves it: every case gets exit code 2, exactly one
line naming the field or the file and what to do, no traceback, and writes nothing at all.

The commands run in this process (typer's CliRunner), so that a hundred cases cost seconds; a few of
them also run as real processes in test_cli.py. Cases that need a finished run or sweep copy one that
the module trains once, then damage the copy."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from optlab.cli import app

GOOD = """\
name: bad/run
model: {name: bag, embedding_dim: 8, context: 3}
data: {name: zipf, vocab_size: 200}
optimizer: {name: tiger, lr: 0.02, weight_decay: 1.0}
training: {steps: 12, batch_size: 8}
probes: {every: 4}
"""
GPT = """\
model: {name: gpt, embedding_dim: 16, context: 8, n_layer: 1, n_head: 2}
data: {name: zipf, vocab_size: 100}
training: {steps: 2, batch_size: 4}
"""
NO_TRIALS = "grid: {optimizer.lr: [0.1]}\nexclude: [{optimizer.lr: 0.1}]\n"  # a sweep of 0 trials
BASE = {"model": {"name": "linreg"}, "data": {"name": "linear-regression", "dim": 3, "teacher": "zero"},
        "optimizer": {"name": "sgd", "lr": 0.1}, "training": {"steps": 4, "batch_size": 2, "dtype": "float64"},
        "probes": {"every": 2, "embedding": False, "updates": False}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, Path]:
    """A finished run (with its final checkpoint) and a finished sweep, made once, copied by each case."""
    from rich.console import Console

    from optlab.config import load_config
    from optlab.sweep import run_sweep
    from optlab.train import train

    folder = tmp_path_factory.mktemp("finished")
    (folder / "good.yaml").write_text(GOOD)
    run = train(load_config(folder / "good.yaml", [f"output.runs_dir={folder / 'runs'}"]), show_progress=False)
    sweep_file = folder / "sweep.yaml"
    sweep_file.write_text(json.dumps({"name": "bad/sweep", "base": BASE, "grid": {"optimizer.lr": [0.1, 0.2]},
                                      "runs_dir": str(folder / "runs")}))
    assert run_sweep(sweep_file, [], executor="inline", console=Console(quiet=True)) == 0
    return {"run": run.run_dir, "sweep": folder / "runs" / "bad" / "sweep", "sweep_file": sweep_file}


class Workspace:
    """The case's folder (the working directory): good.yaml, base.yaml, a copy of the finished run and sweep."""

    def __init__(self, root: Path, finished: dict[str, Path]):
        self.root, self.locks = root, []
        (root / "good.yaml").write_text(GOOD)
        (root / "gpt.yaml").write_text(GPT)
        (root / "base.yaml").write_text(json.dumps(BASE))
        self.run = root / "runs" / "bad" / "run" / finished["run"].name
        shutil.copytree(finished["run"], self.run)
        self.sweep = root / "runs" / "bad" / "sweep"
        shutil.copytree(finished["sweep"], self.sweep)
        recorded = yaml.safe_load((self.sweep / "sweep.yaml").read_text())
        (self.sweep / "sweep.yaml").write_text(yaml.safe_dump({**recorded, "runs_dir": "runs"}))  # this copy's

    def hold_lock(self, run_dir: Path) -> Path:
        """Lock the run as the process training it would (released when the case ends)."""
        from optlab.runs import lock_directory

        self.locks.append(lock_directory(run_dir, "busy"))
        return run_dir

    def write(self, name: str, text: str | bytes) -> str:
        path = self.root / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        return name

    def sweep_file(self, text: str) -> str:
        return self.write("s.yaml", "base: base.yaml\n" + text)


def cfg(text: str):
    return lambda ws: ["validate", ws.write("c.yaml", text)]


def override(*overrides: str, command: str = "validate", config: str = "good.yaml"):
    return lambda ws: [command, config, *overrides]


def sweep(text: str, *extra: str):
    return lambda ws: ["sweep", ws.sweep_file(text), *extra]


def damaged_run(damage, command=("report",)):
    def setup(ws):
        damage(ws.run)
        return [*command, str(ws.run)]
    return setup


def damaged_sweep(damage, command="report"):
    def setup(ws):
        damage(ws.sweep)
        return [command, str(ws.sweep)] if command == "report" else ["sweep", str(ws.sweep / "sweep.yaml")]
    return setup


def demo_of(ws, text: str) -> list[str]:
    (ws.root / "demo").mkdir()
    ws.write("demo/a.yaml", text)
    return ["demo", "demo"]


def truncate(path: Path, keep: float = 0.5):
    path.write_bytes(path.read_bytes()[: int(len(path.read_bytes()) * keep)])


def every_checkpoint(damage):
    return lambda run: [damage(p) for p in sorted((run / "checkpoints").iterdir())]


def append_line(path: Path, line: str):
    with open(path, "a") as stream:
        stream.write(line + "\n")


CASES = {
    # ---- the YAML file itself
    "missing file": (lambda ws: ["validate", "nope.yaml"], "nope.yaml: file not found"),
    "a directory": (lambda ws: ["validate", "runs"], "is a directory"),
    "empty file": (cfg(""), "the file is empty"),
    "only a comment": (cfg("# nothing\n"), "the file is empty"),
    "top-level list": (cfg("- a\n- b\n"), "the top level must be a mapping"),
    "top-level scalar": (cfg("42\n"), "the top level must be a mapping"),
    "unclosed bracket": (cfg("optimizer: [name: tiger\n"), "malformed YAML at line"),
    "bad indentation": (cfg("optimizer:\n  name: tiger\n lr: 1\n"), "malformed YAML"),
    "tab indentation": (cfg("optimizer:\n\tname: tiger\n"), "malformed YAML"),
    "python tag": (cfg("model: !!python/object:os.system {}\n"), "unsupported YAML tag"),
    "python apply tag": (cfg("x: !!python/object/apply:os.system ['true']\n"), "unsupported YAML tag"),
    "nested 5000 deep": (cfg("a: " + "[" * 5000 + "]" * 5000 + "\n"), "nested too deeply"),
    "not UTF-8": (lambda ws: ["validate", ws.write("c.yaml", b"name: \xff\xfe\n")], "cannot be read"),
    # ---- sections and keys
    "unknown section": (cfg("optimiser: {name: tiger}\n"), "optimiser: unknown key; did you mean `optimizer`?"),
    "unknown optimizer key": (cfg("optimizer: {name: tiger, betta: 0.9}\n"), "optimizer.betta: unknown key; did you mean `beta`?"),
    "unknown model key": (cfg("model: {name: bag, widht: 3}\n"), "model.widht: unknown key"),
    "unknown data key": (cfg("data: {name: zipf, vocab: 3}\n"), "data.vocab: unknown key; did you mean `vocab_size`?"),
    "unknown training key": (cfg("training: {step: 3}\n"), "training.step: unknown key; did you mean `steps`?"),
    "unknown probes key": (cfg("probes: {evry: 3}\n"), "probes.evry: unknown key; did you mean `every`?"),
    "unknown output key": (cfg("output: {run_dir: x}\n"), "output.run_dir: unknown key; did you mean `runs_dir`?"),
    "unknown schedule key": (cfg("schedule: {name: cosine, warmup: 3}\n"), "schedule.warmup: unknown key"),
    "unknown effect key": (cfg("effect: {name: embedding_drift, expect: absent, why: x}\n"), "effect.why: unknown key"),
    "section is a value": (cfg("optimizer: 3\n"), "optimizer"),
    "section is a list": (cfg("training: [1, 2]\n"), "training"),
    # ---- component names
    "unknown optimizer": (cfg("optimizer: {name: adam_w}\n"), "optimizer.name: unknown name 'adam_w' (did you mean `adamw`?)"),
    "unknown model": (cfg("model: {name: transformer}\n"), "model.name: unknown name 'transformer'"),
    "unknown dataset": (cfg("data: {name: wikitext}\n"), "data.name: unknown name 'wikitext'"),
    "optimizer without name": (cfg("optimizer: {lr: 0.1}\n"), "optimizer.name: missing"),
    "name is a number": (cfg("optimizer: {name: 3}\n"), "optimizer.name"),
    "import path, no module": (cfg("optimizer: {name: 'no_such_module:Opt'}\n"), "optimizer.name"),
    "import path, no attribute": (cfg("optimizer: {name: 'torch.optim:Adamm'}\n"), "optimizer.name"),
    "import path, not an optimizer": (cfg("optimizer: {name: 'collections:OrderedDict'}\n"), "optimizer.name"),
    "plugin keyword unknown": (cfg("optimizer: {name: 'torch.optim:SGD', lr: 0.1, momentom: 0.9}\n"), "optimizer.momentom"),
    "unknown schedule": (cfg("schedule: {name: exponential}\n"), "schedule"),
    "unknown effect": (cfg("effect: {name: drift, expect: reproduced}\n"), "effect.name: unknown effect"),
    "unknown expectation": (cfg("effect: {name: embedding_drift, expect: maybe}\n"), "effect.expect"),
    "fixed without baseline": (cfg("effect: {name: embedding_drift, expect: fixed}\n"), "needs `baseline`"),
    # ---- values
    "steps not a number": (cfg("training: {steps: many}\n"), "training.steps: Input should be a valid integer"),
    "steps zero": (cfg("training: {steps: 0}\n"), "training.steps: Input should be greater than 0"),
    "steps fractional": (cfg("training: {steps: 2.5}\n"), "training.steps"),
    "batch size zero": (cfg("training: {batch_size: 0}\n"), "training.batch_size: Input should be greater than 0"),
    "batch not divisible": (cfg("training: {batch_size: 10, grad_accum_steps: 3}\n"), "must be divisible by grad_accum_steps"),
    "negative lr": (cfg("optimizer: {name: adamw, lr: -0.1}\n"), "optimizer.lr: Input should be greater than 0"),
    "beta of one": (cfg("optimizer: {name: adamw, betas: [0.9, 1.0]}\n"), "optimizer.betas.1: Input should be less than 1"),
    "three betas": (cfg("optimizer: {name: adamw, betas: [0.9, 0.9, 0.9]}\n"), "optimizer.betas"),
    "negative weight decay": (cfg("optimizer: {name: lion, weight_decay: -1}\n"), "optimizer.weight_decay"),
    "lr infinite": (cfg("optimizer: {name: adamw, lr: .inf}\n"), "optimizer.lr: Input should be a finite number"),
    "lr nan": (cfg("optimizer: {name: lion, lr: .nan}\n"), "optimizer.lr: Input should be a finite number"),
    "eps infinite": (cfg("optimizer: {name: adamw, eps: .inf}\n"), "optimizer.eps: Input should be a finite number"),
    "weight decay infinite": (cfg("optimizer: {name: tiger, weight_decay: .inf}\n"), "optimizer.weight_decay: Input should be a finite"),
    "beta nan": (cfg("optimizer: {name: adamw, betas: [.nan, 0.9]}\n"), "optimizer.betas.0: Input should be a finite"),
    "grad clip infinite": (cfg("training: {grad_clip: .inf}\n"), "training.grad_clip: Input should be a finite"),
    "divergence factor infinite": (cfg("training: {divergence_factor: .inf}\n"), "training.divergence_factor"),
    "divergence factor one": (cfg("training: {divergence_factor: 1}\n"), "training.divergence_factor"),
    "init std nan": (cfg("model: {name: bag, init_std: .nan}\n"), "model.init_std: Input should be a finite"),
    "zipf exponent infinite": (cfg("data: {name: zipf, exponent: .inf}\n"), "data.exponent: Input should be a finite"),
    "stop target infinite": (cfg("training: {stop_at_target: {column: loss, value: .inf}}\n"), "training.stop_at_target.value"),
    "unknown device": (cfg("training: {device: tpu}\n"), "training.device"),
    "unknown dtype": (cfg("training: {dtype: float16}\n"), "training.dtype"),
    "vocabulary of one": (cfg("data: {name: zipf, vocab_size: 1}\n"), "data.vocab_size"),
    "odd width with swap": (cfg("model: {name: bag, embedding_dim: 7, tie_embeddings: swap}\n"), "needs an even embedding_dim"),
    "heads do not divide": (cfg("model: {name: gpt, embedding_dim: 10, n_head: 3}\n"), "must be divisible by n_head"),
    "probes every zero": (cfg("probes: {every: 0}\n"), "probes.every"),
    "keep no checkpoint": (cfg("output: {keep_checkpoints: 0}\n"), "output.keep_checkpoints"),
    "name with ..": (cfg("name: ../../etc/run\n"), "name: use letters, digits"),
    "absolute name": (cfg("name: /tmp/run\n"), "name: use letters, digits"),
    "name with spaces": (cfg("name: my run\n"), "name: use letters, digits"),
    # ---- overrides
    "override without =": (override("optimizer.lr"), "write overrides as key.sub=value"),
    "override with empty key": (override("=3"), "write overrides as key.sub=value"),
    "override with empty part": (override("optimizer..lr=3"), "write overrides as key.sub=value"),
    "override below a value": (override("training.steps.x=1"), "training.steps is a value, not a section"),
    "override unknown key": (override("optimizer.lrr=0.1"), "optimizer.lrr: unknown key; did you mean `lr`?"),
    "override unknown section": (override("nonexistent.key=1"), "nonexistent: unknown key"),
    "override infinite": (override("optimizer.lr=inf"), "optimizer.lr: Input should be a finite number"),
    "override nan": (override("optimizer.weight_decay=nan"), "optimizer.weight_decay: Input should be a finite"),
    "override wrong type": (override("training.steps=abc"), "training.steps: Input should be a valid integer"),
    "override index out of range": (override("optimizer.betas.5=0.1", config="c.yaml"), "is not an index of this list"),
    "override index into absent list": (override("param_groups.rules.0.lr=1"), "is not a list in this config"),
    "override unknown optimizer": (override("optimizer.name=adamm"), "optimizer.name: unknown name 'adamm'"),
    # ---- sizes that cannot fit (refused before anything is allocated or written)
    "batch of 10^12": (override("training.batch_size=1e12"), "training.batch_size: the run needs about"),
    "vocabulary of 10^9": (override("data.vocab_size=1e9"), "data.vocab_size: the run needs about"),
    "width of 10^9": (override("model.embedding_dim=1e9"), "model.embedding_dim: the run needs about"),
    "context of 10^9": (override("model.context=1e9"), "model.context: the run needs about"),
    "eval examples 10^12": (override("probes.eval_examples=1e12"), "probes.eval_examples: the run needs about"),
    "GPT of 10^6 layers": (override("model.n_layer=1000000", config="gpt.yaml"), "model.n_layer: the run needs about"),
    "train: batch of 10^12": (override("training.batch_size=1e12", command="train"), "training.batch_size: the run needs"),
    "train: vocabulary of 10^9": (override("data.vocab_size=1e9", command="train"), "data.vocab_size: the run needs"),
    "train: GPT of 10^6 layers": (override("model.n_layer=1e6", command="train", config="gpt.yaml"), "model.n_layer: the run"),
    # ---- train and resume
    "nanoGPT's name for the width": (override("model.name=gpt", "model.n_embd=128"), "model.n_embd: unknown key; did you mean `embedding_dim`?"),
    "Hugging Face's name for the lr": (override("optimizer.learning_rate=1e-3"), "optimizer.learning_rate: unknown key; did you mean `lr`?"),
    "train without config": (lambda ws: ["train"], "give a CONFIG file to train"),
    "train a missing file": (lambda ws: ["train", "nope.yaml"], "file not found"),
    "train a directory": (lambda ws: ["train", "runs"], "is a directory"),
    "train a sweep file": (lambda ws: ["train", ws.write("s.yaml", "name: s\nbase: good.yaml\nseeds: [0, 1]\n")],
                           "this is a sweep file (it has `base`); run it with `optlab sweep"),
    "train on CUDA without a GPU": (override("training.device=cuda", command="train"), "no CUDA GPU is available"),
    "validate CUDA without a GPU": (override("training.device=cuda"), "no CUDA GPU is available"),
    "train on an unwritable runs_dir": (override("output.runs_dir=good.yaml/runs", command="train"), "cannot create"),
    "resume a folder that is no run": (lambda ws: ["train", "--resume", "."], "not an optlab run directory"),
    "resume a missing folder": (lambda ws: ["train", "--resume", "nowhere"], "not an optlab run directory"),
    "resume a completed run": (lambda ws: ["train", "--resume", str(ws.run)], "the run is already completed"),
    "resume with another config": (lambda ws: ["train", "--resume", str(ws.run), "training.steps=20", "optimizer.lr=0.03"],
                                   "differs from the run's in optimizer.lr, training.steps"),
    "resume a run being trained": (lambda ws: ["train", "--force", "training.steps=20", "--resume", str(ws.hold_lock(ws.run))], "another optlab process is training"),
    "resume a truncated checkpoint": (damaged_run(every_checkpoint(truncate), ("train", "--force", "training.steps=20", "--resume")),
                                      "corrupted or truncated"),
    "resume a checkpoint that is text": (damaged_run(every_checkpoint(lambda p: p.write_text("no")),
                                                     ("train", "--force", "training.steps=20", "--resume")), "corrupted or truncated"),
    "resume without checkpoints": (damaged_run(every_checkpoint(Path.unlink), ("train", "--force", "training.steps=20", "--resume")),
                                   "holds no checkpoint"),
    "resume with a damaged config": (damaged_run(lambda run: (run / "config.yaml").write_text("model: [\n"),
                                                 ("train", "--resume")), "config.yaml: malformed YAML"),
    "resume with a list summary": (damaged_run(lambda run: (run / "summary.json").write_text("[1, 2]"),
                                               ("train", "--force", "training.steps=20", "--resume")), "not a run summary"),
    # ---- sweeps
    "sweep: missing file": (lambda ws: ["sweep", "nope.yaml"], "nope.yaml: file not found"),
    "sweep: malformed": (lambda ws: ["sweep", ws.write("s.yaml", "grid: [\n")], "malformed YAML"),
    "sweep: unknown key": (sweep("gird: {optimizer.lr: [0.1]}\n"), "gird: unknown key; did you mean `grid`?"),
    "sweep: unknown base key": (sweep("grid: {optimizer.lrr: [0.1]}\n"), "optimizer.lrr: unknown key; did you mean `lr`?"),
    "sweep: override under an axis": (sweep("grid: {optimizer.lr: [0.1, 0.2]}\n", "optimizer.lr=0.5"),
                                      "optimizer.lr=0.5: the sweep's grid sets optimizer.lr"),
    "sweep: override under set": (sweep("set: {training.steps: 3}\n", "training.steps=5"),
                                  "training.steps=5: the sweep's set sets training.steps"),
    "sweep: base missing": (lambda ws: ["sweep", ws.write("s.yaml", "base: nothere.yaml\n")], "nothere.yaml: file not found"),
    "sweep: no base": (lambda ws: ["sweep", ws.write("s.yaml", "grid: {optimizer.lr: [0.1]}\n")], "base"),
    "sweep: 0 seeds": (sweep("seeds: []\n"), "seeds: List should have at least 1 item"),
    "sweep: empty axis": (sweep("grid: {optimizer.lr: []}\n"), "grid.optimizer.lr: List should have at least 1 item"),
    "sweep: empty zip": (sweep("zip: {optimizer.lr: []}\n"), "zip.optimizer.lr: List should have at least 1 item"),
    "sweep: everything excluded": (sweep("grid: {optimizer.lr: [0.1, 0.2]}\nexclude: [{optimizer.lr: [0.1, 0.2]}]\n"),
                                   "expands to 0 trials"),
    "sweep: logspace from 0": (sweep("grid: {optimizer.lr: {logspace: [0, 1, 3]}}\n"), "logspace bounds must be positive"),
    "sweep: logspace of 0 values": (sweep("grid: {optimizer.lr: {logspace: [0.1, 1, 0]}}\n"), "grid.optimizer.lr.logspace.2"),
    "sweep: logspace and linspace": (sweep("grid: {optimizer.lr: {logspace: [0.1, 1, 2], linspace: [0, 1, 2]}}\n"),
                                     "give exactly one of logspace"),
    "sweep: axis is a number": (sweep("grid: {optimizer.lr: 3}\n"), "grid.optimizer.lr: Input should be a valid list"),
    "sweep: zip lengths differ": (sweep("zip: {optimizer.lr: [0.1, 0.2], training.steps: [2]}\n"), "same length"),
    "sweep: seed axis in grid": (sweep("grid: {training.seed: [0, 1]}\n"), "grid: training.seed is the `seeds` axis"),
    "sweep: seed in a variant": (sweep("variants: {a: {training.seed: 3}}\n"), "variants.a: training.seed is the `seeds` axis"),
    "sweep: unknown effect": (sweep("effect: drift\n"), "effect: unknown effect"),
    "sweep: name with ..": (sweep(f"name: ../../x\n{NO_TRIALS}"), "name: use letters, digits"),
    "sweep: absolute name": (sweep(f"name: /tmp/optlab_x\n{NO_TRIALS}"), "name: use letters, digits"),
    "sweep: steps_to_target without target": (sweep("metric: {reduce: steps_to_target}\n"), "needs `target`"),
    "sweep: invalid trial": (sweep("grid: {optimizer.lr: [0.1, -1]}\n"), "optimizer.lr=-1"),
    "sweep: trial too large": (sweep("grid: {data.dim: [3, 1000000000]}\n"), "data.dim: the run needs about"),
    "sweep: bad override": (sweep("grid: {optimizer.lr: [0.1]}\n", "optimizer.momentum=2"), "optimizer.momentum"),
    "sweep: unknown executor": (sweep("grid: {optimizer.lr: [0.1]}\n", "--executor", "dask"), "choose local, inline, ray or slurm"),
    "sweep: journal line without trial": (damaged_sweep(lambda d: append_line(d / "manifest.jsonl", '{"state": "completed"}'),
                                                        command="sweep"), "manifest.jsonl: line 7 is not a journal event"),
    "sweep: journal line of unknown state": (damaged_sweep(lambda d: append_line(d / "manifest.jsonl", '{"trial": "x", "state": "done"}'),
                                                           command="sweep"), "is not a journal event"),
    # ---- reports
    "report: missing directory": (lambda ws: ["report", "nothing"], "no such directory"),
    "report: folder without runs": (lambda ws: (ws.root.joinpath("empty").mkdir(), ["report", "empty"])[1], "holds no optlab runs"),
    "report: config does not parse": (damaged_run(lambda run: (run / "config.yaml").write_text("model: [\n")), "config.yaml: malformed YAML"),
    "report: config invalid": (damaged_run(lambda run: (run / "config.yaml").write_text("training: {steps: 0}\n")),
                               "config.yaml: training.steps"),
    "report: config is a list": (damaged_run(lambda run: (run / "config.yaml").write_text("- 1\n")), "the top level must be a mapping"),
    "report: summary is a list": (damaged_run(lambda run: (run / "summary.json").write_text("[1, 2]")), "not a run summary"),
    "report: summary is torn": (damaged_run(lambda run: truncate(run / "summary.json")), "summary.json: cannot be read"),
    "report: summary is binary": (damaged_run(lambda run: (run / "summary.json").write_bytes(b"\xff\x00")), "summary.json: cannot be read"),
    "report: embedding truncated": (damaged_run(lambda run: truncate(run / "embedding.npz")), "embedding.npz: cannot be read"),
    "report: embedding is text": (damaged_run(lambda run: (run / "embedding.npz").write_text("x")), "embedding.npz: cannot be read"),
    "report: --out is a file": (lambda ws: ["report", str(ws.run), "--out", "good.yaml"], "--out good.yaml: is a file"),
    "report: journal line without trial": (damaged_sweep(lambda d: append_line(d / "manifest.jsonl", '{"state": "completed"}')),
                                           "is not a journal event"),
    "report: journal line is a list": (damaged_sweep(lambda d: append_line(d / "manifest.jsonl", "[1]")), "is not a journal event"),
    "report: sweep file damaged": (damaged_sweep(lambda d: (d / "sweep.yaml").write_text("grid: [\n")), "sweep.yaml: malformed YAML"),
    "report: sweep file invalid": (damaged_sweep(lambda d: (d / "sweep.yaml").write_text("name: x\nbase: {}\nseeds: []\n")),
                                   "seeds: List should have at least 1 item"),
    # ---- other commands
    "list: unknown section": (lambda ws: ["list", "widgets"], "list 'widgets': choose one of"),
    "list: singular section": (lambda ws: ["list", "optimizer"], "list 'optimizer': did you mean `optimizers`?"),
    "demo: folder without configs": (lambda ws: ["demo", "runs"], "no *.yaml configs here"),
    "demo: a config too large": (lambda ws: demo_of(ws, GOOD.replace("vocab_size: 200", "vocab_size: 1000000000")),
                                 "a.yaml: data.vocab_size: the run needs about"),
    "demo: a config invalid": (lambda ws: demo_of(ws, GOOD + "extra: 1\n"), "a.yaml: extra: unknown key"),
}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below root with its size and modification time, and every folder. A run's `.lock`
    (taken before a damaged checkpoint can be found out) holds no data and is left out."""
    found = {}
    for folder, folders, files in os.walk(root):
        for name in folders:
            found[str((Path(folder) / name).relative_to(root))] = (0, 0)
        for name in files:
            if name != ".lock":
                stat = (Path(folder) / name).stat()
                found[str((Path(folder) / name).relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, finished, monkeypatch):
    setup, fragment = CASES[case]
    if "CUDA" in case and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    workspace = Workspace(tmp_path, finished)
    monkeypatch.chdir(tmp_path)
    if case == "override index out of range":
        workspace.write("c.yaml", "optimizer: {name: adamw, betas: [0.9, 0.99]}\n")
    arguments = setup(workspace)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, arguments)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert fragment in lines[0], lines[0]
    assert snapshot(tmp_path) == before, "a refused command wrote files"


def test_there_are_at_least_a_hundred_distinct_cases():
    assert len(CASES) >= 100 and len({setup for setup, _ in CASES.values()}) == len(CASES)
