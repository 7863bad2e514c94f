"""The sections of the run config (`plastic.config.TrainConfig`): one dataclass per method switch, per agent, the
probes and the DMC env options. Each field carries its docstring and its allowed values where it is declared; a
field left at None is filled per domain by `plastic.config.resolve` from `plastic.envs.domains.DOMAINS`.

Import them from `plastic.config`; this module exists so that neither file exceeds a few hundred lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plastic.config_machinery import choice, within


# --------------------------------------------------------------------------------------------- method switches
@dataclass
class LayerNormConfig:
    """LayerNorm (paper §3.3)."""

    enabled: bool = False
    """Switch `ln`."""
    placement: str = choice("backbone", ("all", "backbone"))
    """"backbone": after each conv of the backbone, before its ReLU (§4.1 and the public code); "all": also after
    every fully-connected layer (App. A.3/A.4 say every conv and FC; docs/deviations.md, LayerNorm placement)."""


@dataclass
class SAMConfig:
    """Sharpness-aware minimisation (paper Algorithm 1/2, App. B.4). `scope` and `noise` apply to Rainbow runs, the
    per-component rhos to SAC runs; set on the other agent's domain they are an error."""

    enabled: bool = False
    """Switch `sam`."""
    rho: float | None = None
    """Perturbation radius. None = the domain's: 0.1 on Atari/MinAtar (Table 5), 0.01 on DMC and 0.1 on its
    quadruped tasks (Table 6)."""
    scope: str = choice("all", ("all", "backbone", "head"), agent="rainbow")
    """Which Rainbow parameters SAM perturbs (docs/deviations.md, SAM: scope, ρ and noisy layers)."""
    noise: str = choice("independent", ("independent", "shared"), agent="rainbow")
    """Rainbow's noisy layers in the perturbed pass: "independent" redraws their noise (paper default), "shared"
    reuses the clean pass's."""
    adaptive: bool = False
    """ASAM (Kwon et al. 2021): the perturbation scaled by |theta|; off in the paper."""
    critic_rho: float | None = field(default=None, metadata={"agent": "sac"})
    """SAC's critic (with the encoder) radius; None = `rho` (docs/deviations.md, SAM on DMC)."""
    actor_rho: float | None = field(default=None, metadata={"agent": "sac"})
    """SAC's actor radius; None = `rho`; 0 = no SAM on the actor."""
    temperature_rho: float | None = field(default=None, metadata={"agent": "sac"})
    """SAC's temperature radius; None = `rho`; 0 = no SAM on the temperature."""


@dataclass
class CReLUConfig:
    """Concatenated ReLU (paper §3.3, App. A.3; docs/deviations.md, CReLU placement and width)."""

    enabled: bool = False
    """Switch `crelu`."""
    placement: str | None = choice(None, ("head", "all"))
    """Where ReLUs become CReLUs: "head" or "all". None = the domain's: "all" on DMC (App. A.4 replaces all ReLUs),
    "head" on Atari/MinAtar (as the paper's parameter counts imply)."""
    width_mode: str = choice("double_input", ("double_input", "halve_output"))
    """"double_input": the next layer sees 2x the features (paper); "halve_output": the CReLU layer's outputs are
    halved first (the public code's head)."""


@dataclass
class ResetConfig:
    """Periodic hard reset of the head (Nikishin et al. 2022; paper §4; docs/deviations.md, Reset and shrink &
    perturb)."""

    enabled: bool = False
    """Switch `reset`."""
    interval: int | None = None
    """Gradient updates between resets. None = the domain's: 40,000 on Atari/MinAtar (Table 5), 100,000 on DMC
    (Table 6)."""
    target: bool = True
    """The target head takes the same fresh draw."""
    optimizer: str = choice("reset", ("reset", "all", "none"))
    """Whose Adam state a reset clears: "reset" (the re-drawn parameters'), "all" (the public code rebuilds the
    optimizer) or "none"."""


