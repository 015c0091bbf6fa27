"""Amos: Tian & Parikh 2022, "Amos: An Adam-style Optimizer with Adaptive Weight Decay towards
Model-Oriented Scale" (arXiv 2210.11693; google-research/jestimator); docs/science/optimizers.md §5.

Per tensor, with global lr ξ, the tensor's model-oriented scale η (expected magnitude of its trained
entries) and a step count t (incremented first):
    g2 = mean of g² over the reduced axes
    v  ← β·v + (1 − β)·g2
    r  = (1 − β^t) / max(v, ε)                      (= 1/v̂)
    c  = 1/sqrt(1 + ζ·sqrt(ξ)·b)
    γ  = sqrt(fr)·c·ξ²·r·g2                         (≈ ξ² on average)
    a  = ξ·η
    d  = 1/(1 + ζ·sqrt(a)·b)
    Δθ = fr·d·(−a·sqrt(r)·g − ½·γ·θ)               (Adam-like step + adaptive decay toward 0)
    b  ← b + γ·(fr + b)
    optional: Δθ ← μ·Δθ_prev + (1 − μ)·Δθ  (EMA of updates);   θ ← θ + Δθ
d_t and ½·d_t·γ_t form Amos's implied lr / decay schedule; `metrics()` reports them (logged at probe steps).

State shape (`state_shape`): `reduced` keeps v and b per output row for ≥ 2-D tensors (shape (out, 1,
...): O(out) memory, not O(params)) and scalar for 1-D tensors; `full` keeps them elementwise; `scalar`
keeps one v and b per tensor (pytorch_optimizer's Amos). State is float32 or wider.

η per tensor (`eta_rule`): `init_rms` (default) uses RMS(θ_0), the init scale, and 0.5 where θ_0 = 0
and for biases and norm gains; `fan_in` uses jestimator's README rules (biases/norms 0.5, hidden
matrices sqrt(2/fan_in), head sqrt(1/fan_in), embeddings sqrt(1/width)). `eta_overrides` sets η by
parameter kind. The kind comes from the param group (`kind`, as optlab.optim.parameter_groups(model)
sets it); a group without one is read tensor by tensor, ≥ 2-D tensors as matrices and the others as
biases (Amos warns when that matters: `fan_in` or `eta_overrides`).
"""

from __future__ import annotations

import math
import warnings

import torch

from optlab.optim._common import (check, check_beta, check_choice, check_non_negative, check_positive,
                                  check_real_parameters, closure_loss, dense_gradient, state_dtype)

EPSILON = 2.0 ** -125


def model_scale(param: torch.Tensor, kind: str, rule: str) -> float:
    """η for one tensor, by the rules in the module docstring."""
    if kind in ("bias", "norm") or param.ndim < 2:
        return 0.5
    fan_in = param[0].numel()
    if rule == "fan_in":
        if kind == "head":
            return math.sqrt(1 / fan_in)
        if kind == "embedding":
            return math.sqrt(1 / param.shape[-1])
        return math.sqrt(2 / fan_in)
    rms = param.float().pow(2).mean().sqrt().item()
    return rms if rms > 0 else math.sqrt(2 / fan_in)


def reduced_axes(param: torch.Tensor, state_shape: str) -> tuple[int, ...]:
    if state_shape == "full":
        return ()
    if state_shape == "scalar" or param.ndim < 2:
        return tuple(range(param.ndim))
    return tuple(range(1, param.ndim))


