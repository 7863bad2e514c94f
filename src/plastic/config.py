"""Run configuration: typed dataclasses, validated on load, with presets and `--set KEY=VALUE` overrides.

A config is built in three layers, each stated once: the dataclass defaults below (the paper's Table 5 / Table 6
values), a preset (`plastic/presets/<name>.toml`, which lists only its differences from `base`), then the user's
`--methods` and `--set` overrides. Values that depend on the domain (SAM's rho, the reset interval, the learning
rate on DMC, the budget, the evaluation episodes, CReLU's placement, DMC's action repeat) default to `None` and are
resolved by `resolve()` from the env id (the plain per-domain values in `DOMAIN_DEFAULTS`), so that they are never
configured twice. A wrong key or a value of the wrong type is a `ValueError` naming it; nothing is silently ignored.

Budget: `steps` counts agent steps, `env_steps` environment steps = agent steps x the domain's action repeat
(`action_repeat()`: DMC the task's repeat, Atari the frame skip 4, MinAtar 1). Give either; `resolve()` fills the
other, converting env steps with a ceiling (`steps = ceil(env_steps / repeat)`, and `env_steps` is then recorded as
`steps x repeat`), so a sweep over tasks with different repeats gives each the same environment budget.

Switch names are the paper's methods: `ln`, `sam`, `crelu`, `reset`, `shrink_perturb`, `redo`, and the toolkit's
later interventions (docs/toolkit.md): `l2_init`, `hare_tortoise`, `nap`, `regrama`, `parseval`, `c_chain`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from plastic.envs.domains import DOMAINS, Domain, split_env_id

METHODS = ("ln", "sam", "crelu", "reset", "shrink_perturb", "redo", "l2_init", "hare_tortoise", "nap", "regrama",
           "parseval", "c_chain")


# --------------------------------------------------------------------------------------------- method switches
@dataclass
class LayerNormConfig:
    """LayerNorm (paper §3.3). `placement`: "backbone" = after each conv of the backbone, before its ReLU (§4.1 and the
    public code: the default); "all" = also after every fully-connected layer (App. A.3/A.4 say every conv and FC)."""

    enabled: bool = False
    placement: str = "backbone"


@dataclass
class SAMConfig:
    """Sharpness-aware minimisation (paper Algorithm 1/2, App. B.4).

    rho: None = 0.1 on Atari/MinAtar, 0.01 on DMC (0.1 on quadruped). scope: "all" | "backbone" | "head" (Rainbow);
    on DMC the per-component rhos below apply instead. noise: "independent" draws fresh noisy-layer noise for the
    perturbed pass (paper default), "shared" reuses the clean pass's noise. adaptive: ASAM.
    """

    enabled: bool = False
    rho: float | None = None
    scope: str = "all"
    noise: str = "independent"
    adaptive: bool = False
    critic_rho: float | None = None  # DMC: None = rho
    actor_rho: float | None = None  # DMC: None = rho; 0 = no SAM on the actor
    temperature_rho: float | None = None  # DMC: None = rho; 0 = no SAM on the temperature


@dataclass
class CReLUConfig:
    """Concatenated ReLU (paper §3.3, App. A.3). placement: "head" or "all"; None = the domain's (DOMAIN_DEFAULTS):
    "all" on DMC (App. A.4 replaces all ReLUs), "head" on Atari/MinAtar (as the paper's parameter counts imply).
    width_mode: "double_input" (next layer sees 2x features, paper) or "halve_output" (public code's head)."""

    enabled: bool = False
    placement: str | None = None
    width_mode: str = "double_input"


@dataclass
class ResetConfig:
    """Periodic hard reset of the head (Nikishin et al. 2022; paper §4). interval in gradient updates: None = 40,000
    (Atari/MinAtar) or 100,000 (DMC). target: the target head takes the same fresh draw. optimizer: whose Adam state
    is cleared at a reset: "reset" (the re-drawn parameters), "all" (public code: optimizer rebuilt) or "none"."""

    enabled: bool = False
    interval: int | None = None
    target: bool = True
    optimizer: str = "reset"


@dataclass
class ShrinkPerturbConfig:
    """Shrink & perturb of the backbone at every reset (Ash & Adams 2020; PLASTIC†): theta <- alpha theta +
    (1 - alpha) phi. min_replay_ratio: only applied at replay ratios >= this (public code: 4)."""

    enabled: bool = False
    alpha: float = 0.6
    min_replay_ratio: int = 1


@dataclass
class ReDoConfig:
    """Recycling dormant units (Sokar et al. 2023), beyond the paper. Every `interval` gradient updates, units with
    normalised activity <= tau are re-initialised, on a batch of `batch_size` states from the replay buffer."""

    enabled: bool = False
    tau: float = 0.025
    interval: int = 1000
    batch_size: int = 256


@dataclass
class L2InitConfig:
    """L2-init, regenerative regularisation (Kumar et al. 2023): loss + coefficient * ||theta - theta_0||^2 over the
    trained network's parameters (Rainbow: the online network; SAC: critic with encoder, and actor, each in its own
    loss). coefficient: the paper tunes it per benchmark and gives no default; 1e-5 is this library's choice
    (docs/toolkit.md). The anchor theta_0 is the initialisation and is kept across resets."""

    enabled: bool = False
    coefficient: float = 1e-5


@dataclass
class HareTortoiseConfig:
    """Hare & Tortoise (Lee et al., ICML 2024): a slow EMA copy (tortoise) of the trained network (hare), updated after
    every optimizer step with rate `ema` (0.999, the authors' code); every `interval` gradient updates the hare is set
    to the tortoise. interval: the paper's RL interval is an experiment choice; None = the domain's reset interval
    (40,000 on Atari/MinAtar, 100,000 on DMC; docs/toolkit.md). reset_optimizer: also clear the hare's Adam moments at
    a hare reset (the authors' code keeps them: false)."""

    enabled: bool = False
    ema: float = 0.999
    interval: int | None = None
    reset_optimizer: bool = False


@dataclass
class NaPConfig:
    """Normalize-and-project (Lyle et al. 2024): a LayerNorm before every nonlinearity (the network is built as with
    `ln.placement = "all"`, whatever `ln.*` says) and, after every optimizer step, each layer's weight projected back
    to its norm at initialisation. scope: "weights" (Linear/Conv weights, the paper's main variant) or
    "weights_and_norm_affine" (also each LayerNorm's scale and offset, jointly)."""

    enabled: bool = False
    scope: str = "weights"


@dataclass
class ReGraMaConfig:
    """ReGraMa (Liu et al. 2025): ReDo's recycling with units scored by the loss-gradient magnitude (GraMa). Every
    `interval` gradient updates (ReDo's schedule), units with score <= tau on `batch_size` uniform replay transitions
    are recycled (Rainbow: the head streams; SAC: the two Q MLPs). tau: tuned in the paper; 0 (default) recycles
    only units the gradient does not reach. gradient_at: "activation_input" (the nonlinearity's input, default) or
    "activation_output"."""

    enabled: bool = False
    tau: float = 0.0
    interval: int = 1000
    batch_size: int = 256
    gradient_at: str = "activation_input"


@dataclass
class ParsevalConfig:
    """Parseval regularisation (Chung et al. 2024): loss + coefficient * sum_l ||W_l W_l^T - scale I||_F^2 over every
    layer but the output layers (both dueling streams' last layers; the Q and policy outputs on SAC). coefficient
    1e-3 and scale 1 are the paper's. include_conv: also the conv kernels, flattened (a choice: the paper's networks
    are MLPs)."""

    enabled: bool = False
    coefficient: float = 1e-3
    scale: float = 1.0
    include_conv: bool = True


@dataclass
class CChainConfig:
    """C-CHAIN (Tang et al., ICML 2025): loss + lambda_t * mean (Q_t(s, a) - Q_(t-lag)(s, a))^2 on a second uniform
    replay batch of the update's size, the Q-values taken with noisy layers at their means. lambda_t adapts so that
    the term is `relative_loss_scale` of |L_RL| (means over the last `window` updates) from update `warmup` on, and is
    `initial_coefficient` before. Defaults are the authors' DoubleDQN code's (c = 0.01, lambda_0 = 50, warm-up
    10,000, window 50,000, lag 1). Value-based form: Rainbow only."""

    enabled: bool = False
    relative_loss_scale: float = 0.01
    initial_coefficient: float = 50.0
    warmup: int = 10_000
    window: int = 50_000
    lag: int = 1


# --------------------------------------------------------------------------------------------- agents
@dataclass
class RainbowConfig:
    """DrQ(ε)-Rainbow, paper Table 5 (docs/deviations.md lists where it differs from the public code). Discrete-action domains (Atari, MinAtar)."""

    learning_rate: float = 1e-4
    adam_eps: float = 1.5e-5
    batch_size: int = 32
    gamma: float = 0.99
    n_step: int = 10
    num_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    hidden: int | None = None  # None = 512 on Atari (Table 5), 128 on MinAtar
    noisy_sigma0: float = 0.5
    target_tau: float = 0.99  # target <- tau * target + (1 - tau) * online, every update
    max_grad_norm: float = 10.0
    priority_exponent: float = 0.5
    importance_exponent_start: float = 0.4  # at the first update, annealed linearly to 1 at the last step
    buffer_size: int = 100_000
    learning_starts: int = 2_000
    epsilon_train: float = 0.0  # after warm-up; exploration comes from the noisy target network
    epsilon_eval: float = 0.001
    augmentation: bool | None = None  # DrQ's random shift + intensity (Table 5); None = the domain's: on for Atari,
    # off for MinAtar, whose 10x10 binary boards a ±4-cell shift would scramble (docs/deviations.md, MinAtar protocol)
    shift_pad: int = 4
    intensity_scale: float = 0.05
    reward_clip: bool = True
    double_q: bool = True


@dataclass
class SACConfig:
    """DrQ + SAC, paper Table 6. Continuous-action domains (DMC)."""

    learning_rate: float | None = None  # None = 3e-4 (paper); the public code uses 1e-4
    batch_size: int = 512
    gamma: float = 0.99
    hidden: int = 256
    latent_dim: int = 50
    target_tau: float = 0.995
    initial_temperature: float = 0.1
    buffer_size: int = 1_000_000
    learning_starts: int = 1_000  # agent steps of random actions before updates (the base code's start_training)
    shift_pad: int = 4
    log_std_min: float = -10.0
    log_std_max: float = 2.0


@dataclass
class DMCConfig:
    """DeepMind Control env options (used on `dmc:` envs only). action_repeat: simulator steps per agent step; None =
    the task's (`plastic.envs.dmc.default_action_repeat`: Nikishin et al. 2022's table, App. A.4)."""

    action_repeat: int | None = None


# --------------------------------------------------------------------------------------------- the run
@dataclass
class ProbeConfig:
    """Plasticity probes during training (paper §4.1): λmax of the loss Hessian and active units, on `batch_size`
    transitions sampled uniformly from the buffer, every `every` agent steps (0 = off). The toolkit's probes
    (docs/toolkit.md) are logged as `probes/<name>/<layer>`; the cheap ones are on by default (the ranks are an SVD
    of the same batch's features; the effective learning rate a parameter copy), the ones costing extra passes off."""

    every: int = 10_000
    batch_size: int = 512
    hessian: bool = True
    hessian_batch_size: int = 128
    hessian_iters: int = 20
    dormant_tau: float = 0.025
    effective_rank: bool = True  # of each activation layer's features on the probe batch
    stable_rank: bool = True  # idem
    effective_learning_rate: bool = True  # ||delta theta_l|| / ||theta_l|| per layer over the first update after a
    # probe step's predecessor, i.e. one update measured at each probe step
    churn: bool = False  # mean |f_after - f_before| of the output over that same update, on a reference batch of
    # `batch_size` transitions drawn from its own stream (training/seeding.py: probe_reference)
    grama: bool = False  # GraMa dormant fraction (gradient score <= grama_tau), one backward of the loss on the batch
    grama_tau: float = 0.0
    hessian_trace: bool = False  # Hutchinson's estimate with `hessian_trace_samples` Hessian-vector products on the
    # Hessian batch (per layer and "all")
    hessian_trace_samples: int = 20


@dataclass
class TrainConfig:
    env: str = "minatar:breakout"
    preset: str = "base"
    seed: int = 0
    steps: int | None = None  # agent steps; None = from env_steps, else the domain's budget (DOMAIN_DEFAULTS)
    env_steps: int | None = None  # environment steps = agent steps x action_repeat() (module docstring); None = from
    # steps, else the domain's budget (DMC: the paper's 2,000,000, §4.1)
    replay_ratio: int | None = None  # gradient updates per agent step; None = 2 (Atari, Table 5), 1 (DMC, Table 6)
    device: str = "auto"
    threads: int = 1  # torch threads; 0 = torch's default. One thread per run: two threads stall when anything
    # else uses a core, and two 1-thread runs beat one 2-thread run (docs/performance.md)
    compile: str = "auto"  # torch.compile the Rainbow update's passes: on | off | auto (= on for Atari runs of at
    # least COMPILE_AUTO_MIN_STEPS agent steps, where the one-off 10-40 s compile pays for itself; off otherwise)
    precision: str = "fp32"  # the Rainbow update's arithmetic: fp32 | bf16 (convolutions and matmuls in bfloat16
    # with float32 master weights, optimizer state, losses, softmax and C51 projection; needs bf16 hardware;
    # agents/precision.py, docs/performance.md)
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 2
    keep_replay: bool = False  # a finished run keeps only its final checkpoint, without the replay buffer (it is
    # evaluated and fine-tuned from, not continued); true keeps the last `keep_checkpoints` whole (README: "Disk")
    eval_episodes: int | None = None  # final evaluation; None = 10 on DMC (§4.1, Table 10; Table 6 says 100, the two
    # disagree and the text is followed), 100 on Atari/MinAtar (§4.1)
    eval_envs: int = 10
    eval_every: int = 0  # agent steps; 0 = only at the end
    log_every: int = 1_000
    wandb: bool = False
    wandb_project: str = "plastic-rl"
    backbone_checkpoint: str = ""  # fine-tune from a pretrained encoder (paper §4.4); see training/pretrained.py
    freeze_backbone: bool = False
    ln: LayerNormConfig = field(default_factory=LayerNormConfig)
    sam: SAMConfig = field(default_factory=SAMConfig)
    crelu: CReLUConfig = field(default_factory=CReLUConfig)
    reset: ResetConfig = field(default_factory=ResetConfig)
    shrink_perturb: ShrinkPerturbConfig = field(default_factory=ShrinkPerturbConfig)
    redo: ReDoConfig = field(default_factory=ReDoConfig)
    l2_init: L2InitConfig = field(default_factory=L2InitConfig)
    hare_tortoise: HareTortoiseConfig = field(default_factory=HareTortoiseConfig)
    nap: NaPConfig = field(default_factory=NaPConfig)
    regrama: ReGraMaConfig = field(default_factory=ReGraMaConfig)
    parseval: ParsevalConfig = field(default_factory=ParsevalConfig)
    c_chain: CChainConfig = field(default_factory=CChainConfig)
    rainbow: RainbowConfig = field(default_factory=RainbowConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    dmc: DMCConfig = field(default_factory=DMCConfig)

    @property
    def domain(self) -> str:
        return self.env.split(":", 1)[0]

    @property
    def domain_spec(self) -> Domain:
        """The run's row of the domain table (`plastic.envs.domains.DOMAINS`)."""
        return DOMAINS[self.domain]

    @property
    def action_repeat(self) -> int:
        """Environment steps per agent step: DMC the task's action repeat (resolved into `dmc.action_repeat`),
        Atari its frame skip (4: 100k agent steps are 400k frames), MinAtar 1."""
        if self.domain_spec.action_repeat is None and self.dmc.action_repeat is not None:
            return self.dmc.action_repeat
        return self.domain_spec.action_repeat_for(self.env.partition(":")[2])

    @property
    def compile_enabled(self) -> bool:
        if self.compile == "auto":
            return self.domain == "atari" and self.steps >= COMPILE_AUTO_MIN_STEPS
        return self.compile == "on"

    @property
    def methods(self) -> list[str]:
        """The method switches that are on, in the paper's order."""
        return [name for name in METHODS if getattr(self, name).enabled]

    @property
    def method_label(self) -> str:
        """Display name used to group runs in reports: the preset, plus any switch added on top of it."""
        from plastic.presets import load_preset

        preset_methods = {name for name in METHODS if load_preset(self.preset).get(name, {}).get("enabled")}
        extra = [name for name in self.methods if name not in preset_methods]
        return "+".join([self.preset, *extra])


# --------------------------------------------------------------------------------------------- generic machinery
def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert `value` (from JSON/TOML or a `--set` string) to the annotated type, or raise naming `key`."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = options[0]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ValueError(f"config key {key!r}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"config key {key!r}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                try:
                    number = float(value)
                except ValueError:
                    number = None
                if number is not None and number.is_integer():
                    return int(number)
        raise ValueError(f"config key {key!r}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"config key {key!r}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"config key {key!r}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {annotation!r} for {key!r}")


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def update(config: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Set nested fields from a (possibly nested) dict; unknown keys and bad values raise ValueError."""
    fields = _fields(type(config))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise ValueError(f"unknown config key {key!r}; valid keys here: {', '.join(sorted(fields))}")
        hint = fields[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"config key {key!r} is a section; set its fields as {key}.FIELD=VALUE")
            update(getattr(config, name), value, prefix=f"{key}.")
        else:
            setattr(config, name, _coerce(value, hint, key))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["sam.rho=0.05", "steps=1000"]` -> nested dict of strings (types are coerced by `update`)."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r} conflicts with another --set of {part!r}")
        node[parts[-1]] = value.strip()
    return nested


def from_dict(data: dict[str, Any]) -> TrainConfig:
    config = TrainConfig()
    update(config, data)
    return config


def save(config: TrainConfig, path) -> None:
    from plastic.training.files import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(config), indent=2, sort_keys=False) + "\n")


def load(path) -> TrainConfig:
    with open(path) as handle:
        data = json.load(handle)
    env = data.get("env") if isinstance(data, dict) else None
    if isinstance(env, str) and env.startswith("dmc:") and "dmc" not in data:
        # Written before the action repeat was a config field: the run used the per-domain table of that version
        # (cartpole 8, finger 2, walker 2, others 4); keep it, so --resume and `plastic eval` see the same env.
        data["dmc"] = {"action_repeat": _LEGACY_DMC_ACTION_REPEAT.get(env[4:].split("-", 1)[0], 4)}
    return from_dict(data)


_LEGACY_DMC_ACTION_REPEAT = {"cartpole": 8, "finger": 2, "walker": 2}


# --------------------------------------------------------------------------------------------- validation
_CHOICES = {
    "ln.placement": ("all", "backbone"),
    "sam.scope": ("all", "backbone", "head"),
    "sam.noise": ("independent", "shared"),
    "crelu.placement": ("head", "all"),
    "crelu.width_mode": ("double_input", "halve_output"),
    "reset.optimizer": ("reset", "all", "none"),
    "nap.scope": ("weights", "weights_and_norm_affine"),
    "regrama.gradient_at": ("activation_input", "activation_output"),
    "device": ("auto", "cpu", "cuda"),
    "compile": ("auto", "on", "off"),
    "precision": ("fp32", "bf16"),
}
COMPILE_AUTO_MIN_STEPS = 50_000  # `compile = "auto"` compiles Atari runs at least this long
# The per-domain values of the fields left at None (`resolve()` fills them; an explicit value always wins), from the
# domain table `plastic.envs.domains.DOMAINS` (add a per-domain default there).
DOMAIN_DEFAULTS: dict[str, dict[str, Any]] = {name: domain.config_defaults for name, domain in DOMAINS.items()}
_BUDGET_KEYS = ("steps", "env_steps")
_POSITIVE = (
    "steps", "env_steps", "dmc.action_repeat", "replay_ratio", "checkpoint_every", "keep_checkpoints", "eval_episodes",
    "eval_envs", "log_every",
    "rainbow.batch_size", "rainbow.n_step", "rainbow.num_atoms", "rainbow.hidden", "rainbow.buffer_size",
    "sac.batch_size", "sac.hidden", "sac.latent_dim", "sac.buffer_size", "redo.interval", "redo.batch_size",
    "probe.batch_size", "probe.hessian_batch_size", "probe.hessian_iters", "probe.hessian_trace_samples",
    "regrama.interval", "regrama.batch_size", "parseval.scale", "c_chain.window", "c_chain.lag",
    "hare_tortoise.interval",
)
_NON_NEGATIVE = ("threads", "eval_every", "probe.every", "rainbow.learning_starts", "sac.learning_starts",
                 "rainbow.shift_pad", "sac.shift_pad", "redo.tau", "probe.dormant_tau",
                 "probe.grama_tau", "l2_init.coefficient", "regrama.tau", "parseval.coefficient",
                 "c_chain.relative_loss_scale", "c_chain.initial_coefficient", "c_chain.warmup")
_UNIT_INTERVAL = ("rainbow.gamma", "rainbow.target_tau", "rainbow.epsilon_train", "rainbow.epsilon_eval",
                  "sac.gamma", "sac.target_tau", "shrink_perturb.alpha", "rainbow.priority_exponent",
                  "rainbow.importance_exponent_start", "hare_tortoise.ema")


def _get(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part, None)
    return config


def _set(config: Any, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        config = getattr(config, part)
    setattr(config, last, value)


# SAM fields that one agent reads and the other would ignore: set (away from the default and the preset) on a domain
# whose agent does not read them, they are an error rather than silently ignored.
_AGENT_ONLY = {"sam.scope": "rainbow", "sam.noise": "rainbow", "sam.critic_rho": "sac", "sam.actor_rho": "sac",
               "sam.temperature_rho": "sac"}


# Methods that apply to some agents only (C-CHAIN's value-based form needs a Q-network's churn: Rainbow).
_METHOD_AGENTS = {"c_chain": ("rainbow",)}


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def _check_agent_only(config: TrainConfig, agent: str) -> None:
    from plastic.presets import load_preset

    try:
        preset = _flat(load_preset(config.preset))
    except ValueError:
        preset = {}
    defaults = TrainConfig()
    for key, owner in _AGENT_ONLY.items():
        value = _get(config, key)
        if owner != agent and value != _get(defaults, key) and (key not in preset or value != preset[key]):
            domains = ", ".join(name for name, domain in DOMAINS.items() if domain.agent == owner)
            raise ValueError(f"config key {key!r} = {value!r} applies to {owner} runs ({domains}) only, "
                             f"not to {config.env}")


def resolve(config: TrainConfig) -> TrainConfig:
    """Validate every field and fill the domain-dependent defaults (those left at None). Returns the same object."""
    domain, name = split_env_id(config.env)
    spec = DOMAINS[domain]
    _check_agent_only(config, spec.agent)
    budget_given = config.steps is not None or config.env_steps is not None
    for key, value in DOMAIN_DEFAULTS[domain].items():
        if _get(config, key) is None and not (key in _BUDGET_KEYS and budget_given):
            _set(config, key, value)
    for key, allowed in _CHOICES.items():
        if _get(config, key) not in allowed:
            raise ValueError(f"config key {key!r} = {_get(config, key)!r}; allowed: {', '.join(allowed)}")
    for key in _POSITIVE:
        if _get(config, key) is not None and _get(config, key) <= 0:
            raise ValueError(f"config key {key!r} = {_get(config, key)!r} must be > 0")
    for key in _NON_NEGATIVE:
        if _get(config, key) is not None and _get(config, key) < 0:
            raise ValueError(f"config key {key!r} = {_get(config, key)!r} must be >= 0")
    for key in _UNIT_INTERVAL:
        if not 0.0 <= _get(config, key) <= 1.0:
            raise ValueError(f"config key {key!r} = {_get(config, key)!r} must be in [0, 1]")
    if config.seed < 0:
        raise ValueError(f"config key 'seed' = {config.seed} must be >= 0")
    if spec.action_repeat is None and config.dmc.action_repeat is None:  # DMC: the task's, recorded in the config
        config.dmc.action_repeat = config.action_repeat
    repeat = config.action_repeat
    if config.steps is None:
        config.steps = -(-config.env_steps // repeat)  # ceiling: at least the asked environment budget
        config.env_steps = config.steps * repeat
    elif config.env_steps is None:
        config.env_steps = config.steps * repeat
    elif config.env_steps != config.steps * repeat:
        raise ValueError(f"config keys 'steps' = {config.steps} and 'env_steps' = {config.env_steps} disagree: "
                         f"env_steps must be steps x action repeat ({repeat}) = {config.steps * repeat}; give one")

    if config.replay_ratio is None:
        config.replay_ratio = spec.replay_ratio
    if config.sam.rho is None:
        config.sam.rho = spec.sam_rho_for(name)
    for key in ("rho", "critic_rho", "actor_rho", "temperature_rho"):
        value = getattr(config.sam, key)
        if value is not None and (value < 0 or (key == "rho" and value == 0)):
            raise ValueError(f"config key 'sam.{key}' = {value} must be > 0")
    if config.reset.interval is None:
        config.reset.interval = spec.reset_interval
    if config.reset.interval <= 0:
        raise ValueError(f"config key 'reset.interval' = {config.reset.interval} must be > 0")
    if config.hare_tortoise.interval is None:
        config.hare_tortoise.interval = spec.reset_interval
    for method, agents in _METHOD_AGENTS.items():
        if getattr(config, method).enabled and spec.agent not in agents:
            domains = ", ".join(n for n, d in DOMAINS.items() if d.agent in agents)
            raise ValueError(f"method {method!r} is implemented for the {', '.join(agents)} agent ({domains}), "
                             f"not for {domain}")
    if config.compile == "on" and spec.continuous:
        raise ValueError("config key 'compile' = 'on' is implemented for the Rainbow agent (atari, minatar); "
                         "use compile=off for dmc")
    if config.precision != "fp32" and spec.continuous:
        raise ValueError(f"config key 'precision' = {config.precision!r} is implemented for the Rainbow agent "
                         "(atari, minatar); use precision=fp32 for dmc")
    if config.sac.learning_rate is None:
        config.sac.learning_rate = 3e-4
    if config.sac.learning_rate <= 0 or config.rainbow.learning_rate <= 0:
        raise ValueError("learning rates must be > 0")
    return config


def build(env: str | None = None, preset: str = "base", methods: list[str] | None = None,
          overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- preset <- `methods` switches <- `overrides`, then `resolve`. Raises ValueError naming bad input."""
    from plastic.presets import load_preset

    config = TrainConfig(preset=preset)
    update(config, load_preset(preset))
    if env is not None:
        config.env = env
    for method in [part.strip() for item in methods or [] for part in item.split("+")]:  # "ln+sam" = "ln", "sam"
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
        getattr(config, method).enabled = True
    update(config, overrides or {})
    return resolve(config)