@dataclass
class ShrinkPerturbConfig:
    """Shrink & perturb of the backbone at every reset (Ash & Adams 2020; PLASTIC†)."""

    enabled: bool = False
    """Switch `shrink_perturb`."""
    alpha: float = within(0.6, "[0, 1]")
    """theta <- alpha theta + (1 - alpha) phi, phi a fresh initialisation (the public code's 0.6;
    docs/deviations.md, Reset and shrink & perturb)."""
    min_replay_ratio: int = 1
    """Applied only at replay ratios >= this: 1 = at every replay ratio, as the paper's text reads; the public code's
    4 in `plastic-official`."""


@dataclass
class ReDoConfig:
    """Recycling dormant units (Sokar et al. 2023), beyond the paper."""

    enabled: bool = False
    """Switch `redo`."""
    tau: float = within(0.025, ">= 0")
    """Units with normalised activity <= tau are re-initialised (Sokar et al.'s 0.025)."""
    interval: int = within(1000, "> 0")
    """Gradient updates between recyclings (Sokar et al.'s 1,000)."""
    batch_size: int = within(256, "> 0")
    """Replay states the activity is measured on."""


@dataclass
class L2InitConfig:
    """L2-init, regenerative regularisation (Kumar et al. 2023): loss + coefficient * ||theta - theta_0||^2 over the
    trained network's parameters (Rainbow: the online network; SAC: critic with encoder, and actor, each in its own
    loss). The anchor theta_0 is the initialisation and is kept across resets."""

    enabled: bool = False
    """Switch `l2_init`."""
    coefficient: float = within(1e-5, ">= 0")
    """The paper tunes it per benchmark and gives no default; 1e-5 is this library's choice (docs/toolkit.md)."""


@dataclass
class HareTortoiseConfig:
    """Hare & Tortoise (Lee et al., ICML 2024): a slow EMA copy (tortoise) of the trained network (hare), updated after
    every optimizer step; periodically the hare is set to the tortoise."""

    enabled: bool = False
    """Switch `hare_tortoise`."""
    ema: float = within(0.999, "[0, 1]")
    """The tortoise's EMA rate per optimizer step (the authors' code's 0.999)."""
    interval: int | None = within(None, "> 0")
    """Gradient updates between hare resets; the paper's RL interval is an experiment choice. None = the domain's reset
    interval (40,000 on Atari/MinAtar, 100,000 on DMC; docs/toolkit.md)."""
    reset_optimizer: bool = False
    """Also clear the hare's Adam moments at a hare reset (the authors' code keeps them)."""


@dataclass
class NaPConfig:
    """Normalize-and-project (Lyle et al. 2024): a LayerNorm before every nonlinearity (the network is built as with
    `ln.placement = "all"`, whatever `ln.*` says) and, after every optimizer step, each layer's weight projected back
    to its norm at initialisation."""

    enabled: bool = False
    """Switch `nap`."""
    scope: str = choice("weights", ("weights", "weights_and_norm_affine"))
    """"weights": Linear/Conv weights (the paper's main variant); "weights_and_norm_affine": also each LayerNorm's
    scale and offset, jointly."""


@dataclass
class ReGraMaConfig:
    """ReGraMa (Liu et al. 2025): ReDo's recycling with units scored by the loss-gradient magnitude (GraMa), on uniform
    replay transitions (Rainbow: the head streams; SAC: the two Q MLPs)."""

    enabled: bool = False
    """Switch `regrama`."""
    tau: float = within(0.0, ">= 0")
    """Units with score <= tau are recycled; tuned in the paper; 0 recycles only units the gradient does not reach."""
    interval: int = within(1000, "> 0")
    """Gradient updates between recyclings (ReDo's schedule)."""
    batch_size: int = within(256, "> 0")
    """Uniform replay transitions the score is measured on."""
    gradient_at: str = choice("activation_input", ("activation_input", "activation_output"))
    """Where the gradient is taken: the nonlinearity's input (default) or its output."""


@dataclass
class ParsevalConfig:
    """Parseval regularisation (Chung et al. 2024): loss + coefficient * sum_l ||W_l W_l^T - scale I||_F^2 over every
    layer but the output layers (both dueling streams' last layers; the Q and policy outputs on SAC)."""

    enabled: bool = False
    """Switch `parseval`."""
    coefficient: float = within(1e-3, ">= 0")
    """The regulariser's weight (the paper's 1e-3)."""
    scale: float = within(1.0, "> 0")
    """The target W W^T = scale I (the paper's 1)."""
    include_conv: bool = True
    """Also the conv kernels, flattened (a choice: the paper's networks are MLPs)."""


