"""Hooks: the one way plasticity interventions and probes touch the training loop (STYLE.md, SB3 callbacks).

- `ResetHook`: every `reset.interval` gradient updates (paper §4: 40k on Atari, 100k on DMC), hard-resets what the
  agent names as its reset modules (the head), gives their target twins the same fresh draw, shrinks & perturbs the
  backbone (PLASTIC†), and clears the optimizer state of what was re-drawn. The schedule is derived from the update
  count, which the checkpoint holds, so it survives resume.
- `ReDoHook`: recycles dormant units every `redo.interval` updates (Sokar et al. 2023).
- `ProbeHook`: every `probe.every` agent steps, measures λmax of the loss Hessian and active/dormant unit fractions
  on transitions sampled uniformly from the replay buffer (paper §4.1, Fig. 4), with the run's own probe streams.

A hook with state of its own (the probes' generators) returns it from `state_dict()`; the trainer saves it in the
checkpoint and gives it back through `load_state_dict`, so a resumed run continues the same draws.

An agent exposes `reset_modules()`, `shrink_perturb_modules()` (lists of (online, target twin or None)), `optimizers`,
`generator`, `updates`, `probe_model`, `probe_inputs(batch)`, `loss_closure(batch)` and `redo(inputs, tau)`, and
optionally `reset_extra_()` (renews what a hard reset renews outside those modules; returns the tensors).
"""

from __future__ import annotations

import numpy as np
import torch

from plastic.config import TrainConfig


class Hook:
    def after_update(self, agent, buffer) -> dict[str, float]:
        return {}

    def after_step(self, agent, buffer, step: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ResetHook(Hook):
    def __init__(self, config: TrainConfig):
        self.interval = config.reset.interval
        self.hard = config.reset.enabled
        self.reset_target = config.reset.target
        self.optimizer_policy = config.reset.optimizer
        sp = config.shrink_perturb
        self.alpha = sp.alpha if sp.enabled and config.replay_ratio >= sp.min_replay_ratio else None

    def after_update(self, agent, buffer) -> dict[str, float]:
        if agent.updates % self.interval:
            return {}
        from plastic.plasticity import reset_optimizer_state_, reset_parameters_, shrink_perturb_

        touched: list[torch.nn.Parameter] = []
        if self.hard:
            for online, target in agent.reset_modules():
                reset_parameters_(online, agent.generator)
                if target is not None and self.reset_target:
                    target.load_state_dict(online.state_dict())  # the same fresh draw
                touched += list(online.parameters())
            if hasattr(agent, "reset_extra_"):  # state outside the reset modules (SAC's temperature)
                touched += agent.reset_extra_()
        if self.alpha is not None:
            for online, target in agent.shrink_perturb_modules():
                if not any(p.requires_grad for p in online.parameters()):
                    continue  # a frozen pretrained backbone is not trained, so not softly reset either
                draw = agent.generator.get_state()
                shrink_perturb_(online, self.alpha, agent.generator)
                if target is not None:
                    after = agent.generator.get_state()
                    agent.generator.set_state(draw)  # the target twin is perturbed towards the same phi
                    shrink_perturb_(target, self.alpha, agent.generator)
                    agent.generator.set_state(after)
                touched += [p for p in online.parameters() if p.requires_grad]
        for optimizer in agent.optimizers:
            if self.optimizer_policy == "all":
                params = [p for group in optimizer.param_groups for p in group["params"]]
            elif self.optimizer_policy == "reset":
                owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
                params = [p for p in touched if id(p) in owned]
            else:
                params = []
            if params:
                reset_optimizer_state_(optimizer, params)
        return {"plasticity/resets": float(agent.updates // self.interval)}


class ReDoHook(Hook):
    def __init__(self, config: TrainConfig):
        self.redo = config.redo

    def after_update(self, agent, buffer) -> dict[str, float]:
        if agent.updates % self.redo.interval:
            return {}
        batch = buffer.sample_uniform(min(self.redo.batch_size, len(buffer)))
        recycled = agent.redo(agent.probe_inputs(batch), self.redo.tau)
        return {"plasticity/redo_recycled_units": float(sum(recycled.values()))}


class ProbeHook(Hook):
    def __init__(self, config: TrainConfig):
        from plastic.training.seeding import RandomStreams

        self.probe = config.probe
        streams = RandomStreams(config.seed)
        self.rng = streams.numpy_generator("probe_batches")
        self.generator = streams.torch_generator("probe_hessian")

    def after_step(self, agent, buffer, step: int) -> dict[str, float]:
        if not self.probe.every or step % self.probe.every or len(buffer) < 2:
            return {}
        return measure_probes(agent, buffer, self.probe, self.generator, self.rng)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])


def measure_probes(agent, buffer, probe, generator: torch.Generator,
                   rng: np.random.Generator | None = None) -> dict[str, float]:
    """The paper's plasticity metrics on uniformly sampled transitions. Batches are drawn with `rng` (default: the
    buffer's own) and the power iteration starts from `generator`; with the probe hook's own streams, probing draws
    nothing from the training run's streams: a run trains the same with probes on or off."""
    from plastic.probes import active_unit_fraction, dormant_unit_fraction, hessian_max_eigenvalue

    metrics: dict[str, float] = {}
    batch = buffer.sample_uniform(min(probe.batch_size, len(buffer)), rng)
    inputs = agent.probe_inputs(batch)
    for key, value in active_unit_fraction(agent.probe_model, inputs).items():
        metrics[f"probes/active_unit_fraction/{key}"] = value
    for key, value in dormant_unit_fraction(agent.probe_model, inputs, probe.dormant_tau).items():
        metrics[f"probes/dormant_unit_fraction/{key}"] = value
    if probe.hessian:
        small = buffer.sample_uniform(min(probe.hessian_batch_size, len(buffer)), rng)
        closure, restore = agent.loss_closure(small)
        try:
            params = [p for p in agent.probe_model.parameters() if p.requires_grad]
            metrics["probes/hessian_max_eigenvalue"] = hessian_max_eigenvalue(
                closure, params, iters=probe.hessian_iters, tol=1e-3, generator=generator)
        finally:
            restore()
    return metrics


def build_hooks(config: TrainConfig) -> list[Hook]:
    hooks: list[Hook] = []
    if config.reset.enabled or config.shrink_perturb.enabled:
        hooks.append(ResetHook(config))
    if config.redo.enabled:
        hooks.append(ReDoHook(config))
    hooks.append(ProbeHook(config))
    return hooks
