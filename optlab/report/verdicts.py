"""Verdict rules, one per effect, quoting the specification's numbers.

Embedding drift (../shared/science/embedding-drift.md §6, "Verdict rules"):
- Anomaly reproduced: rare-bucket saturated fraction ≥ 0.3 AND rare-bucket max|w|·λ ∈ [0.99, 1.01].
- Fix works: rare-bucket saturated fraction of the fixed run ≤ 1/10 of the same optimizer without the
  fix (the baseline run). A fraction of 0 counts as a ≥ 10× cut.

A verdict records what was measured, what the config expected (its `effect` section) and whether the
two agree (`passed`; None when the config states no expectation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from optlab.runs import Run, latest_run, load_run

DRIFT_MIN_SATURATED_FRACTION = 0.3
DRIFT_MAX_ABS_X_LAMBDA_BAND = (0.99, 1.01)
FIX_MIN_CUT = 10.0

RARE_SATURATED = "embedding.rare.saturated_fraction"
RARE_MAX = "embedding.rare.max_abs_x_lambda"


@dataclass
class Verdict:
    effect: str
    run: str
    observed: str
    passed: Optional[bool]
    measured: str
    expected: str

    def line(self) -> str:
        outcome = {True: "PASS", False: "FAIL", None: "no expectation stated"}[self.passed]
        return f"{self.run}: {self.effect} {self.observed.upper()} ({self.measured}); expected {self.expected}: {outcome}"

    def as_json(self) -> dict:
        return asdict(self)


def drift_observed(final: dict) -> tuple[bool, str]:
    """Apply the anomaly rule to a run's final metrics. Returns (reproduced, the numbers that show it)."""
    saturated, max_abs = final.get(RARE_SATURATED), final.get(RARE_MAX)
    if saturated is None or max_abs is None or not (math.isfinite(saturated) and math.isfinite(max_abs)):
        return False, "rare-bucket metrics undefined (weight decay λ = 0 on the embedding, or no embedding probe)"
    low, high = DRIFT_MAX_ABS_X_LAMBDA_BAND
    reproduced = saturated >= DRIFT_MIN_SATURATED_FRACTION and low <= max_abs <= high
    return reproduced, f"rare-token saturated fraction {saturated:.3f}, max|w|·λ = {max_abs:.3f}"


def fix_cut(fixed: float, baseline: float) -> tuple[bool, float]:
    """(works, cut factor): works iff fixed ≤ baseline / 10; a fixed fraction of 0 is an infinite cut."""
    cut = math.inf if fixed == 0 else baseline / fixed
    return fixed <= baseline / FIX_MIN_CUT and baseline > 0, cut


def drift_verdict(run: Run, find_baseline: Callable[[str], Optional[Run]]) -> Verdict:
    final = run.summary.get("final", {})
    reproduced, measured = drift_observed(final)
    observed = "reproduced" if reproduced else "absent"
    effect = run.config.effect
    if run.summary.get("status") not in ("completed", "diverged"):
        return Verdict("embedding_drift", run.name, "not judged", False if effect else None,
                       f"run status is {run.summary.get('status')!r}", effect.expect if effect else "—")
    if effect is None or effect.expect in ("reproduced", "absent"):
        expected = effect.expect if effect else "—"
        passed = None if effect is None else observed == effect.expect
        return Verdict("embedding_drift", run.name, observed, passed, measured, expected)
    baseline = find_baseline(effect.baseline)
    expected = f"fixed: rare saturated fraction ≤ 1/{FIX_MIN_CUT:g} of {effect.baseline}"
    if baseline is None:
        return Verdict("embedding_drift.fix", run.name, "not judged", False,
                       f"baseline run {effect.baseline!r} not found; run it first", expected)
    base_value = baseline.summary.get("final", {}).get(RARE_SATURATED)
    value = final.get(RARE_SATURATED)
    if base_value is None or value is None:
        return Verdict("embedding_drift.fix", run.name, "not judged", False, "saturated fraction undefined", expected)
    works, cut = fix_cut(value, base_value)
    cut_text = "∞" if math.isinf(cut) else f"{cut:.1f}"
    return Verdict("embedding_drift.fix", run.name, "fix works" if works else "fix insufficient", works,
                   f"rare saturated fraction {value:.3f} vs {base_value:.3f} for {effect.baseline} ({cut_text}× cut)",
                   expected)


def verdicts_for(runs: list[Run]) -> list[Verdict]:
    """A verdict for every run with embedding probes; baselines are looked up among `runs` first, then as
    the latest run of that name in the same runs directory."""
    by_name = {run.name: run for run in runs}

    def find_baseline(name: str) -> Optional[Run]:
        if name in by_name:
            return by_name[name]
        for run in runs:
            path = latest_run(Path(run.config.output.runs_dir), name)
            if path is not None:
                return load_run(path)
        return None

    return [drift_verdict(run, find_baseline) for run in runs if RARE_SATURATED in run.summary.get("final", {})]