@dataclass
class CChainConfig:
    """C-CHAIN (Tang et al., ICML 2025): loss + lambda_t * mean (Q_t(s, a) - Q_(t-lag)(s, a))^2 on a second uniform
    replay batch of the update's size, the Q-values taken with noisy layers at their means. Defaults are the authors'
    DoubleDQN code's. Value-based form: Rainbow only."""

    enabled: bool = False
    """Switch `c_chain`."""
    relative_loss_scale: float = within(0.01, ">= 0")
    """lambda_t adapts so that the term is this fraction of |L_RL| (means over the last `window` updates)."""
    initial_coefficient: float = within(50.0, ">= 0")
    """lambda_t before update `warmup`."""
    warmup: int = within(10_000, ">= 0")
    """Gradient updates before lambda_t adapts."""
    window: int = within(50_000, "> 0")
    """Gradient updates the loss means are taken over."""
    lag: int = within(1, "> 0")
    """Gradient updates between the two Q-networks compared."""


# --------------------------------------------------------------------------------------------- agents
@dataclass
class RainbowConfig:
    """DrQ(ε)-Rainbow, paper Table 5 (docs/deviations.md lists where it differs from the public code). Discrete-action
    domains (Atari, MinAtar)."""

    learning_rate: float = 1e-4
    """Adam's learning rate (Table 5; the public code's 1.414e-4, docs/deviations.md, Optimizer hyper-parameters)."""
    adam_eps: float = 1.5e-5
    """Adam's epsilon (Table 5)."""
    batch_size: int = within(32, "> 0")
    """Transitions per gradient update (Table 5)."""
    gamma: float = within(0.99, "[0, 1]")
    """Discount factor (Table 5)."""
    n_step: int = within(10, "> 0")
    """Multi-step return length (Table 5)."""
    num_atoms: int = within(51, "> 0")
    """Support of the C51 return distribution (Table 5)."""
    v_min: float = -10.0
    """Lowest atom of the support (C51's; Table 5 is silent)."""
    v_max: float = 10.0
    """Highest atom of the support."""
    hidden: int | None = within(None, "> 0")
    """Q-head hidden units. None = the domain's: 512 on Atari (Table 5), 128 on MinAtar (docs/deviations.md, MinAtar
    protocol)."""
    noisy_sigma0: float = 0.5
    """Noisy nets' initial sigma (Table 5)."""
    target_tau: float = within(0.99, "[0, 1]")
    """EMA target: target <- tau * target + (1 - tau) * online, every update (Table 5)."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip (Table 5)."""
    priority_exponent: float = within(0.5, "[0, 1]")
    """Prioritised replay's alpha (Table 5)."""
    importance_exponent_start: float = within(0.4, "[0, 1]")
    """Importance-sampling beta at the first update, annealed linearly to 1 at the last step (Table 5's 0.4 -> 1;
    docs/deviations.md, Importance-sampling exponent)."""
    buffer_size: int = within(100_000, "> 0")
    """Replay capacity in transitions (Table 5)."""
    learning_starts: int = within(2_000, ">= 0")
    """Agent steps before the first update (Table 5's min buffer size for sampling)."""
    epsilon_train: float = within(0.0, "[0, 1]")
    """Epsilon-greedy after warm-up; exploration comes from the noisy target network (Table 5)."""
    epsilon_eval: float = within(0.001, "[0, 1]")
    """Evaluation epsilon (DrQ(ε)'s; docs/deviations.md, Evaluation policy)."""
    augmentation: bool | None = None
    """DrQ's random shift + intensity jitter (Table 5). None = the domain's: on for Atari, off for MinAtar, whose
    10x10 binary boards a ±4-cell shift would scramble (docs/deviations.md, MinAtar protocol)."""
    shift_pad: int = within(4, ">= 0")
    """Random-shift padding in pixels (Table 5's ±4)."""
    intensity_scale: float = 0.05
    """Intensity-jitter scale (Table 5)."""
    reward_clip: bool = True
    """Clip rewards to [-1, 1] in the learner (docs/deviations.md, Environment protocol details)."""
    double_q: bool = True
    """Double Q-learning: the online network picks the target's action (Rainbow's)."""


