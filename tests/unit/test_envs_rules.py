"""Hand-worked rule tables for the gym-cards envs."""

import json

import gymnasium as gym
import pytest

import rlvlm  # noqa: F401  (registers the envs)
from rlvlm.envs.blackjack import basic_strategy, hand_value
from rlvlm.errors import ConfigError, RlvlmError

SMALL = {"image_size": 48}


def act(a: str) -> str:
    return json.dumps({"thoughts": "test", "action": a})


def play(env, actions):
    """[(reward, terminated, truncated, info), ...] for a list of actions."""
    out = []
    for a in actions:
        _, r, term, trunc, info = env.step(act(a))
        out.append((r, term, trunc, info))
    return out


# ------------------------------------------------------------- NumberLine ---
@pytest.mark.parametrize(
    "target, current, actions, rewards, end",
    [
        (3, 1, ["+", "+"], [0, 1], "terminated"),  # closer, then reach
        (3, 1, ["-", "+", "+", "+"], [-1, 0, 0, 1], "terminated"),  # away costs -1
        (0, 1, ["-"], [1], "terminated"),
        (5, 4, ["+"], [1], "terminated"),
        (2, 0, ["-", "+", "+"], [-1, 0, 1], "terminated"),  # clamped at 0: no progress
        (0, 5, ["+", "-"], [-1, 0], None),  # clamped at max_position
    ],
)
def test_numberline_rules(target, current, actions, rewards, end):
    env = gym.make("rlvlm/NumberLine-v0", **SMALL)
    env.reset(seed=0, options={"target": target, "current": current})
    steps = play(env, actions)
    assert [s[0] for s in steps] == rewards
    assert steps[-1][1] == (end == "terminated")
    assert steps[-1][3]["current"] == (target if end else steps[-1][3]["current"])


def test_numberline_truncates_after_two_max_position_steps():
    env = gym.make("rlvlm/NumberLine-v0", max_position=3, **SMALL)
    env.reset(seed=0, options={"target": 3, "current": 0})
    steps = play(env, ["-"] * 6)  # never reaches: 2 x 3 = 6 steps
    assert [s[2] for s in steps] == [False] * 5 + [True]
    assert all(s[0] == -1 for s in steps)
    assert steps[-1][3]["is_success"] is False and steps[-1][3]["episode_return"] == -6


def test_numberline_start_never_equals_target():
    env = gym.make("rlvlm/NumberLine-v0", **SMALL)
    for seed in range(200):
        _, info = env.reset(seed=seed)
        assert info["target"] != info["current"]
        assert 0 <= info["target"] <= 5 and 0 <= info["current"] <= 5


def test_invalid_action_is_a_penalised_noop_never_random():
    env = gym.make("rlvlm/NumberLine-v0", invalid_penalty=-0.5, **SMALL)
    env.reset(seed=0, options={"target": 3, "current": 1})
    for text in ["garbage", '{"action": "*"}', '{"action": "+", "action": "-"}']:
        _, r, term, trunc, info = env.step(text)
        assert (r, term, info["action_valid"], info["action"], info["current"]) == (-0.5, False, False, None, 1)
        assert info["parse_error"]


# ------------------------------------------------------------------ Points ---
@pytest.mark.parametrize(
    "cards, actions, rewards, done",
    [
        (["2", "6"], ["2", "*", "6", "="], [0, 0, 0, 10], True),
        (["Q", "2"], ["10", "+", "2", "="], [0, 0, 0, 10], True),  # Q counts 10
        (["3", "4"], ["3", "+", "4", "="], [0, 0, 0, -1], True),  # 7 != 12
        (["2", "6"], ["2", "*", "="], [0, 0, -1], True),  # incomplete formula
        (["6", "6"], ["6", "+", "6", "="], [0, 0, 0, 10], True),  # a pair: both used
        (["2", "6"], ["2", "2"], [0, -1], False),  # reusing a card
        (["2", "6"], ["5"], [-1], False),  # not a card
        (["2", "6"], ["12", "="], [None, -1], True),  # "12" is not an action
        (["A", "2"], ["1", "2", "="], [0, 0, -1], True),  # "1","2" is not the number 12
    ],
)
def test_ezpoints_rules(cards, actions, rewards, done):
    env = gym.make("rlvlm/EZPoints-v0", **SMALL)
    env.reset(seed=0, options={"cards": cards})
    steps = play(env, actions)
    got = [s[0] if s[3]["action_valid"] else None for s in steps]
    assert got == rewards
    assert steps[-1][1] is done


def test_ezpoints_illegal_card_is_a_noop_with_a_reason():
    env = gym.make("rlvlm/EZPoints-v0", **SMALL)
    env.reset(seed=0, options={"cards": ["2", "6"]})
    (r, _, _, info), = play(env, ["7"])
    assert r == -1 and info["action_valid"] and not info["action_legal"]
    assert info["formula"] == "" and "7" in info["illegal_reason"]