# ----------------------------------------------------------------------------------------------
# SGD batch-size scaling, Exp A of ../shared/science/scaling-laws.md §5:
# noiseless isotropic linear regression, η*(B) = B/(B + d + 1) exactly.
# PASS: fitted B_noise ∈ [51, 77]; fitted η_max ∈ [0.9, 1.1]; slope of log η* over B ∈ [1, 8] in
# [0.85, 1.05]; η*(512)/η*(256) ∈ [1.0, 1.2] (predicted 1.11).
EXP_A_NOISE_BAND = (51.0, 77.0)
EXP_A_MAX_BAND = (0.9, 1.1)
EXP_A_SLOPE_BAND = (0.85, 1.05)
EXP_A_SLOPE_RANGE = (1, 8)
EXP_A_LAST_RATIO_BAND = (1.0, 1.2)


def exact_sgd_optimum(base: dict):
    """η*(B) = B/(B + d + 1) for the linear-regression data of dimension d (scaling-laws.md Exp A)."""
    dim = base.get("data", {}).get("dim", 63)
    return lambda batch: batch / (batch + dim + 1)


def _band_verdict(effect: str, run: str, name: str, value, band, unit: str = "") -> Verdict:
    low, high = band
    passed = value is not None and low <= value <= high
    measured = f"{name} = {value:.4g}{unit}" if value is not None else f"{name} not measurable"
    return Verdict(effect, run, "in band" if passed else "out of band", passed, measured, f"{name} ∈ [{low:g}, {high:g}]")


def sweep_verdicts(sweep, optima, fits: dict, base: dict) -> list[Verdict]:
    if sweep.effect != "sgd_batch_scaling":
        return []
    import numpy as np

    batch = sweep.batch_key
    usable = optima[optima["eta_star"].notna()]
    effect, run = "sgd_batch_scaling", sweep.name
    in_range = usable[(usable[batch] >= EXP_A_SLOPE_RANGE[0]) & (usable[batch] <= EXP_A_SLOPE_RANGE[1])]
    slope = (float(np.polyfit(np.log(in_range[batch]), np.log(in_range["eta_star"]), 1)[0])
             if len(in_range) >= 2 else None)
    by_batch = dict(zip(usable[batch], usable["eta_star"]))
    ratio = by_batch[512] / by_batch[256] if 512 in by_batch and 256 in by_batch else None
    return [
        _band_verdict(effect, run, "B_noise", fits.get("B_noise"), EXP_A_NOISE_BAND),
        _band_verdict(effect, run, "η_max", fits.get("eta_max"), EXP_A_MAX_BAND),
        _band_verdict(effect, run, f"slope of log η* over B ∈ [{EXP_A_SLOPE_RANGE[0]}, {EXP_A_SLOPE_RANGE[1]}]",
                      slope, EXP_A_SLOPE_BAND),
        _band_verdict(effect, run, "η*(512)/η*(256)", ratio, EXP_A_LAST_RATIO_BAND),
    ]



# ----------------------------------------------------------------------------------------------
# Steps vs batch, Exp A2 of ../shared/science/scaling-laws.md §5 (same model as Exp A), each B at
# η = B/(B + d + 1), stop at L ≤ 1e-3·L_0: S(B) = ln(L_0/target)/ln(1 + B/(d + 1)).
# PASS: median S within ±10 % or ±1 step of the prediction for every B. The hyperbola applies only
# for B ≲ B_noise: fit it over B ≤ 128 (reported, not gated).
EXP_A2_TOLERANCE = 0.10
EXP_A2_HYPERBOLA_MAX_BATCH = 128


def hyperbola_range(sweep) -> tuple[float, float]:
    return (1.0, EXP_A2_HYPERBOLA_MAX_BATCH) if sweep.effect == "sgd_steps_vs_batch" else (0.0, math.inf)


def predicted_steps(base: dict, target: float):
    """S(B) = ln(L_0/target)/ln(1 + B/(d + 1)) with L_0 = ½·init_distance² (Exp A2)."""
    dim = base.get("data", {}).get("dim", 63)
    initial_loss = 0.5 * base.get("model", {}).get("init_distance", 1.0) ** 2
    return lambda batch: math.log(initial_loss / target) / math.log(1 + batch / (dim + 1))


def steps_vs_batch_verdicts(sweep, per_batch, base: dict) -> list[Verdict]:
    if sweep.effect != "sgd_steps_vs_batch":
        return []
    predict = predicted_steps(base, sweep.metric.target)
    verdicts = []
    for row in per_batch.to_dict(orient="records"):
        batch, measured = row[sweep.batch_key], row["median"]
        expected = predict(batch)
        passed = math.isfinite(measured) and (abs(measured - expected) <= EXP_A2_TOLERANCE * expected
                                              or abs(measured - expected) <= 1)
        verdicts.append(Verdict("sgd_steps_vs_batch", f"{sweep.name} B={batch:g}", "matches" if passed else "differs",
                                passed, f"median steps {measured:g}",
                                f"{expected:.1f} ± max(10 %, 1 step)"))
    return verdicts