@dataclass
class SACConfig:
    """DrQ + SAC, paper Table 6. Continuous-action domains (DMC)."""

    learning_rate: float | None = None
    """Adam's learning rate. None = 3e-4 (Table 6); the public code uses 1e-4 (docs/deviations.md, Other DMC
    hyper-parameters)."""
    batch_size: int = within(512, "> 0")
    """Transitions per gradient update (Table 6)."""
    gamma: float = within(0.99, "[0, 1]")
    """Discount factor (Table 6)."""
    hidden: int = within(256, "> 0")
    """Hidden units of the actor's and critic's two hidden layers (Table 6)."""
    latent_dim: int = within(50, "> 0")
    """The encoder's output features (Table 6)."""
    target_tau: float = within(0.995, "[0, 1]")
    """EMA target critic, every update (Table 6)."""
    initial_temperature: float = 0.1
    """SAC's initial entropy temperature (Table 6)."""
    buffer_size: int = within(1_000_000, "> 0")
    """Replay capacity in transitions (Table 6; the base code's 100,000)."""
    learning_starts: int = within(1_000, ">= 0")
    """Agent steps of random actions before updates (the base code's start_training; docs/deviations.md, Warm-up)."""
    shift_pad: int = within(4, ">= 0")
    """DrQ's random-shift padding in pixels."""
    log_std_min: float = -10.0
    """Lower bound of the policy's log standard deviation (the base code's)."""
    log_std_max: float = 2.0
    """Upper bound of the policy's log standard deviation (the base code's)."""


@dataclass
class DMCConfig:
    """DeepMind Control env options (used on `dmc:` envs only)."""

    action_repeat: int | None = within(None, "> 0")
    """Simulator steps per agent step. None = the task's (`plastic.envs.domains.default_action_repeat`: Nikishin et
    al. 2022's table, App. A.4), recorded here by `resolve`."""


# --------------------------------------------------------------------------------------------- probes
@dataclass
class ProbeConfig:
    """Plasticity probes during training (paper §4.1), on transitions sampled uniformly from the buffer. The toolkit's
    probes (docs/toolkit.md) are logged as `probes/<name>/<layer>`; the cheap ones are on by default (the ranks are an
    SVD of the same batch's features; the effective learning rate a parameter copy), the ones costing extra passes
    off."""

    every: int = within(10_000, ">= 0")
    """Agent steps between probes; 0 = off."""
    batch_size: int = within(512, "> 0")
    """Transitions the activity and rank probes use."""
    hessian: bool = True
    """λmax of the loss Hessian (§4.1), by power iteration."""
    hessian_batch_size: int = within(128, "> 0")
    """Transitions the Hessian probes use."""
    hessian_iters: int = within(20, "> 0")
    """Power-iteration steps for λmax."""
    dormant_tau: float = within(0.025, ">= 0")
    """A unit with normalised activity <= this counts as dormant (Sokar et al. 2023)."""
    effective_rank: bool = True
    """Effective rank of each activation layer's features on the probe batch."""
    stable_rank: bool = True
    """Stable rank of the same features."""
    effective_learning_rate: bool = True
    """||delta theta_l|| / ||theta_l|| per layer over the first update after a probe step's predecessor, i.e. one
    update measured at each probe step."""
    churn: bool = False
    """Mean |f_after - f_before| of the output over that same update, on a reference batch of `batch_size`
    transitions drawn from its own stream (training/seeding.py: probe_reference)."""
    grama: bool = False
    """GraMa dormant fraction (gradient score <= grama_tau), one backward of the loss on the batch."""
    grama_tau: float = within(0.0, ">= 0")
    """GraMa's dormancy threshold."""
    hessian_trace: bool = False
    """Hutchinson's estimate of the Hessian trace on the Hessian batch (per layer and "all")."""
    hessian_trace_samples: int = within(20, "> 0")
    """Hessian-vector products in Hutchinson's estimate."""
