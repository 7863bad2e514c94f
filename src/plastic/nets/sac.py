"""The DrQ-SAC networks for DeepMind Control from pixels (paper App. A.4, Table 6): conv encoder, actor, double critic.

Architecture (Table 6, which follows Nikishin et al. 2022, whose JAX agent is jaxrl's DrQ):
- `DMCEncoder`: 4 convs 3x3, stride 2 each, 32-64-128-256 channels, no padding ("VALID", as JAX's convs in jaxrl),
  ReLU after each, then flatten: a 64x64 frame stack gives 64 -> 31 -> 15 -> 7 -> 3, i.e. 256 * 3 * 3 = 2,304
  features. DrQ's own encoder uses strides 2, 1, 1, 1 with 32 channels throughout; we follow Table 6 (2, 2, 2, 2 and
  32-64-128-256) because the paper states it for its DMC runs.
- `Trunk`: the latent projection, Linear(features, 50) -> LayerNorm -> tanh. As in jaxrl's DrQ, the actor and the
  critic each own one: the critic's is trained by the critic loss, the actor's by the actor loss.
- `Critic`: trunk, then two Q MLPs (double Q) on concat(latent, action): 2 hidden layers of 256.
- `Actor`: trunk, then an MLP with 2 hidden layers of 256 giving the mean and log-std of a tanh-squashed Gaussian;
  log-std is clipped to [log_std_min, log_std_max] (jaxrl's NormalTanhPolicy: -10, 2).
- `EncodedCritic`: encoder + critic, the module the EMA target copies and the plasticity probes measure.

The encoder is shared: only the critic loss trains it; the actor reads detached encoder features (DrQ, SAC-AE).

Plasticity switches (paper §3.3, App. A.3/A.4):
- `ln_placement`: None; "backbone" = LayerNorm (`ConvLayerNorm`, over channels) after each conv, before its ReLU;
  "all" = also after each hidden FC layer of the actor and critic MLPs ("after each convolutional and fully-connected
  layer", App. A.4). The trunk's LayerNorm is part of the base agent and always there.
- `crelu_placement`: None; "head" = CReLU in the actor and critic MLPs; "all" = also in the encoder (App. A.4 says
  the DMC CReLU baseline replaced *all* ReLUs: the DMC default of `crelu.placement`). `width_mode` as in
  `plastic.plasticity.crelu_widths`.
Initialisation is each torch layer's default (`reset_parameters()`), so a reset re-draws from the init distribution;
jaxrl uses orthogonal init for its MLPs.
"""

from __future__ import annotations

import torch
from torch import nn

from plastic.nets.rainbow import conv_backbone
from plastic.plasticity.layers import activation, crelu_widths

# (out_channels, kernel, stride) per conv layer, Table 6.
DMC_ENCODER = ((32, 3, 2), (64, 3, 2), (128, 3, 2), (256, 3, 2))


class DMCEncoder(nn.Sequential):
    """Conv backbone: obs float (batch, C, H, W) in [0, 1] -> features (batch, `feature_dim`)."""

    def __init__(self, obs_shape: tuple[int, int, int], *, layer_norm: bool = False, crelu: bool = False,
                 width_mode: str = "double_input"):
        super().__init__(*conv_backbone(obs_shape[0], DMC_ENCODER, layer_norm=layer_norm, crelu=crelu,
                                        width_mode=width_mode))
        with torch.no_grad():
            self.feature_dim = int(self(torch.zeros(1, *obs_shape)).shape[-1])


