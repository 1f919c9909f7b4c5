"""Guided exploration of the ask reply (`rollout.explore_ask`, issue 15): a group
that never asks gets the teacher-forced ask reply, scored like a sample."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import rlvlm.envs  # noqa: F401
from rlvlm.config import load_config
from rlvlm.envs.wrappers import find_ask_wrapper
from rlvlm.errors import ConfigError
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.rollout.collector import Collector
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import make_env_factory, rollout_metrics


def _envs(n, *overrides):
    make = make_env_factory(load_config(TrainConfig, "help-seeking", list(overrides)))  # digits, half hidden, asks
    return [make() for _ in range(n)]


def test_every_group_sees_an_ask_and_forced_replies_are_scored_like_samples(idefics3_dir):
    torch.manual_seed(0)
    policy = load_policy(idefics3_dir)  # untrained: it (almost) never writes the ask reply by itself
    col = Collector(_envs(8), policy, SamplingConfig(max_new_tokens=16), seed=0, group_size=4, need_values=False,
                    explore_ask=1)
    rollout = col.collect_episodes()
    asks = col._asks[0]
    by_group: dict[int, list] = {}
    for tr in rollout.transitions:
        by_group.setdefault(tr.group_id, []).append(tr)
    assert len(by_group) == 2
    for trs in by_group.values():
        assert any(asks(tr.sample.text) for tr in trs)  # no group is left without an ask
        forced = [tr for tr in trs if tr.sample.meta.get("forced")]
        sampled_asks = [tr for tr in trs if asks(tr.sample.text) and not tr.sample.meta.get("forced")]
        # forced only where none of the group's samples asked, and then exactly one: the group's last env
        assert len(forced) == (0 if sampled_asks else 1)
        if forced:
            assert forced[0].env_index % 4 == 3 and forced[0].info["help_action"] == "ask"
    forced = [tr.sample for tr in rollout.transitions if tr.sample.meta.get("forced")]
    assert col.forced_asks == len(forced) > 0
    # old log-probs of a forced reply are the current policy's, so its PPO ratio starts at 1
    scored = policy.score(forced)
    for i, s in enumerate(forced):
        assert torch.allclose(torch.tensor(s.logprobs), scored.logprobs[i, : s.num_tokens].detach(), atol=1e-5)
    # the forced episodes are counted, and kept out of the policy's own ask rates
    m = rollout_metrics(rollout, torch.zeros(len(rollout)))
    assert m["rollout/forced_asks"] == len(forced)
    own = [e for e in rollout.episodes if not e["forced"]]
    clear = [e for e in own if not e["info_missing"]]
    if clear:
        assert m["rollout/false_ask_rate"] == pytest.approx(sum(e["asked"] for e in clear) / len(clear))


def test_a_group_that_asks_is_left_alone(idefics3_dir):
    policy = load_policy(idefics3_dir)
    col = Collector(_envs(4), policy, SamplingConfig(max_new_tokens=16), seed=0, group_size=4, need_values=False,
                    explore_ask=2)
    col.reset()
    reply = col._ask_reply[0]()
    samples = policy.forced_samples([col._obs[0]] + [col._obs[i] for i in range(1, 4)],
                                    [reply, "x", "y", "z"])
    out = col._explore_asks([0, 1, 2, 3], samples)
    assert out == samples and col.forced_asks == 0
    out = col._explore_asks([0, 1, 2, 3], samples[1:2] * 4)  # no ask among them: the last two become asks
    assert [col._asks[0](s.text) for s in out] == [False, False, True, True] and col.forced_asks == 2
    out = col._explore_asks([0, 1, 2], samples[1:2] * 3)  # one env of the group already done: untouched
    assert not any(col._asks[0](s.text) for s in out)


def test_no_ask_is_forced_after_a_multi_turn_ask(idefics3_dir):
    """Once a group's episodes have asked, their views are revealed: a forced second ask would
    only abstain, and its -1 would land on the whole episode, the right first ask included."""
    policy = load_policy(idefics3_dir)
    col = Collector(_envs(4, "env.kwargs.ask_for_help.mode=multi_turn"), policy, SamplingConfig(max_new_tokens=16),
                    seed=0, group_size=4, need_values=False, explore_ask=2)
    col.reset()
    answers = policy.forced_samples([col._obs[i] for i in range(4)], ['"answer": "3"'] * 4)
    assert [col._asks[i](s.text) for i, s in enumerate(answers)] == [False] * 4
    out = col._explore_asks([0, 1, 2, 3], answers)  # first turn, no ask in the group: two are forced
    assert sum(col._asks[0](s.text) for s in out) == 2 and col.forced_asks == 2
    for i, env in enumerate(col.envs):  # every episode asks: the second turn shows the clean image
        obs, reward, terminated, truncated, info = env.step(col._ask_reply[i]())
        assert not terminated and info["revealed"] and find_ask_wrapper(env).asked
        col._obs[i] = obs
    second = policy.forced_samples([col._obs[i] for i in range(4)], ['"answer": "3"'] * 4)
    out = col._explore_asks([0, 1, 2, 3], second)
    assert all(a is b for a, b in zip(out, second)) and col.forced_asks == 2  # left alone
    col.reset()
    assert not any(find_ask_wrapper(e).asked for e in col.envs)  # a new episode may be explored again


@pytest.mark.parametrize("overrides, message", [
    (["rollout.explore_ask=1"], r"rollout.explore_ask=1 forces the ask reply, which needs the ask action; fix: set "
                                r"env.kwargs.ask_for_help"),
    (["rollout.explore_ask=8"], r"rollout.explore_ask=8 works inside groups .*group_size=8\)"),
    (["rollout.explore_ask=1", "algo.advantage=gae", "model.value_head=true",
      "rollout.group_size=1"], r"rollout.explore_ask=1 works inside groups"),
])
def test_explore_ask_traps(overrides, message):
    preset = "numberline-grpo" if "needs the ask action" in message else "help-seeking"
    with pytest.raises(ConfigError, match=message) as err:
        load_config(TrainConfig, preset, overrides).validate()
    assert "\n" not in str(err.value)


def test_collector_rejects_envs_without_the_ask_wrapper(idefics3_dir):
    envs = [gym.make("rlvlm/VisualQA-v0", image_size=48, task="digits") for _ in range(4)]
    with pytest.raises(ConfigError, match=r"rollout.explore_ask=1 needs envs under the ask wrapper"):
        Collector(envs, load_policy(idefics3_dir), SamplingConfig(), group_size=4, explore_ask=1)
