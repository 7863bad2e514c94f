"""DrQ(ε)-Rainbow update with the PLASTIC switches (paper §4, Algorithm 1, Table 5).

One gradient update = sample a prioritized batch -> augment s and s' -> C51 double-Q n-step target from the target
network (computed ONCE, from the clean weights) -> cross-entropy loss weighted by importance weights -> Adam (or SAM
around Adam) with gradient-norm clipping -> priorities from the clean pass -> EMA target update.

SAM done right (docs/deviations.md lists what the public code gets wrong): the TD target and the PER priorities come from the
clean pass only; the perturbed pass reuses the target distribution; the perturbation scope is a property of the
optimizer's parameter groups, which are the same tensors after a reset, so it survives resets. Noisy layers draw
fresh noise for the perturbed pass by default (`sam.noise = "independent"`, App. B.4).
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch import nn

from plastic.agents import precision
from plastic.agents.augment import frames_to_float, shift_frames
from plastic.agents.base import ema_update_, make_adam, submodule_state
from plastic.agents.interventions import Interventions, ln_placement
from plastic.agents.interventions import sections as intervention_sections
from plastic.agents.distributional import project_distribution, support
from plastic.config import TrainConfig
from plastic.nets.noisy import noise_at_means
from plastic.nets.rainbow import RainbowNetwork
from plastic.plasticity.sam import sam_update
from plastic.training.seeding import RandomStreams


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """`nn.utils.clip_grad_norm_` with the same result, bit for bit, that skips the pass over the gradients when
    they are already within `max_norm` (torch multiplies them by a coefficient clamped to 1.0; docs/performance.md).
    Returns the total norm before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    coefficient = max_norm / (norm + 1e-6)
    if norm.device.type != "cpu":  # no host synchronisation on an accelerator: multiply by min(coefficient, 1)
        torch._foreach_mul_(grads, coefficient.clamp(max=1.0))
    elif coefficient < 1.0:
        torch._foreach_mul_(grads, coefficient)
    return norm


