"""The optlab command line. Parse, call one function, print. Heavy imports (torch) stay inside commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    help="optlab: reproduce the effects optimizer papers describe, in minutes, on a laptop.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: flags without a `<bool>` metavar, errors on one line
)

_debug = {"enabled": False}


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors.")):
    _debug["enabled"] = debug


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _guarded(function, *args, **kwargs):
    """Run a command body: optlab errors become one line and exit 2; anything else one line and exit 1."""
    from optlab.errors import OptlabError

    try:
        return function(*args, **kwargs)
    except OptlabError as error:
        if _debug["enabled"]:
            raise
        _fail(str(error))
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        raise typer.Exit(130)
    except BrokenPipeError:  # `optlab list | head`: the reader has gone, which is not an error
        sys.stderr.close()
        raise typer.Exit(0)
    except (typer.Exit, SystemExit):
        raise
    except Exception as error:  # a bug or an environment problem: say what, offer the traceback
        if _debug["enabled"]:
            raise
        _fail(f"{type(error).__name__}: {error} (run `optlab --debug ...` for the traceback)", code=1)


def shipped_configs_dir() -> Path:
    """`configs/` in the working directory, else the one beside the installed package (a checkout)."""
    here = Path.cwd() / "configs"
    return here if here.is_dir() else Path(__file__).resolve().parent.parent / "configs"


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML experiment config (optional with --resume)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key.sub=value overrides, e.g. optimizer.lr=3e-4"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run directory from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a config that differs from the run's."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Train one experiment (or --resume one) into runs/.

    \b
    Example: optlab train configs/embedding_drift/lion.yaml training.steps=500 optimizer.lr=3e-3
    """

    def body():
        from optlab.config import load_config
        from optlab.memory import check_memory

        nonlocal config, overrides
        if config is not None and "=" in config.name and not config.exists():  # `--resume DIR key=value`
            config, overrides = None, [str(config), *(overrides or [])]
        if resume is None:
            if config is None:
                _fail("give a CONFIG file to train, or --resume RUN_DIR to continue a run")
            experiment = load_config(config, overrides or [])
        else:
            experiment = _resume_config(resume, config, overrides or [], force)
        check_memory(experiment, str(config or resume / "config.yaml"))
        from optlab.train import train as run_training  # torch: only once the config is known to be valid

        result = run_training(experiment, show_progress=not quiet, resume=resume)
        final = result.summary.get("final", {})
        typer.echo(f"{result.status}: {result.run_dir}  (steps {result.summary['steps_completed']}, "
                   f"loss {final.get('loss', float('nan')):.4f}, {result.summary['wall_time_s']:.1f} s)")
        return result

    result = _guarded(body)
    if result.status == "failed":
        raise typer.Exit(1)
    if result.status == "interrupted":
        raise typer.Exit(130)


def _resume_config(run_dir: Path, config: Optional[Path], overrides: List[str], force: bool):
    """The config to continue `run_dir` with: the run's own, or CONFIG/overrides if identical (or --force)."""
    from optlab.config import config_differences, load_config
    from optlab.errors import ConfigError, RunDirError
    from optlab.runs import is_run_dir, read_summary

    if not is_run_dir(run_dir):
        raise RunDirError(f"--resume {run_dir}: not an optlab run directory (needs config.yaml and summary.json)")
    stored = load_config(run_dir / "config.yaml")
    requested = load_config(config or run_dir / "config.yaml", overrides)
    if config is not None and requested.name != stored.name:
        requested = requested.model_copy(update={"name": stored.name})
    differences = config_differences(stored, requested)
    if differences and not force:
        raise ConfigError(f"--resume {run_dir}: the config differs from the run's in {', '.join(differences)}; "
                          "add --force to continue with the new values")
    if read_summary(run_dir).get("status") == "completed" and requested.training.steps <= stored.training.steps:
        raise RunDirError(f"--resume {run_dir}: the run is already completed; raise training.steps (with --force) to extend it")
    return requested  # train() writes it into the run directory once the checkpoint has loaded


