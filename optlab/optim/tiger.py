"""Tiger: Su 2023, "Tiger: a tight-fisted optimizer" (kexue.fm/archives/9512; bojone/tiger).

Basic update (docs/science/optimizers.md §2.1), Lion with β1 = β2 = β and the sign of the NEW momentum:
    m_t = β·m_{t−1} + (1 − β)·g_t
    θ_t = θ_{t−1} − η_t·[sign(m_t) + λ·θ_{t−1}]

Per-parameter rules (§2.3, `parameter_scaling=True`), chosen by the param group's `kind`:
    bias, norm            η_t = 0.5·α_t             λ = 0
    embedding             η_t = α_t·RMS_row(θ_{t−1}) (one scale per row)
    matrix, head          η_t = α_t·RMS(θ_{t−1})     (one scale per tensor)
so each step moves an entry by about α relative to its tensor's own scale. A group without `kind` (a
plain `model.parameters()`) is read tensor by tensor: ≥ 2-D tensors as matrices, the others as biases
(Tiger warns once); `optlab.optim.parameter_groups(model)` names embeddings, heads and norm gains. A matrix whose RMS is 0
(zero-initialised) would never move; optlab floors its scale at sqrt(1/fan_in) and warns once. An
all-zero embedding row (e.g. padding) stays frozen, as in the reference.

NaN/inf guard (§2.5, `nan_guard=True`): a tensor whose gradient holds a non-finite value keeps its
momentum and shrinks toward its centre c: θ ← (θ − c)·s + c, with c = 1 for norm gains, 0 otherwise.
The reference tests NaN only; optlab tests NaN and ±inf. On an accelerator the guard is a mask applied
on the device (no host sync): the flagged tensor's gradient is replaced by 0, its momentum weight and
step size by 0, its decay factor by s. On CPU, where reading the flags waits for nothing, the flagged
tensors are set aside instead and the mask is never built. The compiled update (`compiled=True`,
`tiger_fused_update_`) applies the same mask inside its one pass per tensor, on any device.

Every param group's tensors are updated together (one pass of each foreach call per step, whatever
the number of kinds): the per-kind rules become per-tensor step sizes η_i and decay factors 1 − η_i·λ_i,
kept in a step plan with the tensors themselves, so a step does no per-tensor Python work beyond reading
the gradients (rebuilt when the groups, their settings or the state change, e.g. after load_state_dict).

Gradient accumulation absorbed into the momentum (§2.4, kexue.fm/archives/8634), k =
`accumulation_steps`: `step()` is called once per micro-batch (optlab's loop does so for any optimizer
whose defaults hold accumulation_steps > 1: optlab/optim/groups.py, `absorbs_accumulation`). As in any accumulation loop the loss
is divided by k, so the gradient it sees is g_t/k (g_t the micro-batch mean gradient, as in §2.4).
With the micro-step counter t (0-based)
    m ← b1·m + (1 − β)·(g_t/k),   b1 = β if t mod k = 0 else 1
    θ moves only when (t + 1) mod k = 0
so after k micro-steps m = β·m_old + (1 − β)·mean(g_1..g_k): exactly standard accumulation, with no
gradient buffer. The counter lives in the param group (`micro_step`) and is saved with the state.

Update every k steps (`update_every` = k, docs/science/other-effects.md §4 variants c/d): the momentum takes every
gradient as usual, m ← β·m + (1 − β)·g, but θ moves only when (t + 1) mod k = 0 (the lr × χ_{t/k} of
Su's generic emulation; with β → β̃ = 1 − (1 − β)/k it approximates accumulation, since β̃^k ≈ β).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import torch

from optlab.optim._common import (check, check_beta, check_non_negative, check_positive, check_real_parameters,
                                  closure_loss, compiled, dense_gradient, state_buffer)


def inferred_kind(param: torch.Tensor) -> str:
    """The kind Tiger assumes for a tensor of a group without `kind`."""
    return "matrix" if param.ndim >= 2 else "bias"


def tiger_update_(params, grads, momenta, signs, weight: float, cycle_start: bool, step_sizes, decayed, decay_factors,
                  shifted, shifts):
    """One Tiger micro-step on lists of tensors (in place), one entry per tensor:

        m ← β·m + w·g   at an accumulation cycle's start (a lerp: β = 1 − w), else  m ← m + w·g  (w = 1 − β)
        θ ← f·θ + c − η·sign(m)      f = 1 − η·λ on `decayed`, c on `shifted` (the guard's shrink)

    `signs` is scratch space for sign(m). `step_sizes` None: the momentum only (θ moves every
    accumulation_steps·update_every micro-steps).
    """
    if cycle_start:
        torch._foreach_lerp_(momenta, grads, weight)
    else:
        torch._foreach_add_(momenta, grads, alpha=weight)
    if step_sizes is None:
        return
    if decayed:
        torch._foreach_mul_(decayed, decay_factors)
    if shifted:
        torch._foreach_add_(shifted, shifts)
    torch._foreach_copy_(signs, momenta)
    torch._foreach_sign_(signs)
    torch._foreach_addcmul_(params, signs, step_sizes, value=-1)


class TensorRule(NamedTuple):
    """Tiger's fixed rule for one tensor (§2.3 and §2.5), as the fused update reads it."""

    scale: str  # "rms" (matrices and heads), "rows" (embeddings) or "none" (biases, norm gains, no scaling)
    base: float  # 0.5 for biases and norm gains under parameter scaling, else 1
    weight_decay: float  # λ_i
    guarded: bool
    shrink_ratio: float  # s
    centre: float  # c: 1 for norm gains, 0 otherwise
    floor: float  # the scale used while RMS(θ) = 0 ("rms" only)


def tiger_fused_update_(params, grads, momenta, group_lrs, row_rms, rules, weight: float, cycle_start: bool,
                        applies: bool):
    """The whole Tiger micro-step written tensor by tensor for torch.compile, which fuses each tensor's
    update into one pass; the guard's test and the RMS scales are inside it, so nothing is read back on
    the host. The same maths as the eager path (`Tiger._step_together` and `tiger_update_`):

        ok = all(isfinite(g)) for guarded tensors; a flagged tensor takes g ← m (lerp) or 0 (sum), η ← 0, f ← s
        m ← lerp(m, g, w) at a cycle's start, else m + w·g
        η = α_group·base·RMS(θ) (RMS_row(θ) for embeddings, 1 unscaled);   f = 1 − η·λ
        θ ← f·θ + (not ok)·c·(1 − s) − η·sign(m)

    `group_lrs` is a tensor (one α per tensor), so a changing lr does not recompile; w is one number for all
    tensors (a list of weights made inductor's kernels several times slower). `row_rms` holds the
    embeddings' RMS_row(θ), computed before the call (inductor's CPU code generation fails on a row
    reduction of θ next to the in-place writes of m and θ, torch 2.13), None for the other tensors.
    """
    for i, (rule, param, grad, momentum) in enumerate(zip(rules, params, grads, momenta)):
        ok = torch.isfinite(grad).all() if rule.guarded else None
        if ok is not None:
            grad = torch.where(ok, grad, momentum if cycle_start else 0)
        if cycle_start:
            momentum.lerp_(grad, weight)
        else:
            momentum.add_(grad, alpha=weight)
        if not applies:
            continue
        theta = param.to(momentum.dtype)
        step_size = group_lrs[i] * rule.base
        if rule.scale == "rms":
            rms = theta.pow(2).mean().sqrt()
            step_size = step_size * torch.where(rms > 0, rms, rule.floor)
        elif rule.scale == "rows":
            step_size = step_size * row_rms[i]
        factor = 1 - step_size * rule.weight_decay
        shift = 0.0
        if ok is not None:
            step_size = torch.where(ok, step_size, 0.0)
            factor = torch.where(ok, factor, rule.shrink_ratio)
            shift = torch.where(ok, 0.0, rule.centre * (1 - rule.shrink_ratio))
        param.copy_(factor * theta + shift - step_size * momentum.sign())


def flags_are_free_to_read(device: torch.device) -> bool:
    """On CPU a tensor's value is there as soon as it is computed; on an accelerator reading it waits for the
    device to finish the queued work (a host sync), so the guard is applied as a mask there instead."""
    return device.type == "cpu"


class Tiger(torch.optim.Optimizer):
    """Tiger (kexue.fm/archives/9512). Per step, with momentum m (zeros at the start):

        m ← β·m + (1 − β)·g;   θ ← θ − η_kind·(sign(m) + λ_kind·θ)

    with, under `parameter_scaling`, η = 0.5α and λ = 0 for biases and norm gains, α·RMS(row) for
    embeddings, α·RMS(θ) for matrices and heads (the param group's `kind`). lr α > 0, beta in [0, 1),
    weight_decay λ ≥ 0, shrink_ratio in (0, 1] (the NaN/inf guard), accumulation_steps ≥ 1 (micro-batches
    folded into m; call step() after each), update_every ≥ 1 (move θ every k-th step). See the module
    docstring for each rule. β is kept in each param group as `betas = (β,)`, Adam's β1 slot, so the
    schedulers that cycle momentum (OneCycleLR, CyclicLR) can drive it. `compiled` runs the whole step,
    guard and scales included, through torch.compile."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        beta: float = 0.965,
        weight_decay: float = 0.01,
        parameter_scaling: bool = True,
        nan_guard: bool = True,
        shrink_ratio: float = 0.99,
        accumulation_steps: int = 1,
        update_every: int = 1,
        compiled: bool = False,
    ):
        check_positive("lr", lr)
        check_beta("beta", beta)
        check_non_negative("weight_decay", weight_decay)
        check("shrink_ratio", shrink_ratio, 0 < shrink_ratio <= 1, "in (0, 1]")
        check("accumulation_steps", accumulation_steps, isinstance(accumulation_steps, int) and accumulation_steps >= 1,
              "an integer ≥ 1")
        check("update_every", update_every, isinstance(update_every, int) and update_every >= 1, "an integer ≥ 1")
        defaults = dict(
            lr=lr, betas=(beta,), weight_decay=weight_decay, parameter_scaling=parameter_scaling,
            nan_guard=nan_guard, shrink_ratio=shrink_ratio, kind=None,
            accumulation_steps=accumulation_steps, update_every=update_every, micro_step=0, compiled=compiled,
        )
        super().__init__(params, defaults)
        check_real_parameters(self)
        if parameter_scaling and any(group["kind"] is None for group in self.param_groups):
            warnings.warn("Tiger: param groups without `kind`: ≥ 2-D tensors are taken as matrices (lr × RMS(θ)), the "
                          "others as biases (lr × 0.5, no decay); pass optlab.optim.parameter_groups(model) to give "
                          "embeddings (lr × row RMS), heads and norm gains their own rules", stacklevel=2)
        self._plans: dict[tuple, tuple] = {}

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        together: dict[tuple, list] = {}  # groups whose tensors step together: same phase, compile flag and β
        for index, group in enumerate(self.param_groups):
            present = tuple(param.grad is not None for param in group["params"])
            if not any(present):
                continue
            micro_step = group["micro_step"]
            group["micro_step"] = micro_step + 1
            cycle_start = micro_step % group["accumulation_steps"] == 0
            applies = (micro_step + 1) % (group["accumulation_steps"] * group["update_every"]) == 0
            together.setdefault((cycle_start, applies, group["compiled"], 1 - group["betas"][0]), []).append((index, present))
        for (cycle_start, applies, is_compiled, weight), members in together.items():
            for plan in self._plans_for(members):
                self._step_together(plan, plan.gradients(), weight, cycle_start, applies, is_compiled)
        return loss

    def _plans_for(self, members) -> list["StepPlan"]:
        """The plans (one per device and state dtype) of the tensors of `members` [(group index, which of
        its parameters have a gradient)]. A plan holds the parameters, their momenta and per-tensor constants;
        it is rebuilt when a group's tensors or settings change or the state is replaced or grows
        (load_state_dict); the lr and β are read at every step."""
        settings = tuple((index, present, id(group["params"]), group["kind"], group["parameter_scaling"],
                          group["weight_decay"], group["nan_guard"], group["shrink_ratio"])
                         for index, present in members for group in (self.param_groups[index],))
        key = tuple(index for index, _ in members)
        cached = self._plans.get(key)
        if cached is None or cached[0] != settings or cached[1] is not self.state or cached[2] != len(self.state):
            plans = self._build_plans(members)
            cached = self._plans[key] = (settings, self.state, len(self.state), plans)
        return cached[3]

    def _build_plans(self, members) -> list["StepPlan"]:
        entries: dict[tuple, list] = {}  # (device, state dtype) -> [(group index, param, momentum)]
        for index, present in members:
            for param, has_gradient in zip(self.param_groups[index]["params"], present):
                if has_gradient:
                    dense_gradient(self, param)
                    momentum = state_buffer(self, param, "momentum")
                    entries.setdefault((param.device, momentum.dtype), []).append((index, param, momentum))
        return [StepPlan([self.param_groups[index] for index, _, _ in batch], [param for _, param, _ in batch],
                         [momentum for _, _, momentum in batch], [index for index, _, _ in batch], device, dtype,
                         self._scale_floor)
                for (device, dtype), batch in entries.items()]

    def _step_together(self, plan: "StepPlan", grads, weight: float, cycle_start: bool, applies: bool,
                       is_compiled: bool):
        """Apply `tiger_update_` (or, compiled, `tiger_fused_update_`) to the tensors of `plan`, the NaN/inf
        guard included."""
        params, momenta = plan.params, plan.momenta
        lrs = tuple(group["lr"] for group in self.param_groups)
        fused = compiled(tiger_fused_update_) if is_compiled else None
        if fused:
            fused(params, grads, momenta, plan.per_tensor(lrs), plan.row_rms(applies), plan.rules, weight,
                  cycle_start, applies)
            return
        finite = self._finite_mask(plan, grads)
        if finite is not None:  # a flagged tensor keeps m (g ← m in the lerp, g ← 0 in a sum), does not step, shrinks
            grads = [torch.where(ok > 0, grad, momentum if cycle_start else 0)
                     for ok, grad, momentum in zip(finite.unbind(), grads, momenta)]
        step_sizes, decayed, factors, shifted, shifts = None, [], [], [], []
        if applies and finite is None and plan.rules_are_constant:
            step_sizes, decayed, factors = plan.constant_rules(lrs)
        elif applies:
            sizes = plan.per_tensor(lrs) * plan.scales()
            decay = plan.decayed if finite is None else plan.not_embeddings
            factors_vector = 1 - sizes[decay] * plan.weight_decays[decay]
            if finite is not None:
                factors_vector = torch.where(finite[decay] > 0, factors_vector, plan.shrink_ratios[decay])
                shifted = plan.norm_params
                shifts = list(((1 - finite[plan.norms]) * (1 - plan.shrink_ratios[plan.norms])).unbind())
                sizes = sizes * finite
            step_sizes, factors = list(sizes.unbind()), list(factors_vector.unbind())
            decayed = list(plan.decayed_params if finite is None else plan.not_embedding_params)
            row_rms = plan.row_rms(applies)
            for i in plan.embeddings:  # one scale per row: η = α·RMS_row(θ)
                step_sizes[i] = step_sizes[i] * row_rms[i]
                if plan.weight_decay_values[i] or finite is not None:
                    factor = 1 - step_sizes[i] * plan.weight_decay_values[i]
                    decayed.append(params[i])
                    factors.append(factor if finite is None else torch.where(finite[i] > 0, factor, plan.shrink_ratios[i]))
        tiger_update_(params, grads, momenta, plan.scratch(), weight, cycle_start, step_sizes, decayed, factors,
                      shifted, shifts)

    @staticmethod
    def _finite_mask(plan: "StepPlan", grads) -> torch.Tensor | None:
        """1 per tensor whose gradient is finite (or that is not guarded), 0 per flagged tensor; None where
        every gradient is finite and that was read for free (on CPU)."""
        if plan.guarded is None:
            return None
        flags = torch.isfinite(torch.stack(torch._foreach_norm([grads[i] for i in plan.guarded_positions])))
        if flags_are_free_to_read(plan.device) and bool(flags.all()):
            return None
        return torch.ones(len(grads), dtype=plan.dtype, device=plan.device).index_copy_(0, plan.guarded, flags.to(plan.dtype))

    def _scale_floor(self, param: torch.Tensor) -> float:
        """sqrt(1/fan_in), the scale used while this matrix's RMS is 0; warns if it is 0 when first seen."""
        floor = math.sqrt(1 / param[0].numel())
        if not param.any():
            warnings.warn(f"Tiger: a {tuple(param.shape)} matrix has RMS 0 and would never move; its scale "
                          f"is floored at sqrt(1/fan_in) = {floor:.3g}", stacklevel=10)
        return floor


class StepPlan:
    """What stays fixed between steps for a set of tensors that step together: the parameters, their momenta,
    their kinds, decays λ_i (0 for biases and norm gains under parameter scaling), which of them are guarded,
    scaled by RMS or by rows, and the index tensors that pick them out of per-tensor vectors. Kept outside
    the optimizer state (which stays one momentum tensor per parameter); built by `Tiger._plans_for`."""

    def __init__(self, groups, params, momenta, group_indices, device, dtype, scale_floor):
        self.params, self.momenta, self.device, self.dtype = params, momenta, device, dtype
        self.converts = any(param.dtype != dtype for param in params)  # bf16/fp16 θ: float32 m, gradients cast
        self._signs: list[torch.Tensor] | None = None
        self.vector = functools.partial(torch.tensor, dtype=dtype, device=device)
        indices = functools.partial(torch.tensor, dtype=torch.long, device=device)
        kinds = [group["kind"] or inferred_kind(param) for group, param in zip(groups, params)]
        scaled = [group["parameter_scaling"] for group in groups]
        weight_decays = [0.0 if on and kind in ("bias", "norm") else group["weight_decay"]
                         for on, kind, group in zip(scaled, kinds, groups)]
        self.group_index = indices(group_indices)
        self._per_tensor: dict[tuple, torch.Tensor] = {}
        self._constant_rules: dict[tuple, tuple] = {}
        self.weight_decay_values, self.weight_decays = weight_decays, self.vector(weight_decays)
        self.shrink_ratios = self.vector([group["shrink_ratio"] for group in groups])
        self.base_scales = self.vector([0.5 if on and kind in ("bias", "norm") else 1.0 for on, kind in zip(scaled, kinds)])
        by_rms = [i for i, (on, kind) in enumerate(zip(scaled, kinds)) if on and kind in ("matrix", "head")]
        self.rms_params = [params[i] for i in by_rms]
        self.by_rms = indices(by_rms)
        self.root_numels = self.vector([param.numel() for param in self.rms_params]).sqrt()
        floors = {i: scale_floor(params[i]) for i in by_rms}
        self.floors = self.vector(list(floors.values()))
        self.embeddings = [i for i, (on, kind) in enumerate(zip(scaled, kinds)) if on and kind == "embedding"]
        self.rules_are_constant = not self.rms_params and not self.embeddings  # step sizes need no θ
        not_embeddings = [i for i in range(len(params)) if i not in self.embeddings]
        decayed = [i for i in not_embeddings if weight_decays[i]]
        norms = [i for i, kind in enumerate(kinds) if kind == "norm"]
        guarded = [i for i, group in enumerate(groups) if group["nan_guard"]]
        self.not_embeddings, self.not_embedding_params = indices(not_embeddings), [params[i] for i in not_embeddings]
        self.decayed, self.decayed_params = indices(decayed), [params[i] for i in decayed]
        self.norms, self.norm_params = indices(norms), [params[i] for i in norms]
        self.guarded, self.guarded_positions = (indices(guarded), guarded) if guarded else (None, [])
        self.rules = tuple(TensorRule("rms" if i in floors else "rows" if i in self.embeddings else "none",
                                      base, weight_decay, group["nan_guard"], group["shrink_ratio"],
                                      1.0 if kind == "norm" else 0.0, floors.get(i, 0.0))
                           for i, (base, weight_decay, group, kind)
                           in enumerate(zip(self.base_scales.tolist(), weight_decays, groups, kinds)))

    def gradients(self) -> list[torch.Tensor]:
        """This step's gradients, in the state dtype."""
        grads = [param.grad for param in self.params]
        return [grad.to(self.dtype) for grad in grads] if self.converts else grads

    def scratch(self) -> list[torch.Tensor]:
        """Space for sign(m), one buffer per momentum (see ScratchBuffers), made on first use."""
        if self._signs is None:
            self._signs = [torch.empty_like(momentum, memory_format=torch.contiguous_format) for momentum in self.momenta]
        return self._signs

    def constant_rules(self, group_lrs: tuple) -> tuple[list, list, list]:
        """(step sizes η_i, decayed tensors, their factors 1 − η_i·λ_i) where no size depends on θ (no RMS
        scales), kept while the lrs repeat."""
        if group_lrs not in self._constant_rules:
            if len(self._constant_rules) > 64:  # an lr schedule gives a new value every step
                self._constant_rules.clear()
            sizes = self.per_tensor(group_lrs) * self.base_scales
            factors = 1 - sizes[self.decayed] * self.weight_decays[self.decayed]
            self._constant_rules[group_lrs] = (list(sizes.unbind()), self.decayed_params, list(factors.unbind()))
        return self._constant_rules[group_lrs]

    def per_tensor(self, group_values: tuple) -> torch.Tensor:
        """A vector of one value per param group spread to one per tensor (kept while the values repeat)."""
        if group_values not in self._per_tensor:
            if len(self._per_tensor) > 64:  # an lr schedule gives a new value every step
                self._per_tensor.clear()
            self._per_tensor[group_values] = self.vector(group_values)[self.group_index]
        return self._per_tensor[group_values]

    def row_rms(self, applies: bool) -> list[torch.Tensor | None]:
        """RMS_row(θ) of each embedding (one per row, shape (rows, 1)), None for the other tensors and on a
        step that does not move θ."""
        rms: list[torch.Tensor | None] = [None] * len(self.params)
        for i in self.embeddings if applies else ():
            param = self.params[i]
            rms[i] = torch.linalg.vector_norm(param, dim=-1, keepdim=True, dtype=self.dtype) / math.sqrt(param.shape[-1])
        return rms

    def scales(self) -> torch.Tensor:
        """Each tensor's factor on α from the pre-update θ (§2.3): RMS(θ) for matrices and heads (floored at
        sqrt(1/fan_in) where it is 0), 0.5 for biases and norm gains, 1 for embeddings (their row RMS is
        applied per row) and without parameter scaling."""
        if not self.rms_params:
            return self.base_scales
        rms = torch.stack(torch._foreach_norm(self.rms_params)).to(self.dtype) / self.root_numels
        return self.base_scales.index_copy(0, self.by_rms, torch.where(rms > 0, rms, self.floors))
