"""DrQ-SAC update with the PLASTIC switches (paper §4.2, App. A.4, Algorithm 2, Table 6): DeepMind Control pixels.

One gradient update, in the order of jaxrl's DrQ (the base of Nikishin et al. 2022, which the paper builds on):
1. sample a uniform batch -> random shift (pad 4, replicate) of s and s' (DrQ);
2. critic: y = r + discount * (min_i Q_target_i(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s') (the actor on the
   online encoder's features, no gradient); loss = mean((Q1(s, a) - y)^2 + (Q2(s, a) - y)^2); the step trains the
   encoder and the critic (trunk + Q MLPs);
3. actor: loss = mean(alpha log pi(a~|s) - min_i Q_i(s, a~)), a~ reparameterised, on *detached* encoder features (the
   actor never trains the encoder) and with the critic frozen; the step trains the actor (trunk + MLP);
4. temperature: loss = alpha * mean(-log pi(a~|s) - target_entropy), target_entropy = -|A|, alpha = exp(log_alpha)
   from 0.1;
5. EMA target of encoder + critic: target <- tau target + (1 - tau) online, tau = 0.995.

SAM (Algorithm 2): the critic, the actor and the temperature each have their own optimizer, SAM around Adam with
rho `sam.critic_rho`, `sam.actor_rho`, `sam.temperature_rho` (None = `sam.rho`; 0 = plain Adam for that component).
The critic's SAM perturbs exactly the encoder and the critic, the actor's exactly the actor, the temperature's
log_alpha. Deviations from Algorithm 2, both for cost and stability: (a) the three updates run one after another as
in jaxrl's DrQ (Algorithm 2 computes all three gradients at the same point); (b) the critic target y is computed once
from the clean networks and reused in the perturbed pass (Algorithm 2 line 17 recomputes y with the perturbed actor;
in the sequential order the actor is not perturbed during the critic update, so there is nothing to recompute).
The actor's perturbed pass reuses the clean pass's Gaussian noise, so both passes see the same loss function.
Line 13 of Algorithm 2 squares the actor objective; that is a typo, the standard SAC objective is used.

Randomness: parameters and action sampling come from `self.generator` (torch), augmentation from
`self.augmentation_generator` (torch) and warm-up actions from `self.rng` (numpy): independent streams of `config.seed`
(training/seeding.py), all checkpointed, so a run is reproducible and resumable.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch import nn

from plastic.agents.augment import random_shift
from plastic.config import TrainConfig
from plastic.nets.sac import build_networks, squashed_gaussian_log_prob
from plastic.agents.base import ema_update_, make_adam, submodule_state
from plastic.agents.interventions import Interventions, ln_placement
from plastic.agents.interventions import sections as intervention_sections
from plastic.plasticity import redo_, reset_parameters_
from plastic.plasticity.sam import sam_update
from plastic.training.seeding import RandomStreams


def component_rhos(config: TrainConfig) -> dict[str, float]:
    """SAM's rho per component, 0 = no SAM: critic (critic_rho or rho), actor and temperature (their rho or rho)."""
    sam = config.sam
    if not sam.enabled:
        return {"critic": 0.0, "actor": 0.0, "temperature": 0.0}

    def pick(value: float | None) -> float:
        return sam.rho if value is None else value

    return {"critic": pick(sam.critic_rho), "actor": pick(sam.actor_rho), "temperature": pick(sam.temperature_rho)}


class _TwinQ(nn.Module):
    def __init__(self, critic: nn.Module):
        super().__init__()
        self.critic = critic

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.critic(obs, action), dim=-1)