def test_ezpoints_too_long_formula_ends_as_a_failure():
    env = gym.make("rlvlm/EZPoints-v0", **SMALL)
    env.reset(seed=0, options={"cards": ["2", "6"]})
    steps = play(env, ["+", "+", "+", "+", "+", "+"])
    assert [s[0] for s in steps] == [0] * 5 + [-1]  # the 6th token is past 5: charged like a wrong "="
    assert [s[1] for s in steps] == [False] * 5 + [True]  # terminal: PPO must not bootstrap it
    assert not any(s[2] for s in steps)
    assert steps[-1][3]["over_length"] and steps[-1][3]["is_success"] is False


def test_ezpoints_deals_are_always_solvable():
    from rlvlm.envs.formula import is_solvable

    env = gym.make("rlvlm/EZPoints-v0", **SMALL)
    for seed in range(200):
        _, info = env.reset(seed=seed)
        assert is_solvable(info["values"], 12, "+*")


@pytest.mark.parametrize(
    "cards, tokens, reward",
    [
        (["A", "3", "4", "6"], "6 / ( 1 - 3 / 4 ) =", 10),
        (["3", "3", "8", "8"], "8 / ( 3 - 8 / 3 ) =", 10),
        (["K", "J", "4", "A"], "10 + 10 + 4 * 1 =", 10),
        (["2", "3", "4", "5"], "2 * 3 * 4 =", -1),  # 5 unused
        (["2", "3", "4", "5"], "5 / ( 4 - 4 ) =", None),  # second 4 is illegal: checked below
        (["2", "2", "6", "6"], "6 / ( 2 - 2 ) + 6 =", -1),  # division by zero: just wrong
    ],
)
def test_points24_rules(cards, tokens, reward):
    env = gym.make("rlvlm/Points24-v0", **SMALL)
    env.reset(seed=0, options={"cards": cards})
    steps = play(env, tokens.split())
    if reward is None:
        assert any(not s[3]["action_legal"] for s in steps)
        return
    assert steps[-1][0] == reward and steps[-1][1]
    assert all(s[0] == 0 for s in steps[:-1])


def test_points24_division_by_zero_is_reported_not_raised():
    env = gym.make("rlvlm/Points24-v0", **SMALL)
    env.reset(seed=0, options={"cards": ["2", "2", "6", "6"]})
    *_, (r, term, _, info) = play(env, "6 / ( 2 - 2 ) + 6 =".split())
    assert r == -1 and term and "zero" in info["formula_error"]


def test_points24_solvable_by_default_and_any_deal_optional():
    from rlvlm.envs.formula import is_solvable

    env = gym.make("rlvlm/Points24-v0", **SMALL)
    assert all(is_solvable(env.reset(seed=s)[1]["values"]) for s in range(300))
    env = gym.make("rlvlm/Points24-v0", solvable_only=False, **SMALL)
    unsolvable = sum(not is_solvable(env.reset(seed=s)[1]["values"]) for s in range(1000))
    assert 150 < unsolvable < 400  # the original's ~27 % of deals have no solution


def test_points24_syntax_check_rejects_dead_ends():
    env = gym.make("rlvlm/Points24-v0", syntax_check=True, **SMALL)
    env.reset(seed=0, options={"cards": ["A", "3", "4", "6"]})
    (r, _, _, info), = play(env, ["+"])
    assert r == -1 and not info["action_legal"] and info["formula"] == ""
    env = gym.make("rlvlm/Points24-v0", **SMALL)  # default: appended, as in the original
    env.reset(seed=0, options={"cards": ["A", "3", "4", "6"]})
    (r, _, _, info), = play(env, ["+"])
    assert r == 0 and info["formula"] == "+"


def test_points_face_cards_as_numbers_option():
    env = gym.make("rlvlm/Points24-v0", face_cards_as_10=False, **SMALL)
    _, info = env.reset(seed=0, options={"cards": ["K", "Q", "A", "A"]})
    assert info["values"] == [13, 12, 1, 1]
    assert "13" in env.unwrapped.legal_actions
    steps = play(env, "13 + 12 - 1 * 1 =".split())
    assert steps[-1][0] == 10


def test_wrong_equals_can_be_a_noop():
    env = gym.make("rlvlm/EZPoints-v0", wrong_equals_ends=False, **SMALL)
    env.reset(seed=0, options={"cards": ["2", "6"]})
    steps = play(env, ["2", "=", "*", "6", "="])
    assert [s[0] for s in steps] == [0, -1, 0, 0, 10]
    assert steps[-1][3]["is_success"]  # return 9 > 0


# --------------------------------------------------------------- Blackjack ---
@pytest.mark.parametrize(
    "ranks, total, soft",
    [(["A", "6"], 17, True), (["A", "6", "10"], 17, False), (["A", "A"], 12, True), (["K", "Q"], 20, False),
     (["A", "A", "9"], 21, True), (["5", "6", "A", "K"], 22, False)],
)  # fmt: skip
def test_hand_value(ranks, total, soft):
    assert hand_value(ranks) == (total, soft)


