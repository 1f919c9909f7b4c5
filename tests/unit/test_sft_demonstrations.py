"""Demonstrations with random decisions (sft.random_action_rate): the reading stays the oracle's,
the decision carries no information, and envs that cannot write such a reply say so."""

import json

import gymnasium as gym
import pytest

import rlvlm.envs  # noqa: F401
from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.train.config import TrainConfig
from rlvlm.train.sft import collect_demonstrations


def _numberline():
    return gym.make("rlvlm/NumberLine-v0", image_size=32)


def _fields(reply: str) -> dict:
    return json.loads(reply)


def test_numberline_demo_reply_reads_the_state_and_states_the_chosen_move():
    env = _numberline().unwrapped
    info = {"target": 4, "current": 1, "max_position": 5}
    assert _fields(env.demo_reply(info, "-")) == {"thoughts": "target 4, current 1, move -", "action": "-"}
    assert env.oracle_reply(info) == env.demo_reply(info, "+")


def _steps(demos):
    """(target, current, action) of every demonstration step, read back from its reply."""
    out = []
    for obs, reply in demos:
        f = _fields(reply)
        words = f["thoughts"].replace(",", "").split()  # target T current C move M
        assert words[5] == f["action"]
        out.append((int(words[1]), int(words[3]), f["action"]))
    return out


def test_rate_zero_is_the_oracle_and_rate_one_decides_at_random():
    oracle = _steps(collect_demonstrations(_numberline, 40, seed=500_000))
    assert all((a == "+") == (t > c) for t, c, a in oracle)
    steps = _steps(collect_demonstrations(_numberline, 40, seed=500_000, random_action_rate=1.0))
    right = sum((a == "+") == (t > c) for t, c, a in steps)
    # Uniform over {+, -}: about half the steps move the wrong way (random-walk episodes are longer).
    assert len(steps) > len(oracle) and 0.35 < right / len(steps) < 0.65


def test_random_decision_thoughts_name_the_state_the_episode_is_in():
    """Replay the demonstrated actions in the same episodes: every thought reads the live state."""
    steps = _steps(collect_demonstrations(_numberline, 6, seed=11, random_action_rate=1.0))
    env, i = _numberline(), 0
    for k in range(6):
        env.reset(seed=11 + k)
        done = False
        while not done:
            t, c, action = steps[i]
            assert (env.unwrapped.target, env.unwrapped.current) == (t, c)
            _, _, terminated, truncated, _ = env.step(f'{{"thoughts": "x", "action": "{action}"}}')
            done, i = terminated or truncated, i + 1
    assert i == len(steps)


def test_an_env_without_demo_reply_is_refused_with_the_fix():
    def ez():
        return gym.make("rlvlm/EZPoints-v0", image_size=32)

    with pytest.raises(ConfigError, match=r"sft.random_action_rate=0.5: .* fix: set sft.random_action_rate=0"):
        collect_demonstrations(ez, 2, seed=0, random_action_rate=0.5)
    assert collect_demonstrations(ez, 1, seed=0)  # the oracle alone is fine


def test_the_rate_must_be_a_fraction():
    with pytest.raises(ConfigError, match=r"sft.random_action_rate=1.5 must be a fraction in \[0, 1\]"):
        load_config(TrainConfig, "numberline", ["sft.random_action_rate=1.5"])
