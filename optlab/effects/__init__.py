"""Effects: one module per effect (or close family) — what it needs, its analysis of a run, several
runs or a sweep, its verdict rules quoting docs/science with expectations computed from the run's own
parameters, and its figures. `REGISTRY` below is the only list of effect names: the run schema
(`effect:`), the sweep schema (`effect:`), `optlab list effects` and the report all read it.

An effect is an object with `name`, `section` (where docs/science states it), `scope` ("runs" or
"sweep") and `report(context) -> EffectReport` (optlab/effects/core.py). Installed packages add effects
through the entry-point group `optlab.effects` (the value: an import path to such an object); a
sweep or run file may also name one by import path (`effect: package.module:attribute`).

This module stays light (no torch, pandas or matplotlib): the schemas import it at validate time.
"""

from __future__ import annotations

from optlab.components import entry_points, is_import_path, resolve

ENTRY_POINTS = "optlab.effects"

REGISTRY: dict[str, str] = {
    # docs/science/embedding-drift.md
    "embedding_drift": "optlab.effects.embedding_drift:effect",
    "embedding_drift_lm": "optlab.effects.embedding_drift:language_model_effect",
    "tied_embeddings": "optlab.effects.tied_embeddings:effect",
    # docs/science/scaling-laws.md
    "optimal_lr_vs_batch": "optlab.effects.lr_vs_batch:effect",
    "sgd_batch_scaling": "optlab.effects.isotropic_regression:batch_scaling",
    "sgd_steps_vs_batch": "optlab.effects.isotropic_regression:steps_vs_batch",
    "signsgd_sqrt_law": "optlab.effects.noisy_quadratic:sqrt_law",
    "signsgd_surge": "optlab.effects.noisy_quadratic:surge",
    "sgd_nqm_control": "optlab.effects.noisy_quadratic:sgd_control",
    "adam_eps_interpolation": "optlab.effects.noisy_quadratic:adam_eps",
    "sgd_critical_batch": "optlab.effects.critical_batch:regression",
    "sgd_critical_batch_mlp": "optlab.effects.critical_batch:teacher_student",
    "adam_critical_batch_mlp": "optlab.effects.critical_batch:teacher_student_adam",
    "lm_critical_batch": "optlab.effects.critical_batch:language_model",
    # docs/science/other-effects.md
    "gradient_clipping": "optlab.effects.gradient_clipping:effect",
    "adam_v_hessian": "optlab.effects.adam_hessian:effect",
    "lr_proportional_to_scale": "optlab.effects.init_scale:effect",
    "schedules": "optlab.effects.schedules:effect",
    "schedule_closed_form": "optlab.effects.schedules:closed_form",
    "decay_rule": "optlab.effects.decay_rule:effect",
    "amos_schedule": "optlab.effects.amos_schedule:effect",
    "accumulation_variants": "optlab.effects.accumulation:effect",
    "update_rms": "optlab.effects.update_rms:effect",
    "lion_lr_rule": "optlab.effects.lion_lr_rule:effect",
}


def effect_names() -> list[str]:
    """Built-in effect names, then those of installed packages."""
    return list(REGISTRY) + [name for name in entry_points(ENTRY_POINTS) if name not in REGISTRY]


def is_known(name: str) -> bool:
    return name in REGISTRY or name in entry_points(ENTRY_POINTS) or is_import_path(name)


def load_effect(name: str):
    """The effect object of a registered name or an import path (imports its module)."""
    return resolve(REGISTRY.get(name, name), ENTRY_POINTS)
