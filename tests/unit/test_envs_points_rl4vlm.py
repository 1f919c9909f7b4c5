"""EZPoints / Points24 against the original RL4VLM gym-cards rules, hand-worked.

What the original does (RL4VLM/RL4VLM, gym-cards/gym_cards/envs/ezpoints.py
and points.py): each step first checks the formula length; with more than
5 (EZPoints) / 20 (Points24) entries the step returns -1 and ends the episode
whatever the action. A card that is not free appends a blank " " (reward
-1), so it takes a slot. EZPoints deals a first card uniform over 2..K and
the card that makes 12 with it. See PointsEnv's docstring for our two rules.
"""

import math
from collections import Counter
from fractions import Fraction

import gymnasium as gym
import pytest

import rlvlm  # noqa: F401  (registers the envs)
from rlvlm.errors import ConfigError
from tests.unit.test_envs_rules import act

SMALL = {"image_size": 32}
RULES = ("accepted", "rl4vlm")


def play(env, actions):
    """[(reward, terminated, truncated, info), ...]; stops at the episode's end."""
    out = []
    for a in actions:
        _, r, term, trunc, info = env.step(act(a))
        out.append((r, term, trunc, info))
        if term or trunc:
            break
    return out


def make(env_id="rlvlm/EZPoints-v0", **kwargs):
    return gym.make(env_id, **SMALL, **kwargs)


# ------------------------------------------------ (i) over-length formula ---
@pytest.mark.parametrize("length_rule", RULES)
def test_repro_over_length_formula_is_a_terminal_minus_one(length_rule):
    # Cards (6, 6), "6 + + + + 6": five tokens fit (max_formula_tokens=5); the
    # 6th action appends the 6th token and ends the episode: -1, terminated.
    # (The original returns 0 there and -1 on a 7th step, whatever its action.)
    env = make(length_rule=length_rule)
    env.reset(seed=0, options={"cards": [6, 6]})
    steps = play(env, "6 + + + + 6".split())
    assert len(steps) == 6
    assert [s[0] for s in steps] == [0, 0, 0, 0, 0, -1]
    assert [s[1] for s in steps] == [False] * 5 + [True]
    assert not any(s[2] for s in steps)  # never a truncation: nothing to bootstrap
    last = steps[-1][3]
    assert last["over_length"] and last["formula"] == "6++++6" and last["formula_length"] == 6
    assert last["episode_return"] == -1 and last["is_success"] is False
    # Stalling is no better than a wrong "=".
    env.reset(seed=0, options={"cards": [6, 6]})
    assert play(env, ["6", "*", "6", "="])[-1][3]["episode_return"] == -1


@pytest.mark.parametrize("length_rule", RULES)
def test_points24_over_length_formula_is_a_terminal_minus_one(length_rule):
    env = make("rlvlm/Points24-v0", length_rule=length_rule)
    env.reset(seed=0, options={"cards": ["A", "3", "4", "6"]})
    steps = play(env, ["("] * 25)
    assert len(steps) == 21  # 20 tokens fit, the 21st is one too many
    assert [s[0] for s in steps] == [0] * 20 + [-1]
    assert steps[-1][1] and not steps[-1][2]


def test_a_formula_that_exactly_fills_the_room_can_still_be_submitted():
    env = make(max_formula_tokens=3)
    env.reset(seed=0, options={"cards": [6, 6]})
    steps = play(env, ["6", "+", "6", "="])
    assert [s[0] for s in steps] == [0, 0, 0, 10]


# ---------------------------------------------- (ii) reused-card counting ---
@pytest.mark.parametrize(
    "length_rule, actions, rewards, lengths, end",
    [
        # accepted: a reused card is a -1 no-op and takes no slot; only max_steps
        # (2 x 5 = 10) ends the stall, as a truncation.
        ("accepted", ["2"] * 10, [0] + [-1] * 9, [1] * 10, "truncated"),
        # rl4vlm: each one takes a slot; the 6th slot overflows: its own -1 plus
        # the overflow's -1. The original: 0, -1 x 5, then -1 on a 7th step.
        ("rl4vlm", ["2"] * 10, [0, -1, -1, -1, -1, -2], [1, 2, 3, 4, 5, 6], "terminated"),
        # Room left for a solution after two rejected cards (5 slots: 2 _ _ * 6).
        ("rl4vlm", ["2", "2", "2", "*", "6", "="], [0, -1, -1, 0, 0, 10], [1, 2, 3, 4, 5, 5], "terminated"),
        ("accepted", ["2", "2", "2", "*", "6", "="], [0, -1, -1, 0, 0, 10], [1, 1, 1, 2, 3, 3], "terminated"),
        # ...but not after three: the 6 is the 6th slot.
        ("rl4vlm", ["2", "2", "2", "2", "*", "6", "="], [0, -1, -1, -1, 0, -1], [1, 2, 3, 4, 5, 6], "terminated"),
        ("accepted", ["2", "2", "2", "2", "*", "6", "="], [0, -1, -1, -1, 0, 0, 10], [1, 1, 1, 1, 2, 3, 3], "terminated"),
        # A number no card shows is rejected the same way.
        ("rl4vlm", ["7"] * 6, [-1] * 5 + [-2], [1, 2, 3, 4, 5, 6], "terminated"),
    ],
)
def test_ezpoints_rejected_card_counting(length_rule, actions, rewards, lengths, end):
    env = make(length_rule=length_rule)
    env.reset(seed=0, options={"cards": [2, 6]})
    steps = play(env, actions)
    assert [s[0] for s in steps] == rewards
    assert [s[3]["formula_length"] for s in steps] == lengths
    assert steps[-1][1] is (end == "terminated") and steps[-1][2] is (end == "truncated")
    assert all(not s[1] and not s[2] for s in steps[:-1])


