"""Loading results for the report: run directories and score CSVs -> per-run final scores and learning curves.

A run directory is one written by `plastic train` (found recursively); it counts once `result.json` exists. A score
CSV has the columns `method,env,seed,score` (raw returns) and optionally `step` (rows then form learning curves and
the final score of a run is its row with the largest step), `replay_ratio` and `wall_time_s`.

Scores are put on the paper's scale by `normalized_score`: human-normalized on Atari (§4.1), raw return on DMC and
MinAtar. `score_matrices` arranges them as one (runs, tasks) matrix per method, the input of `aggregates`.
Problems in the input raise `ValueError` with a one-line message naming the file (and line) and the bad value.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plastic.envs.domains import DOMAINS, split_env_id
from plastic.report.reference import atari_game, human_normalized_score

CSV_REQUIRED_COLUMNS = ("method", "env", "seed", "score")
CSV_OPTIONAL_COLUMNS = ("step", "replay_ratio", "wall_time_s")

# metrics.jsonl names, in order of preference, for the sample-efficiency curve.
RETURN_METRICS = ("eval/return_mean", "charts/episodic_return")
HESSIAN_METRIC = "probes/hessian_max_eigenvalue"
ACTIVE_UNITS_METRIC = "probes/active_unit_fraction/all/units"


@dataclass(frozen=True)
class RunScore:
    """The final raw score of one run (one method, task and seed)."""

    method: str  # the display label runs are grouped by
    env: str  # "atari:Pong", "dmc:cheetah-run", "minatar:breakout"
    seed: str
    score: float  # raw return (mean evaluation return of the finished run)
    replay_ratio: int | None = None
    switches: frozenset[str] | None = None  # plasticity switches on ("ln", "sam", "crelu", "reset", ...), if known
    wall_time_s: float | None = None
    random_score: float | None = None  # a uniformly random policy's score under the same protocol, if recorded
    source: str = ""  # where it came from, for messages
    run_dir: Path | None = None

    @property
    def domain(self) -> str:
        return domain_of(self.env)


@dataclass
class Curve:
    """One run's values of one metric over training steps."""

    method: str
    env: str
    seed: str
    replay_ratio: int | None
    metric: str
    steps: np.ndarray
    values: np.ndarray


@dataclass
class Results:
    """Everything loaded from the paths given to `plastic report`."""

    runs: list[RunScore] = field(default_factory=list)
    csv_curves: list[Curve] = field(default_factory=list)  # from `step` columns of score CSVs
    unfinished: list[Path] = field(default_factory=list)  # run directories without result.json


def domain_of(env: str) -> str:
    """"atari", "dmc" or "minatar" from an env id such as "atari:Pong"; ValueError if it has no known prefix."""
    return split_env_id(env)[0]


def canonical_env(env: str) -> str:
    """The env id with the Atari game spelled as in the reference table ("atari:ms_pacman" -> "atari:MsPacman")."""
    return f"atari:{atari_game(env)}" if DOMAINS[domain_of(env)].human_normalized else env


def normalized_score(score, env: str):
    """The score on the paper's scale: human-normalized on Atari, the raw return elsewhere."""
    return human_normalized_score(score, env) if DOMAINS[domain_of(env)].human_normalized else score


def _finite(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} is {number}, not a finite number")
    return number


