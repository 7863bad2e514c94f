"""The domains of the paper, in one table: what each one trains with and how its scores are read (paper §4.1).

An env id is `DOMAIN:NAME` (`atari:Pong`, `minatar:breakout`, `dmc:cheetah-run`); `split_env_id` is the one parser
of it. `DOMAINS[domain]` holds everything that depends on the domain alone:

| domain  | agent   | replay ratio | SAM rho | reset interval | action repeat     | eval episodes | score           |
| ------- | ------- | ------------ | ------- | -------------- | ----------------- | ------------- | --------------- |
| atari   | rainbow | 2 (Table 5)  | 0.1     | 40,000         | 4 (frame skip)    | 100 (§4.1)    | human-normalized|
| minatar | rainbow | 2            | 0.1     | 40,000         | 1                 | 100           | raw return      |
| dmc     | sac     | 1 (Table 6)  | 0.01    | 100,000        | the task's (A.4)  | 10 (§4.1)     | raw return      |

`Domain.config_defaults` are the values `plastic.config.resolve` gives config keys left at None (an explicit value
always wins): the budget (Atari-100k's 100k agent steps, DMC-M's 2M environment steps, §4.1), evaluation episodes,
CReLU's placement, DrQ augmentation and the Rainbow hidden width. A new per-domain default is one more entry there.

Pure Python: the report and the sweep read this table without torch, gymnasium or dm_control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# PlaNet's action repeats keyed by the exact task name, as in Nikishin et al. 2022's `train_pixels.py` (App. A.4);
# every task not listed uses 2 (so cartpole-swingup_sparse is 2, not cartpole-swingup's 8).
PLANET_ACTION_REPEAT = {
    "cartpole-swingup": 8, "reacher-easy": 4, "cheetah-run": 4, "finger-spin": 2, "ball_in_cup-catch": 4,
    "walker-walk": 2,
}  # fmt: skip
DEFAULT_ACTION_REPEAT = 2


def default_action_repeat(task: str) -> int:
    """The protocol's action repeat for the DMC task `<domain>-<task>`: `PLANET_ACTION_REPEAT[task]`, else 2."""
    return PLANET_ACTION_REPEAT.get(task, DEFAULT_ACTION_REPEAT)


@dataclass(frozen=True)
class Domain:
    name: str
    agent: str
    """"rainbow" (DrQ(ε)-Rainbow, discrete actions) or "sac" (DrQ-SAC, continuous actions)."""
    replay_ratio: int
    """Gradient updates per agent step."""
    sam_rho: float
    """SAM's perturbation radius (App. B.4); `sam_rho_for` adds the per-task exceptions."""
    reset_interval: int
    """Gradient updates between resets (§4)."""
    action_repeat: int | None
    """Environment steps per agent step; None = per task (`default_action_repeat`)."""
    eval_episodes: int
    """Episodes of the final evaluation (§4.1)."""
    human_normalized: bool
    """Scores are human-normalized (Atari, §4.1); otherwise raw returns."""
    encoder: str
    """The conv encoder (`plastic.nets`): "nature" (84x84 Atari frames), "minatar" (10x10 boards), "dmc"."""
    random_score: str | None
    """Where a random policy's score comes from (`training.evaluation.random_policy_score`): "reference" (paper
    Table 7), "played" (played under the evaluation protocol: cheap on MinAtar) or None (not given: rendering DMC
    episodes would cost as much as the evaluation)."""
    config_defaults: dict[str, Any] = field(default_factory=dict)
    """Config keys -> values for keys left at None (`plastic.config.resolve`)."""
    compile_auto: bool = False
    """`compile = "auto"` compiles this domain's long runs (`plastic.config.COMPILE_AUTO_MIN_STEPS`), where the
    one-off compilation pays for itself: the Atari update's weight-sized passes are what inductor fuses."""

    @property
    def continuous(self) -> bool:
        return self.agent == "sac"

    def action_repeat_for(self, name: str) -> int:
        return default_action_repeat(name) if self.action_repeat is None else self.action_repeat

    def sam_rho_for(self, name: str) -> float:
        """DMC's quadruped tasks take 0.1 (App. B.4), every other task the domain's rho."""
        return 0.1 if self.continuous and "quadruped" in name else self.sam_rho


def _domain(name, agent, replay_ratio, sam_rho, reset_interval, action_repeat, eval_episodes, human_normalized,
            encoder, random_score, compile_auto=False, **config_defaults) -> Domain:
    defaults = {"eval_episodes": eval_episodes, **{key.replace("__", "."): v for key, v in config_defaults.items()}}
    return Domain(name, agent, replay_ratio, sam_rho, reset_interval, action_repeat, eval_episodes, human_normalized,
                  encoder, random_score, defaults, compile_auto)


# Keyword `section__field` = config key `section.field`. The budget keys (`steps`, `env_steps`) apply only when
# neither is given. DrQ augmentation is off on MinAtar: a ±4-cell shift would scramble its 10x10 binary boards
# (docs/deviations.md, MinAtar protocol).
DOMAINS: dict[str, Domain] = {
    "atari": _domain("atari", "rainbow", 2, 0.1, 40_000, 4, 100, True, "nature", "reference", compile_auto=True, steps=100_000,
                     crelu__placement="head", rainbow__augmentation=True, rainbow__hidden=512),
    "minatar": _domain("minatar", "rainbow", 2, 0.1, 40_000, 1, 100, False, "minatar", "played", steps=100_000,
                       crelu__placement="head", rainbow__augmentation=False, rainbow__hidden=128),
    # rainbow.hidden: unused by SAC, recorded in config.json as it always was.
    "dmc": _domain("dmc", "sac", 1, 0.01, 100_000, None, 10, False, "dmc", None, env_steps=2_000_000,
                   crelu__placement="all", rainbow__hidden=512),
}
EXAMPLES = "e.g. atari:Pong, minatar:breakout, dmc:cheetah-run"


def split_env_id(env_id: str, what: str = "env") -> tuple[str, str]:
    """`"atari:Pong"` -> `("atari", "Pong")`; ValueError naming `what` and the id unless DOMAIN is in `DOMAINS` and
    NAME is not empty. Whether NAME is a known game or task is the env factory's question (`plastic.envs.registry`)."""
    domain, separator, name = str(env_id).partition(":")
    if not separator or domain not in DOMAINS or not name:
        raise ValueError(f"{what} {env_id!r}: expected DOMAIN:NAME with DOMAIN one of {', '.join(DOMAINS)} "
                         f"({EXAMPLES})")
    return domain, name


def domain_of(env_id: str) -> Domain:
    return DOMAINS[split_env_id(env_id)[0]]