@pytest.mark.parametrize(
    "length_rule, n_steps, last_reward, end",
    [("accepted", 40, -1, "truncated"), ("rl4vlm", 21, -2, "terminated")],
)
def test_points24_rejected_card_counting(length_rule, n_steps, last_reward, end):
    # "6" then the 6 again and again: 1 + 20 slots overflow at step 21 under
    # rl4vlm (the original: -1 on its 22nd step); under accepted the formula
    # stays "6" until max_steps = 2 x 20.
    env = make("rlvlm/Points24-v0", length_rule=length_rule)
    env.reset(seed=0, options={"cards": ["A", "3", "4", "6"]})
    steps = play(env, ["6"] * 50)
    assert len(steps) == n_steps
    assert [s[0] for s in steps] == [0] + [-1] * (n_steps - 2) + [last_reward]
    assert steps[-1][1] is (end == "terminated") and steps[-1][2] is (end == "truncated")
    assert steps[-1][3]["formula"] == "6"


def test_rl4vlm_unparseable_replies_take_no_slot():
    # They never reach the game (the original replaced them by a random action).
    env = make(length_rule="rl4vlm")
    env.reset(seed=0, options={"cards": [2, 6]})
    steps = [env.step("garbage")[1:] for _ in range(4)]
    assert [s[0] for s in steps] == [-1] * 4 and steps[-1][3]["formula_length"] == 0
    assert [s[0] for s in play(env, ["2", "*", "6", "="])] == [0, 0, 0, 10]


@pytest.mark.parametrize("length_rule, n_steps, end", [("accepted", 10, "truncated"), ("rl4vlm", 6, "terminated")])
def test_wrong_equals_noop_counts_as_a_rejected_move(length_rule, n_steps, end):
    env = make(length_rule=length_rule, wrong_equals_ends=False)
    env.reset(seed=0, options={"cards": [2, 6]})
    steps = play(env, ["="] * 12)
    assert len(steps) == n_steps and steps[-1][1] is (end == "terminated")


# ---------------------------------------------------- (iii) EZPoints deals ---
# deck: two cards of one 52-card deck, kept when solvable. Card counts by
# value: 1-9 four each, 10 sixteen (10 J Q K). Pairs: (2,10) 4 x 16 = 64,
# (2,6) (3,4) (3,9) (4,8) (5,7) 4 x 4 = 16 each, (6,6) C(4,2) = 6; 150 in all.
DECK_EZ = {(2, 10): Fraction(64, 150), (2, 6): Fraction(16, 150), (3, 4): Fraction(16, 150), (3, 9): Fraction(16, 150),
           (4, 8): Fraction(16, 150), (5, 7): Fraction(16, 150), (6, 6): Fraction(6, 150)}  # fmt: skip
# rl4vlm: first value v from ranks 2..K uniform (2-9 1/12 each, 10 4/12); the
# partner is 12 // v with probability 1/2 when v is 2, 3, 4 or 6, else 12 - v.
# (2,10): v=2 by "+" 1/24 + v=10 8/24; (2,6): v=2 "*" + v=6 "*" 2/24;
# (3,4): v=3 "*" + v=4 "*" 2/24; (3,9): v=3 "+" 1/24 + v=9 2/24;
# (4,8): v=4 "+" 1/24 + v=8 2/24; (5,7): v=5 2/24 + v=7 2/24; (6,6): v=6 "+" 1/24.
RL4VLM_EZ = {(2, 10): Fraction(9, 24), (2, 6): Fraction(2, 24), (3, 4): Fraction(2, 24), (3, 9): Fraction(3, 24),
             (4, 8): Fraction(3, 24), (5, 7): Fraction(4, 24), (6, 6): Fraction(1, 24)}  # fmt: skip
