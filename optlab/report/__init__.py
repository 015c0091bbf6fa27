"""Reports from finished runs: tables (tables.py), plots (plots.py), verdicts (verdicts.py).

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


def write_report(runs: list[Run], out: Path) -> tuple[Path, list]:
    from optlab.report import plots
    from optlab.report.tables import comparison_table, to_markdown
    from optlab.report.verdicts import verdicts_for

    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(runs)
    atomic_write_text(out / "comparison.csv", table.to_csv(index=False))
    verdicts = verdicts_for(runs)
    figures = [path for plot in plots.ALL_PLOTS if (path := plot(runs, out)) is not None]
    denormals = sorted({str(run.summary.get("denormals")) for run in runs})
    lines = ["# optlab report", "", f"Runs: {len(runs)}. Denormal mode: {', '.join(denormals)}.", ""]
    if verdicts:
        lines += ["## Verdicts", ""] + [f"- {verdict.line()}" for verdict in verdicts] + [""]
    lines += ["## Comparison", "", to_markdown(table), ""]
    lines += ["## Figures", ""] + [f"![{path.stem}]({path.name})" for path in figures] + [""]
    lines += ["## Runs", ""] + [f"- `{run.path}`" for run in runs] + [""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    write_json(out / "report.json", {"verdicts": [verdict.as_json() for verdict in verdicts],
                                     "runs": [str(run.path) for run in runs]})
    return out, verdicts
