"""Several seeds of one config updated together (`plastic train --seeds 0-7`, docs/multi_seed.md).

Each seed keeps a whole agent of its own: networks, optimizer and its state, target network, random streams, and
(in the loop) env, replay buffer with its PER tree, hooks and probes. What a group shares is the work of the network
passes: the seeds' parameters live in tensors stacked along a new leading dimension (each seed's own tensors are views
of their rows) and the network runs once for all seeds, S small convolutions and matmuls becoming one grouped or
batched kernel each (nets/stacked.py; `torch.func.vmap` for a network it does not know). Everything that is per
network stays per seed:
batch sampling, augmentation, noise draws, the loss mean, SAM's perturbation and its norm, gradient clipping, Adam,
the EMA target, priorities and the update count.

Seed k of a group therefore computes what it would alone, in a different kernel: equal to float rounding
(tests/test_seed_group.py). Over a long run rounding differences can change a greedy action or a sampled batch and
the two runs then drift apart like runs on two machines.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.func import functional_call, vmap

from plastic.agents import precision
from plastic.agents.base import ema_update_
from plastic.agents.distributional import project_distribution
from plastic.agents.rainbow import RainbowAgent, clip_grad_norm
from plastic.nets import stacked
from plastic.plasticity.sam import sam_update


class SequentialGroup:
    """Seeds in lock-step, each updated by its own agent in turn: for agents without a batched update (SAC)."""

    vectorised = False

    def __init__(self, agents: Sequence):
        self.agents = list(agents)

    def update(self, buffers: Sequence, progress: float) -> list[dict[str, float]]:
        return [agent.update(buffer, progress) for agent, buffer in zip(self.agents, buffers)]


class RainbowGroup:
    """The DrQ(ε)-Rainbow update (agents/rainbow.py, `RainbowAgent.update`) of S agents in one batched pass.

    The group re-homes every seed's parameters and noise buffers into stacked tensors (S, ...): each seed's tensor
    becomes a view of its row (`tensor.data = stacked[k]`), so it stays the same object that its optimizer, hooks and
    checkpoint see, and whatever changes it in place (Adam, a reset, ReDo, loading a checkpoint, a noise draw) changes
    the stacked copy the batched pass reads. After each backward pass the stacked gradient is handed to the seeds as
    views of its rows, so clipping and the optimizers act on each seed's own gradient.
    """

    vectorised = True

    def __init__(self, agents: Sequence[RainbowAgent]):
        self.agents = list(agents)
        first = self.agents[0]
        self.config, self.rainbow, self.device, self.atoms = first.config, first.rainbow, first.device, first.atoms
        # functional_call swaps the stacked tensors into this module for the call; its structure and its noisy
        # layers' on/off flags are what every seed's online and target networks share.
        self.template = first.online
        self.batched_layers = stacked.supports(self.template)  # nets/stacked.py; vmap over the module otherwise
        self.parameter_names = [name for name, _ in self.template.named_parameters()]
        self.stacked = {network: self._share(network) for network in ("online", "target")}
        self._target_pass, self._loss_pass = (precision.mixed(fn, self.config.precision, self.device)
                                              for fn in (self.target_distribution, self._per_sample_loss))
        if self.config.compile_enabled:
            from plastic.agents.compiled import MaybeCompiled

            strict = self.config.compile == "on"
            self._target_pass = MaybeCompiled(self._target_pass, strict=strict)
            self._loss_pass = MaybeCompiled(self._loss_pass, strict=strict)

    def _share(self, network: str) -> dict[str, torch.Tensor]:
        """Stack every seed's `network` parameters and buffers along dim 0 and make each seed's tensors views of
        their rows. Trainable stacked tensors are leaves whose gradient, once accumulated, becomes the seeds'."""
        named = [dict(getattr(agent, network).named_parameters()) | dict(getattr(agent, network).named_buffers())
                 for agent in self.agents]
        stacked = {}
        for name, first in named[0].items():
            members = [tensors[name] for tensors in named]
            whole = torch.stack([member.detach() for member in members])
            for row, member in zip(whole, members):
                member.data = row
            if isinstance(first, torch.nn.Parameter) and first.requires_grad:
                whole.requires_grad_(True)
                whole.register_post_accumulate_grad_hook(_hand_out_gradient(members))
            stacked[name] = whole
        return stacked

    # ------------------------------------------------------------------ batched network passes
    def _forward(self, network: str, obs: torch.Tensor) -> torch.Tensor:
        """(S, B, ...) observations -> (S, B, actions, atoms) log-probabilities, seed k under seed k's weights."""
        if self.batched_layers:
            return stacked.forward(self.template, self.stacked[network], obs)
        return vmap(lambda tensors, x: functional_call(self.template, tensors, (x,)))(self.stacked[network], obs)

    @torch.no_grad()
    def target_distribution(self, next_obs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor):
        """`RainbowAgent.target_distribution` for (S, B) inputs; returns (S * B, atoms), seed-major."""
        target_log_probs = self._forward("target", next_obs).flatten(0, 1)
        chooser = self._forward("online", next_obs).flatten(0, 1) if self.rainbow.double_q else target_log_probs
        next_action = (chooser.exp() * self.atoms).sum(-1).argmax(-1)
        next_probs = target_log_probs.exp()[torch.arange(len(next_action), device=self.device), next_action]
        with precision.full_precision(self.device):
            return project_distribution(next_probs, reward.flatten(), discount.flatten(), self.atoms)

    def _per_sample_loss(self, obs, action, target_probs) -> torch.Tensor:
        """(S, B) cross-entropy losses at the online weights as they are now (SAM's second pass: perturbed)."""
        log_probs = self._forward("online", obs).flatten(0, 1)
        log_probs = log_probs[torch.arange(len(target_probs), device=self.device), action.flatten()]
        return -(target_probs * log_probs).sum(-1).view(action.shape)

    # ------------------------------------------------------------------ the update
    def update(self, buffers: Sequence, progress: float) -> list[dict[str, float]]:
        """One gradient update of every seed, each on a batch from its own buffer; per-seed losses as
        `RainbowAgent.update` returns them."""
        agents, rainbow = self.agents, self.rainbow
        batches, per_seed, weights = zip(*(agent.sample(buffer, progress) for agent, buffer in zip(agents, buffers)))
        obs, action, reward, discount, next_obs = (torch.stack(parts) for parts in zip(*per_seed))
        weights = torch.stack(weights)

        for agent in agents:  # each seed's noise from its own stream, in the order a lone agent draws it
            agent.online.reset_noise(agent.generator)
            agent.target.reset_noise(agent.generator)
        target_probs = self._target_pass(next_obs, reward, discount)

        references = [agent.probe_inputs(buffer.sample_uniform(rainbow.batch_size))
                      if agent.interventions.needs_reference else None for agent, buffer in zip(agents, buffers)]

        def penalty():
            return sum((agent.interventions.penalty(ref) for agent, ref in zip(agents, references)), 0.0)

        loss_per_sample = self._loss_pass(obs, action, target_probs)
        losses = (weights * loss_per_sample).mean(1)  # (S,): each seed's own loss; their sum's gradient is per seed
        redraw = self.config.sam.noise == "independent"
        grad_norms = sam_update(
            [agent.optimizer for agent in agents], losses.sum() + penalty(),
            lambda: (weights * self._loss_pass(obs, action, target_probs)).mean(1).sum() + penalty(),
            before_second_pass=(lambda: [agent.online.reset_noise(agent.generator) for agent in agents])
            if redraw else None,
            before_step=lambda: torch.stack([clip_grad_norm(agent.online.parameters(), rainbow.max_grad_norm)
                                             for agent in agents]))
        for agent, loss in zip(agents, losses):
            agent.interventions.after_step(agent.optimizer, loss)
        # Every seed's EMA target update in one pass over the stacked tensors (elementwise, so the same numbers).
        ema_update_([self.stacked["target"][name] for name in self.parameter_names],
                    [self.stacked["online"][name] for name in self.parameter_names], rainbow.target_tau)
        # One device-to-host copy for the whole group: priorities, losses and gradient norms of every seed.
        seeds, batch_size = loss_per_sample.shape
        host = torch.cat([loss_per_sample.detach().flatten(), losses.detach(), grad_norms]).cpu().numpy()
        results = []
        for k, (agent, buffer, batch) in enumerate(zip(agents, buffers, batches)):
            buffer.update_priorities(batch.indices, host[k * batch_size:(k + 1) * batch_size])
            agent.updates += 1
            results.append({"losses/td_loss": float(host[seeds * batch_size + k]),
                            "losses/grad_norm": float(host[seeds * batch_size + seeds + k]),
                            **agent.interventions.metrics()})
        return results


def _hand_out_gradient(members: list[torch.Tensor]):
    """A post-accumulate-grad hook: the stacked tensor's gradient becomes its members' (views of its rows) and the
    stacked tensor lets go of it, so the next backward pass starts from none, as `zero_grad(set_to_none)` would."""

    def hook(whole: torch.Tensor) -> None:
        for row, member in zip(whole.grad, members):
            member.grad = row
        whole.grad = None

    return hook


def batched(config) -> bool:
    """Whether a group of this config's runs shares its updates' network passes (Rainbow) or updates in turn."""
    return config.domain_spec.agent == "rainbow"


def make_seed_group(agents: Sequence):
    """The batched group for Rainbow agents, seeds in turn for the others."""
    return RainbowGroup(agents) if batched(agents[0].config) else SequentialGroup(agents)
