"""Reports, rendering only: tables (tables.py), figure saving (figures.py), the report of runs (here)
and of a sweep (sweep.py). What a report judges comes from the effects (optlab/effects).

`write_report(runs, out)` writes report.md, report.json, comparison.csv and the PNGs into `out`.
"""

from __future__ import annotations

import os
from pathlib import Path

from optlab.runs import Run, atomic_write_text, write_json


def default_report_dir(runs: list[Run]) -> Path:
    """A single run's report goes into the run; several runs' into their common folder."""
    if len(runs) == 1:
        return runs[0].path / "report"
    return Path(os.path.commonpath([run.path.resolve() for run in runs])) / "report"


def effect_groups(runs: list[Run]) -> list[tuple[object, list[Run]]]:
    """[(effect, its runs)]: each run under the effect its config names, and runs that name none under
    every runs-effect that observes their metrics (judged without expectation)."""
    from optlab.effects import effect_names, load_effect

    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.config.effect is not None:
            groups.setdefault(run.config.effect.name, []).append(run)
    unnamed = [run for run in runs if run.config.effect is None]
    if unnamed:
        for name in effect_names():
            effect = load_effect(name)
            if effect.scope == "runs" and effect.observes is not None:
                observed = [run for run in unnamed if effect.observes(run)]
                if observed:
                    groups.setdefault(name, []).extend(observed)
    order = {run.path: index for index, run in enumerate(runs)}
    return [(load_effect(name), sorted(members, key=lambda run: order[run.path])) for name, members in groups.items()]


def write_report(runs: list[Run], out: Path) -> tuple[Path, list]:
    from optlab.effects.core import RunsContext
    from optlab.report.figures import drop_stale_figures, dynamics_panels, loss_curves, metric_curves
    from optlab.report.tables import comparison_table, to_markdown
    from optlab.trackers import upload_figures

    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(runs)
    atomic_write_text(out / "comparison.csv", table.to_csv(index=False))
    sections = [(effect, effect.report(RunsContext(members, runs, out))) for effect, members in effect_groups(runs)]
    verdicts = [verdict for _, section in sections for verdict in section.verdicts]
    figures = [loss_curves(runs, out), dynamics_panels(runs, out),
               metric_curves(runs, out, "population_loss", "population loss", "Population loss", "population_loss.png",
                             log_y=True)]
    figures += [path for _, section in sections for path in section.figures]
    denormals = sorted({str(run.summary.get("denormals")) for run in runs})
    lines = ["# optlab report", "", f"Runs: {len(runs)}. Denormal mode: {', '.join(denormals)}.", ""]
    if verdicts:
        lines += ["## Verdicts", ""] + [f"- {verdict.line()}" for verdict in verdicts] + [""]
    lines += ["## Comparison", "", to_markdown(table), ""]
    for effect, section in sections:
        lines += [f"# {effect.name} ({effect.section})", ""] + section.lines
    lines += ["## Figures", ""] + [f"![{path.stem}]({path.name})" for path in figures if path] + [""]
    lines += ["## Runs", ""] + [f"- `{run.path}`" for run in runs] + [""]
    drop_stale_figures(out, figures)
    atomic_write_text(out / "report.md", "\n".join(lines))
    write_json(out / "report.json", {"verdicts": [verdict.as_json() for verdict in verdicts],
                                     "runs": [str(run.path) for run in runs]})
    for run in runs:
        upload_figures(run.path, run.config.output.loggers, [path for path in figures if path])
    return out, verdicts
