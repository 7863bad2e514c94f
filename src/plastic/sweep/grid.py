"""The grid of a sweep: env groups, flag parsing, and the expansion into trials.

A sweep is the cross product envs x methods x replay ratios x seeds, as in the paper's results (26 Atari games x
5-10 seeds x 6-12 methods x replay ratios 2/4/8). Each point is one `Trial`, which becomes one ordinary
`plastic train` run directory under `<sweep>/runs/`. With `--seeds-per-trial S`, the seeds of each (env, method,
replay ratio) are packed into `TrialGroup`s of up to S seeds, each trained by one `plastic train --seeds` process;
every seed keeps its own run directory, where it would be alone.

A method is `plastic train --method`'s `PRESET[+SWITCH...]` (`plastic.methods`): a preset (`base`, `plastic`,
`plastic-dagger`, ...) or a switch, optionally followed by switches to turn on top of it: `base+sam+crelu` runs
`plastic train --preset base --methods sam,crelu`, for ablations. The trial's directory is named by the method as
written.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from plastic.envs.domains import DOMAINS, split_env_id

# The named env groups. `plastic.envs` owns the lists; these copies are used only while it is not installed.
_ATARI_100K_GAMES = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout", "ChopperCommand",
    "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest", "UpNDown",
)  # fmt: skip
_MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
# The 11 DMC-M tasks (paper §4.1, after Hansen et al. 2022).
_DMC_MEDIUM_TASKS = (
    "acrobot-swingup", "cartpole-swingup_sparse", "cheetah-run", "finger-turn_easy", "finger-turn_hard", "hopper-hop",
    "quadruped-run", "quadruped-walk", "reacher-easy", "reacher-hard", "walker-run",
)  # fmt: skip

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _prefixed(domain: str, names) -> tuple[str, ...]:
    """Env ids `domain:name`; names that already carry a domain are kept as they are."""
    return tuple(name if ":" in name else f"{domain}:{name}" for name in names)


def env_groups() -> dict[str, tuple[str, ...]]:
    """The named env groups `--envs` accepts, as env ids: `atari100k`, `dmc-medium`, `minatar`."""
    try:
        from plastic.envs import ATARI_100K_GAMES, MINATAR_GAMES
    except ImportError:
        ATARI_100K_GAMES, MINATAR_GAMES = _ATARI_100K_GAMES, _MINATAR_GAMES
    try:
        from plastic.envs.dmc import DMC_MEDIUM_TASKS
    except ImportError:
        DMC_MEDIUM_TASKS = _DMC_MEDIUM_TASKS
    return {
        "atari100k": _prefixed("atari", ATARI_100K_GAMES),
        "dmc-medium": _prefixed("dmc", DMC_MEDIUM_TASKS),
        "minatar": _prefixed("minatar", MINATAR_GAMES),
    }


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_envs(text: str) -> list[str]:
    """`--envs`: a comma list of group names and env ids (`minatar:breakout`), expanded and de-duplicated in order."""
    groups = env_groups()
    envs: list[str] = []
    for item in _items(text):
        if item in groups:
            envs.extend(groups[item])
            continue
        try:
            _, name = split_env_id(item)
        except ValueError:
            name = ""
        if not _NAME.match(name):
            raise ValueError(
                f"--envs: unknown env group or env id {item!r}; groups: {', '.join(groups)}; "
                f"env ids are DOMAIN:NAME with DOMAIN one of {', '.join(DOMAINS)} (e.g. minatar:breakout)"
            )
        envs.append(item)
    return list(dict.fromkeys(envs))


def parse_methods(text: str) -> list[str]:
    """`--methods`: a comma list of `PRESET[+SWITCH...]`, each name checked against the presets and switches, as
    their spellings (`MethodSpec.spelling`: the trial ids). Two spellings of one run (`base+ln+sam`, `base+sam+ln`)
    are refused: the report would count the two as one method with twice the seeds."""
    from plastic.methods import parse_method_list

    seen: dict[str, str] = {}
    for spec in parse_method_list(text, "--methods"):
        if spec.label in seen:
            raise ValueError(f"--methods: {seen[spec.label]!r} and {spec.spelling!r} are the same method "
                             f"({spec.label}); give it once")
        seen[spec.label] = spec.spelling
    return list(seen.values())


def parse_int_list(text: str, flag: str, unique: bool = False) -> list[int]:
    """A comma list of integers and inclusive ranges: `0-4`, `2,4,8`, `0-2,7`. Repeats are dropped, or refused when
    `unique`."""
    values: list[int] = []
    for item in _items(text):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if match is None:
            raise ValueError(f"{flag}: {item!r} is not an integer or a range like 0-4")
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise ValueError(f"{flag}: empty range {item!r} (write the smaller number first)")
        values.extend(range(first, last + 1))
    distinct = list(dict.fromkeys(values))
    if unique and len(distinct) < len(values):
        repeated = sorted({v for v in values if values.count(v) > 1})
        raise ValueError(f"{flag}: {', '.join(map(str, repeated))} given more than once in {text!r}")
    return distinct


@dataclass(frozen=True)
class Trial:
    """One point of the grid: one `plastic train` run."""

    env: str
    method: str
    replay_ratio: int
    seed: int
    steps: int  # agent steps
    env_steps: int | None = None  # the --env-steps budget the run converts itself (None: the run gets --steps)

    @property
    def preset(self) -> str:
        return self.method.split("+")[0]

    @property
    def switches(self) -> list[str]:
        """Method switches turned on top of the preset (`plastic train --methods`)."""
        return self.method.split("+")[1:]

    @property
    def id(self) -> str:
        """The trial's path under `<sweep>/runs/`, unique within the sweep."""
        return f"{self.env.replace(':', '_')}/{self.method}/rr{self.replay_ratio}/seed{self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)


