"""Help-seeking metrics on a hand-built confusion table, and their plumbing
through the wrappers, the collector's episode records and `evaluate_policy`."""

import pytest

from rlvlm.envs import evaluate_policy
from rlvlm.envs.help_metrics import episode_score, help_episode_fields, help_metrics


def ep(missing, asked, answered=False, correct=None, mode=None, accuracy=None):
    return {"info_missing": missing, "asked": asked, "abstained": asked and not answered, "answered": answered,
            "correct": correct, "accuracy": accuracy, "degradation": mode if missing else None,
            "help_mode": "single_turn"}


# 4 missing: blank x2 both asked; occlude x2, one asked, one answered wrong.
# 6 clear: 1 asked, 4 answered right, 1 answered wrong.
TABLE = [
    ep(True, True, mode="blank"), ep(True, True, mode="blank"),
    ep(True, True, mode="occlude"), ep(True, False, True, False, mode="occlude"),
    ep(False, True),
    *[ep(False, False, True, True, accuracy=1.0) for _ in range(4)],
    ep(False, False, True, False),
]


def test_confusion_table_by_hand():
    m = help_metrics(TABLE)
    # asked = 4, of which 3 missing; missing = 4
    assert m["help/ask_precision"] == pytest.approx(3 / 4)
    assert m["help/ask_recall"] == pytest.approx(3 / 4)
    assert m["help/ask_f1"] == pytest.approx(0.75)  # 2 * .75 * .75 / 1.5
    assert m["help/false_ask_rate"] == pytest.approx(1 / 6)
    assert m["help/accuracy_clear"] == pytest.approx(4 / 6)
    assert m["help/accuracy_missing"] == 0.0
    assert m["help/coverage"] == pytest.approx(6 / 10)  # answered without asking: 1 + 5
    assert m["help/ask_rate"] == pytest.approx(0.4)
    # Φ_1: 4 right (+1 each), 2 wrong (-1 each), 4 abstained (0) -> 2/10
    assert m["help/phi_1"] == pytest.approx(0.2)
    # Φ_10: 4 - 20 = -16 over 10
    assert m["help/phi_10"] == pytest.approx(-1.6)
    assert m["help/per_mode"] == {"blank": {"episodes": 2, "ask_recall": 1.0, "accuracy": 0.0},
                                  "occlude": {"episodes": 2, "ask_recall": 0.5, "accuracy": 0.0}}


def test_soft_accuracy_and_invalid_replies_in_phi():
    assert episode_score(ep(False, False, True, True, accuracy=2 / 3), c=10) == pytest.approx(2 / 3)
    invalid = ep(False, False, answered=False, correct=None)  # neither answered nor abstained
    assert episode_score(invalid, c=10) == -10
    assert episode_score(ep(True, True), c=10) == 0.0


def test_no_help_keys_no_metrics():
    assert help_metrics([{"success": True, "return": 1.0}]) == {}
    assert help_episode_fields({"action_valid": True}) == {}


def test_perfect_asker_and_guesser_extremes():
    perfect = [ep(True, True, mode="blank"), ep(False, False, True, True, accuracy=1.0)]
    m = help_metrics(perfect)
    assert m["help/ask_f1"] == 1.0 and m["help/phi_10"] == pytest.approx(0.5)
    guesser = [ep(True, False, True, False, mode="blank"), ep(False, False, True, True, accuracy=1.0)]
    g = help_metrics(guesser)
    assert g["help/ask_f1"] == 0.0 and g["help/ask_precision"] == 0.0
    assert g["help/phi_10"] == pytest.approx((1 - 10) / 2)


@pytest.mark.parametrize("mode", ["single_turn", "multi_turn"])
def test_oracle_asks_exactly_when_missing(mode):
    """The asking oracle through the real wrappers: F1 1, no false asks, accuracy 1 on clear images."""
    r = evaluate_policy("rlvlm/VisualQA-v0", "oracle", episodes=40, seed=0, image_size=56,
                        missing_info=0.5, ask_for_help=mode)
    assert 5 < r["help/missing_episodes"] < 35
    assert r["help/ask_f1"] == 1.0 and r["help/false_ask_rate"] == 0.0
    assert r["help/accuracy_clear"] == 1.0
    # single-turn: missing episodes abstain (0); multi-turn: they are answered from the clean view (+1)
    expected_missing_acc = 1.0 if mode == "multi_turn" else 0.0
    assert r["help/accuracy_missing"] == expected_missing_acc
    assert set(r["help/per_mode"]) <= {"occlude", "blur", "crop", "blank", "drop"}