class SACAgent:
    def __init__(self, config: TrainConfig, obs_shape: tuple[int, ...], action_dim: int, device: torch.device):
        self.config = config
        self.sac = sac = config.sac
        self.action_dim = action_dim
        self.device = device
        streams = RandomStreams(config.seed)
        self.generator = streams.torch_generator("parameters", device)
        self.rng = streams.numpy_generator("actions")
        self.augmentation_generator = streams.torch_generator("augmentation", device)
        self.updates = 0
        self.target_entropy = -float(action_dim)
        self.critic, self.actor = build_networks(
            tuple(obs_shape), action_dim, latent_dim=sac.latent_dim, hidden=sac.hidden, log_std_min=sac.log_std_min,
            log_std_max=sac.log_std_max, ln_placement=ln_placement(config),
            crelu_placement=config.crelu.placement if config.crelu.enabled else None,
            width_mode=config.crelu.width_mode)
        # Parameters are drawn from the agent's own generator so that a seed fixes the whole run.
        reset_parameters_(self.critic, self.generator)
        reset_parameters_(self.actor, self.generator)
        # channels_last: oneDNN's convs are much faster in it on CPU (the 3-channel first conv most; docs/performance.md),
        # and ConvLayerNorm's reduction over channels becomes contiguous.
        self.critic.to(device, memory_format=torch.channels_last)
        self.actor.to(device)
        self.target = copy.deepcopy(self.critic)
        for parameter in self.target.parameters():
            parameter.requires_grad_(False)
        self.log_alpha = torch.tensor(float(np.log(sac.initial_temperature)), device=device, requires_grad=True)
        rhos, lr, adaptive = component_rhos(config), sac.learning_rate, config.sam.adaptive
        # SAM's scope is exactly each optimizer's parameters; rho 0 = plain Adam.
        self.critic_optimizer, self.actor_optimizer, self.temperature_optimizer = (
            make_adam(params, learning_rate=lr, device=device, rho=rhos[name], adaptive=adaptive)
            for name, params in (("critic", list(self.critic.parameters())), ("actor", list(self.actor.parameters())),
                                 ("temperature", [self.log_alpha])))
        # The toolkit's loss terms and after-step calls (agents/interventions.py), one set per trained network: the
        # critic with its encoder (in the critic loss) and the actor (in the actor loss).
        self.critic_interventions = Interventions(self.critic, intervention_sections(config))
        self.actor_interventions = Interventions(self.actor, intervention_sections(config))

    # ------------------------------------------------------------------ structure, for hooks
    def reset_modules(self) -> list[tuple[nn.Module, nn.Module | None]]:
        """What a hard reset re-draws (Nikishin et al. 2022 on DMC): the actor and the critic; the encoder is kept."""
        return [(self.actor, None), (self.critic.critic, self.target.critic)]

    @torch.no_grad()
    def reset_extra_(self) -> list[torch.Tensor]:
        """The rest of a hard reset: the temperature back to its initial value. The base code's reset builds a fresh
        learner and copies back only the encoder ("note that the temperature is new as well"). Returns the tensors
        renewed, so that the reset hook clears their optimizer state too."""
        self.log_alpha.fill_(float(np.log(self.sac.initial_temperature)))
        return [self.log_alpha]

    def shrink_perturb_modules(self) -> list[tuple[nn.Module, nn.Module]]:
        """What shrink & perturb softens at each reset (the encoder, PLASTIC†), with its target twin."""
        return [(self.critic.encoder, self.target.encoder)]

    def backbone_modules(self) -> list[tuple[nn.Module, nn.Module]]:
        """Where a pretrained encoder is loaded (paper §4.4): the critic's encoder (the actor reads its features)."""
        return [(self.critic.encoder, self.target.encoder)]

    @staticmethod
    def backbone_state(agent_state: dict) -> dict[str, torch.Tensor] | None:
        return submodule_state(agent_state.get("critic"), "encoder")

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.critic_optimizer, self.actor_optimizer, self.temperature_optimizer]

    @property
    def probe_model(self) -> nn.Module:
        """The online critic with the encoder; takes `probe_inputs(batch)` = (obs, action)."""
        return self.critic

    @property
    def churn_model(self) -> nn.Module:
        """The critic with its two Q-values as one tensor (N, 2): what the churn probe compares."""
        return _TwinQ(self.critic)

    @property
    def learning_starts(self) -> int:
        return self.sac.learning_starts

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def replay_options(self) -> dict:
        return dict(capacity=self.sac.buffer_size, n_step=1, gamma=self.sac.gamma, prioritized=False,
                    action_shape=(self.action_dim,), action_dtype=np.float32)

    def redo(self, inputs, tau: float) -> dict[str, int]:
        """ReDo on the actor's and the critic's MLPs (the encoder and the trunks are left as they are)."""
        obs, action = inputs
        with torch.no_grad():
            features = self.critic.encoder(obs)
            critic_inputs = torch.cat([self.critic.critic.trunk(features), action], dim=-1)
            actor_inputs = self.actor.trunk(features)
        recycled = {}
        for name, model, inputs_, optimizer in (
            ("critic.q1", self.critic.critic.q1, critic_inputs, self.critic_optimizer),
            ("critic.q2", self.critic.critic.q2, critic_inputs, self.critic_optimizer),
            ("actor.policy", self.actor.policy, actor_inputs, self.actor_optimizer),
        ):
            for layer, count in redo_(model, inputs_, tau=tau, optimizer=optimizer, generator=self.generator).items():
                recycled[f"{name}.{layer}"] = count
        return recycled

    def regrama(self, batch, tau: float, gradient_at: str) -> dict[str, int]:
        """ReGraMa on the two Q MLPs, scored by the gradient of the deterministic critic loss on `batch` (the actor's
        loss is not the critic's, so the actor is left to ReDo)."""
        from plastic.plasticity.regrama import regrama_

        recycled = {}
        with self.loss_closure(batch) as closure:
            for name in ("q1", "q2"):
                for layer, count in regrama_(getattr(self.critic.critic, name), closure, tau=tau,
                                             optimizer=self.critic_optimizer, generator=self.generator,
                                             gradient_at=gradient_at).items():
                    recycled[f"critic.{name}.{layer}"] = count
        return recycled

    # ------------------------------------------------------------------ acting
    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        obs = torch.as_tensor(obs, device=self.device).float().div_(255.0)
        return obs.contiguous(memory_format=torch.channels_last)

    def _sample(self, features: torch.Tensor, noise: torch.Tensor | None = None):
        """a = tanh(u), u = mean + std * noise, and log pi(a); `noise` ~ N(0, I) from the generator if not given."""
        mean, log_std = self.actor(features)
        if noise is None:
            noise = torch.randn(mean.shape, generator=self.generator, device=self.device, dtype=mean.dtype)
        pre_tanh = mean + log_std.exp() * noise
        return torch.tanh(pre_tanh), squashed_gaussian_log_prob(pre_tanh, mean, log_std), noise

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        """Training action: uniform in [-1, 1] during warm-up, then a sample from the policy."""
        if step < self.sac.learning_starts:
            return self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
        with torch.no_grad():
            action, _, _ = self._sample(self.critic.encoder(self._obs_tensor(obs[None])))
        return action[0].cpu().numpy().astype(np.float32)

    def evaluation_policy(self, rng: np.random.Generator):
        """Evaluation: the deterministic mean action tanh(mean) (raw return over 10 episodes, Table 6)."""

        @torch.no_grad()
        def policy(obs: np.ndarray) -> np.ndarray:
            mean, _ = self.actor(self.critic.encoder(self._obs_tensor(obs)))
            return torch.tanh(mean).cpu().numpy().astype(np.float32)

        return policy

    def transform_reward(self, reward: float) -> float:
        return float(reward)

    # ------------------------------------------------------------------ learning
    def _batch_tensors(self, batch, augmentation: bool):
        obs, next_obs = self._obs_tensor(batch.obs), self._obs_tensor(batch.next_obs)
        if augmentation:
            obs = random_shift(obs, self.sac.shift_pad, self.augmentation_generator).contiguous(
                memory_format=torch.channels_last)
            next_obs = random_shift(next_obs, self.sac.shift_pad, self.augmentation_generator).contiguous(
                memory_format=torch.channels_last)
        action = torch.as_tensor(batch.action, device=self.device).float()
        reward = torch.as_tensor(batch.reward, device=self.device).float()
        discount = torch.as_tensor(batch.discount, device=self.device).float()
        return obs, action, reward, discount, next_obs

    @torch.no_grad()
    def critic_target(self, next_obs, reward, discount, next_action=None, next_log_prob=None) -> torch.Tensor:
        """y = r + discount * (min_i Q_target_i(s', a') - alpha log pi(a'|s')), discount = gamma (0 if terminal).

        a' ~ pi(.|s') from the actor on the online encoder's features, unless `next_action`/`next_log_prob` given.
        """
        if next_action is None:
            next_action, next_log_prob, _ = self._sample(self.critic.encoder(next_obs))
        target_q1, target_q2 = self.target(next_obs, next_action)
        return reward + discount * (torch.minimum(target_q1, target_q2) - self.alpha * next_log_prob)

    def critic_loss(self, obs, action, target: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.critic(obs, action)
        return ((q1 - target).pow(2) + (q2 - target).pow(2)).mean()

    def actor_loss(self, features: torch.Tensor, noise: torch.Tensor | None = None):
        """mean(alpha log pi(a~|s) - min_i Q_i(s, a~)) with a~ reparameterised; returns (loss, log_prob, noise)."""
        action, log_prob, noise = self._sample(features, noise)
        q1, q2 = self.critic.critic(features, action)
        return (self.alpha.detach() * log_prob - torch.minimum(q1, q2)).mean(), log_prob, noise

    def temperature_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """alpha * mean(-log pi - target_entropy) (Algorithm 2 line 14); the gradient moves only log_alpha."""
        return (self.alpha * (-log_prob.detach() - self.target_entropy)).mean()

    def update(self, buffer, progress: float) -> dict[str, float]:
        """One gradient update of critic, actor and temperature, then the EMA target (module docstring)."""
        batch = buffer.sample_uniform(self.sac.batch_size)
        obs, action, reward, discount, next_obs = self._batch_tensors(batch, augmentation=True)
        critic_loss = self.update_critic(obs, action, reward, discount, next_obs)
        actor_loss, log_prob = self.update_actor(obs)
        temperature_loss = self.update_temperature(log_prob)
        self.update_target()
        self.updates += 1
        return {
            "losses/critic_loss": float(critic_loss),
            "losses/actor_loss": float(actor_loss),
            "losses/temperature_loss": float(temperature_loss),
            "charts/temperature": float(self.alpha.detach()),
            "charts/entropy": float(-log_prob.mean()),
        }

    def update_critic(self, obs, action, reward, discount, next_obs) -> torch.Tensor:
        """Algorithm 2 lines 11-12, 15, 18-19 for Q: the target is computed once, from the clean networks."""
        target = self.critic_target(next_obs, reward, discount)
        loss = self.critic_loss(obs, action, target)
        terms = self.critic_interventions
        sam_update(self.critic_optimizer, loss + terms.penalty(),
                   lambda: self.critic_loss(obs, action, target) + terms.penalty())
        terms.after_step(self.critic_optimizer, loss)
        return loss.detach()

    def update_actor(self, obs) -> tuple[torch.Tensor, torch.Tensor]:
        """Line 13 for pi, on detached features of the (updated) encoder, with the critic frozen so it gathers no
        gradient. Returns the loss and log pi(a~|s) of the clean pass (for the temperature).

        Only the parameters that were trainable are frozen and unfrozen again: a frozen pretrained encoder
        (`--freeze-backbone`) stays frozen."""
        with torch.no_grad():
            features = self.critic.encoder(obs)
        trainable = [parameter for parameter in self.critic.parameters() if parameter.requires_grad]
        for parameter in trainable:
            parameter.requires_grad_(False)
        try:
            loss, log_prob, noise = self.actor_loss(features)
            terms = self.actor_interventions
            sam_update(self.actor_optimizer, loss + terms.penalty(),
                       lambda: self.actor_loss(features, noise)[0] + terms.penalty())
            terms.after_step(self.actor_optimizer, loss)
        finally:
            for parameter in trainable:
                parameter.requires_grad_(True)
        return loss.detach(), log_prob.detach()

    def update_temperature(self, log_prob: torch.Tensor) -> torch.Tensor:
        """Line 14 for alpha (through log_alpha)."""
        loss = self.temperature_loss(log_prob)
        sam_update(self.temperature_optimizer, loss, lambda: self.temperature_loss(log_prob))
        return loss.detach()

    @torch.no_grad()
    def update_target(self) -> None:
        """target <- tau * target + (1 - tau) * online for encoder + critic, every update (Table 6: tau 0.995)."""
        ema_update_(self.target, self.critic, self.sac.target_tau)

    @contextlib.contextmanager
    def loss_closure(self, batch):
        """The critic loss of the online encoder + critic on `batch`, with a fixed target, for the Hessian probe.

        No augmentation, and a' = tanh(mean) (the policy's mode) in the target, so the loss is deterministic and
        draws nothing from the training run's generator."""
        obs, action, reward, discount, next_obs = self._batch_tensors(batch, augmentation=False)
        with torch.no_grad():
            mean, log_std = self.actor(self.critic.encoder(next_obs))
            target = self.critic_target(next_obs, reward, discount, torch.tanh(mean),
                                        squashed_gaussian_log_prob(mean, mean, log_std))

        yield lambda: self.critic_loss(obs, action, target)

    def probe_inputs(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._obs_tensor(batch.obs), torch.as_tensor(batch.action, device=self.device).float()

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        return {
            "critic": self.critic.state_dict(),
            "target": self.target.state_dict(),
            "actor": self.actor.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "temperature_optimizer": self.temperature_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "augmentation_generator": self.augmentation_generator.get_state(),
            "rng": self.rng.bit_generator.state,
            "updates": self.updates,
            "interventions": {"critic": self.critic_interventions.state_dict(),
                              "actor": self.actor_interventions.state_dict()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.target.load_state_dict(state["target"])
        self.actor.load_state_dict(state["actor"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.temperature_optimizer.load_state_dict(state["temperature_optimizer"])
        self.generator.set_state(state["generator"])
        if "augmentation_generator" in state:  # checkpoints before the augmentation stream keep its fresh draw
            self.augmentation_generator.set_state(state["augmentation_generator"])
        self.rng.bit_generator.state = state["rng"]
        self.updates = state["updates"]
        interventions = state.get("interventions", {})  # none before the toolkit's switches
        self.critic_interventions.load_state_dict(interventions.get("critic", {}))
        self.actor_interventions.load_state_dict(interventions.get("actor", {}))