class Amos(torch.optim.Optimizer):
    """Amos (arXiv 2210.11693): an Adam-like step scaled to each tensor's model-oriented scale η, with an
    adaptive decay toward 0 and an implied lr schedule (the equations are in the module docstring). lr ξ > 0,
    beta in [0, 1), decay_speed ζ > 0, finetune_rate > 0, initial_b ≥ 0, momentum in [0, 1) (an EMA of the
    updates), clip_value > 0 or None, state_shape reduced | full | scalar, eta_rule init_rms | fan_in."""

    def __init__(
        self,
        params,
        lr: float = 0.01,
        beta: float = 0.999,
        decay_speed: float = 0.25,
        finetune_rate: float = 1.0,
        initial_b: float = 0.0,
        momentum: float = 0.0,
        clip_value: float | None = None,
        state_shape: str = "reduced",
        eta_rule: str = "init_rms",
        eta_overrides: dict | None = None,
    ):
        check_positive("lr", lr)
        check_beta("beta", beta)
        check_positive("decay_speed", decay_speed)
        check_positive("finetune_rate", finetune_rate)
        check_non_negative("initial_b", initial_b)
        check_beta("momentum", momentum)
        check("clip_value", clip_value, clip_value is None or clip_value > 0, "positive or None")
        check_choice("state_shape", state_shape, ("reduced", "full", "scalar"))
        check_choice("eta_rule", eta_rule, ("init_rms", "fan_in"))
        defaults = dict(lr=lr, beta=beta, decay_speed=decay_speed, finetune_rate=finetune_rate, initial_b=initial_b,
                        momentum=momentum, clip_value=clip_value, state_shape=state_shape, eta_rule=eta_rule,
                        eta_overrides=dict(eta_overrides or {}), weight_decay=0.0, kind=None)
        super().__init__(params, defaults)
        check_real_parameters(self)
        if any(group["weight_decay"] for group in self.param_groups):
            raise ValueError("Amos has its own adaptive decay toward 0: give its parameters no weight_decay")
        self._plans: dict[tuple, AmosPlan] = {}
        self._last: list[dict] = []
        if any(group["kind"] is None and (group["eta_rule"] == "fan_in" or group["eta_overrides"])
               for group in self.param_groups):
            warnings.warn("Amos: param groups without `kind`: ≥ 2-D tensors are taken as hidden matrices, the others "
                          "as biases; pass optlab.optim.parameter_groups(model) to give embeddings, heads and norm "
                          "gains their own η", stacklevel=2)

    def _init_state(self, param: torch.Tensor, group: dict) -> dict:
        state = self.state[param]
        if not state:
            kind = group["kind"] or ("matrix" if param.ndim >= 2 else "bias")
            axes = reduced_axes(param, group["state_shape"])
            shape = [1 if i in axes else size for i, size in enumerate(param.shape)]
            dtype = state_dtype(param)
            state["step"] = 0
            state["eta"] = group["eta_overrides"].get(kind, model_scale(param, kind, group["eta_rule"]))
            state["v"] = torch.zeros(shape, dtype=dtype, device=param.device)
            state["b"] = torch.full(shape, float(group["initial_b"]), dtype=dtype, device=param.device)
            if group["momentum"]:
                state["update_average"] = torch.zeros_like(param, dtype=dtype)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        batches: dict[tuple, list] = {}  # tensors whose small state is concatenated: same device and state dtype
        for index, group in enumerate(self.param_groups):
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self._init_state(param, group)
                state["step"] += 1
                grad = dense_gradient(self, param)
                grad = grad if grad.dtype == state["v"].dtype else grad.to(state["v"].dtype)
                if group["clip_value"] is not None:
                    grad = grad.clamp(-group["clip_value"], group["clip_value"])
                batches.setdefault((param.device, state["v"].dtype), []).append((index, param, grad, state))
        self._last = [self._step_together(key, entries) for key, entries in batches.items()]
        return loss

    def _step_together(self, key, entries) -> dict:
        """The equations of the module docstring on every tensor of `entries` at once. The per-row state
        (v, b) of all tensors lives in one vector (each tensor's state is a view of its part), so the scalar
        maths is a handful of operations whatever the number of tensors; θ then takes two foreach passes,
            θ ← θ·(1 − ½·fr·d·γ) − (fr·d·a·sqrt(r))·g."""
        plan = self._plan(key, entries)
        groups = [self.param_groups[index] for index, *_ in entries]
        params, grads, states = plan.params, [grad for _, _, grad, _ in entries], [state for *_, state in entries]
        per_row = lambda values: plan.per_row(tuple(values))  # noqa: E731
        xi, zeta, fr, beta = (per_row(g[name] for g in groups) for name in ("lr", "decay_speed", "finetune_rate", "beta"))
        corrections = {1 - g["beta"] ** state["step"] for g, state in zip(groups, states)}  # usually one value
        correction = corrections.pop() if len(corrections) == 1 else \
            per_row(1 - g["beta"] ** state["step"] for g, state in zip(groups, states))
        a = xi * plan.etas
        v, b, g2 = plan.v, plan.b, plan.mean_squares(grads)
        v.mul_(beta).add_((1 - beta) * g2)
        r = correction / v.clamp(min=EPSILON)
        gamma = fr.sqrt() * torch.rsqrt(1 + zeta * xi.sqrt() * b) * xi**2 * r * g2
        d = 1 / (1 + zeta * a.sqrt() * b)
        decay = 0.5 * fr * d * gamma  # the per-step decay toward 0
        torch.sub(1, decay, out=plan.factor)
        torch.mul(fr * d * a, r.sqrt(), out=plan.step_size)  # the Adam-like step's size
        b.add_(gamma * (fr + b))
        if plan.plain:
            torch._foreach_mul_(plan.plain_params, plan.plain_factors)
            torch._foreach_addcmul_(plan.plain_params, [grads[i] for i in plan.plain], plan.plain_step_sizes, value=-1)
        for i in plan.averaged:  # Δθ ← μ·Δθ_prev + (1 − μ)·Δθ;  θ ← θ + Δθ
            theta = params[i].to(grads[i].dtype)
            update = plan.factors[i] * theta - theta - plan.step_sizes[i] * grads[i]
            momentum = groups[i]["momentum"]
            average = states[i]["update_average"].mul_(momentum).add_(update, alpha=1 - momentum)
            params[i].add_(average.to(params[i].dtype))
        return dict(plan=plan, d=d, decay=decay, b=b.clone(), g2_over_v=r * g2)  # read by metrics() (probe steps)

    def _plan(self, key, entries) -> "AmosPlan":
        """The layout of the concatenated state of `entries`, rebuilt only when its tensors change (a new
        parameter, or state replaced by load_state_dict)."""
        identity = tuple((id(param), id(state["v"]), id(state["b"]), self.param_groups[index]["momentum"] > 0)
                         for index, param, _, state in entries)
        plan = self._plans.get(key)
        if plan is None or plan.identity != identity:
            plan = AmosPlan(identity, entries, self.param_groups, *key)
            self._plans[key] = plan
        return plan

    def metrics(self) -> dict[str, float]:
        """Mean over tensors of the last step's d_t (lr factor), ½·d_t·γ_t (per-step decay), b_t (the schedule's
        state) and g2·r (the ratio of the step's g² to its running mean v̂, which drives b; the closed form of
        §5.3 takes it ≡ 1). Computed here, when a probe asks, not at every step."""
        if not self._last:
            return {}
        sums, count = {}, 0
        for last in self._last:
            plan = last["plan"]
            count += len(plan.params)
            for name in ("d", "decay", "b", "g2_over_v"):
                sums[name] = sums.get(name, 0.0) + plan.tensor_means(last[name]).sum().item()
        return {"amos.d": sums["d"] / count, "amos.decay_per_step": sums["decay"] / count,
                "amos.b": sums["b"] / count, "amos.g2_over_v": sums["g2_over_v"] / count}


