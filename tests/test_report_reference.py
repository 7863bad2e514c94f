"""The shipped reference data: Atari random/human scores and the paper's published numbers, checked against the paper."""

import numpy as np
import pytest

from plastic.report.reference import (
    ATARI_100K_GAMES,
    atari_game,
    atari_reference_scores,
    human_normalized_score,
    paper_ablation,
    paper_aggregates,
    paper_compute,
    paper_per_game,
)


def test_every_atari_100k_game_has_random_below_human():
    scores = atari_reference_scores()
    assert sorted(scores) == sorted(ATARI_100K_GAMES)
    for game, (random_score, human_score) in scores.items():
        assert random_score < human_score, game


@pytest.mark.parametrize(
    "game, random_score, human_score",
    [("Alien", 227.8, 7127.7), ("Pong", -20.7, 14.6), ("Freeway", 0.0, 29.6), ("CrazyClimber", 10780.5, 35829.4),
     ("PrivateEye", 24.9, 69571.3), ("Qbert", 163.9, 13455.0), ("RoadRunner", 11.5, 7845.0),
     ("Seaquest", 68.4, 42054.7), ("UpNDown", 533.4, 11693.2)],
)  # fmt: skip
def test_transcribed_reference_scores(game, random_score, human_score):
    assert atari_reference_scores()[game] == (random_score, human_score)


def test_human_normalized_score_by_hand():
    # Table 7: Pong random -20.7, human 14.6; Breakout 1.7 / 30.5.
    assert human_normalized_score(-20.7, "atari:Pong") == pytest.approx(0.0)
    assert human_normalized_score(14.6, "atari:Pong") == pytest.approx(1.0)
    assert human_normalized_score(-3.05, "atari:Pong") == pytest.approx((-3.05 + 20.7) / 35.3)
    assert human_normalized_score(16.1, "Breakout") == pytest.approx(14.4 / 28.8)
    np.testing.assert_allclose(human_normalized_score(np.array([1.7, 30.5]), "breakout"), [0.0, 1.0])


def test_game_names_are_matched_loosely_and_unknown_games_are_named():
    assert atari_game("atari:ms_pacman") == "MsPacman"
    assert atari_game("ALE/MsPacman-v5") == "MsPacman"
    assert atari_game("atari:UpNDown") == "UpNDown"
    with pytest.raises(ValueError, match="unknown Atari game 'atari:Zaxxon'"):
        atari_game("atari:Zaxxon")


def _table7(method):
    return {s.key: s.value for s in paper_per_game() if s.table == "table7" and s.method == method}


def _published(table, method, metric, replay_ratio=None):
    (score,) = [s for s in paper_aggregates() if s.table == table and s.method == method and s.key == metric and s.domain == "atari"
                and (replay_ratio is None or s.replay_ratio == replay_ratio)]  # fmt: skip
    return score


@pytest.mark.parametrize("method", ["Base", "SAM", "CReLU", "Reset", "PLASTIC"])
def test_table7_per_game_means_reproduce_the_published_mean_and_median(method):
    # The mean (and median) of per-game mean HNS equals the paper's Mean (Median): this checks the 26 transcribed
    # scores of each method and the random/human columns together. (The LN column is inconsistent in the paper.)
    per_game = _table7(method)
    hns = np.array([human_normalized_score(score, game) for game, score in per_game.items()])
    assert len(hns) == 26
    assert np.mean(hns) == pytest.approx(_published("table7", method, "mean").value, abs=6e-4)
    assert np.median(hns) == pytest.approx(_published("table7", method, "median").value, abs=6e-4)


def test_transcribed_paper_numbers():
    assert _table7("PLASTIC")["UpNDown"] == 66473.0
    assert _table7("Base")["Pong"] == -8.82
    iqm = _published("table1", "PLASTIC", "iqm")
    assert (iqm.value, iqm.ci_low, iqm.ci_high, iqm.domain) == (0.421, 0.388, 0.457, "atari")
    dmc = [s for s in paper_aggregates() if s.table == "table1" and s.domain == "dmc" and s.method == "Reset"]
    assert {s.key: s.value for s in dmc} == {"iqm": 514, "median": 491, "mean": 498}
    assert _published("table9", "PLASTIC†", "iqm", replay_ratio=8).value == 0.583
    walker = [s for s in paper_per_game() if s.table == "table10" and s.method == "PLASTIC" and s.key == "walker-run"]
    assert walker[0].value == 632.55
    rows = {(r.method, r.replay_ratio): r for r in paper_compute()}
    assert (rows["PLASTIC", 8].gpu_hours, rows["PLASTIC", 8].iqm) == (3.8, 0.571)
    assert rows["EfficientZero", None].iqm is None
    ablation = {row.switches: row.iqm for row in paper_ablation()}
    assert len(ablation) == 12
    assert ablation[frozenset()] == 0.258
    assert ablation[frozenset({"ln", "reset"})] == 0.396
    assert ablation[frozenset({"ln", "sam", "crelu", "reset"})] == 0.421
