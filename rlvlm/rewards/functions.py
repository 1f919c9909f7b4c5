"""Reward functions: factories that return `fn(sample, info) -> float | None`.

`sample` is an `rlvlm.models.batching.Sample` (only `.text`, `.num_tokens`,
`.gen_seconds` and `.truncated` are read); `info` is the env's step info.
A function returns None when it does not apply to the step (e.g. accuracy on
an ask-for-help step), and the composite then leaves it out of the total and
of its per-component mean. Costs (`tokens`, `seconds`) are returned as
positive numbers: the composite gives them a negative weight.

Factories validate their parameters and raise `ConfigError` with a message
that starts with the parameter name ("max_tokens=0 must be > 0; ..."), so
`CompositeReward` can prefix it with the config path
("reward.options.overlong.").

This module deliberately imports neither torch nor the model code: rewards
are plain Python on floats and strings, cheap to import and to test.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable

from rlvlm.errors import ConfigError, RlvlmError
from rlvlm.tasks.answers import vqa_accuracy

RewardFn = Callable[..., "float | None"]

SCORINGS = ("exact", "soft")


# ------------------------------------------------------------ checks ---
def _number(name: str, value) -> float:
    # bool is a Real, but `cache=True` is a typo, never a number.
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    return float(value)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an integer (a token count); fix: pass e.g. {name}=512")
    if value <= 0:
        raise ConfigError(f"{name}={value} must be > 0")
    return value


# ------------------------------------------------------- task rewards ---
def accuracy(scoring: str = "exact") -> RewardFn:
    """Answer accuracy: `vqa_accuracy(info["prediction"], info["answers"], scoring)`.

    exact: 1 if the normalised prediction matches any reference, else 0;
    soft:  min(#matching references / 3, 1), the VQA score.
    None on steps without references (not a QA env) and on ask-for-help
    steps, which answer nothing; 0 when there is no valid prediction.
    """
    if scoring not in SCORINGS:
        raise ConfigError(f"scoring={scoring!r} is not one of {', '.join(SCORINGS)}")

    def accuracy_reward(sample, info) -> float | None:
        if "answers" not in info or info.get("help_action") == "ask":
            return None
        if info.get("prediction") is None:
            return 0.0
        return vqa_accuracy(info["prediction"], info["answers"], scoring)

    return accuracy_reward


def format_valid() -> RewardFn:
    """1 if the env parsed the reply as a valid action (info["action_valid"]), else 0.

    Envs that do not report validity are taken as valid.
    """

    def format_reward(sample, info) -> float:
        return 1.0 if info.get("action_valid", True) else 0.0

    return format_reward


def env_reward() -> RewardFn:
    """The env's own step reward, which `CompositeReward` puts in info["env_reward"]."""

    def env_reward_fn(sample, info) -> float:
        if "env_reward" not in info:
            raise RlvlmError(
                "the 'env' reward needs info['env_reward']; fix: call it through CompositeReward, "
                "which passes the env's reward in"
            )
        return float(info["env_reward"])

    return env_reward_fn


# ------------------------------------------------- length and cost ---
def tokens() -> RewardFn:
    """L = number of completion tokens (a cost: give it a negative weight)."""

    def tokens_reward(sample, info) -> float:
        return float(sample.num_tokens)

    return tokens_reward


def seconds() -> RewardFn:
    """Wall-clock seconds the completion took to generate (a cost)."""

    def seconds_reward(sample, info) -> float:
        return float(sample.gen_seconds)

    return seconds_reward


def overlong(max_tokens: int, cache: int) -> RewardFn:
    """DAPO soft overlong punishment (Yu et al., 2025) on L = sample.num_tokens.

    With the soft window [max_tokens - cache, max_tokens]:
        R(L) = 0                                   if L <= max_tokens - cache,
               (max_tokens - cache - L) / cache    if max_tokens - cache < L <= max_tokens,
               -1                                  if L > max_tokens.
    The penalty ramps linearly from 0 to -1 across the window, so the policy
    learns to stop before the hard limit instead of seeing a cliff there.
    Requires 0 < cache <= max_tokens.
    """
    max_tokens = _positive_int("max_tokens", max_tokens)
    cache = _positive_int("cache", cache)
    if cache > max_tokens:
        raise ConfigError(f"cache={cache} must be <= max_tokens={max_tokens}; fix: shrink the soft window")
    start = max_tokens - cache

    def overlong_reward(sample, info) -> float:
        n = sample.num_tokens
        if n <= start:
            return 0.0
        if n <= max_tokens:
            return (start - n) / cache
        return -1.0

    return overlong_reward


def length_target(target: int | float) -> RewardFn:
    """L1-style length control (Aggarwal & Welleck, 2025): R(L) = -|L - target| / target.

    Dividing by the target keeps the term O(1) whatever the target, so one
    weight works for short and long budgets; it is 0 exactly on target.
    """
    target = _number("target", target)
    if target <= 0:
        raise ConfigError(f"target={target:g} must be > 0 (a token count)")

    def length_target_reward(sample, info) -> float:
        return -abs(sample.num_tokens - target) / target

    return length_target_reward


# ------------------------------------------------------ help-seeking ---
def _ask_was_needed(info) -> bool:
    """Was the view still degraded when the model asked?

    The wrapper's `ask_needed` key says so directly. Without it, mirror
    `AskForHelp._ask`: an ask helps only when info was missing and not yet
    revealed. A multi-turn *first* ask reports revealed=True (the reveal is
    its result) but does not end the episode, whereas a repeat ask after the
    reveal is an abstention; that tells the two apart.
    """
    if "ask_needed" in info:
        return bool(info["ask_needed"])
    if not info.get("info_missing", False):
        return False
    if not info.get("revealed", False):
        return True
    return info.get("help_mode") == "multi_turn" and not info.get("abstained", False)


def _answered_blind(info) -> bool:
    """Was the answer given on a view that lacked the information?

    `degraded` (MissingVisualInfo) is True while this episode's degradation
    still applies, i.e. until an ask revealed the clean view; without it,
    info was missing and not yet revealed.
    """
    if "degraded" in info:
        return bool(info["degraded"])
    return bool(info.get("info_missing", False)) and not info.get("revealed", False)


def _help_reward(
    wrong: float, ask_clear: float, ask_missing: float, ask_cost: float, answer_missing: float | None = None,
    *, soft: bool = False
) -> RewardFn:
    """Per-step help-seeking reward shared by the help_* factories.

        ask     -> (ask_missing if the view was degraded else ask_clear) - ask_cost
        answer  -> answer_missing if given (not None) and the view was degraded,
                   else the correct value if correct, else `wrong`
        invalid -> `wrong` (a malformed reply is a failed answer, not an abstention)
        none / no help_action -> None
    The correct value is 1, or the step's accuracy when `soft` (Φ_c).
    "correct" comes from info["correct"], else from accuracy > 0.
    """

    def help_reward(sample, info) -> float | None:
        action = info.get("help_action")
        if action == "ask":
            return (ask_missing if _ask_was_needed(info) else ask_clear) - ask_cost
        if action == "invalid":
            return wrong
        if action != "answer":
            return None
        if answer_missing is not None and _answered_blind(info):
            return answer_missing
        acc = info.get("accuracy")
        correct = info.get("correct")
        if correct is None:
            if acc is None:
                return None  # an env that reports neither cannot be scored
            correct = acc > 0
        if not correct:
            return wrong
        return (1.0 if acc is None else float(acc)) if soft else 1.0

    return help_reward


def _ask_params(ask_clear, ask_missing, ask_cost, answer_missing=None) -> tuple[float, float, float, float | None]:
    ask_clear, ask_missing = _number("ask_clear", ask_clear), _number("ask_missing", ask_missing)
    ask_cost = _number("ask_cost", ask_cost)
    if ask_cost < 0:
        raise ConfigError(f"ask_cost={ask_cost:g} must be >= 0 (it is subtracted from every ask)")
    if answer_missing is not None:
        answer_missing = _number("answer_missing", answer_missing)
        if answer_missing >= ask_missing:
            raise ConfigError(f"answer_missing={answer_missing:g} must be < ask_missing={ask_missing:g}: otherwise "
                              "guessing on a view that lacks the answer pays at least as much as asking; "
                              "fix: e.g. answer_missing=-1, or leave it unset to grade such answers as right or wrong")
    return ask_clear, ask_missing, ask_cost, answer_missing


def help_ternary(ask_clear: float = -0.2, ask_missing: float = 0.0, ask_cost: float = 0.0,
                 answer_missing: float | None = None) -> RewardFn:
    """TruthRL-style ternary reward (2025): +1 correct, -1 wrong or invalid, and for an ask
    `ask_missing` (0) when the image lacked the information, `ask_clear` (-0.2)
    when it did not, minus `ask_cost`.

    Abstaining (0) beats guessing whenever P(correct) < 1/2; the small
    ask_clear penalty stops the policy from asking on every clear image.
    `answer_missing` (unset: graded like any answer) scores every answer given
    on a view that lacked the information, right or not: a right guess there
    is luck, and paying it +1 tells a GRPO group that answering pays where
    only asking should (with 8 guesses at P(right) 0.17, 3 groups in 4 hold
    one such +1).
    """
    return _help_reward(-1.0, *_ask_params(ask_clear, ask_missing, ask_cost, answer_missing))


def help_phi(c: float = 1.0, ask_clear: float = -0.2, ask_missing: float = 0.0, ask_cost: float = 0.0,
             answer_missing: float | None = None) -> RewardFn:
    """Effective reliability Φ_c (Whitehead et al., 2022) as a per-step reward:

        Φ_c = acc   if answered and acc > 0,
              -c    if answered and wrong (or invalid),
              0     if abstained.
    Asks (and `answer_missing`) are scored as in `help_ternary` (ask_missing / ask_clear - ask_cost).
    Φ_c on its own scores every abstention 0, so in multi-turn mode asking on a
    clear image (then answering the revealed one) would cost nothing; the
    ask_clear penalty (default -0.2) is what makes the policy look first.
    Requires c > 0.
    """
    c = _number("c", c)
    if c <= 0:
        raise ConfigError(f"c={c:g} must be > 0 (the cost of a wrong answer)")
    return _help_reward(-c, *_ask_params(ask_clear, ask_missing, ask_cost, answer_missing), soft=True)


def help_confidence(t: float = 0.5, ask_clear: float = -0.2, ask_missing: float = 0.0, ask_cost: float = 0.0,
                    answer_missing: float | None = None) -> RewardFn:
    """Confidence-target reward (Kalai et al., 2025): +1 correct, -t/(1-t) wrong,
    asks as in `help_ternary`.

    With p = P(correct), answering has expected reward p - (1-p)·t/(1-t),
    which is > 0 exactly when p > t: the model should answer only when it is
    more than t confident, and abstain (0) otherwise. Requires 0 <= t < 1.
    `answer_missing` as in `help_ternary`.
    """
    t = _number("t", t)
    if not 0.0 <= t < 1.0:
        raise ConfigError(f"t={t:g} must be in [0, 1) (a confidence threshold)")
    return _help_reward(-t / (1.0 - t), *_ask_params(ask_clear, ask_missing, ask_cost, answer_missing))