@app.command()
def report(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories, or folders holding runs (latest run per config)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the report (default: beside the runs)."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when any verdict FAILs (for scripts and CI)."),
):
    """Render tables, plots and verdicts for finished runs.

    \b
    Example: optlab report runs/embedding_drift --check   (exit 0: every verdict passed or states no expectation)
    """

    def body():
        from optlab.errors import OptlabError
        from optlab.report import default_report_dir, write_report
        from optlab.runs import find_runs, load_run
        from optlab.sweep import is_sweep_dir

        if out is not None and out.exists() and not out.is_dir():
            raise OptlabError(f"--out {out}: is a file; give a folder for the report (it is created if missing)")
        sweeps = [path for path in run_dirs if is_sweep_dir(path)]
        failed = []
        for sweep_dir in sweeps:
            from optlab.report.sweep import write_sweep_report

            directory, summary = write_sweep_report(sweep_dir, out)
            for key, value in summary.get("fits", {}).items():
                if isinstance(value, float):
                    typer.echo(f"{sweep_dir}: fitted {key} = {value:.4g}")
            for verdict in summary["verdicts"]:
                typer.echo(_verdict_line(verdict))
            failed += [verdict for verdict in summary["verdicts"] if verdict["passed"] is False]
            typer.echo(f"report: {directory / 'report.md'}")
        others = [path for path in run_dirs if path not in sweeps]
        if others:
            runs = [load_run(path) for path in find_runs(others)]
            directory, verdicts = write_report(runs, out or default_report_dir(runs))
            for verdict in verdicts:
                typer.echo(verdict.line())
            failed += [verdict for verdict in verdicts if verdict.passed is False]
            typer.echo(f"report: {directory / 'report.md'}")
        if check and failed:
            typer.secho(f"--check: {len(failed)} verdict{'s' if len(failed) > 1 else ''} failed", err=True)
            raise typer.Exit(1)

    _guarded(body)


def _verdict_line(verdict: dict) -> str:
    from optlab.effects.core import Verdict

    return Verdict(**verdict).line()


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="YAML sweep file (see configs/scaling/)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key.sub=value overrides of the base config."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Parallel worker processes (local executor)."),
    executor: str = typer.Option("local", "--executor", metavar="<local|inline|ray|slurm>",
                                 help="local: worker processes; inline: this process; ray: a Ray cluster (optlab[ray]); "
                                      "slurm: a SLURM job array (optlab[slurm])."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local one)."),
    trial_cpus: Optional[float] = typer.Option(None, "--trial-cpus", metavar="<float>",
                                               help="Ray, SLURM: CPUs per trial (default: the sweep's resources.cpus, 1)."),
    trial_gpus: Optional[float] = typer.Option(None, "--trial-gpus", metavar="<float>",
                                               help="Ray, SLURM: GPUs per trial, fractions on Ray (default: resources.gpus, 0)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the trials and the total steps; run nothing."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun trials recorded as failed."),
    population: bool = typer.Option(True, "--population/--no-population",
                                    help="Train the trials that differ only in their optimizer together, one vectorised "
                                         "forward pass for all (local and inline executors; same results)."),
):
    """Run a grid of trials; re-running the same command resumes it.

    \b
    Example: optlab sweep configs/scaling/exp_a.yaml --workers 2 && optlab report runs/scaling/exp_a
    """

    def body():
        from optlab.errors import OptlabError
        from optlab.sweep import run_sweep

        if executor not in ("local", "inline", "ray", "slurm"):
            raise OptlabError(f"--executor {executor!r}: choose local, inline, ray or slurm")
        if trial_cpus is not None and not trial_cpus > 0:
            raise OptlabError(f"--trial-cpus {trial_cpus:g}: a trial needs a positive number of CPUs (e.g. 1 or 0.5)")
        if trial_gpus is not None and not trial_gpus >= 0:
            raise OptlabError(f"--trial-gpus {trial_gpus:g}: GPUs per trial must be ≥ 0 (e.g. 0.25)")
        return run_sweep(sweep_file, overrides or [], workers=workers, executor=executor, dry_run=dry_run,
                         retry_failed=retry_failed, address=address, trial_cpus=trial_cpus, trial_gpus=trial_gpus,
                         population=population)

    raise typer.Exit(_guarded(body))


