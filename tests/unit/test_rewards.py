"""Reward functions and CompositeReward: values worked out by hand."""

import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import gymnasium as gym
import pytest

import rlvlm  # noqa: F401  (registers the envs)
from rlvlm.envs import AskForHelp, MissingVisualInfo
from rlvlm.errors import ConfigError, RlvlmError
from rlvlm.rewards import (
    REWARDS,
    CompositeReward,
    accuracy,
    env_reward,
    format_valid,
    help_confidence,
    help_phi,
    help_ternary,
    length_target,
    overlong,
    seconds,
    tokens,
)


@dataclass
class Sample:
    """Stand-in for rlvlm.models.batching.Sample with the fields rewards read.

    The real class lives in a module that imports torch (~2 s), which would
    dominate this file's run time; rewards never touch the tensors.
    """

    completion_ids: list = field(default_factory=list)
    text: str = ""
    gen_seconds: float = 0.0
    truncated: bool = False

    @property
    def num_tokens(self) -> int:
        return len(self.completion_ids)


def S(n: int = 0, secs: float = 0.0) -> Sample:
    return Sample(completion_ids=[7] * n, gen_seconds=secs)


QA = {"answers": ["cat", "cat", "dog"], "action_valid": True}


def step(help_action, *, missing=False, revealed=False, abstained=False, mode="single_turn", **kw):
    """A help-wrapper step info with the keys the help rewards read."""
    return dict(QA, help_action=help_action, info_missing=missing, revealed=revealed,
                abstained=abstained, help_mode=mode, **kw)  # fmt: skip


# ------------------------------------------------------------ task rewards ---
def test_accuracy_exact_and_soft():
    exact, soft = accuracy(), accuracy("soft")
    # "cat" matches 2 of 3 references: exact 1, soft min(2/3, 1) = 2/3.
    assert exact(S(), dict(QA, prediction="Cat.")) == 1.0
    assert soft(S(), dict(QA, prediction="cat")) == pytest.approx(2 / 3)
    # "dog" matches 1 of 3: soft 1/3; "bird" matches none.
    assert soft(S(), dict(QA, prediction="dog")) == pytest.approx(1 / 3)
    assert exact(S(), dict(QA, prediction="bird")) == 0.0


def test_accuracy_skips_non_qa_and_ask_steps_and_scores_no_answer_zero():
    fn = accuracy()
    assert fn(S(), {"action_valid": True}) is None  # no references: not a QA env
    assert fn(S(), dict(QA, prediction="cat", help_action="ask")) is None  # an ask answers nothing
    assert fn(S(), dict(QA, prediction=None)) == 0.0
    assert fn(S(), dict(QA)) == 0.0  # no prediction key at all


def test_format_env_tokens_seconds():
    assert format_valid()(S(), {"action_valid": False}) == 0.0
    assert format_valid()(S(), {"action_valid": True}) == 1.0
    assert format_valid()(S(), {}) == 1.0  # envs that do not report validity
    assert env_reward()(S(), {"env_reward": -0.5}) == -0.5
    with pytest.raises(RlvlmError, match="env_reward"):
        env_reward()(S(), {})
    assert tokens()(S(13), {}) == 13.0
    assert seconds()(S(2, secs=1.25), {}) == 1.25


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, 0.0),
        (15, 0.0),  # L = max - cache = 15: last length before the window
        (16, -0.2),  # (15 - 16) / 5
        (18, -0.6),  # (15 - 18) / 5
        (20, -1.0),  # (15 - 20) / 5: the ramp meets the hard penalty
        (21, -1.0),  # beyond max_tokens
        (100, -1.0),
    ],
)
def test_overlong_window(n, expected):
    assert overlong(max_tokens=20, cache=5)(S(n), {}) == pytest.approx(expected)


def test_overlong_cache_equal_to_max():
    fn = overlong(max_tokens=4, cache=4)  # window starts at 0: L=1 -> (0 - 1) / 4
    assert fn(S(0), {}) == 0.0 and fn(S(1), {}) == pytest.approx(-0.25) and fn(S(5), {}) == -1.0


