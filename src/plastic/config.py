"""Run configuration: typed dataclasses, validated on load, with presets and `--set KEY=VALUE` overrides.

A config is built in three layers, each stated once: the dataclass defaults below (the paper's Table 5 / Table 6
values), a preset (`plastic/presets/<name>.toml`, which lists only its differences from `base`), then the user's
`--method` and `--set` overrides. Values that depend on the domain (SAM's rho, the reset interval, the learning
rate on DMC, the budget, the evaluation episodes, CReLU's placement, DMC's action repeat) default to `None` and are
resolved by `resolve()` from the env id (the plain per-domain values in `DOMAIN_DEFAULTS`), so that they are never
configured twice. A wrong key or a value of the wrong type is a `ValueError` naming it; nothing is silently ignored.

Budget: `steps` counts agent steps, `env_steps` environment steps = agent steps x the domain's action repeat
(`action_repeat()`: DMC the task's repeat, Atari the frame skip 4, MinAtar 1). Give either; `resolve()` fills the
other, converting env steps with a ceiling (`steps = ceil(env_steps / repeat)`, and `env_steps` is then recorded as
`steps x repeat`), so a sweep over tasks with different repeats gives each the same environment budget.

Each field's docstring, unit, default's source and allowed values are written where it is declared: the sections in
`plastic.config_sections`, `TrainConfig` below (`plastic train --describe-config` prints them). The generic machinery
(coercion, updates, `--set` parsing, the constraint check) is `plastic.config_machinery`; everything is importable
from here.

Switch names are the paper's methods: `ln`, `sam`, `crelu`, `reset`, `shrink_perturb`, `redo`, and the toolkit's
later interventions (docs/toolkit.md): `l2_init`, `hare_tortoise`, `nap`, `regrama`, `parseval`, `c_chain`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from plastic.config_machinery import (  # noqa: F401  (re-exported: `from plastic.config import update, ...`)
    check_constraints, choice, describe, flat, get, leaves, parse_overrides, put, to_dict, update, within)
from plastic.config_sections import (  # noqa: F401  (re-exported: the sections are part of this module's API)
    CChainConfig, CReLUConfig, DMCConfig, HareTortoiseConfig, L2InitConfig, LayerNormConfig, NaPConfig, ParsevalConfig,
    ProbeConfig, RainbowConfig, ReDoConfig, ReGraMaConfig, ResetConfig, SACConfig, SAMConfig, ShrinkPerturbConfig)
from plastic.envs.domains import DOMAINS, Domain, split_env_id

METHODS = ("ln", "sam", "crelu", "reset", "shrink_perturb", "redo", "l2_init", "hare_tortoise", "nap", "regrama",
           "parseval", "c_chain")
COMPILE_AUTO_MIN_STEPS = 50_000  # `compile = "auto"` compiles Atari runs at least this long
COMPILE_MODES = ("default", "reduce-overhead")  # the torch.compile modes a run may ask for (`compile_mode`)


@dataclass
class TrainConfig:
    """One training run. Fields are grouped by what they decide: the experiment (what the run computes), then its
    evaluation, then the sections, then the runtime options (how it is executed: device, threads, checkpoints, logs).
    The groups are by order only, so every `config.json` key and `--set KEY` stays where it always was."""

    # ---- the experiment
    env: str = "minatar:breakout"
    """The env id, DOMAIN:NAME (atari:Pong, minatar:breakout, dmc:cheetah-run; `plastic.envs.domains`)."""
    preset: str = "base"
    """The preset the run was built from (`plastic/presets/<name>.toml`); reports group runs by it."""
    seed: int = within(0, ">= 0")
    """The run's seed; every random stream derives from it (training/seeding.py)."""
    steps: int | None = within(None, "> 0")
    """Budget in agent steps. None = from `env_steps`, else the domain's budget: 100,000 on Atari/MinAtar (§4.1)."""
    env_steps: int | None = within(None, "> 0")
    """Budget in environment steps = agent steps x the action repeat (module docstring). None = from `steps`, else
    the domain's budget: 2,000,000 on DMC (§4.1)."""
    replay_ratio: int | None = within(None, "> 0")
    """Gradient updates per agent step. None = the domain's: 2 on Atari/MinAtar (Table 5), 1 on DMC (Table 6)."""
    precision: str = choice("fp32", ("fp32", "bf16"))
    """The Rainbow update's arithmetic: "bf16" runs convolutions and matmuls in bfloat16 with float32 master
    weights, optimizer state, losses, softmax and C51 projection; needs bf16 hardware (agents/precision.py,
    docs/performance.md)."""
    backbone_checkpoint: str = ""
    """Fine-tune from a pretrained encoder (paper §4.4; training/pretrained.py); "" = train from scratch."""
    freeze_backbone: bool = False
    """Keep the loaded encoder fixed (paper §4.4)."""

    # ---- evaluation
    eval_episodes: int | None = within(None, "> 0")
    """Episodes of the final evaluation. None = the domain's: 100 on Atari/MinAtar (§4.1), 10 on DMC (§4.1, Table 10;
    Table 6 says 100, the two disagree and the text is followed: docs/deviations.md, Evaluation episodes)."""
    eval_envs: int = within(10, "> 0")
    """Evaluation episodes played in parallel (vector envs); each env's episodes are seeded from the run's seed."""
    eval_every: int = within(0, ">= 0")
    """Agent steps between evaluations during training; 0 = only at the end."""

    # ---- sections: the method switches (METHODS), the agents, the probes, the DMC env
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

    # ---- runtime: how the run is executed, not what it computes
    device: str = choice("auto", ("auto", "cpu", "cuda"))
    """"auto" = cuda when available, else cpu."""
    threads: int = within(1, ">= 0")
    """Torch threads; 0 = torch's default. One thread per run: two threads stall when anything else uses a core, and
    two 1-thread runs beat one 2-thread run (docs/performance.md)."""
    compile: str = choice("auto", ("auto", "on", "off"))
    """torch.compile the Rainbow update's passes: "auto" = on for Atari runs of at least COMPILE_AUTO_MIN_STEPS agent
    steps, where the one-off compile pays for itself, off otherwise."""
    compile_mode: str = choice("default", COMPILE_MODES)
    """torch.compile's mode for those passes: "reduce-overhead" also captures them as CUDA graphs (one graph launch
    per pass instead of one kernel launch per op); cuda only (agents/compiled.py)."""
    flush_denormal: bool = True
    """Treat subnormal floats (magnitude below 1.2e-38) as zero on the CPU (`torch.set_flush_denormal`). Adam's
    moments of units whose gradient is zero decay through the subnormal range, where x86 arithmetic is many times
    slower: a sixth of them were subnormal late in an Atari run, and Adam took 4x longer (docs/performance.md).
    An Adam step from a moment that small never moves a float32 weight; false keeps IEEE gradual underflow."""
    checkpoint_every: int = within(10_000, "> 0")
    """Agent steps between checkpoints (what `--resume` continues from)."""
    keep_checkpoints: int = within(2, "> 0")
    """Checkpoints kept while the run goes on (older ones are deleted)."""
    keep_replay: bool = False
    """A finished run keeps only its final checkpoint, without the replay buffer (it is evaluated and fine-tuned
    from, not continued); true keeps the last `keep_checkpoints` whole (README: "Disk")."""
    log_every: int = within(1_000, "> 0")
    """Agent steps between rows of metrics.jsonl."""
    wandb: bool = False
    """Also log to Weights & Biases."""
    wandb_project: str = "plastic-rl"
    """The W&B project runs are logged to."""

    @property
    def domain(self) -> str:
        return split_env_id(self.env)[0]

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
        return self.domain_spec.action_repeat_for(split_env_id(self.env)[1])

    @property
    def compile_enabled(self) -> bool:
        if self.compile == "auto":
            return self.domain_spec.compile_auto and self.steps >= COMPILE_AUTO_MIN_STEPS
        return self.compile == "on"

    @property
    def methods(self) -> list[str]:
        """The method switches that are on, in the paper's order."""
        return [name for name in METHODS if getattr(self, name).enabled]

    @property
    def method_label(self) -> str:
        """Display name used to group runs in reports: the preset, plus any switch added on top of it, in the paper's
        order (`plastic.methods.method_label`)."""
        from plastic.methods import method_label

        return method_label(self.preset, self.methods)