@app.command()
def validate(
    config: Path = typer.Argument(..., help="YAML experiment config."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key.sub=value overrides."),
):
    """Check a config and its overrides; print the resolved config.

    \b
    Example: optlab validate configs/embedding_drift/tiger.yaml model.embedding_dim=64 > my_config.yaml
    """

    def body():
        from optlab.config import dump_config, load_config
        from optlab.memory import check_memory, estimate, readable

        experiment = load_config(config, overrides or [])
        check_memory(experiment, str(config))
        if experiment.training.device == "cuda":  # checked like train does (torch is imported only then)
            from optlab.train import resolve_device

            resolve_device("cuda")
        typer.echo(dump_config(experiment), nl=False)
        typer.echo(f"# {config}: valid (needs about {readable(sum(t.bytes for t in estimate(experiment)))} of memory)", err=True)

    _guarded(body)


@app.command()
def profile(
    optimizer: str = typer.Argument(..., help="A built-in name, an import path module:Class, or a YAML file with an optimizer section."),
    keywords: Optional[List[str]] = typer.Argument(None, help="The optimizer's keywords as key=value, e.g. lr=3e-4."),
    quick: bool = typer.Option(False, "--quick", help="Small grids (about 2 minutes on 2 cores)."),
    against: str = typer.Option(",".join(("adamw", "lion", "sgd")), "--against", help="Reference optimizers, comma-separated."),
    panels: Optional[str] = typer.Option(None, "--panels", help="Only these panels, comma-separated (default: all)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes for the panels' sweeps (1: this process)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="The card goes to RUNS_DIR/profiles/<optimizer id>/."),
):
    """A behaviour card: the lab's effects measured on an optimizer.

    \b
    Example: optlab profile lion lr=3e-4 weight_decay=1.0 --quick   (or myproject.optim:MyAdam lr=1e-3)
    """

    def body():
        from rich.console import Console

        from optlab.errors import OptlabError
        from optlab.profile import PANELS, profile as run_profile

        section = _optimizer_section(optimizer, keywords or [])
        chosen = panels.split(",") if panels else list(PANELS)
        unknown = [name for name in chosen if name not in PANELS]
        if unknown:
            raise OptlabError(f"--panels {','.join(unknown)}: unknown panel; choose from {', '.join(PANELS)}")
        directory, card = run_profile(section, [name for name in against.split(",") if name], chosen, runs_dir, quick,
                                      workers, Console(stderr=True))
        for name, panel in card["panels"].items():
            typer.echo(f"{panel['title']}: " + "; ".join(f"{label}: {finding['finding']}"
                                                          for label, finding in panel["findings"].items()))
        typer.echo(f"card: {directory / 'card.md'}")

    _guarded(body)


def _optimizer_section(optimizer: str, keywords: List[str]) -> dict:
    """The validated optimizer section of `optlab profile OPTIMIZER key=value ...` (one-line errors)."""
    from optlab.config import apply_override, parse_override, read_yaml_mapping, validate_config

    if optimizer.endswith((".yaml", ".yml")):
        data = read_yaml_mapping(Path(optimizer))
        section, source = data.get("optimizer", data), optimizer
    else:
        section, source = {"name": optimizer}, "optlab profile"
    section = dict(section)
    for keyword in keywords:
        keys, value = parse_override(keyword)
        apply_override(section, keys, value, source)
    return validate_config({"optimizer": section}, source=source).optimizer.model_dump(mode="json")


@app.command()
def sample(
    run_dir: Path = typer.Argument(..., help="A finished language-model run (model: gpt on text data)."),
    prompt: str = typer.Option("the", "--prompt", "-p", help="Text to continue (encoded with the run's vocabulary)."),
    tokens: int = typer.Option(40, "--tokens", "-n", min=1, help="How many tokens to generate."),
    temperature: float = typer.Option(0.8, "--temperature", "-t", min=0.0, help="Softmax temperature (0: the most likely token)."),
    top_k: Optional[int] = typer.Option(40, "--top-k", min=1, help="Draw only among the k most likely tokens."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws (the same seed prints the same text)."),
):
    """Text from a trained language model, from its last checkpoint.

    \b
    Example: optlab sample runs/other/lion_vs_adamw_lr/<run> --prompt "the function" --tokens 30
    """

    def body():
        from optlab.sample import sample as generate

        typer.echo(generate(run_dir, prompt, tokens, temperature, top_k, seed))

    _guarded(body)


@app.command(name="list")
def list_(what: str = typer.Argument("all", metavar="[WHAT]",
                                     help="models | datasets | optimizers | effects | configs | all; one kind alone also shows its fields.")):
    """List models, datasets, optimizers, effects and shipped configs.

    Components that installed packages register (entry points) are listed with their import path. One kind
    alone (`optlab list models`) adds each component's fields with their defaults, the keys a config sets.

    \b
    Example: optlab list datasets
    """

    def body():
        from optlab.components import entry_points
        from optlab.data.schema import BUILTIN_DATASETS, PluginDataSpec
        from optlab.effects import effect_names
        from optlab.models.schema import BUILTIN_MODELS, PluginModelSpec
        from optlab.optim.schema import BUILTIN_OPTIMIZERS, PluginOptimizerSpec

        def described(schemas, plugin) -> list[str]:
            lines = []
            for schema in schemas:
                lines.append(f"{schema.model_fields['name'].default}: {_first_paragraph(schema.__doc__)}")
                if what != "all":
                    lines.append("    " + ", ".join(f"{key}={value}" for key, value in schema().model_dump(mode="json").items()
                                                    if key != "name"))
            return lines + [f"{name}: {path} (installed)" for name, path in entry_points(plugin.group).items()]

        def effects() -> list[str]:
            from optlab.effects import load_effect

            return [f"{name} [{(effect := load_effect(name)).scope}]: {effect.summary} ({effect.section})"
                    for name in effect_names()]

        def configs() -> list[str]:
            from optlab.config import read_yaml_mapping

            root = shipped_configs_dir()
            lines = []
            for path in sorted(root.rglob("*.yaml")):
                description = str(read_yaml_mapping(path).get("description", "")).strip()
                lines.append(f"{path.relative_to(root.parent)}" + (f": {_first_sentence(description)}" if what != "all" else ""))
            return lines

        sections = {
            "models": lambda: described(BUILTIN_MODELS, PluginModelSpec),
            "datasets": lambda: described(BUILTIN_DATASETS, PluginDataSpec),
            "optimizers": lambda: [
                f"{spec.model_fields['name'].default}: " + ", ".join(f"{key}={value}" for key, value in spec().keywords().items())
                for spec in BUILTIN_OPTIMIZERS
            ] + [f"{name}: {path} (installed)" for name, path in entry_points(PluginOptimizerSpec.group).items()],
            "effects": effects,
            "configs": configs,
        }
        if what != "all" and what not in sections:
            from optlab.errors import OptlabError

            import difflib

            guess = difflib.get_close_matches(what, [*sections, "all"], n=1)
            hint = f"did you mean `{guess[0]}`? " if guess else ""
            raise OptlabError(f"list {what!r}: {hint}choose one of {', '.join(sections)} or all")
        for name, lines in sections.items():
            if what in ("all", name):
                typer.secho(name, bold=True)
                for line in lines():
                    typer.echo(f"  {line}")

    _guarded(body)


def _first_paragraph(text: str) -> str:
    """A docstring's first paragraph on one line (a listing must not cut a sentence at a line break)."""
    return " ".join(text.strip().split("\n\n")[0].split())


def _first_sentence(text: str) -> str:
    """The first sentence of a config's description, on one line."""
    words = " ".join(text.split())
    end = words.find(". ")
    return words if end < 0 else words[: end + 1]


@app.command(name="cp")
def copy_config(
    config: str = typer.Argument(..., help="A shipped config (as `optlab list configs` names it, e.g. embedding_drift/lion) or a path."),
    destination: Path = typer.Argument(..., help="The new file, or a folder to put it in."),
    force: bool = typer.Option(False, "--force", help="Overwrite DESTINATION if it exists."),
):
    """Start a new config from a shipped one (like torchtune's `tune cp`).

    The copy keeps the comments; a sweep file's `base:` is rewritten to point at the same base from the new place.

    \b
    Example: optlab cp embedding_drift/lion my_lion.yaml && optlab train my_lion.yaml
    """

    def body():
        import os
        import re

        from optlab.config import read_yaml_mapping
        from optlab.errors import OptlabError

        source = Path(config)
        if not source.is_file():
            shipped = shipped_configs_dir()
            name = config.removeprefix("configs/")
            source = next((path for path in (shipped / name, shipped / f"{name}.yaml") if path.is_file()), source)
        data = read_yaml_mapping(source)  # one-line errors for a missing or damaged source
        target = destination / source.name if destination.is_dir() else destination
        if target.exists() and not force:
            raise OptlabError(f"{target}: exists; choose another name or add --force to overwrite it")
        text = source.read_text(encoding="utf-8")
        if isinstance(data.get("base"), str):  # relative inside the working directory, else absolute
            base, here = (source.parent / data["base"]).resolve(), Path.cwd().resolve()
            inside = base.is_relative_to(here) and target.resolve().is_relative_to(here)
            moved = Path(os.path.relpath(base, target.resolve().parent)).as_posix() if inside else base.as_posix()
            text = re.sub(r"^base:.*$", f"base: {moved}", text, count=1, flags=re.MULTILINE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        typer.echo(f"{source} -> {target}")

    _guarded(body)


@app.command()
def demo(
    config_dir: Path = typer.Argument(None, help="Folder of configs to run (default: configs/embedding_drift)."),
    workers: int = typer.Option(None, "--workers", "-w", min=1,
                                help="Runs trained at once, in worker processes (default: one per core, at most one "
                                     "per config; 1: one after another in this process)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (with --workers 1)."),
):
    """Train every config in a folder, then report them together.

    Without a folder: the embedding-drift demo (configs/embedding_drift). The runs share the machine's
    cores (one worker process per core); the time left is printed as runs finish.

    \b
    Example: optlab demo configs/embedding_drift
    """

    def body():
        import os

        from optlab.config import load_config
        from optlab.errors import OptlabError
        from optlab.memory import check_memory
        from optlab.report import default_report_dir, write_report
        from optlab.runs import load_run, new_run_dir

        folder = config_dir or shipped_configs_dir() / "embedding_drift"
        paths = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
        if not paths:
            raise OptlabError(f"{folder}: no *.yaml configs here; give a folder of configs such as configs/embedding_drift")
        configs = [load_config(path) for path in paths]
        for path, experiment in zip(paths, configs):
            check_memory(experiment, str(path))
        parallel = min(workers or os.cpu_count() or 1, len(configs))
        typer.echo(f"{len(configs)} runs, {parallel} at a time" + (" (one worker process per core)" if parallel > 1 else ""))
        clock = _DemoClock(configs, parallel)
        run_dirs = _demo_in_workers(configs, parallel, clock, new_run_dir) if parallel > 1 else \
            _demo_in_process(configs, clock, quiet)
        runs = [load_run(run_dir) for run_dir in run_dirs]
        directory, verdicts = write_report(runs, default_report_dir(runs))
        for verdict in verdicts:
            typer.echo(verdict.line())
        typer.echo(f"report: {directory / 'report.md'} ({clock.elapsed():.0f} s in all)")

    _guarded(body)


class _DemoClock:
    """Time left in a demo, from the runs finished so far: seconds per step measured × steps left ÷ workers."""

    def __init__(self, configs, parallel: int):
        import time

        self.started, self.parallel, self.done = time.perf_counter(), parallel, 0
        self.steps_left, self.seconds, self.steps_done = sum(c.training.steps for c in configs), 0.0, 0

    def finished(self, steps: int, wall_time_s: float) -> str:
        self.done += 1
        self.seconds, self.steps_done = self.seconds + wall_time_s, self.steps_done + steps
        self.steps_left -= steps
        left = self.seconds / max(self.steps_done, 1) * self.steps_left / self.parallel
        return f", about {left:.0f} s left" if self.steps_left else ""

    def elapsed(self) -> float:
        import time

        return time.perf_counter() - self.started


def _demo_in_process(configs, clock: _DemoClock, quiet: bool) -> list[Path]:
    """The demo's runs one after another in this process (with progress bars)."""
    from optlab.train import train as run_training

    run_dirs = []
    for index, experiment in enumerate(configs, start=1):
        typer.echo(f"run {index} of {len(configs)}: {experiment.name}")
        result = run_training(experiment, show_progress=not quiet)
        left = clock.finished(experiment.training.steps, result.summary["wall_time_s"])
        typer.echo(f"{result.status}: {result.run_dir} ({result.summary['wall_time_s']:.1f} s{left})")
        if result.status == "interrupted":  # Ctrl-C stops the demo, not only the run it fell in
            raise KeyboardInterrupt
        run_dirs.append(result.run_dir)
    return run_dirs


def _demo_in_workers(configs, parallel: int, clock: _DemoClock, new_run_dir) -> list[Path]:
    """The demo's runs in `parallel` worker processes (the sweep's local executor: each worker gets its
    share of the cores, and a worker that dies takes only its own run down)."""
    from optlab.errors import OptlabError
    from optlab.sweep.executors import run_local

    run_dirs = [new_run_dir(experiment) for experiment in configs]
    jobs = [(str(index), experiment.model_dump(mode="json"), str(run_dir))
            for index, (experiment, run_dir) in enumerate(zip(configs, run_dirs))]
    failures = []

    def on_start(job_id: str, info: dict) -> None:
        typer.echo(f"started: {configs[int(job_id)].name}")

    def on_done(job_id: str, result: dict) -> None:
        experiment = configs[int(job_id)]
        if result["status"] == "failed":
            failures.append(f"{experiment.name}: {result.get('error')}")
            typer.echo(f"failed: {experiment.name}: {result.get('error')}")
            return
        if result["status"] == "interrupted":
            typer.echo(f"interrupted: {experiment.name} ({result.get('error')}); it runs again")
            return
        left = clock.finished(experiment.training.steps, result.get("wall_time_s") or 0.0)
        typer.echo(f"{result['status']}: {run_dirs[int(job_id)]} ({result.get('wall_time_s') or 0:.1f} s{left})")

    run_local([[job] for job in jobs], parallel, on_start, on_done, on_poll=lambda: None)
    if failures:
        raise OptlabError("the demo's runs failed: " + "; ".join(failures))
    return run_dirs


if __name__ == "__main__":
    sys.exit(app())