@pytest.mark.parametrize("n, expected", [(10, 0.0), (15, -0.5), (4, -0.6), (30, -2.0)])
def test_length_target(n, expected):
    # target 10: -|15-10|/10 = -0.5, -|4-10|/10 = -0.6, -|30-10|/10 = -2.
    assert length_target(10)(S(n), {}) == pytest.approx(expected)


# ------------------------------------------------------------ help rewards ---
def test_help_ternary_single_turn():
    fn = help_ternary()
    assert fn(S(), step("ask", missing=True, abstained=True)) == 0.0  # ask_missing
    assert fn(S(), step("ask", missing=False, abstained=True)) == pytest.approx(-0.2)  # ask_clear
    assert fn(S(), step("answer", correct=True, accuracy=1.0)) == 1.0
    assert fn(S(), step("answer", correct=False, accuracy=0.0)) == -1.0
    assert fn(S(), step("invalid", correct=False, accuracy=0.0)) == -1.0  # not an abstention
    assert fn(S(), step("none")) is None  # the reset info
    assert fn(S(), dict(QA, correct=True)) is None  # no help wrapper


def test_help_ternary_uses_accuracy_when_correct_is_missing():
    fn = help_ternary()
    assert fn(S(), step("answer", accuracy=1 / 3)) == 1.0  # accuracy > 0 counts as correct
    assert fn(S(), step("answer", accuracy=0.0)) == -1.0
    assert fn(S(), step("answer")) is None  # nothing to score by


def test_ask_needed_key_overrides_the_fallback():
    fn = help_ternary(ask_clear=-0.5, ask_missing=0.25)
    assert fn(S(), step("ask", missing=True, ask_needed=False)) == -0.5
    assert fn(S(), step("ask", missing=False, ask_needed=True)) == 0.25


def test_help_multi_turn_sequences():
    fn = help_ternary(ask_cost=0.1)
    # Degraded: the first ask reveals (revealed=True in its own info, not an
    # abstention): 0 - 0.1 = -0.1; the answer on the clear image: +1.
    ask = step("ask", missing=True, revealed=True, mode="multi_turn")
    assert fn(S(), ask) == pytest.approx(-0.1)
    assert fn(S(), step("answer", missing=True, revealed=True, mode="multi_turn", correct=True, accuracy=1.0)) == 1.0
    # Asking again after the reveal abstains: the view was clear, -0.2 - 0.1.
    again = step("ask", missing=True, revealed=True, abstained=True, mode="multi_turn")
    assert fn(S(), again) == pytest.approx(-0.3)
    # Asking on a clear image, then answering wrong: -0.2 - 0.1, then -1.
    assert fn(S(), step("ask", revealed=True, mode="multi_turn")) == pytest.approx(-0.3)
    assert fn(S(), step("answer", revealed=True, mode="multi_turn", correct=False, accuracy=0.0)) == -1.0


def test_help_phi():
    fn = help_phi(c=2.0)
    assert fn(S(), step("answer", correct=True, accuracy=1.0)) == 1.0
    assert fn(S(), step("answer", correct=True, accuracy=1 / 3)) == pytest.approx(1 / 3)  # Φ pays the accuracy
    assert fn(S(), step("answer", correct=True)) == 1.0  # no accuracy reported: full credit
    assert fn(S(), step("answer", correct=False, accuracy=0.0)) == -2.0  # -c
    assert fn(S(), step("invalid", correct=False)) == -2.0
    assert fn(S(), step("ask", missing=True, abstained=True)) == 0.0
    assert fn(S(), step("ask", abstained=True)) == pytest.approx(-0.2)
    assert help_phi(ask_clear=0.0)(S(), step("ask", abstained=True)) == 0.0


