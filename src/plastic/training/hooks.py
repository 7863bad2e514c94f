"""Hooks: the one way plasticity interventions and probes touch the training loop (SB3's callbacks are the model).

Each hook says when (`training/schedules.py`) and calls what (`plastic.plasticity`, `plastic.probes`) on the modules
the agent names (`plastic.agents.base.Agent`):
- `ResetHook`: every `reset.interval` gradient updates (paper §4: 40k on Atari, 100k on DMC), hard-resets the
  agent's reset modules (the head) with their target twins, shrinks & perturbs the backbone (PLASTIC†), and applies
  the optimizer-state policy (`plastic.plasticity.reset`). The schedule counts updates, which the checkpoint holds,
  so it survives resume.
- `ReDoHook`: recycles dormant units every `redo.interval` updates (Sokar et al. 2023).
- `ProbeHook`: every `probe.every` agent steps, measures λmax of the loss Hessian and active/dormant unit fractions
  on transitions sampled uniformly from the replay buffer (paper §4.1, Fig. 4), with the run's own probe streams.

A hook with state of its own (the probes' generators) returns it from `state_dict()`; the trainer saves it in the
checkpoint and gives it back through `load_state_dict`, so a resumed run continues the same draws.

Wiring a newer intervention (docs/toolkit.md) is one hook each: an `after_update` on a schedule for the periodic
ones (Hare & Tortoise's hare reset, ReGraMa like `ReDoHook`, NaP's weight projection), or a loss term the agent adds
to its update loss for the regularisers (L2 Init, Parseval, C-CHAIN's churn term).
"""

from __future__ import annotations

import numpy as np
import torch

from plastic.config import TrainConfig
from plastic.training.schedules import Every


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
        self.schedule = Every(config.reset.interval)
        self.interval = config.reset.interval
        self.hard = config.reset.enabled
        self.reset_target = config.reset.target
        self.optimizer_policy = config.reset.optimizer
        sp = config.shrink_perturb
        self.alpha = sp.alpha if sp.enabled and config.replay_ratio >= sp.min_replay_ratio else None

    def after_update(self, agent, buffer) -> dict[str, float]:
        if not self.schedule.due(agent.updates):
            return {}
        from plastic.plasticity.reset import clear_optimizer_states_, reset_twins_, shrink_perturb_twins_

        touched: list[torch.nn.Parameter] = []
        if self.hard:
            touched += reset_twins_(agent.reset_modules(), agent.generator, target=self.reset_target)
            touched += agent.reset_extra_()  # state outside the reset modules (SAC's temperature)
        if self.alpha is not None:
            touched += shrink_perturb_twins_(agent.shrink_perturb_modules(), self.alpha, agent.generator)
        clear_optimizer_states_(agent.optimizers, touched, self.optimizer_policy)
        return {"plasticity/resets": float(agent.updates // self.interval)}


class ReDoHook(Hook):
    def __init__(self, config: TrainConfig):
        self.redo = config.redo
        self.schedule = Every(config.redo.interval)

    def after_update(self, agent, buffer) -> dict[str, float]:
        if not self.schedule.due(agent.updates):
            return {}
        batch = buffer.sample_uniform(min(self.redo.batch_size, len(buffer)))
        recycled = agent.redo(agent.probe_inputs(batch), self.redo.tau)
        return {"plasticity/redo_recycled_units": float(sum(recycled.values()))}


class ProbeHook(Hook):
    def __init__(self, config: TrainConfig):
        from plastic.training.seeding import RandomStreams

        self.probe = config.probe
        self.schedule = Every(config.probe.every)
        streams = RandomStreams(config.seed)
        self.rng = streams.numpy_generator("probe_batches")
        self.generator = streams.torch_generator("probe_hessian")

    def after_step(self, agent, buffer, step: int) -> dict[str, float]:
        if not self.schedule.due(step) or len(buffer) < 2:
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
        with agent.loss_closure(small) as closure:
            params = [p for p in agent.probe_model.parameters() if p.requires_grad]
            metrics["probes/hessian_max_eigenvalue"] = hessian_max_eigenvalue(
                closure, params, iters=probe.hessian_iters, tol=1e-3, generator=generator)
    return metrics


def build_hooks(config: TrainConfig) -> list[Hook]:
    hooks: list[Hook] = []
    if config.reset.enabled or config.shrink_perturb.enabled:
        hooks.append(ResetHook(config))
    if config.redo.enabled:
        hooks.append(ReDoHook(config))
    hooks.append(ProbeHook(config))
    return hooks
