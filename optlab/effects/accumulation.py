"""Tiger's accumulation and "fewer updates, better" (docs/science/other-effects.md §4; Su,
kexue.fm/archives/8634 and 9512). The variants of §4, each recognised from its trials' config:

    a  plain: an update per micro-batch            b  β̃ = 1 − (1 − β)/k only (update_every 1)
    c  momentum every micro-batch, parameters every k-th (update_every k)      d  both
    e  true accumulation (grad_accum_steps k)       absorbed: Tiger's accumulation in the momentum (≡ e)

PASS at each grid cell (e.g. each lr): the seed-mean final metric of c and of e ≤ that of a (Su's
observation when the small batch is the bottleneck). Reported: the ranking, and |absorbed − e|, which
is rounding only (the same algorithm).
"""

from __future__ import annotations

from optlab.effects.core import Effect, SweepContext, TheoryDoesNotApply, Verdict, cells_report, not_judged
from optlab.effects.figures import first_seed_curves, variant_lines


def variant_letters(context: SweepContext) -> dict[str, str]:
    """{variant name: a, b, c, d, e or absorbed} from each variant's optimizer and accumulation settings."""
    configs = {variant: context.configs[rows["trial"].iloc[0]] for variant, rows in context.finished.groupby("variant", sort=False)}
    if any(config.optimizer.name != "tiger" for config in configs.values()):
        raise TheoryDoesNotApply("variants a–e are Tiger's (update_every, β, accumulation); every variant needs optimizer tiger")
    plain = [c for c in configs.values() if c.optimizer.update_every == 1 and c.training.grad_accum_steps == 1
             and c.optimizer.accumulation_steps == 1]
    if not plain:
        raise TheoryDoesNotApply("no plain variant (an update per micro-batch, no accumulation) to compare with")
    plain_beta = min(config.optimizer.beta for config in plain)
    letters = {}
    for variant, config in configs.items():
        optimizer, training = config.optimizer, config.training
        changed_beta = optimizer.beta != plain_beta
        if optimizer.accumulation_steps > 1:
            letters[variant] = "absorbed"
        elif training.grad_accum_steps > 1:
            letters[variant] = "e"
        elif optimizer.update_every > 1:
            letters[variant] = "d" if changed_beta else "c"
        else:
            letters[variant] = "b" if changed_beta else "a"
    return letters


def _report(context: SweepContext):
    grid_keys = [key for key in context.keys if key != "variant"]
    figure = (variant_lines(context, grid_keys[0], context.sweep.metric.column, "metric_by_variant") if grid_keys
              else first_seed_curves(context, "eval_loss", "eval_loss_curves"))
    try:
        letters = variant_letters(context)
    except TheoryDoesNotApply as reason:
        return cells_report(context, [not_judged("fewer_updates_better", context.sweep.name, str(reason))], [], [figure])
    groups = context.cells.groupby(grid_keys, sort=False) if grid_keys else [((), context.cells)]
    verdicts, lines = [], []
    for values, cells in groups:
        where = " ".join(f"{k}={v:g}" for k, v in zip(grid_keys, values if isinstance(values, tuple) else (values,)))
        means = cells.set_index("variant")["mean"]
        by_letter = {letters[variant]: mean for variant, mean in means.items()}
        for letter in ("c", "e"):
            if letter in by_letter and "a" in by_letter:
                passed = by_letter[letter] <= by_letter["a"]
                verdicts.append(Verdict("fewer_updates_better", f"{context.sweep.name} {where} {letter} vs a".replace("  ", " "),
                                        "not worse" if passed else "worse", passed,
                                        f"mean final {context.sweep.metric.column} {by_letter[letter]:.4f} vs {by_letter['a']:.4f}",
                                        f"{letter} ≤ a"))
        lines += [f"Ranking at {where or 'the base config'} (best first): " +
                  ", ".join(f"{v} {m:.4f}" for v, m in means.sort_values().items()), ""]
        if "absorbed" in by_letter and "e" in by_letter:
            lines += [f"Tiger's absorbed accumulation vs true accumulation: |Δ mean final metric| = "
                      f"{abs(by_letter['absorbed'] - by_letter['e']):.2e} (the same algorithm up to rounding).", ""]
    if grid_keys:
        best = context.cells.groupby("variant", sort=False)["mean"].min().sort_values()
        lines += ["Each variant at its best grid cell (best first): " + ", ".join(f"{v} {m:.4f}" for v, m in best.items()), ""]
    return cells_report(context, verdicts, lines, [figure])


effect = Effect("accumulation_variants", "docs/science/other-effects.md §4", "sweep", _report,
                summary="Tiger's accumulation variants a–e: fewer updates (c) and true accumulation (e) vs plain (a)")