@pytest.mark.parametrize("t, wrong", [(0.75, -3.0), (0.5, -1.0), (0.0, 0.0), (0.9, -9.0)])
def test_help_confidence(t, wrong):
    # wrong = -t / (1 - t): 0.75/0.25 = 3, 0.5/0.5 = 1, 0/1 = 0, 0.9/0.1 = 9.
    fn = help_confidence(t=t)
    assert fn(S(), step("answer", correct=False, accuracy=0.0)) == pytest.approx(wrong)
    assert fn(S(), step("answer", correct=True, accuracy=1 / 3)) == 1.0
    assert fn(S(), step("ask", missing=True, abstained=True)) == 0.0


def test_answer_missing_scores_every_answer_on_a_degraded_view():
    fn = help_ternary(ask_clear=-1.0, answer_missing=-1.0)
    # A right answer on a degraded view is a lucky guess: -1, not +1; a wrong one -1 too.
    assert fn(S(), step("answer", missing=True, degraded=True, correct=True, accuracy=1.0)) == -1.0
    assert fn(S(), step("answer", missing=True, degraded=True, correct=False, accuracy=0.0)) == -1.0
    # On a clear view, and after a multi-turn reveal (degraded False), answers are graded as usual.
    assert fn(S(), step("answer", missing=False, degraded=False, correct=True, accuracy=1.0)) == 1.0
    assert fn(S(), step("answer", missing=True, revealed=True, degraded=False, mode="multi_turn",
                        correct=True, accuracy=1.0)) == 1.0
    # Without the `degraded` key: missing and not yet revealed.
    assert fn(S(), step("answer", missing=True, correct=True, accuracy=1.0)) == -1.0
    assert fn(S(), step("answer", missing=True, revealed=True, correct=True, accuracy=1.0)) == 1.0
    # Asks are unchanged; help_phi and help_confidence take it too.
    assert fn(S(), step("ask", missing=True, abstained=True)) == 0.0
    assert help_phi(answer_missing=-2.0)(S(), step("answer", missing=True, correct=True, accuracy=0.5)) == -2.0
    assert help_confidence(t=0.75, answer_missing=-3.0)(S(), step("answer", missing=True, correct=True)) == -3.0
    assert help_ternary()(S(), step("answer", missing=True, degraded=True, correct=True, accuracy=1.0)) == 1.0


def test_answer_missing_on_the_real_wrappers():
    """A right answer on an image MissingVisualInfo degraded pays +1 by default, answer_missing with it."""
    env = AskForHelp(MissingVisualInfo(gym.make("rlvlm/VisualQA-v0", task="digits", image_size=32), p=1.0))
    _, info = env.reset(seed=3)
    _, r, _, _, info = env.step(_answer(info["answers"][0]))
    assert r == 1.0 and info["degraded"]
    assert help_ternary()(S(), info) == 1.0
    assert help_ternary(answer_missing=-1.0)(S(), info) == -1.0


def _answer(text):
    return json.dumps({"thoughts": "t", "answer": text})


@pytest.mark.parametrize("mode", ["single_turn", "multi_turn"])
@pytest.mark.parametrize("p", [0.0, 1.0])
@pytest.mark.parametrize("script", [("ask", "right"), ("right",), ("wrong",), ("ask", "wrong")])
def test_help_ternary_matches_the_wrapper_rewards(mode, p, script):
    """On the real wrappers (no `ask_needed` key yet: the fallback rule), the
    per-step reward equals AskForHelp's own default rewards."""
    env = AskForHelp(MissingVisualInfo(gym.make("rlvlm/VisualQA-v0", task="digits", image_size=32), p=p), mode=mode)
    fn = help_ternary(ask_cost=0.1 if mode == "multi_turn" else 0.0)
    _, info = env.reset(seed=3)
    right = info["answers"][0]
    for move in script:
        reply = _answer({"ask": "ask", "right": right, "wrong": "zebra"}[move])
        _, r, term, trunc, info = env.step(reply)
        assert fn(S(), info) == pytest.approx(r)
        if term or trunc:
            break


