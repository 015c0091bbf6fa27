"""How long `optlab profile` takes on this machine, and what a second invocation costs.

    python scripts/bench_profile.py [OPTIMIZER key=value ...] [--workers 2] [--skip-full] [--keep DIR]

Runs the quick card and the full card of OPTIMIZER (default: lion lr=3e-3 weight_decay=1.0, against
AdamW and SGD) in a fresh runs directory, each twice: the first invocation measures every panel, the
second finds every trial finished and only redraws the card. Prints the wall time of each and the ratio
second ÷ first. The goals (docs/science/profile.md): quick under 2 minutes, full under 10, on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPTLAB = [sys.executable, "-m", "optlab.cli"]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("optimizer", nargs="*", default=["lion", "lr=3e-3", "weight_decay=1.0"])
    parser.add_argument("--against", default="adamw,sgd")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--keep", type=Path, help="write the cards here (default: a temporary directory)")
    args = parser.parse_args()
    runs_dir = args.keep or Path(tempfile.mkdtemp(prefix="optlab-bench-profile-"))
    rows = []
    try:
        for mode in ["--quick"] + ([] if args.skip_full else ["--full"]):
            command = [*OPTLAB, "profile", *args.optimizer, "--against", args.against, "--workers", str(args.workers),
                       "--runs-dir", str(runs_dir / mode.strip("-"))] + ([mode] if mode == "--quick" else [])
            first, second = timed(command), timed(command)
            rows.append((mode.strip("-"), first, second))
            print(f"{mode.strip('-')}: {first:.1f} s, again {second:.1f} s", file=sys.stderr)
    finally:
        if args.keep is None:
            shutil.rmtree(runs_dir, ignore_errors=True)
    print(f"optlab profile {' '.join(args.optimizer)} --against {args.against} --workers {args.workers}\n")
    print("| card | first run (s) | second run (s) | second ÷ first |\n|---|---|---|---|")
    for mode, first, second in rows:
        print(f"| {mode} | {first:.1f} | {second:.1f} | {second / first:.3f} |")


if __name__ == "__main__":
    main()