N_DEALS = 6000


def _tolerance(p: Fraction) -> float:
    # 4 standard errors of a frequency over N_DEALS independent deals
    # (<= 0.025 here): a correct dealer misses one hand with probability
    # ~6e-5 (~4e-4 for any of the seven); the seeds are fixed, so the test is
    # deterministic anyway. The two dealers differ by 8 SE on (2, 10) and
    # 12 SE on (5, 7), which the power check below asserts.
    return 4 * math.sqrt(p * (1 - p) / N_DEALS)


@pytest.mark.parametrize("deal_rule, expected, other", [("deck", DECK_EZ, RL4VLM_EZ), ("rl4vlm", RL4VLM_EZ, DECK_EZ)])
def test_ezpoints_deal_distribution(deal_rule, expected, other):
    assert sum(expected.values()) == 1
    # Power: the other dealer's weights would fail this test by a wide margin.
    assert max(abs(other[h] - p) / _tolerance(p) for h, p in expected.items()) > 2
    env = make(deal_rule=deal_rule)
    counts, aces = Counter(), 0
    for seed in range(N_DEALS):
        _, info = env.reset(seed=seed)
        counts[tuple(sorted(info["values"]))] += 1
        aces += "A" in info["cards"]
    assert set(counts) == set(expected)
    for hand, p in expected.items():
        assert abs(counts[hand] / N_DEALS - p) <= _tolerance(p), (hand, counts[hand] / N_DEALS, float(p))
    assert aces == 0  # no ace makes 12 with a card of at most 10


def test_rl4vlm_ezpoints_deal_shows_both_orders():
    env = make(deal_rule="rl4vlm")
    firsts_smaller = sum(v[0] < v[1] for v in (env.reset(seed=s)[1]["values"] for s in range(2000)))
    assert 0.4 < firsts_smaller / 2000 < 0.56  # 1/2 of the 23/24 hands without a pair: ~0.479


def test_points24_rl4vlm_deal_draws_independent_cards():
    # The original draws four independent ranks and suits, so a hand can hold
    # the same card twice (~11 % of raw deals); one deck never does.
    def repeats(rule):
        env = make("rlvlm/Points24-v0", deal_rule=rule)
        hands = [env.reset(seed=s)[1] for s in range(600)]
        return sum(len(set(zip(h["cards"], h["suits"]))) < 4 for h in hands)

    assert repeats("deck") == 0
    assert repeats("rl4vlm") > 20


# -------------------------------------------------------------- options ---
@pytest.mark.parametrize(
    "env_id, kwargs, words",
    [
        ("rlvlm/EZPoints-v0", {"length_rule": "rl4vml"}, ["length_rule", "accepted, rl4vlm", "did you mean"]),
        ("rlvlm/Points24-v0", {"deal_rule": "original"}, ["deal_rule", "deck, rl4vlm"]),
        ("rlvlm/EZPoints-v0", {"deal_rule": "rl4vlm", "target": 10}, ["deal_rule", "target=10", "fix"]),
        ("rlvlm/EZPoints-v0", {"deal_rule": "rl4vlm", "face_cards_as_10": False}, ["deal_rule", "face_cards_as_10"]),
    ],
)
def test_bad_rule_options_are_one_line_config_errors(env_id, kwargs, words):
    with pytest.raises(ConfigError) as err:
        make(env_id, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_rules_are_reachable_from_the_train_config_and_the_eval_cli():
    from rlvlm.config import load_config
    from rlvlm.envs.runner import evaluate_from_args
    from rlvlm.train.config import TrainConfig
    from rlvlm.train.rl import make_env_factory

    overrides = ["env.kwargs.length_rule=rl4vlm", "env.kwargs.deal_rule=rl4vlm", "env.image_size=32"]
    cfg = load_config(TrainConfig, "ezpoints", overrides)
    env = make_env_factory(cfg)().unwrapped
    assert (env.length_rule, env.deal_rule) == ("rl4vlm", "rl4vlm")
    summary = evaluate_from_args(["env=rlvlm/EZPoints-v0", "policy=oracle", "episodes=5",
                                  "env_kwargs.length_rule=rl4vlm", "env_kwargs.deal_rule=rl4vlm",
                                  "env_kwargs.image_size=32"])  # fmt: skip
    assert summary["success_rate"] == 1.0
    with pytest.raises(ConfigError, match="length_rule"):
        evaluate_from_args(["env=rlvlm/EZPoints-v0", "episodes=1", "env_kwargs.length_rule=original"])