# ------------------------------------------------------- factory errors ---
@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: accuracy("fuzzy"), "scoring='fuzzy'"),
        (lambda: overlong(max_tokens=0, cache=1), "max_tokens=0"),
        (lambda: overlong(max_tokens=20, cache=0), "cache=0"),
        (lambda: overlong(max_tokens=20, cache=21), "cache=21"),
        (lambda: overlong(max_tokens=20.0, cache=5), "max_tokens=20.0"),
        (lambda: overlong(max_tokens=20, cache=True), "cache=True"),
        (lambda: length_target(0), "target=0"),
        (lambda: length_target(float("nan")), "target=nan"),
        (lambda: help_phi(c=0), "c=0"),
        (lambda: help_confidence(t=1.0), "t=1"),
        (lambda: help_confidence(t=-0.1), "t=-0.1"),
        (lambda: help_ternary(ask_cost=-1), "ask_cost=-1"),
        (lambda: help_ternary(ask_clear=float("inf")), "ask_clear=inf"),
        (lambda: help_phi(ask_missing="0"), "ask_missing='0'"),
        (lambda: help_ternary(answer_missing=0.0), "answer_missing=0"),
        (lambda: help_ternary(answer_missing="x"), "answer_missing='x'"),
    ],
)
def test_factory_errors_name_the_parameter(make, field):
    with pytest.raises(ConfigError) as err:
        make()
    assert str(err.value).startswith(field)


# ------------------------------------------------------------- composite ---
WEIGHTS = {"env": 0.5, "accuracy": 1.0, "format": 0.1, "tokens": -0.01, "overlong": 1.0}
OPTIONS = {"overlong": {"max_tokens": 20, "cache": 5}}


def test_registry_names():
    assert set(REWARDS) == {
        "env", "accuracy", "accuracy_soft", "format", "tokens", "seconds", "overlong",
        "length_target", "help_ternary", "help_phi", "help_confidence",
        "reward_model", "heuristic", "heuristic_train", "heuristic_heldout",
    }  # fmt: skip
    required = ("overlong", "length_target", "reward_model", "heuristic", "heuristic_train", "heuristic_heldout")
    for name, factory in REWARDS.items():
        if name not in required:  # those need a parameter (a path, scorer weights, a token budget)
            assert callable(factory())


def test_composite_total_and_parts():
    reward = CompositeReward(WEIGHTS, OPTIONS)
    info = dict(QA, prediction="cat")
    total, parts = reward(S(18), info, env_reward=1.0)
    # env 1, accuracy 1, format 1, tokens 18, overlong (15 - 18)/5 = -0.6:
    # 0.5·1 + 1·1 + 0.1·1 - 0.01·18 + 1·(-0.6) = 0.5 + 1 + 0.1 - 0.18 - 0.6 = 0.82
    assert parts == pytest.approx({"env": 1.0, "accuracy": 1.0, "format": 1.0, "tokens": 18.0, "overlong": -0.6})
    assert total == pytest.approx(0.82)
    assert "env_reward" not in info  # the caller's info is left alone


def test_composite_score_means_skip_components_that_do_not_apply():
    reward = CompositeReward(WEIGHTS, OPTIONS)
    tr = [
        SimpleNamespace(sample=S(18), info=dict(QA, prediction="cat"), reward=1.0),  # total 0.82 (above)
        # An ask step: accuracy is None. env -0.2, format 1, tokens 10, overlong 0:
        # 0.5·(-0.2) + 0.1·1 - 0.01·10 + 1·0 = -0.1 + 0.1 - 0.1 = -0.1
        SimpleNamespace(sample=S(10), info=dict(QA, prediction=None, help_action="ask"), reward=-0.2),
    ]
    totals, metrics = reward.score(tr)
    assert totals == pytest.approx([0.82, -0.1])
    assert metrics == pytest.approx({
        "reward/env": 0.4,  # (1 - 0.2) / 2
        "reward/accuracy": 1.0,  # the first transition only, not (1 + 0) / 2
        "reward/format": 1.0,
        "reward/tokens": 14.0,  # (18 + 10) / 2
        "reward/overlong": -0.3,  # (-0.6 + 0) / 2
        "reward/total": 0.36,  # (0.82 - 0.1) / 2
    })  # fmt: skip
    assert reward.score([]) == ([], {})