# --------------------------------------------------------------------------------------------- load and save
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
# The per-domain values of the fields left at None (`resolve()` fills them; an explicit value always wins), from the
# domain table `plastic.envs.domains.DOMAINS` (add a per-domain default there).
DOMAIN_DEFAULTS: dict[str, dict[str, Any]] = {name: domain.config_defaults for name, domain in DOMAINS.items()}
_BUDGET_KEYS = ("steps", "env_steps")


# Methods that apply to some agents only (C-CHAIN's value-based form needs a Q-network's churn: Rainbow).
_METHOD_AGENTS = {"c_chain": ("rainbow",)}


def _check_agent_only(config: TrainConfig, agent: str) -> None:
    """A field one agent reads and the other would ignore (`metadata={"agent": ...}`), set away from the default and
    the preset on a domain whose agent does not read it, is an error rather than silently ignored."""
    from plastic.presets import load_preset

    try:
        preset = flat(load_preset(config.preset))
    except ValueError:
        preset = {}
    defaults = TrainConfig()
    for key, spec, value, _ in leaves(config):
        owner = spec.metadata.get("agent")
        if owner is not None and owner != agent and value != get(defaults, key) and (
                key not in preset or value != preset[key]):
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
        if get(config, key) is None and not (key in _BUDGET_KEYS and budget_given):
            put(config, key, value)
    check_constraints(config)  # each field's `choice(...)` / `within(...)`, declared with it
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
    if config.compile_mode == "reduce-overhead":
        if spec.continuous or config.compile == "off" or config.device == "cpu":
            where = ("dmc runs eagerly" if spec.continuous else "compile = 'off' compiles nothing"
                     if config.compile == "off" else "device = 'cpu' has no CUDA graphs")
            raise ValueError(f"config key 'compile_mode' = 'reduce-overhead' captures the compiled passes as CUDA "
                             f"graphs, but {where}; use compile_mode=default")
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