def find_run_dirs(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(finished, unfinished) run directories under `paths`, sorted. A run directory holds result.json (finished)
    or metrics.jsonl / config.json without result.json (unfinished)."""
    finished, unfinished = set(), set()
    for root in paths:
        for marker in ("result.json", "metrics.jsonl", "config.json"):
            for found in root.rglob(marker):
                (finished if (found.parent / "result.json").is_file() else unfinished).add(found.parent)
    return sorted(finished), sorted(unfinished)


def load_run(run_dir: Path) -> RunScore:
    """The final score of a finished run directory, from its result.json."""
    path = run_dir / "result.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read it as JSON ({error})") from None
    if not isinstance(result, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for key in ("env", "method"):
        if not isinstance(result.get(key), str) or not result[key]:
            raise ValueError(f"{path}: missing or empty {key!r}")
    if result.get("eval_mean") is not None:
        score = _finite(result["eval_mean"], f"{path}: eval_mean")
    elif result.get("eval_returns"):
        score = float(np.mean([_finite(r, f"{path}: eval_returns entry") for r in result["eval_returns"]]))
    else:
        raise ValueError(f"{path}: has neither eval_mean nor eval_returns, so the run has no final score")
    try:
        env = canonical_env(result["env"])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    replay_ratio = result.get("replay_ratio")
    wall_time = result.get("wall_time_s")
    switches = result.get("methods")
    random_score = result.get("random_score")
    return RunScore(
        method=result["method"],
        env=env,
        seed=str(result.get("seed", run_dir.name)),
        score=score,
        replay_ratio=int(replay_ratio) if replay_ratio is not None else None,
        switches=frozenset(str(s).lower() for s in switches) if isinstance(switches, list) else None,
        wall_time_s=_finite(wall_time, f"{path}: wall_time_s") if wall_time is not None else None,
        random_score=_finite(random_score, f"{path}: random_score") if random_score is not None else None,
        source=str(run_dir),
        run_dir=run_dir,
    )


def load_score_csv(path: Path) -> tuple[list[RunScore], list[Curve]]:
    """Final scores (and, with a `step` column, learning curves) from a score CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            missing = [name for name in CSV_REQUIRED_COLUMNS if name not in header]
            if missing:
                raise ValueError(
                    f"{path}: missing column(s) {', '.join(missing)}; a score CSV needs "
                    f"{','.join(CSV_REQUIRED_COLUMNS)} (optional: {', '.join(CSV_OPTIONAL_COLUMNS)})"
                )
            rows = [({k.strip(): (v or "").strip() for k, v in row.items() if k}, reader.line_num) for row in reader]
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV file ({error})") from None
    if not rows:
        raise ValueError(f"{path}: has a header but no score rows")

    has_step = "step" in header
    groups: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    extras: dict[tuple, tuple[float | None, int]] = {}
    for row, line in rows:
        where = f"{path} line {line}:"
        for name in ("method", "env", "seed"):
            if not row.get(name):
                raise ValueError(f"{where} empty {name}")
        try:
            env = canonical_env(row["env"])
        except ValueError as error:
            raise ValueError(f"{where} {error}") from None
        score = _finite(row["score"], f"{where} score")
        step = _finite(row["step"], f"{where} step") if has_step else 0.0
        replay_ratio = int(_finite(row["replay_ratio"], f"{where} replay_ratio")) if row.get("replay_ratio") else None
        wall_time = _finite(row["wall_time_s"], f"{where} wall_time_s") if row.get("wall_time_s") else None
        key = (row["method"], env, row["seed"], replay_ratio)
        if not has_step and key in groups:
            raise ValueError(f"{where} duplicate score for method {key[0]}, env {env}, seed {key[2]}")
        groups[key].append((step, score))
        extras[key] = (wall_time, line)

    runs, curves = [], []
    for key, points in groups.items():
        method, env, seed, replay_ratio = key
        points.sort()
        steps = np.array([p[0] for p in points])
        values = np.array([p[1] for p in points])
        wall_time, line = extras[key]
        runs.append(RunScore(method, env, seed, float(values[-1]), replay_ratio, None, wall_time, f"{path}:{line}"))
        if has_step:
            curves.append(Curve(method, env, seed, replay_ratio, "return", steps, values))
    return runs, curves


def load_results(paths: Sequence[Path]) -> Results:
    """Runs from every run directory under the given directories and every given `.csv` file."""
    results = Results()
    directories = []
    for path in paths:
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        if path.is_dir():
            directories.append(path)
        elif path.suffix.lower() == ".csv":
            runs, curves = load_score_csv(path)
            results.runs.extend(runs)
            results.csv_curves.extend(curves)
        else:
            raise ValueError(f"{path} is neither a directory of runs nor a .csv score file")
    finished, results.unfinished = find_run_dirs(directories)
    results.runs.extend(load_run(run_dir) for run_dir in finished)
    if not results.runs:
        raise ValueError(f"no finished runs (result.json) or score rows found in {', '.join(map(str, paths))}")
    return results


def method_key(run: RunScore, mixed_replay_ratios: bool) -> str:
    """The name a run is reported under: its method label, plus "@rr<N>" when the runs mix replay ratios."""
    if mixed_replay_ratios:
        return f"{run.method}@rr{run.replay_ratio}" if run.replay_ratio is not None else f"{run.method}@rr?"
    return run.method


def group_by_method(runs: Sequence[RunScore]) -> dict[str, list[RunScore]]:
    """Runs grouped under their method key (see `method_key`), in order of first appearance."""
    mixed = len({run.replay_ratio for run in runs}) > 1
    groups: dict[str, list[RunScore]] = {}
    for run in runs:
        groups.setdefault(method_key(run, mixed), []).append(run)
    return groups


def check_single_domain(runs: Sequence[RunScore]) -> str:
    """The one domain all runs belong to; ValueError if they mix benchmarks."""
    domains = sorted({run.domain for run in runs})
    if len(domains) > 1:
        raise ValueError(f"the runs mix domains {', '.join(domains)}; report one benchmark at a time")
    return domains[0]


def common_runs(groups: dict[str, list[RunScore]]) -> tuple[dict[str, list[RunScore]], list[RunScore]]:
    """The largest balanced comparison inside an unfinished grid, and the runs it leaves out.

    Kept: the tasks every method has; on each, the seeds every method has there; then on every task the `n` lowest
    of those seeds, `n` the smallest such count over the tasks (the stratified bootstrap needs the same number of
    runs per task). Tasks without a seed common to all methods are dropped. ValueError if nothing is left.
    """
    seeds_of = {name: defaultdict(set) for name in groups}
    for name, runs in groups.items():
        for run in runs:
            seeds_of[name][run.env].add(run.seed)
    tasks = set.intersection(*(set(seeds) for seeds in seeds_of.values()))
    shared = {task: set.intersection(*(seeds_of[name][task] for name in groups)) for task in tasks}
    shared = {task: seeds for task, seeds in shared.items() if seeds}
    if not shared:
        raise ValueError(f"no task and seed is shared by every method ({', '.join(groups)}): nothing to compare")
    count = min(len(seeds) for seeds in shared.values())
    keep = {task: set(sorted(seeds, key=_seed_order)[:count]) for task, seeds in shared.items()}
    kept = {name: [run for run in runs if run.seed in keep.get(run.env, ())] for name, runs in groups.items()}
    left_out = [run for runs in groups.values() for run in runs if run.seed not in keep.get(run.env, ())]
    return kept, left_out


def _seed_order(seed: str) -> tuple[int, int | str]:
    return (0, int(seed)) if seed.lstrip("-").isdigit() else (1, seed)


def score_matrices(groups: dict[str, list[RunScore]]) -> tuple[list[str], dict[str, np.ndarray]]:
    """(tasks, method -> (runs, tasks) matrix of normalized scores).

    Every method must cover the same tasks with the same number of runs on each task, as the stratified bootstrap
    resamples runs within tasks; otherwise ValueError says which method and task differ.
    """
    tasks_of = {name: sorted({run.env for run in runs}) for name, runs in groups.items()}
    first = next(iter(groups))
    for name, tasks in tasks_of.items():
        if tasks != tasks_of[first]:
            extra = sorted(set(tasks) - set(tasks_of[first]))
            lacking = sorted(set(tasks_of[first]) - set(tasks))
            detail = "; ".join(
                part for part in (f"only it has {', '.join(extra)}" if extra else "",
                                  f"it lacks {', '.join(lacking)}" if lacking else "") if part
            )  # fmt: skip
            raise ValueError(f"methods {first!r} and {name!r} cover different tasks ({detail}); compare like with like "
                             "(--common-runs reports the tasks and seeds every method has)")
    tasks = tasks_of[first]
    matrices = {}
    for name, runs in groups.items():
        per_task = defaultdict(list)
        for run in sorted(runs, key=lambda r: r.seed):
            per_task[run.env].append(float(normalized_score(run.score, run.env)))
        counts = {task: len(per_task[task]) for task in tasks}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{task}: {count}" for task, count in counts.items())
            raise ValueError(f"method {name!r} has different numbers of runs per task ({listed}); the stratified "
                             "bootstrap needs the same number of seeds on every task")  # fmt: skip
        matrices[name] = np.array([per_task[task] for task in tasks]).T
    return tasks, matrices


def read_metrics(
    run_dir: Path, names: Sequence[str], seen: set[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (steps, values) for each of `names` found in the run's metrics.jsonl (unreadable lines skipped:
    a run still writing may have a partial last line). Every metric name in the file is added to `seen`, if given."""
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
                step = float(record["step"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if seen is not None:
                seen.update(key for key in record if key not in ("step", "time_s"))
            for name in names:
                value = record.get(name)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    points[name].append((step, float(value)))
    return {name: (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) for name, pts in points.items()}