class AmosPlan:
    """The per-row vectors of a set of tensors that step together: v and b (each tensor's state["v"] and
    state["b"] become views of their part), the step's g2, decay factor and step size, with one view per
    tensor made once; the per-row index of each tensor; its η; how its g2 is measured (a whole-tensor
    mean, per row, or elementwise)."""

    def __init__(self, identity, entries, param_groups, device, dtype):
        self.identity, self.device, self.dtype = identity, device, dtype
        self.params = [param for _, param, _, _ in entries]
        states = [state for *_, state in entries]
        self.shapes = [state["v"].shape for state in states]
        self.sizes = [state["v"].numel() for state in states]
        self.axes = [reduced_axes(param, param_groups[index]["state_shape"]) for (index, param, _, _) in entries]
        rows = torch.tensor(self.sizes, device=device)
        self.tensor_of_row = torch.repeat_interleave(torch.arange(len(states), device=device), rows)
        self.rows = rows.to(dtype)
        self.etas = torch.tensor([state["eta"] for state in states], dtype=dtype, device=device)[self.tensor_of_row]
        self.v = torch.cat([state["v"].reshape(-1) for state in states])
        self.b = torch.cat([state["b"].reshape(-1) for state in states])
        for state, v, b in zip(states, self.views(self.v), self.views(self.b)):
            state["v"], state["b"] = v, b
        self.identity = tuple((id(param), id(state["v"]), id(state["b"]), averaged)
                              for param, state, (*_, averaged) in zip(self.params, states, identity))
        self.g2, self.factor, self.step_size = (torch.empty_like(self.v) for _ in range(3))
        self.g2s, self.factors, self.step_sizes = self.views(self.g2), self.views(self.factor), self.views(self.step_size)
        self.whole = [i for i, (param, axes) in enumerate(zip(self.params, self.axes)) if len(axes) == param.ndim]
        self.whole_rows = torch.tensor([sum(self.sizes[:i]) for i in self.whole], dtype=torch.long, device=device)
        reduced_counts = [param.numel() // size for param, size in zip(self.params, self.sizes)]
        self.reduced_counts = torch.tensor(reduced_counts, dtype=dtype, device=device)[self.tensor_of_row]
        self.averaged = [i for i, (*_, averaged) in enumerate(identity) if averaged]
        self.plain = [i for i, (*_, averaged) in enumerate(identity) if not averaged]
        self.plain_params = [self.params[i] for i in self.plain]
        self.plain_factors = [self.factors[i] for i in self.plain]
        self.plain_step_sizes = [self.step_sizes[i] for i in self.plain]
        self._per_row: dict[tuple, torch.Tensor] = {}

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """One view per tensor of a per-row vector, in the shape of its state."""
        return [part.view(shape) for part, shape in zip(flat.split(self.sizes), self.shapes)]

    def per_row(self, per_tensor: tuple) -> torch.Tensor:
        """One value per tensor spread over that tensor's rows (kept while the values repeat)."""
        if per_tensor not in self._per_row:
            if len(self._per_row) > 64:  # an lr schedule gives a new value every step
                self._per_row.clear()
            self._per_row[per_tensor] = torch.tensor(per_tensor, dtype=self.dtype, device=self.device)[self.tensor_of_row]
        return self._per_row[per_tensor]

    def mean_squares(self, grads) -> torch.Tensor:
        """g2 of every tensor (the mean of g² over its reduced axes) in the per-row vector: the norm over the
        reduced axes written into each tensor's part, then squared and divided by the count, all at once."""
        for i, (grad, axes) in enumerate(zip(grads, self.axes)):
            if not axes:
                torch.abs(grad, out=self.g2s[i])
            elif len(axes) < grad.ndim:
                torch.linalg.vector_norm(grad, dim=axes, keepdim=True, out=self.g2s[i])
        if self.whole:
            self.g2.index_copy_(0, self.whole_rows, torch.stack(torch._foreach_norm([grads[i] for i in self.whole])))
        return self.g2.square_().div_(self.reduced_counts)

    def tensor_means(self, flat: torch.Tensor) -> torch.Tensor:
        """The mean over each tensor's rows of a per-row vector."""
        sums = torch.zeros(len(self.sizes), dtype=flat.dtype, device=flat.device).index_add_(0, self.tensor_of_row, flat)
        return sums / self.rows
