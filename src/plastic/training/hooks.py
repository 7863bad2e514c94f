"""Hooks: the one way plasticity interventions and probes touch the training loop (SB3's callbacks are the model).

Each hook says when (`training/schedules.py`) and calls what (`plastic.plasticity`, `plastic.probes`) on the modules
the agent names (`plastic.agents.base.Agent`):
- `ResetHook`: every `reset.interval` gradient updates (paper §4: 40k on Atari, 100k on DMC), hard-resets the
  agent's reset modules (the head) with their target twins, shrinks & perturbs the backbone (PLASTIC†), and applies
  the optimizer-state policy (`plastic.plasticity.reset`). The schedule counts updates, which the checkpoint holds,
  so it survives resume.
- `ReDoHook`: recycles dormant units every `redo.interval` updates (Sokar et al. 2023).
- `ReGraMaHook`: recycles units the loss gradient does not reach every `regrama.interval` updates (Liu et al. 2025).
- `ProbeHook`: every `probe.every` agent steps, measures λmax of the loss Hessian and active/dormant unit fractions
  on transitions sampled uniformly from the replay buffer (paper §4.1, Fig. 4), with the run's own probe streams,
  and the toolkit's probes switched on in `probe.*` (docs/toolkit.md). Churn and the effective learning rate are
  measured over one update: the hook snapshots at the end of the step before a probe step and measures after the
  probe step's first update.

A hook with state of its own (the probes' generators) returns it from `state_dict()`; the trainer saves it in the
checkpoint and gives it back through `load_state_dict`, so a resumed run continues the same draws.

The newer interventions (docs/toolkit.md) are wired as: `ReGraMaHook` (periodic, like `ReDoHook`); loss terms and
after-optimizer-step calls that the agent's update runs through `plastic.agents.interventions.Interventions` (L2
Init, Parseval, C-CHAIN; Hare & Tortoise, NaP's projection), whose state the agent's checkpoint holds.
"""

from __future__ import annotations

import numpy as np
import torch

from plastic.config import TrainConfig
from plastic.nets.noisy import noise_at_means
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


class _RecyclingHook(Hook):
    """Every `interval` updates, recycle the units that score as dormant on a uniform replay batch (ReDo, ReGraMa);
    logs how many were recycled as `metric`."""

    section_name: str
    metric: str

    def __init__(self, config: TrainConfig):
        self.section = getattr(config, self.section_name)
        self.schedule = Every(self.section.interval)

    def after_update(self, agent, buffer) -> dict[str, float]:
        if not self.schedule.due(agent.updates):
            return {}
        batch = buffer.sample_uniform(min(self.section.batch_size, len(buffer)))
        return {self.metric: float(sum(self.recycle(agent, batch).values()))}

    def recycle(self, agent, batch) -> dict[str, int]:
        raise NotImplementedError


class ReDoHook(_RecyclingHook):
    section_name, metric = "redo", "plasticity/redo_recycled_units"

    def recycle(self, agent, batch) -> dict[str, int]:
        return agent.redo(agent.probe_inputs(batch), self.section.tau)


class ReGraMaHook(_RecyclingHook):
    section_name, metric = "regrama", "plasticity/regrama_recycled_units"

    def recycle(self, agent, batch) -> dict[str, int]:
        return agent.regrama(batch, self.section.tau, self.section.gradient_at)


class ProbeHook(Hook):
    def __init__(self, config: TrainConfig):
        from plastic.training.seeding import RandomStreams

        self.probe = config.probe
        self.schedule = Every(config.probe.every)
        streams = RandomStreams(config.seed)
        self.rng = streams.numpy_generator("probe_batches")
        self.generator = streams.torch_generator("probe_hessian")
        # Its own stream (appended last), so that the earlier probes' draws are those they always were.
        self.reference_rng = streams.numpy_generator("probe_reference")
        self.reference_generator = streams.torch_generator("probe_reference")
        self.one_update = self.probe.churn or self.probe.effective_learning_rate
        self.before: dict | None = None  # the snapshot taken before the probe step's first update
        self.measured: dict[str, float] = {}  # what that update's measures gave, logged at the probe step

    def after_update(self, agent, buffer) -> dict[str, float]:
        if self.before is not None:
            self.measured = measure_update(agent, self.before)
            self.before = None
        return {}

    def after_step(self, agent, buffer, step: int) -> dict[str, float]:
        if self.one_update and self.schedule.due(step + 1) and len(buffer) >= 2:
            self.before = snapshot_update(agent, buffer, self.probe, self.reference_rng)
        if not self.schedule.due(step) or len(buffer) < 2:
            return {}
        metrics = measure_probes(agent, buffer, self.probe, self.generator, self.rng, self.reference_generator)
        metrics.update(self.measured)
        self.measured = {}
        return metrics

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
                "reference_rng": self.reference_rng.bit_generator.state,
                "reference_generator": self.reference_generator.get_state(),
                "before": self.before, "measured": self.measured}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        if "reference_rng" in state:  # checkpoints from before the toolkit's probes
            self.reference_rng.bit_generator.state = state["reference_rng"]
            self.reference_generator.set_state(state["reference_generator"])
            self.before, self.measured = state["before"], state["measured"]