@pytest.mark.parametrize(
    "player, dealer, deck, actions, reward, outcome",
    [
        (["10", "7"], ["10", "6"], ["5"], ["stand"], -1, "loss"),  # dealer 16 draws 5: 21 beats 17
        (["10", "9"], ["10", "6"], ["K"], ["stand"], 1, "win"),  # dealer busts
        (["10", "7"], ["10", "8"], [], ["stand"], -1, "loss"),
        (["10", "8"], ["10", "8"], [], ["stand"], 0, "draw"),
        (["10", "6"], ["10", "7"], ["K"], ["hit"], -1, "bust"),
        (["5", "6"], ["10", "7"], ["K"], ["hit", "stand"], 1, "win"),  # 21 vs 17
        (["A", "K"], ["10", "9"], [], ["stand"], 1, "win"),
        (["10", "7"], ["A", "6"], [], ["stand"], 0, "draw"),  # dealer stands on soft 17
    ],
)
def test_blackjack_rules(player, dealer, deck, actions, reward, outcome):
    env = gym.make("rlvlm/Blackjack-v0", **SMALL)
    env.reset(seed=0, options={"player": player, "dealer": dealer, "deck": deck})
    steps = play(env, actions)
    assert steps[-1][0] == reward and steps[-1][1]
    assert steps[-1][3]["outcome"] == outcome
    assert len(steps[-1][3]["dealer"]) >= 2  # revealed at the end


def test_blackjack_dealer_hits_soft_17_option_and_natural_reward():
    env = gym.make("rlvlm/Blackjack-v0", dealer_hits_soft_17=True, **SMALL)
    env.reset(seed=0, options={"player": ["10", "7"], "dealer": ["A", "6"], "deck": ["2"]})
    (r, _, _, info), = play(env, ["stand"])
    assert r == -1 and info["dealer_sum"] == 19
    env = gym.make("rlvlm/Blackjack-v0", natural_reward=1.5, **SMALL)
    env.reset(seed=0, options={"player": ["A", "K"], "dealer": ["10", "9"]})
    assert play(env, ["stand"])[0][0] == 1.5


def test_blackjack_hides_the_hole_card_until_the_end():
    env = gym.make("rlvlm/Blackjack-v0", **SMALL)
    _, info = env.reset(seed=0, options={"player": ["10", "2"], "dealer": ["9", "7"], "deck": ["3"]})
    assert info["dealer"] == ["9"] and info["dealer_up"] == "9" and info["dealer_sum"] == 9
    (_, _, _, info), = play(env, ["hit"])
    assert info["dealer"] == ["9"] and info["player"] == ["10", "2", "3"]


@pytest.mark.parametrize(
    "total, soft, up, action",
    [(16, False, 10, "hit"), (16, False, 6, "stand"), (12, False, 3, "hit"), (12, False, 4, "stand"),
     (13, False, 2, "stand"), (17, False, 11, "stand"), (11, False, 6, "hit"), (18, True, 9, "hit"),
     (18, True, 8, "stand"), (17, True, 6, "hit"), (19, True, 11, "stand")],
)  # fmt: skip
def test_basic_strategy_table(total, soft, up, action):
    assert basic_strategy(total, soft, up) == action


# ------------------------------------------------------------- all envs ---
def test_step_after_the_end_is_an_error():
    env = gym.make("rlvlm/NumberLine-v0", **SMALL)
    env.reset(seed=0, options={"target": 1, "current": 0})
    play(env, ["+"])
    with pytest.raises(RlvlmError, match="reset"):
        env.step(act("+"))


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("rlvlm/NumberLine-v0", {"prompt_style": "cto"}),
        ("rlvlm/NumberLine-v0", {"max_position": 0}),
        ("rlvlm/NumberLine-v0", {"image_size": 8}),
        ("rlvlm/EZPoints-v0", {"correct_reward": "ten"}),
        ("rlvlm/Points24-v0", {"target": 10**7}),
        ("rlvlm/Blackjack-v0", {"render_mode": "ansi"}),
        ("rlvlm/VisualQA-v0", {"scoring": "fuzzy"}),
        ("rlvlm/VisualQA-v0", {"task": "countng"}),
    ],
)
@pytest.mark.filterwarnings("ignore:.*render_mode")
def test_bad_config_is_a_clear_config_error(env_id, kwargs):
    with pytest.raises(ConfigError) as err:
        gym.make(env_id, **kwargs)
    assert "\n" not in str(err.value) and str(next(iter(kwargs))) in str(err.value).replace("task=", "task")


def test_bad_reset_options_are_config_errors():
    env = gym.make("rlvlm/EZPoints-v0", **SMALL)
    with pytest.raises(ConfigError):
        env.reset(options={"cards": ["2"]})
    with pytest.raises(ConfigError):
        env.reset(options={"cards": ["2", "Z"]})
    env = gym.make("rlvlm/NumberLine-v0", **SMALL)
    with pytest.raises(ConfigError):
        env.reset(options={"target": 2, "current": 2})
