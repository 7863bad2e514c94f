"""The Rainbow update's tail in one compiled function: gradient-norm clipping, Adam and the EMA target (Table 5).

Eagerly the tail is three library calls (`clip_grad_norm`, the fused Adam kernel, `torch._foreach_lerp_`), each of
which also pays its own Python, dispatcher and per-tensor costs; the gradient norms run on one thread. Compiled
together, inductor runs them as a few parallel kernels: one pass over the gradients for the norm, then one pass that
reads each parameter, its gradient, both moments and the target weight and writes four of them (Adam's update and
the EMA share the read of the new parameter). `benchmarks/update_speed.py` measures it (docs/performance.md).

The arithmetic is torch's Adam (`amsgrad`, `maximize` and weight decay off, as the Rainbow update uses it) and its
state is the optimizer's own: `exp_avg`, `exp_avg_sq` and a `step` per parameter in `optimizer.state`, created as
torch creates them when a parameter has none (a new one, or a reset that cleared it), so checkpoints, resets and
`torch.optim.Adam` itself read and write the same tensors. Results agree with the eager tail to float rounding.
"""

from __future__ import annotations

import torch

from plastic.agents.compiled import MaybeCompiled


def supports(optimizer: torch.optim.Optimizer) -> bool:
    """True when `optimizer` is a plain `torch.optim.Adam` with the options the compiled tail implements."""
    return type(optimizer) is torch.optim.Adam and all(
        group["weight_decay"] == 0 and not group["amsgrad"] and not group["maximize"]
        and not group.get("decoupled_weight_decay", False) and not torch.is_tensor(group["lr"])
        for group in optimizer.param_groups)


@torch.no_grad()
def clip_adam_ema_(groups: list, targets: list[torch.Tensor], max_norm: float, online_weight: float) -> torch.Tensor:
    """Scale the gradients to a total norm of at most `max_norm`, take an Adam step and move each target weight by
    `online_weight` towards its new online weight. `groups`: per param group (lr, beta1, beta2, eps, params, grads,
    exp_avgs, exp_avg_sqs, steps); `targets` in the order of the groups' params. Returns the norm before clipping."""
    grads = [grad for group in groups for grad in group[5]]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(grad) for grad in grads]))
    coefficient = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    index = 0
    for lr, beta1, beta2, eps, params, grads, exp_avgs, exp_avg_sqs, steps in groups:
        for param, grad, exp_avg, exp_avg_sq, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
            grad = grad * coefficient
            step.add_(1)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr / (1 - beta1 ** step)
            denominator = exp_avg_sq.sqrt() / (1 - beta2 ** step).sqrt() + eps
            param.sub_(step_size * exp_avg / denominator)
            targets[index].lerp_(param, online_weight)
            index += 1
    return norm


class CompiledTail:
    """`tail()`: clip the online network's gradients, step `optimizer` and update the EMA `target` network
    (target <- tau * target + (1 - tau) * online) in one compiled call; returns the norm before clipping, as
    `clip_grad_norm` does. Falls back to `eager_tail()` (the same three steps as separate library calls) when
    compilation fails and `strict` is off."""

    def __init__(self, optimizer: torch.optim.Adam, online: torch.nn.Module, target: torch.nn.Module, tau: float,
                 max_norm: float, eager_tail, *, strict: bool):
        self.optimizer = optimizer
        twin = {id(param): twin for param, twin in zip(online.parameters(), target.parameters(), strict=True)}
        self.targets = [twin[id(param)] for group in optimizer.param_groups for param in group["params"]]
        if len(self.targets) != len(twin):
            raise ValueError(f"the optimizer holds {len(self.targets)} of the online network's {len(twin)} "
                             "parameters; the compiled tail updates the EMA of exactly the optimised ones")
        self.online_weight = 1.0 - tau
        self.max_norm = max_norm
        self.compiled = MaybeCompiled(clip_adam_ema_, strict=strict)
        self.eager_tail = eager_tail

    def _groups(self) -> list | None:
        """The compiled function's `groups`, or None when a parameter has no gradient (the eager tail skips it)."""
        groups = []
        for group in self.optimizer.param_groups:
            lists = [[] for _ in range(5)]
            for param in group["params"]:
                if param.grad is None:
                    return None
                state = self.optimizer.state[param]
                if not state:  # as torch.optim.Adam initialises a parameter's state on its first step
                    state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                for values, value in zip(lists, (param, param.grad, state["exp_avg"], state["exp_avg_sq"],
                                                 state["step"])):
                    values.append(value)
            beta1, beta2 = group["betas"]
            groups.append((group["lr"], beta1, beta2, group["eps"], *lists))
        return groups

    def __call__(self) -> torch.Tensor:
        groups = None if self.compiled.failed else self._groups()
        if groups is None:
            return self.eager_tail()
        return self.compiled(groups, self.targets, self.max_norm, self.online_weight)