def snapshot_update(agent, buffer, probe, rng: np.random.Generator) -> dict:
    """Before one update: the parameters (effective learning rate) and, for churn, a reference batch drawn with `rng`
    and the outputs on it. Tensors only, so that a checkpoint taken in between holds it."""
    from plastic.probes import OutputChurn, parameter_snapshot

    snapshot: dict = {}
    if probe.effective_learning_rate:
        snapshot["parameters"] = parameter_snapshot(agent.probe_model)
    if probe.churn:
        batch = buffer.sample_uniform(min(probe.batch_size, len(buffer)), rng)
        churn = OutputChurn(_output_model(agent), agent.probe_inputs(batch))
        with noise_at_means(agent.probe_model):
            churn.snapshot()
        snapshot["churn_inputs"], snapshot["churn_before"] = churn.inputs, churn.before
    return snapshot


def _output_model(agent) -> torch.nn.Module:
    """The module whose tensor output churn compares: the probe model, or the agent's `churn_model` where the probe
    model returns several tensors (SAC's twin critics)."""
    return getattr(agent, "churn_model", agent.probe_model)


def measure_update(agent, before: dict) -> dict[str, float]:
    from plastic.probes import effective_learning_rate

    metrics: dict[str, float] = {}
    if "parameters" in before:
        for key, value in effective_learning_rate(before["parameters"], agent.probe_model).items():
            metrics[f"probes/effective_learning_rate/{key}"] = value
    if "churn_inputs" in before:
        from plastic.probes import OutputChurn

        churn = OutputChurn(_output_model(agent), before["churn_inputs"])
        churn.before = before["churn_before"]
        with noise_at_means(agent.probe_model):
            for key, value in churn.measure().items():
                metrics[f"probes/churn/{key}"] = value
    return metrics


def measure_probes(agent, buffer, probe, generator: torch.Generator, rng: np.random.Generator | None = None,
                   trace_generator: torch.Generator | None = None) -> dict[str, float]:
    """The paper's plasticity metrics on uniformly sampled transitions. Batches are drawn with `rng` (default: the
    buffer's own) and the power iteration starts from `generator` (the Hessian trace's vectors: `trace_generator`);
    with the probe hook's own streams, probing draws nothing from the training run's streams: a run trains the same
    with probes on or off."""
    from plastic.probes import (active_unit_fraction, dormant_unit_fraction, effective_rank,
                                gradient_dormant_fraction, hessian_max_eigenvalue, hessian_trace, stable_rank)
    from plastic.probes.activity import activation_modules, capture_outputs

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
    ranks = [(name, fn) for name, fn in (("effective_rank", effective_rank), ("stable_rank", stable_rank))
             if getattr(probe, name)]
    if ranks:  # of each activation layer's output, one forward for all layers
        modules = activation_modules(agent.probe_model)
        captured = capture_outputs(agent.probe_model, inputs, modules,
                                   lambda module, out: out.detach().reshape(out.shape[0], -1))
        for layer, calls in captured.items():
            for name, fn in ranks:
                metrics[f"probes/{name}/{layer}"] = fn(calls[0])
    if probe.grama:
        with agent.loss_closure(batch) as closure:
            for key, value in gradient_dormant_fraction(agent.probe_model, closure, probe.grama_tau).items():
                metrics[f"probes/grama/{key}"] = value
    if probe.hessian_trace:
        small = buffer.sample_uniform(min(probe.hessian_batch_size, len(buffer)), rng)
        with agent.loss_closure(small) as closure:
            for key, value in hessian_trace(closure, agent.probe_model, samples=probe.hessian_trace_samples,
                                            generator=trace_generator).items():
                metrics[f"probes/hessian_trace/{key}"] = value
    return metrics


def build_hooks(config: TrainConfig) -> list[Hook]:
    hooks: list[Hook] = []
    if config.reset.enabled or config.shrink_perturb.enabled:
        hooks.append(ResetHook(config))
    if config.redo.enabled:
        hooks.append(ReDoHook(config))
    if config.regrama.enabled:
        hooks.append(ReGraMaHook(config))
    hooks.append(ProbeHook(config))
    return hooks