def default_replay_ratio(env: str) -> int:
    """The replay ratio `plastic train` uses for `env` when none is given (the config's domain default)."""
    from plastic.config import TrainConfig, resolve

    return resolve(TrainConfig(env=env)).replay_ratio


def expand_grid(
    envs: list[str], methods: list[str], replay_ratios: list[int] | None, seeds: list[int],
    steps: int | dict[str, int], env_steps: int | None = None,
) -> list[Trial]:
    """All trials of the grid. Seeds vary slowest, so a sweep stopped part-way holds whole seeds of every setting.

    `steps`: agent steps of every trial, or per env (an `--env-steps` budget converted with each task's action
    repeat, or the domains' default budgets); `env_steps` is recorded on each trial and passed to its run.
    `replay_ratios` None gives each env its domain's default (2 on Atari and MinAtar, 1 on DMC), as `plastic train`."""
    steps_of = steps if isinstance(steps, dict) else dict.fromkeys(envs, steps)
    if any(steps_of[env] <= 0 for env in envs):
        raise ValueError(f"--steps must be positive, got {steps}")
    if replay_ratios is not None and any(ratio <= 0 for ratio in replay_ratios):
        raise ValueError(f"--replay-ratio values must be positive, got {replay_ratios}")
    sizes = {"--envs": envs, "--methods": methods, "--replay-ratio": replay_ratios, "--seeds": seeds}
    empty = [flag for flag, values in sizes.items() if values is not None and not values]
    if empty:
        raise ValueError(f"empty grid: {', '.join(empty)} selects nothing")
    ratios = {env: replay_ratios if replay_ratios is not None else [default_replay_ratio(env)] for env in envs}
    return [
        Trial(env=env, method=method, replay_ratio=ratio, seed=seed, steps=steps_of[env], env_steps=env_steps)
        for seed in seeds
        for env in envs
        for method in methods
        for ratio in ratios[env]
    ]


@dataclass(frozen=True)
class TrialGroup:
    """Seeds of one (env, method, replay ratio) that one `plastic train --seeds` process trains together."""

    trials: tuple[Trial, ...]

    @property
    def seeds(self) -> list[int]:
        return [trial.seed for trial in self.trials]

    @property
    def id(self) -> str:
        """`<env>/<method>/rr<ratio>/seeds<a,b,...>`: the path of the group's log under `<sweep>/logs/`."""
        first = self.trials[0]
        return f"{first.id.rsplit('/', 1)[0]}/seeds{','.join(map(str, self.seeds))}"


def pack_trials(trials: list[Trial], seeds_per_trial: int) -> list[TrialGroup]:
    """The trials packed into groups of up to `seeds_per_trial` seeds of one (env, method, replay ratio), in the
    order the seeds come (`--seeds 0-4`, 2 per trial: {0, 1}, {2, 3}, {4}). Groups are ordered by their first trial,
    so seeds still vary slowest. The packing depends on the grid alone, never on what is finished: a group's members
    share checkpoints (`plastic train --resume` of one continues the others), so a group is always the same seeds."""
    if seeds_per_trial < 1:
        raise ValueError(f"--seeds-per-trial must be at least 1, got {seeds_per_trial}")
    settings: dict[tuple, list[Trial]] = {}
    for trial in trials:
        settings.setdefault((trial.env, trial.method, trial.replay_ratio), []).append(trial)
    position = {trial: index for index, trial in enumerate(trials)}
    groups = [TrialGroup(tuple(same[start:start + seeds_per_trial]))
              for same in settings.values() for start in range(0, len(same), seeds_per_trial)]
    return sorted(groups, key=lambda group: position[group.trials[0]])
