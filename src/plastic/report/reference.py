"""Reference data shipped with the package: Atari random/human scores and the paper's published numbers.

Files under `reference/` (transcribed from the appendix and §4 tables of the paper; see `docs/report.md`):
- `atari_reference_scores.csv`: random and human scores of the 26 Atari-100k games (paper Table 7). The paper's
  Table 7 prints Qbert, RoadRunner, Seaquest and PrivateEye in that order while its Random/Human columns follow
  the alphabetical order (PrivateEye, Qbert, RoadRunner, Seaquest), so those four rows are misaligned in print. We
  ship the standard values (e.g. PrivateEye 24.9 / 69571.3); with them the per-game means of Table 7 reproduce the
  paper's published Mean HNS (0.476 Base, 0.933 PLASTIC), with the printed rows they do not.
- `paper_per_game.csv`: raw per-game scores of Tables 7, 8, 9 (Atari) and 10 (DMC), long format.
- `paper_aggregates.csv`: IQM / median / mean / optimality gap of Tables 1 (with 95% CIs), 7, 8, 9, 10.
- `paper_ablation.csv`: Table 4 (IQM per on/off combination of LN, SAM, CReLU, Reset). The extracted text lost the
  check marks of the tenth row (0.411); it is SAM + Reset, the only pair the other eleven rows leave out.
- `paper_compute.csv`: Table 2 (parameters, replay ratio, GPU hours per run, aggregates).

Method names follow the paper ("PLASTIC†" is the cheap LN + Reset (+ Shrink & Perturb) variant).
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from importlib import resources

ATARI_100K_GAMES = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout", "ChopperCommand",
    "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest", "UpNDown",
)  # fmt: skip


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("plastic.report").joinpath("reference", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _float_or_none(text: str) -> float | None:
    return float(text) if text.strip() else None


def _int_or_none(text: str) -> int | None:
    return int(text) if text.strip() else None


@functools.cache
def atari_reference_scores() -> dict[str, tuple[float, float]]:
    """Game -> (random score, human score), for the 26 Atari-100k games."""
    return {row["game"]: (float(row["random"]), float(row["human"])) for row in _read_csv("atari_reference_scores.csv")}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def atari_game(name: str) -> str:
    """The canonical game name for `name` ("atari:Pong", "Pong", "ms_pacman", "ALE/MsPacman-v5" all work).

    Raises ValueError naming the game and listing the known ones when it is not one of the 26 games.
    """
    game = name.split(":", 1)[1] if name.lower().startswith("atari:") else name
    game = re.sub(r"^ALE/|-v\d+$|NoFrameskip|Deterministic", "", game)
    by_key = {_squash(known): known for known in atari_reference_scores()}
    if _squash(game) not in by_key:
        raise ValueError(
            f"unknown Atari game {name!r} for human-normalized scores; known games: {', '.join(ATARI_100K_GAMES)}"
        )
    return by_key[_squash(game)]


def human_normalized_score(score, game: str):
    """(score - random) / (human - random) for one Atari game (paper §4.1); works on floats and numpy arrays."""
    random_score, human_score = atari_reference_scores()[atari_game(game)]
    return (score - random_score) / (human_score - random_score)


@dataclass(frozen=True)
class PaperScore:
    """One published per-task score or aggregate."""

    table: str  # "table1", "table7", ...
    domain: str  # "atari" or "dmc"
    method: str  # as the paper names it: "Base", "SAM", "LN", "CReLU", "Reset", "PLASTIC", "PLASTIC†", ...
    replay_ratio: int | None  # None where the paper gives none (model-based methods, DMC)
    key: str  # the task (per-game rows) or the metric ("iqm", "median", "mean", "optimality_gap")
    value: float | None  # None where the paper prints "n/a"
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def label(self) -> str:
        """Display name, with the replay ratio where the paper gives one beside other ratios."""
        return self.method if self.replay_ratio in (None, 2) else f"{self.method}@rr{self.replay_ratio}"


@functools.cache
def paper_per_game() -> tuple[PaperScore, ...]:
    """Per-task raw scores of Tables 7, 8, 9 (Atari) and 10 (DMC)."""
    return tuple(
        PaperScore(r["table"], r["domain"], r["method"], _int_or_none(r["replay_ratio"]), r["task"],
                   _float_or_none(r["score"]))
        for r in _read_csv("paper_per_game.csv")
    )  # fmt: skip


@functools.cache
def paper_aggregates() -> tuple[PaperScore, ...]:
    """Aggregates of Tables 1 (with 95% CIs), 7, 8, 9 and 10."""
    return tuple(
        PaperScore(r["table"], r["domain"], r["method"], _int_or_none(r["replay_ratio"]), r["metric"],
                   float(r["value"]), _float_or_none(r["ci_low"]), _float_or_none(r["ci_high"]))
        for r in _read_csv("paper_aggregates.csv")
    )  # fmt: skip


@dataclass(frozen=True)
class PaperAblation:
    """One row of Table 4: which of LN, SAM, CReLU, Reset are on, and the Atari-100k IQM with its 95% CI."""

    switches: frozenset[str]  # subset of {"ln", "sam", "crelu", "reset"}
    iqm: float
    ci_low: float
    ci_high: float


ABLATION_SWITCHES = ("ln", "sam", "crelu", "reset")


@functools.cache
def paper_ablation() -> tuple[PaperAblation, ...]:
    """Table 4, in the paper's row order."""
    return tuple(
        PaperAblation(frozenset(s for s in ABLATION_SWITCHES if r[s] == "1"), float(r["iqm"]), float(r["ci_low"]),
                      float(r["ci_high"]))
        for r in _read_csv("paper_ablation.csv")
    )  # fmt: skip


@dataclass(frozen=True)
class PaperCompute:
    """One row of Table 2: a method at one replay ratio, its size, GPU hours per run and aggregates."""

    method: str
    kind: str  # "model-based" or "model-free"
    search: bool
    params_m: float
    replay_ratio: int | None
    gpu_hours: float
    iqm: float | None
    median: float | None
    mean: float | None
    optimality_gap: float | None


@functools.cache
def paper_compute() -> tuple[PaperCompute, ...]:
    """Table 2, in the paper's row order."""
    return tuple(
        PaperCompute(r["method"], r["type"], r["search"] == "yes", float(r["params_m"]),
                     _int_or_none(r["replay_ratio"]), float(r["gpu_hours"]), _float_or_none(r["iqm"]),
                     _float_or_none(r["median"]), _float_or_none(r["mean"]), _float_or_none(r["optimality_gap"]))
        for r in _read_csv("paper_compute.csv")
    )  # fmt: skip
