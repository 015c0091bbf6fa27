"""Schedules with the same half-life (docs/science/other-effects.md §3 (ii); Su, kexue.fm/archives/9344):
constant, inverse-time 1/(1 + t/T), inverse-square 1/(1 + (√2 − 1)t/T)², warmup + cosine, and Amos's
implied schedule d_t read from its state. The spec gives no prior numbers: the report ranks them and
draws the loss, lr and Amos curves (no gate).
"""

from __future__ import annotations

from optlab.effects.core import Effect, SweepContext, Verdict, cells_report
from optlab.effects.figures import first_seed_curves

CURVES = ("eval_loss", "loss", "lr", "amos.d", "amos.decay_per_step")


def _report(context: SweepContext):
    means = context.cells.set_index("variant")["mean"]
    verdicts = [Verdict("schedules", context.sweep.name, f"best: {means.idxmin()}", None,
                        ", ".join(f"{v} {m:.4f}" for v, m in means.items()), "report only (no prior numbers)")]
    figures = [first_seed_curves(context, column, f"{column}_curves", log_y=column == "lr") for column in CURVES]
    return cells_report(context, verdicts, [], figures)


effect = Effect("schedules", "docs/science/other-effects.md §3 (ii)", "sweep", _report,
                summary="inverse-time / inverse-square / cosine schedules and Amos's implied one, ranked (report only)")