class RainbowAgent:
    def __init__(self, config: TrainConfig, obs_shape: tuple[int, ...], num_actions: int, device: torch.device,
                 observation_high: float = 255.0):
        """`observation_high`: the uint8 observations' upper bound (the env's observation space: 255 for Atari
        pixels, 1 for MinAtar's binary channels); inputs are divided by it so that the network sees [0, 1]."""
        self.config = config
        self.observation_high = float(observation_high)
        self.rainbow = rainbow = config.rainbow
        self.num_actions = num_actions
        self.device = device
        # Independent streams of one seed (training/seeding.py): weights and noise, actions, augmentation.
        streams = RandomStreams(config.seed)
        self.generator = streams.torch_generator("parameters", device)
        self.rng = streams.numpy_generator("actions")
        self.augmentation_generator = streams.torch_generator("augmentation", device)
        self.updates = 0
        self.online = RainbowNetwork(
            tuple(obs_shape), num_actions, encoder=config.domain_spec.encoder, hidden=rainbow.hidden, num_atoms=rainbow.num_atoms,
            sigma0=rainbow.noisy_sigma0, ln_placement=ln_placement(config),
            crelu_placement=config.crelu.placement if config.crelu.enabled else None,
            width_mode=config.crelu.width_mode,
        )
        # Parameters are drawn from the agent's own generator so that a seed fixes the whole run.
        from plastic.plasticity import reset_parameters_

        reset_parameters_(self.online, self.generator)
        # channels_last: oneDNN's convolutions are faster in it on CPU (docs/performance.md); inputs follow.
        self.online.to(device, memory_format=torch.channels_last)
        self.target = copy.deepcopy(self.online)
        for parameter in self.target.parameters():
            parameter.requires_grad_(False)
        self.atoms = support(rainbow.v_min, rainbow.v_max, rainbow.num_atoms, device)
        self.optimizer = make_adam(self.param_groups(), learning_rate=rainbow.learning_rate, eps=rainbow.adam_eps,
                                   device=device, rho=config.sam.rho if config.sam.enabled else 0.0,
                                   adaptive=config.sam.adaptive)
        if config.sam.enabled:
            from plastic.plasticity import check_sam_compatible

            check_sam_compatible(self.online)
        # The toolkit's loss terms and after-step calls (agents/interventions.py), snapshotted at initialisation.
        self.interventions = Interventions(self.online, intervention_sections(config), output_fn=self._mean_q_values)
        self.online.reset_noise(self.generator)
        self.target.reset_noise(self.generator)
        # The update's passes, compiled when config.compile asks for it (agents/compiled.py): the clean pass (target
        # distribution and loss) and SAM's perturbed loss pass; probes and acting use the eager methods (double
        # backward and batch-1 calls stay out of the compiled graphs).
        precision.check_supported(config.precision, device)
        self._clean_pass, self._loss_pass = (precision.mixed(fn, config.precision, device)
                                             for fn in (self.clean_pass, self._per_sample_loss))
        self._float_frames = self._augmented_floats
        self._compiled_tail = None
        if config.compile_enabled:
            from plastic.agents import fused_step
            from plastic.agents.compiled import MaybeCompiled, check_mode

            check_mode(config.compile_mode, device)
            options = {"strict": config.compile == "on", "mode": config.compile_mode}
            self._clean_pass = MaybeCompiled(self._clean_pass, **options)
            self._loss_pass = MaybeCompiled(self._loss_pass, **options)
            self._float_frames = MaybeCompiled(self._float_frames, **options)  # ~2x the eager ops' speed, same bits
            # Clipping, Adam and the EMA target compiled as one step (agents/fused_step.py) where nothing runs
            # between them: no SAM, no after-step intervention, no CUDA graphs.
            if (fused_step.supports(self.optimizer) and not self.interventions.has_after_step
                    and config.compile_mode == "default"):
                self._compiled_tail = fused_step.CompiledTail(
                    self.optimizer, self.online, self.target, rainbow.target_tau, rainbow.max_grad_norm,
                    self._eager_tail, strict=options["strict"])

    # ------------------------------------------------------------------ structure, for hooks
    def param_groups(self) -> list[dict]:
        scope = self.config.sam.scope
        return [
            {"params": list(self.online.backbone.parameters()), "perturb": scope in ("all", "backbone")},
            {"params": list(self.online.head.parameters()), "perturb": scope in ("all", "head")},
        ]

    def reset_modules(self) -> list[tuple[nn.Module, nn.Module]]:
        """What a hard reset re-draws (the head, paper §4), with its target twin."""
        return [(self.online.head, self.target.head)]

    def shrink_perturb_modules(self) -> list[tuple[nn.Module, nn.Module]]:
        """What shrink & perturb softens at each reset (the backbone, PLASTIC†), with its target twin."""
        return [(self.online.backbone, self.target.backbone)]

    def backbone_modules(self) -> list[tuple[nn.Module, nn.Module]]:
        """Where a pretrained encoder is loaded (paper §4.4): the conv backbone, with its target twin."""
        return [(self.online.backbone, self.target.backbone)]

    @staticmethod
    def backbone_state(agent_state: dict) -> dict[str, torch.Tensor] | None:
        return submodule_state(agent_state.get("online"), "backbone")

    def reset_extra_(self) -> list[torch.Tensor]:
        """A hard reset renews nothing outside the head."""
        return []

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    @property
    def probe_model(self) -> nn.Module:
        return self.online

    @property
    def learning_starts(self) -> int:
        return self.rainbow.learning_starts

    def replay_options(self) -> dict:
        rainbow = self.rainbow
        return dict(capacity=rainbow.buffer_size, n_step=rainbow.n_step, gamma=rainbow.gamma, prioritized=True,
                    priority_exponent=rainbow.priority_exponent)

    def redo(self, inputs: torch.Tensor, tau: float) -> dict[str, int]:
        """ReDo on each head stream (both consume the backbone's features, so the backbone is left as it is)."""
        from plastic.plasticity import redo_

        with torch.no_grad():
            features = self.online.backbone(inputs)
        recycled = {}
        for name in ("value", "advantage"):
            stream = getattr(self.online.head, name)
            for layer, count in redo_(stream, features, tau=tau, optimizer=self.optimizer,
                                      generator=self.generator).items():
                recycled[f"head.{name}.{layer}"] = count
        return recycled

    def regrama(self, batch, tau: float, gradient_at: str) -> dict[str, int]:
        """ReGraMa on each head stream (as `redo`), scored by the gradient of the deterministic TD loss on `batch`."""
        from plastic.plasticity.regrama import regrama_

        recycled = {}
        with self.loss_closure(batch) as closure:
            for name in ("value", "advantage"):
                stream = getattr(self.online.head, name)
                for layer, count in regrama_(stream, closure, tau=tau, optimizer=self.optimizer,
                                             generator=self.generator, gradient_at=gradient_at).items():
                    recycled[f"head.{name}.{layer}"] = count
        return recycled

    def _mean_q_values(self, network: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """E[Z(s, a)] with the noisy layers at their means (C-CHAIN's churn is not the noise sample's change)."""
        with noise_at_means(network):
            return (network(obs).exp() * self.atoms).sum(-1)

    # ------------------------------------------------------------------ acting
    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        obs = torch.as_tensor(obs, device=self.device).float().div_(self.observation_high)
        return obs.contiguous(memory_format=torch.channels_last) if obs.dim() == 4 else obs

    @torch.no_grad()
    def greedy_actions(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a E[Z(s, a)] under the target network (it acts, paper Table 5), with its current noise."""
        probs = self.target(self._obs_tensor(obs)).exp()
        return (probs * self.atoms).sum(-1).argmax(-1).cpu().numpy()

    def act(self, obs: np.ndarray, step: int) -> int:
        """Training action: uniform during warm-up, then the noisy target network (epsilon_train-greedy)."""
        if step < self.rainbow.learning_starts or self.rng.random() < self.rainbow.epsilon_train:
            return int(self.rng.integers(self.num_actions))
        return int(self.greedy_actions(obs[None])[0])

    def evaluation_policy(self, rng: np.random.Generator):
        """Evaluation: target network with noisy layers at their means, epsilon_eval-greedy (paper §4.1; docs/deviations.md)."""

        def policy(obs: np.ndarray) -> np.ndarray:
            with noise_at_means(self.target):
                actions = self.greedy_actions(obs)
            explore = rng.random(len(actions)) < self.rainbow.epsilon_eval
            return np.where(explore, rng.integers(self.num_actions, size=len(actions)), actions)

        return policy

    def transform_reward(self, reward: float) -> float:
        return float(np.sign(reward)) if self.rainbow.reward_clip else float(reward)

    # ------------------------------------------------------------------ learning
    def _batch_tensors(self, batch, augmentation: bool):
        if augmentation:  # the draws eagerly, in augment's order; the float conversion and jitter maybe compiled
            obs, next_obs = (self._float_frames(*shift_frames(torch.as_tensor(frames, device=self.device),
                                                              self.rainbow.shift_pad, self.rainbow.intensity_scale,
                                                              self.augmentation_generator))
                             for frames in (batch.obs, batch.next_obs))
        else:
            obs, next_obs = self._obs_tensor(batch.obs), self._obs_tensor(batch.next_obs)
        action = torch.as_tensor(batch.action, device=self.device).long()
        reward = torch.as_tensor(batch.reward, device=self.device).float()
        discount = torch.as_tensor(batch.discount, device=self.device).float()
        return obs, action, reward, discount, next_obs

    def _augmented_floats(self, shifted: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return frames_to_float(shifted, noise, self.rainbow.intensity_scale, self.observation_high,
                               memory_format=torch.channels_last)

    @torch.no_grad()
    def target_distribution(self, next_obs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor):
        """Projected n-step target; double Q: the online network picks a*, the target network evaluates it."""
        target_log_probs = self.target(next_obs)
        chooser = self.online(next_obs) if self.rainbow.double_q else target_log_probs
        next_action = (chooser.exp() * self.atoms).sum(-1).argmax(-1)
        next_probs = target_log_probs.exp()[torch.arange(len(next_action), device=self.device), next_action]
        with precision.full_precision(self.device):  # the C51 projection stays float32 under bf16
            return project_distribution(next_probs, reward, discount, self.atoms)

    def clean_pass(self, obs, action, reward, discount, next_obs) -> tuple[torch.Tensor, torch.Tensor]:
        """The target distribution and the clean pass's per-sample losses. One function, so that compiled they are
        one graph, in which the online network's noisy weights for this noise draw serve both of its passes."""
        target_probs = self.target_distribution(next_obs, reward, discount)
        return target_probs, self._per_sample_loss(obs, action, target_probs)

    def _per_sample_loss(self, obs, action, target_probs) -> torch.Tensor:
        log_probs = self.online(obs)[torch.arange(len(action), device=self.device), action]
        return -(target_probs * log_probs).sum(-1)

    def sample(self, buffer, progress: float):
        """A prioritized batch for the update at `progress` in [0, 1], which anneals the importance exponent from its
        start to 1: (the batch, its tensors (obs, action, reward, discount, next_obs), the importance weights)."""
        rainbow = self.rainbow
        beta = rainbow.importance_exponent_start + (1.0 - rainbow.importance_exponent_start) * progress
        batch = buffer.sample(rainbow.batch_size, importance_exponent=beta)
        weights = torch.as_tensor(batch.weights, device=self.device).float()
        return batch, self._batch_tensors(batch, rainbow.augmentation), weights

    def update(self, buffer, progress: float) -> dict[str, float]:
        """One gradient update on a batch from `buffer` (`sample`)."""
        rainbow = self.rainbow
        batch, (obs, action, reward, discount, next_obs), weights = self.sample(buffer, progress)

        self.online.reset_noise(self.generator)
        self.target.reset_noise(self.generator)
        target_probs, loss_per_sample = self._clean_pass(obs, action, reward, discount, next_obs)

        interventions = self.interventions
        reference = (self.probe_inputs(buffer.sample_uniform(rainbow.batch_size)) if interventions.needs_reference
                     else None)  # C-CHAIN's reference batch
        loss = (weights * loss_per_sample).mean()
        if self._compiled_tail is not None:  # the same steps as below, the last three compiled as one
            self.optimizer.zero_grad(set_to_none=True)
            (loss + interventions.penalty(reference)).backward()
            grad_norm = self._compiled_tail()
        else:
            # Algorithm 1 lines 10-17 under SAM: the perturbed pass reuses the clean pass's target distribution;
            # both passes carry the interventions' loss terms.
            redraw = self.config.sam.noise == "independent"
            grad_norm = sam_update(
                self.optimizer, loss + interventions.penalty(reference),
                lambda: (weights * self._loss_pass(obs, action, target_probs)).mean()
                + interventions.penalty(reference),
                before_second_pass=(lambda: self.online.reset_noise(self.generator)) if redraw else None,
                before_step=lambda: clip_grad_norm(self.online.parameters(), rainbow.max_grad_norm))
            interventions.after_step(self.optimizer, loss)
            self.update_target()
        # The update's one device-to-host copy (PER needs the priorities on the host), the logged scalars with it.
        host = torch.cat([loss_per_sample.detach(), loss.detach()[None], grad_norm[None]]).cpu().numpy()
        buffer.update_priorities(batch.indices, host[:-2])
        self.updates += 1
        return {"losses/td_loss": float(host[-2]), "losses/grad_norm": float(host[-1]), **interventions.metrics()}

    def _eager_tail(self) -> torch.Tensor:
        """Clipping, the optimizer step and the EMA target as separate calls (the compiled tail's fallback)."""
        grad_norm = clip_grad_norm(self.online.parameters(), self.rainbow.max_grad_norm)
        self.optimizer.step()
        self.update_target()
        return grad_norm

    @torch.no_grad()
    def update_target(self) -> None:
        """target <- tau * target + (1 - tau) * online, every update (EMA / momentum target, Table 5)."""
        ema_update_(self.target, self.online, self.rainbow.target_tau)

    @contextlib.contextmanager
    def loss_closure(self, batch):
        """A deterministic loss of the online weights on `batch` (no augmentation, noisy layers at their means), for
        probes such as the Hessian's top eigenvalue; the noisy layers are noisy again on exit."""
        obs, action, reward, discount, next_obs = self._batch_tensors(batch, augmentation=False)
        with noise_at_means(self.online, self.target):
            target_probs = self.target_distribution(next_obs, reward, discount)
            yield lambda: self._per_sample_loss(obs, action, target_probs).mean()

    def probe_inputs(self, batch) -> torch.Tensor:
        return self._obs_tensor(batch.obs)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "augmentation_generator": self.augmentation_generator.get_state(),
            "rng": self.rng.bit_generator.state,
            "updates": self.updates,
            "interventions": self.interventions.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        if "augmentation_generator" in state:  # checkpoints before the augmentation stream keep its fresh draw
            self.augmentation_generator.set_state(state["augmentation_generator"])
        self.rng.bit_generator.state = state["rng"]
        self.updates = state["updates"]
        self.interventions.load_state_dict(state.get("interventions", {}))  # none before the toolkit's switches