class Trunk(nn.Sequential):
    """Latent projection Linear -> LayerNorm -> tanh (DrQ)."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__(nn.Linear(in_features, latent_dim), nn.LayerNorm(latent_dim), nn.Tanh())


def mlp(in_features: int, hidden: int, out_features: int, *, layer_norm: bool = False, crelu: bool = False,
        width_mode: str = "double_input", depth: int = 2) -> nn.Sequential:
    """`depth` x (Linear -> [LayerNorm] -> ReLU/CReLU), then Linear(out_features)."""
    modules: list[nn.Module] = []
    features = in_features
    for _ in range(depth):
        units, next_features = crelu_widths(hidden, width_mode) if crelu else (hidden, hidden)
        modules.append(nn.Linear(features, units))
        if layer_norm:
            modules.append(nn.LayerNorm(units))
        modules.append(activation(crelu, dim=-1))
        features = next_features
    modules.append(nn.Linear(features, out_features))
    return nn.Sequential(*modules)


class Critic(nn.Module):
    """Double Q on encoder features: (features, action) -> (Q1, Q2), each of shape (batch,)."""

    def __init__(self, feature_dim: int, action_dim: int, *, latent_dim: int = 50, hidden: int = 256, **mlp_kwargs):
        super().__init__()
        self.trunk = Trunk(feature_dim, latent_dim)
        self.q1 = mlp(latent_dim + action_dim, hidden, 1, **mlp_kwargs)
        self.q2 = mlp(latent_dim + action_dim, hidden, 1, **mlp_kwargs)

    def forward(self, features: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.cat([self.trunk(features), action], dim=-1)
        return self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)


class Actor(nn.Module):
    """Tanh-Gaussian policy head on (detached) encoder features: features -> (mean, log_std), pre-squash."""

    def __init__(self, feature_dim: int, action_dim: int, *, latent_dim: int = 50, hidden: int = 256,
                 log_std_min: float = -10.0, log_std_max: float = 2.0, **mlp_kwargs):
        super().__init__()
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.trunk = Trunk(feature_dim, latent_dim)
        self.policy = mlp(latent_dim, hidden, 2 * action_dim, **mlp_kwargs)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.policy(self.trunk(features)).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)


class EncodedCritic(nn.Module):
    """Encoder + critic: (obs, action) -> (Q1, Q2). The online critic, its EMA target, and the probes' model."""

    def __init__(self, encoder: DMCEncoder, critic: Critic):
        super().__init__()
        self.encoder = encoder
        self.critic = critic

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.critic(self.encoder(obs), action)


def squashed_gaussian_log_prob(pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)^2), summed over action dims (SAC paper, App. C, eq. 21).

    log(1 - tanh(u)^2) is computed as 2 (log 2 - u - softplus(-2u)), which is exact and stable for large |u|.
    """
    normal = -0.5 * ((pre_tanh - mean) / log_std.exp()).pow(2) - log_std - 0.5 * torch.log(
        torch.tensor(2 * torch.pi, dtype=mean.dtype, device=mean.device))
    log_det = 2.0 * (torch.log(torch.tensor(2.0, dtype=mean.dtype, device=mean.device)) - pre_tanh
                     - nn.functional.softplus(-2.0 * pre_tanh))
    return (normal - log_det).sum(-1)


def build_networks(obs_shape: tuple[int, int, int], action_dim: int, *, latent_dim: int = 50, hidden: int = 256,
                   log_std_min: float = -10.0, log_std_max: float = 2.0, ln_placement: str | None = None,
                   crelu_placement: str | None = None, width_mode: str = "double_input"
                   ) -> tuple[EncodedCritic, Actor]:
    """The online critic (with the encoder) and the actor, shaped by the plasticity switches (module docstring)."""
    if ln_placement not in (None, "backbone", "all"):
        raise ValueError(f"ln_placement must be None, 'backbone' or 'all', got {ln_placement!r}")
    if crelu_placement not in (None, "head", "all"):
        raise ValueError(f"crelu_placement must be None, 'head' or 'all', got {crelu_placement!r}")
    encoder = DMCEncoder(tuple(obs_shape), layer_norm=ln_placement is not None, crelu=crelu_placement == "all",
                         width_mode=width_mode)
    head = dict(latent_dim=latent_dim, hidden=hidden, layer_norm=ln_placement == "all",
                crelu=crelu_placement is not None, width_mode=width_mode)
    critic = EncodedCritic(encoder, Critic(encoder.feature_dim, action_dim, **head))
    actor = Actor(encoder.feature_dim, action_dim, log_std_min=log_std_min, log_std_max=log_std_max, **head)
    return critic, actor
