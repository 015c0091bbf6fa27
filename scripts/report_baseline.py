"""Record, then check, every number the shipped configs and sweeps report.

    python scripts/report_baseline.py record            # writes scripts/baselines/reports.json.gz
    python scripts/report_baseline.py compare           # reruns everything, compares, exit 1 on a change
    python scripts/report_baseline.py compare --only scaling/exp_a embedding_drift

Each shipped config and sweep runs through the command line (`optlab train|sweep`, then `optlab
report`) in a scratch folder, the long ones as the shrunken variants listed in EXPERIMENTS (fewer
batch sizes, lrs, seeds or steps). What is kept per experiment: every trial's (or run's) final
metrics keyed by its cell, every number in the report's report.json, and each verdict's outcome and
the numbers in its `measured` text. `compare` matches them by key: a number that moved by more than
the float tolerance, a verdict whose outcome changed, or a key that disappeared is a difference.
Keys the new report adds are listed, not counted as differences. Used before and after a refactor
that must not change what is measured (about 8 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
DEFAULT_BASELINE = REPO / "scripts" / "baselines" / "reports.json.gz"
RELATIVE_TOLERANCE, ABSOLUTE_TOLERANCE = 1e-9, 1e-12
TIMINGS = ("elapsed_s", "wall_time_s", "first_step_s")  # seconds differ between any two runs: not compared

LM_SHRINK = ("training.steps=120", "model.embedding_dim=32", "probes.every=20")

# name: (kind, shipped file(s), top-level changes of a sweep file, base overrides)
EXPERIMENTS: dict[str, tuple] = {
    "embedding_drift": ("runs", sorted((CONFIGS / "embedding_drift").glob("*.yaml")), {}, ()),
    "effects/adam_hessian_base": ("runs", [CONFIGS / "effects/adam_hessian_base.yaml"], {}, ("training.steps=1000",)),
    "effects/lm_base": ("runs", [CONFIGS / "effects/lm_base.yaml"], {}, ("training.steps=100",)),
    "nqm/exp_b_base": ("runs", [CONFIGS / "nqm/exp_b_base.yaml"], {}, ()),
    "regression/exp_a_base": ("runs", [CONFIGS / "regression/exp_a_base.yaml"], {}, ()),
    "regression/exp_d0_base": ("runs", [CONFIGS / "regression/exp_d0_base.yaml"], {}, ()),
    "teacher/exp_d_base": ("runs", [CONFIGS / "teacher/exp_d_base.yaml"], {}, ("training.steps=500",)),
    "teacher/exp_d_noise_scale": ("runs", [CONFIGS / "teacher/exp_d_noise_scale.yaml"], {}, ("training.steps=100",)),
    "scaling/exp_a": ("sweep", CONFIGS / "scaling/exp_a.yaml", {}, ()),
    "scaling/exp_a2": ("sweep", CONFIGS / "scaling/exp_a2.yaml", {}, ()),
    "scaling/exp_b1": ("sweep", CONFIGS / "scaling/exp_b1.yaml", {}, ()),
    "scaling/exp_b2": ("sweep", CONFIGS / "scaling/exp_b2.yaml", {}, ()),
    "scaling/exp_b3": ("sweep", CONFIGS / "scaling/exp_b3.yaml", {}, ()),
    "scaling/exp_c_rho0": ("sweep", CONFIGS / "scaling/exp_c_rho0.yaml", {
        "grid.training.batch_size": [1, 2, 4, 8, 16, 64, 256, 1024, 4096, 65536],
        "grid.optimizer.lr": {"logspace": [1.0e-4, 3.0e+4, 61]}}, ("data.replicas=1000",)),
    "scaling/exp_c_rho0.1": ("sweep", CONFIGS / "scaling/exp_c_rho0.1.yaml", {
        "grid.training.batch_size": [1, 2, 4, 8, 16, 64, 256, 1024, 4096, 65536],
        "grid.optimizer.lr": {"logspace": [1.0e-4, 3.0e+4, 61]}}, ("data.replicas=1000",)),
    "scaling/exp_d0": ("sweep", CONFIGS / "scaling/exp_d0.yaml", {
        "grid.training.batch_size": [1, 4, 16, 64, 256], "grid.optimizer.lr": {"logspace": [0.005, 3.0, 13]}}, ()),
    "scaling/exp_d": ("sweep", CONFIGS / "scaling/exp_d.yaml", {
        "zip": {"training.batch_size": [8, 32, 128], "probes.every": [20, 13, 4],
                "probes.sampled_noise_scale": [None, {"examples": 128, "two_batch_repeats": 10, "hessian_examples": 20,
                                                      "hessian_batch": 1024, "at_eval_loss": [1.224, 1.0695]}, None]},
        "grid.optimizer.lr": [0.0189, 0.0475, 0.119, 0.3, 0.754], "exclude": [], "seeds": [0, 1],
        "set.training.steps": 3000}, ()),
    "scaling/exp_d_adam": ("sweep", CONFIGS / "scaling/exp_d_adam.yaml", {
        "zip": {"training.batch_size": [4, 32, 256], "probes.every": [20, 13, 2]},
        "grid.optimizer.lr": {"logspace": [1.0e-3, 0.1, 5]}, "seeds": [0], "set.training.steps": 3000}, ()),
    "scaling/lm_adamw": ("sweep", CONFIGS / "scaling/lm_adamw.yaml", {
        "zip": {"training.batch_size": [16, 64], "training.steps": [300, 150], "probes.every": [10, 5],
                "probes.sampled_noise_scale": [{"examples": 64, "two_batch_repeats": 4, "two_batch_small": 8,
                                                "two_batch_big": 32, "hessian_examples": 0, "at_eval_loss": [5.3, 4.0]},
                                               None]},
        "grid.optimizer.lr": [1.0e-3, 3.2e-3, 1.0e-2], "exclude": []}, ("model.embedding_dim=32",)),
    "scaling/lm_sgd": ("sweep", CONFIGS / "scaling/lm_sgd.yaml", {
        "zip": {"training.batch_size": [16, 64], "training.steps": [300, 150], "probes.every": [10, 5],
                "probes.sampled_noise_scale": [{"examples": 64, "two_batch_repeats": 4, "two_batch_small": 8,
                                                "two_batch_big": 32, "hessian_examples": 0, "at_eval_loss": [5.4, 4.0]},
                                               None]},
        "grid.optimizer.lr": [0.1, 0.32, 1.0], "exclude": []}, ("model.embedding_dim=32",)),
    "effects/adam_hessian": ("sweep", CONFIGS / "effects/adam_hessian.yaml", {"seeds": [0]}, ("training.steps=1500",)),
    "effects/update_rms": ("sweep", CONFIGS / "effects/update_rms.yaml", {}, LM_SHRINK),
    "effects/schedules": ("sweep", CONFIGS / "effects/schedules.yaml", {"seeds": [0]}, LM_SHRINK),
    "effects/tiger_accumulation": ("sweep", CONFIGS / "effects/tiger_accumulation.yaml", {
        "grid.optimizer.lr": [3.0e-4, 3.0e-3], "seeds": [0], "set.training.steps": 200,
        "variants.e_true_accumulation.training.steps": 50, "variants.tiger_absorbed.training.steps": 50},
        ("model.embedding_dim=32",)),
    "effects/gradient_clipping": ("sweep", CONFIGS / "effects/gradient_clipping.yaml", {
        "grid.model.embedding_dim": [32]}, ("training.steps=100",)),
    "effects/lion_lr_rule": ("sweep", CONFIGS / "effects/lion_lr_rule.yaml", {"seeds": [0]}, LM_SHRINK),
    "effects/decay_rule": ("sweep", CONFIGS / "effects/decay_rule.yaml", {
        "grid.optimizer.weight_decay": [0.1875, 0.75, 3.0], "seeds": [0], "set.training.steps": 120},
        ("model.embedding_dim=32", "probes.every=20")),
    "effects/init_scale": ("sweep", CONFIGS / "effects/init_scale.yaml", {"seeds": [0]}, LM_SHRINK),
}


def optlab(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "optlab.cli", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode not in (0, 1):  # 1: a sweep with failed trials, which is recorded too
        raise RuntimeError(f"optlab {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")


def set_dotted(mapping: dict, dotted: str, value) -> None:
    """`grid.optimizer.lr` → mapping['grid']['optimizer.lr']: the first part is the sweep's section, the
    rest one key inside it (sweep axes are dotted config paths); `variants.NAME.key` likewise."""
    section, _, rest = dotted.partition(".")
    if not rest:
        mapping[section] = value
    elif section == "variants":
        variant, _, key = rest.partition(".")
        mapping[section][variant][key] = value
    else:
        mapping.setdefault(section, {})[rest] = value


def run_sweep(name: str, path: Path, changes: dict, overrides: tuple, scratch: Path) -> Path:
    sweep = yaml.safe_load(path.read_text())
    sweep["base"] = str((path.parent / sweep["base"]).resolve())
    for dotted, value in changes.items():
        set_dotted(sweep, dotted, value)
    shrunken = scratch / f"{name.replace('/', '_')}.yaml"
    shrunken.write_text(yaml.safe_dump(sweep, sort_keys=False))
    optlab("sweep", str(shrunken), *overrides, "--workers", "2", cwd=scratch)
    optlab("report", f"runs/{sweep['name']}", cwd=scratch)
    return scratch / "runs" / sweep["name"] / "report"


def sweep_record(report_dir: Path) -> dict:
    trials = pd.read_csv(report_dir / "trials.csv")
    cell_columns = [c for c in trials if c not in ("trial", "state", "error", "metric") and not c.startswith("final.")]
    values = {}
    for _, row in trials.iterrows():
        cell = json.dumps({c: row[c] for c in cell_columns if not (isinstance(row[c], float) and math.isnan(row[c]))},
                          sort_keys=True, default=str)
        values[cell] = {"state": row["state"], "metric": row["metric"],
                        **{c: row[c] for c in trials if c.startswith("final.")}}
    return {"trials": values, "report": json.loads((report_dir / "report.json").read_text())}


def runs_record(name: str, paths: list[Path], overrides: tuple, scratch: Path) -> dict:
    for path in paths:
        optlab("train", str(path), *overrides, "-q", cwd=scratch)
    group = scratch / "runs" / name
    optlab("report", str(group), cwd=scratch)
    summaries = {}
    for summary_path in sorted(group.rglob("summary.json")):
        summary = json.loads(summary_path.read_text())
        summaries[summary["name"]] = {"status": summary["status"], "steps_completed": summary["steps_completed"],
                                      "final": {k: v for k, v in summary["final"].items() if k != "elapsed_s"},
                                      "initial_metrics": summary.get("initial_metrics", {})}
    report_dir = group / "report" if len(summaries) > 1 else next(group.rglob("report"))
    report = json.loads((report_dir / "report.json").read_text())
    report.pop("runs", None)  # paths of the scratch folder
    return {"trials": summaries, "report": report}


def record_experiment(name: str, scratch: Path) -> dict:
    kind, target, changes, overrides = EXPERIMENTS[name]
    folder = scratch / name.replace("/", "_")
    folder.mkdir(parents=True)
    if kind == "sweep":
        return sweep_record(run_sweep(name, target, changes, overrides, folder))
    return runs_record(name, target, overrides, folder)


# ------------------------------------------------------------------------------------ comparing

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|∞|inf|nan")


def leaves(value, prefix: str = "") -> dict:
    """Flatten nested dicts/lists into {path: scalar}; verdict lists are handled apart, timings dropped."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() if key != "verdicts" and not str(key).endswith(TIMINGS)
                for k, v in leaves(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


def same_number(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a == b
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * max(abs(a), abs(b))


def verdict_key(verdict: dict) -> str:
    return f"{verdict['effect']} | {verdict['run']}"


def verdict_numbers(verdict: dict) -> list[str]:
    return NUMBER.findall(verdict.get("measured", ""))


def compare_experiment(old: dict, new: dict) -> tuple[list[str], int, list[str]]:
    """(differences, numbers compared, keys only the new record has)."""
    differences, compared = [], 0
    old_flat = {**{f"trials.{k}": v for k, v in leaves(old["trials"]).items()},
                **{f"report.{k}": v for k, v in leaves(old["report"]).items()}}
    new_flat = {**{f"trials.{k}": v for k, v in leaves(new["trials"]).items()},
                **{f"report.{k}": v for k, v in leaves(new["report"]).items()}}
    for key, value in old_flat.items():
        if key not in new_flat:
            differences.append(f"missing: {key} (was {value!r})")
        elif not same_number(value, new_flat[key]):
            differences.append(f"changed: {key}: {value!r} → {new_flat[key]!r}")
        else:
            compared += 1
    added = sorted(set(new_flat) - set(old_flat))
    new_verdicts = {}
    for verdict in new["report"].get("verdicts", []):
        new_verdicts.setdefault(verdict_key(verdict), []).append(verdict)
    for verdict in old["report"].get("verdicts", []):
        candidates = new_verdicts.get(verdict_key(verdict), [])
        match = next((v for v in candidates if same_numbers(verdict_numbers(v), verdict_numbers(verdict))), None)
        if match is None:
            shown = candidates[0]["measured"] if candidates else "no such verdict"
            differences.append(f"verdict {verdict_key(verdict)}: measured {verdict['measured']!r} → {shown!r}")
            continue
        candidates.remove(match)
        compared += 1
        if match["passed"] != verdict["passed"]:
            differences.append(f"verdict {verdict_key(verdict)}: outcome {verdict['passed']} → {match['passed']}")
    return differences, compared, added


def same_numbers(a: list[str], b: list[str]) -> bool:
    def value(text):
        return math.inf if text == "∞" else float(text)

    return len(a) == len(b) and all(same_number(value(x), value(y)) for x, y in zip(a, b))


def read_baseline(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["record", "compare"])
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--only", nargs="*", default=None, help="experiment names (default: all)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the scratch runs in this folder")
    args = parser.parse_args()
    names = args.only or list(EXPERIMENTS)
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiments {unknown}; choose from {list(EXPERIMENTS)}")
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="optlab-baseline-"))
    records = {}
    for name in names:
        started = time.perf_counter()
        records[name] = record_experiment(name, scratch)
        print(f"{name}: ran in {time.perf_counter() - started:.0f} s", flush=True)
    if args.action == "record":
        previous = read_baseline(args.baseline) if args.baseline.is_file() and args.only else {}
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**previous, **records}, sort_keys=True, default=str) + "\n"
        args.baseline.write_bytes(gzip.compress(text.encode(), mtime=0))
        print(f"recorded {len(records)} experiments → {args.baseline}")
        return 0
    baseline = read_baseline(args.baseline)
    failures = 0
    for name in names:
        if name not in baseline:
            print(f"{name}: not in the baseline (record it first)")
            failures += 1
            continue
        fresh = json.loads(json.dumps(records[name], default=str))  # the same JSON types as the stored record
        differences, compared, added = compare_experiment(baseline[name], fresh)
        status = "identical" if not differences else f"{len(differences)} differences"
        print(f"{name}: {compared} numbers and verdicts compared, {status}; {len(added)} new keys")
        for line in differences[:40]:
            print(f"    {line}")
        if len(differences) > 40:  # where the rest lie: counted by the key's first part and the last
            where = {}
            for line in differences:
                key = line.split(" → ")[0].split(": ", 1)[-1].rsplit(": ", 1)[0]  # "changed: KEY: old → new"
                part = f"{key.split('.', 1)[0]} … {key.rsplit('.', 1)[-1]}"
                where[part] = where.get(part, 0) + 1
            print("    all differences by key: " + ", ".join(f"{part} ({count})" for part, count in sorted(where.items())))
        failures += bool(differences)
    print("all identical" if not failures else f"{failures} experiments differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