def test_composite_leaves_out_components_that_never_applied():
    reward = CompositeReward({"env": 1.0, "help_ternary": 1.0})
    totals, metrics = reward.score([SimpleNamespace(sample=S(), info=dict(QA), reward=0.5)])
    assert totals == [0.5] and metrics == {"reward/env": 0.5, "reward/total": 0.5}


def test_composite_custom_callable_and_zero_weight():
    reward = CompositeReward({"mine": 2.0, "seconds": 0.0}, custom={"mine": lambda s, i: len(s.text)})
    total, parts = reward(Sample(text="abc", gen_seconds=4.0), {})
    assert total == 6.0 and parts == {"mine": 3.0, "seconds": 4.0}  # 2·3 + 0·4


def test_composite_from_config_and_soft_accuracy():
    reward = CompositeReward.from_config({"accuracy_soft": 3.0})
    total, parts = reward(S(), dict(QA, prediction="dog"))
    assert parts == {"accuracy_soft": pytest.approx(1 / 3)} and total == pytest.approx(1.0)  # 3 · 1/3


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "x"])
def test_composite_rejects_bad_component_values(bad):
    reward = CompositeReward({"mine": 1.0}, custom={"mine": lambda s, i: bad})
    with pytest.raises(RlvlmError, match="'mine'"):
        reward(S(), {})


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(weights={}), "reward.weights is empty"),
        (dict(weights={"acuracy": 1.0}), "reward.weights.acuracy is not a reward component (did you mean: accuracy"),
        (dict(weights={"env": float("nan")}), "reward.weights.env=nan must be a finite number"),
        (dict(weights={"env": True}), "reward.weights.env=True"),
        (dict(weights={"env": 1.0}, options={"overlong": {"max_tokens": 5, "cache": 1}}),
         "reward.options.overlong is set but"),
        (dict(weights={"overlong": 1.0}, options={"overlong": {"max_tokens": 5, "cach": 1}}),
         "reward.options.overlong.cach is not"),
        (dict(weights={"overlong": 1.0}), "reward.options.overlong: missing a required argument"),
        (dict(weights={"overlong": 1.0}, options={"overlong": {"max_tokens": 0, "cache": 1}}),
         "reward.options.overlong.max_tokens=0 must be > 0"),
        (dict(weights={"help_phi": 1.0}, options={"help_phi": {"c": -1}}), "reward.options.help_phi.c=-1 must be > 0"),
        (dict(weights={"overlong": 1.0}, options={"overlong": 5}), "reward.options.overlong=5 must be a mapping"),
        (dict(weights={"accuracy": 1.0}, custom={"accuracy": len}), "custom reward 'accuracy' shadows"),
        (dict(weights={"mine": 1.0}, custom={"mine": 3}), "custom reward 'mine' is a int"),
        (dict(weights={"env": 1.0}, custom={"mine": len}), "custom reward 'mine' has no weight"),
        (dict(weights={"mine": 1.0}, options={"mine": {}}, custom={"mine": len}), "reward.options.mine: custom"),
        (dict(weights=[("env", 1.0)]), "reward.weights is a list"),
    ],
)  # fmt: skip
def test_composite_config_errors(kwargs, expected):
    with pytest.raises(ConfigError) as err:
        CompositeReward(**kwargs)
    assert expected in str(err.value)


def test_unknown_option_lists_the_accepted_parameters():
    with pytest.raises(ConfigError) as err:
        CompositeReward({"overlong": 1.0}, {"overlong": {"max_tokens": 5, "cach": 1}})
    msg = str(err.value)
    assert "(did you mean: cache?)" in msg and msg.endswith("accepted parameters: max_tokens, cache")
    assert "valid: env, accuracy" in str(pytest.raises(ConfigError, CompositeReward, {"nope": 1.0}).value)


def test_env_component_needs_the_env_reward():
    with pytest.raises(RlvlmError, match="env_reward"):
        CompositeReward({"env": 1.0})(S(), {})
    assert math.isclose(CompositeReward({"env": -2.0})(S(), {}, 0.25)[0], -0.5)
