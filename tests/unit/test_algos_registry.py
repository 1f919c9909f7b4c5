"""The open registries (advantage estimators, policy losses) and `RolloutBatch`, with hand-worked values."""

from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from rlvlm.algos import (
    ADVANTAGE_ESTIMATORS,
    POLICY_LOSSES,
    RolloutBatch,
    advantage_estimator,
    policy_loss,
    ppo_clip_loss,
    register_advantage,
    rloo_advantages,
)
from rlvlm.errors import ConfigError

CFG = SimpleNamespace(gamma=0.5, lam=1.0, clip_low=0.1, clip_high=None, aggregation="token_mean")


def batch(rewards, *, episodes, groups=None, steps=None, envs=None, values=None, num_envs=None, num_steps=0,
          last_values=None, terminated=None, truncated=None, truncation_values=None):
    """A RolloutBatch without a model: one-token completions, prompts are placeholders."""
    B = len(rewards)
    nan = torch.full((B,), float("nan"))
    steps = torch.zeros(B, dtype=torch.long) if steps is None else torch.tensor(steps)
    return RolloutBatch(
        rewards=torch.tensor(rewards, dtype=torch.float32),
        terminated=torch.ones(B, dtype=torch.bool) if terminated is None else torch.tensor(terminated),
        truncated=torch.zeros(B, dtype=torch.bool) if truncated is None else torch.tensor(truncated),
        values=nan if values is None else torch.tensor(values, dtype=torch.float32),
        truncation_values=nan if truncation_values is None else torch.tensor(truncation_values),
        episode_ids=torch.tensor(episodes), group_ids=torch.tensor(groups if groups is not None else episodes),
        step_ids=steps, env_ids=torch.arange(B) if envs is None else torch.tensor(envs),
        completion_ids=torch.ones(B, 1, dtype=torch.long), completion_mask=torch.ones(B, 1, dtype=torch.bool),
        old_logprobs=torch.zeros(B, 1), thought_mask=torch.zeros(B, 1, dtype=torch.bool),
        action_mask=torch.ones(B, 1, dtype=torch.bool), prompts=[f"p{i}" for i in range(B)],
        num_envs=num_envs or B, num_steps=num_steps,
        last_values=None if last_values is None else torch.tensor(last_values),
    )


def test_builtin_entries_declare_their_needs():
    assert {"gae", "grpo", "dr_grpo", "rloo", "reinforce_pp", "reward_to_go"} <= set(ADVANTAGE_ESTIMATORS)
    assert {"ppo_clip", "reinforce"} <= set(POLICY_LOSSES)
    gae, grpo, rpp = (advantage_estimator(n) for n in ("gae", "grpo", "reinforce_pp"))
    assert gae.needs_critic and not gae.whole_episodes and not gae.needs_groups
    assert grpo.needs_groups and grpo.whole_episodes and not grpo.needs_critic
    assert not rpp.needs_groups and not rpp.needs_critic


def test_unknown_name_is_a_config_error_with_suggestions():
    with pytest.raises(ConfigError, match=r"algo.advantage='grop'.*did you mean: grpo"):
        advantage_estimator("grop")
    with pytest.raises(ConfigError, match=r"algo.policy_loss='ppo'.*ppo_clip"):
        policy_loss("ppo")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_advantage("grpo")(lambda b, c: (b.rewards, b.rewards))


def test_group_estimators_score_episode_returns_shared_by_their_steps():
    # Episodes 7 (two steps, return 1 + 2 = 3) and 9 (one step, return 1) in group 0;
    # episode 4 alone in group 1. RLOO: 3 - 1 = 2, 1 - 3 = -2, and 0 for the lone episode.
    b = batch([1.0, 1.0, 5.0, 2.0], episodes=[7, 9, 4, 7], groups=[0, 0, 1, 0], steps=[0, 0, 0, 1])
    adv, ret = advantage_estimator("rloo")(b, CFG)
    assert_close(adv, torch.tensor([2.0, -2.0, 0.0, 2.0]))
    assert_close(ret, torch.tensor([3.0, 1.0, 5.0, 3.0]))
    assert_close(adv[:2], rloo_advantages(torch.tensor([3.0, 1.0]), torch.tensor([0, 0])))


def test_reward_to_go_credits_each_step_with_what_follows_it():
    # Episode 0: rewards 1, 2, 4 at steps 0, 1, 2 (gamma 0.5): G = 1 + 0.5 * (2 + 0.5 * 4) = 3, 2 + 2 = 4, 4.
    # Episode 1: one step, reward 1: G = 1. Mean G = (3 + 4 + 4 + 1) / 4 = 3.
    b = batch([1.0, 1.0, 2.0, 4.0], episodes=[0, 1, 0, 0], steps=[0, 0, 1, 2],
              terminated=[False, True, False, True])
    adv, ret = advantage_estimator("reward_to_go")(b, CFG)
    assert_close(ret, torch.tensor([3.0, 1.0, 4.0, 4.0]))
    assert_close(adv, torch.tensor([0.0, -2.0, 1.0, 1.0]))


def test_gae_reads_the_lockstep_grid_and_refuses_missing_values():
    # T = 2 steps of N = 2 envs, rows (t, n) = (0,0) (0,1) (1,0) (1,1); lam 1, gamma 0.5.
    # Env 0: r 1, 1, not done, V(s_T) = 2: G1 = 1 + 0.5*2 = 2, G0 = 1 + 0.5*2 = 2; A = G - V(=0).
    # Env 1: terminated at t = 0 (r 3), then r 0 with V(s_T) = 4: G0 = 3, G1 = 0 + 0.5*4 = 2.
    b = batch([1.0, 3.0, 1.0, 0.0], episodes=[0, 1, 0, 2], steps=[0, 0, 1, 1], envs=[0, 1, 0, 1],
              values=[0.0] * 4, num_envs=2, num_steps=2, last_values=[2.0, 4.0],
              terminated=[False, True, False, False])
    adv, ret = advantage_estimator("gae")(b, CFG)
    assert_close(ret, torch.tensor([2.0, 3.0, 2.0, 2.0]))
    assert_close(adv, ret)
    b.values[1] = float("nan")
    with pytest.raises(ValueError, match=r"algo.advantage=gae needs a value for every step, but 1 of 4"):
        advantage_estimator("gae")(b, CFG)


def test_the_grid_layout_is_checked_not_assumed():
    b = batch([0.0] * 4, episodes=[0, 1, 0, 1], steps=[0, 1, 0, 1], envs=[0, 0, 1, 1], num_envs=2, num_steps=2)
    with pytest.raises(ValueError, match=r"not in \(step, env\) order"):
        b.grid(b.rewards)
    with pytest.raises(ValueError, match="not a lockstep rollout"):
        batch([0.0] * 3, episodes=[0, 1, 2], num_envs=2, num_steps=2).grid(torch.zeros(3))


def test_select_cuts_a_minibatch_to_its_own_longest_completion():
    b = batch([1.0, 2.0, 3.0], episodes=[0, 1, 2])
    b.completion_ids = torch.tensor([[5, 6, 7], [5, 0, 0], [5, 6, 0]])
    b.completion_mask = b.completion_ids > 0
    b.old_logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, 0.0, 0.0], [-1.0, -2.0, 0.0]])
    b.advantages = torch.tensor([0.1, 0.2, 0.3])
    mb = b.select([2, 1])
    assert mb.prompts == ["p2", "p1"] and mb.completion_ids.shape == (2, 2)
    assert_close(mb.old_logprobs, torch.tensor([[-1.0, -2.0], [-1.0, 0.0]]))
    assert_close(mb.advantages, torch.tensor([0.3, 0.2]))
    assert mb.num_steps == 0 and mb.last_values is None


def test_rows_must_agree():
    with pytest.raises(ValueError, match=r"RolloutBatch.values has 2 rows, rewards has 3"):
        b = batch([1.0, 2.0, 3.0], episodes=[0, 1, 2])
        RolloutBatch(**{**b.__dict__, "values": torch.zeros(2)})


def test_an_estimator_returning_the_wrong_shape_is_named():
    register_advantage("_bad_shape_for_test")(lambda b, c: (b.rewards[:1], b.rewards))
    try:
        with pytest.raises(ValueError, match=r"'_bad_shape_for_test' returned advantages of shape \[1\]; expected \[2\]"):
            advantage_estimator("_bad_shape_for_test")(batch([1.0, 2.0], episodes=[0, 1]), CFG)
    finally:
        ADVANTAGE_ESTIMATORS.pop("_bad_shape_for_test")


def test_policy_losses_by_name():
    logp = torch.tensor([0.4, -0.4])
    old, adv = torch.zeros(2), torch.tensor([1.0, -1.0])
    loss, _ = policy_loss("ppo_clip").fn(logp, old, adv, None, CFG)
    assert loss == ppo_clip_loss(logp, old, adv, clip_low=0.1)[0]
    loss, metrics = policy_loss("reinforce").fn(logp, old, adv, None, CFG)
    assert_close(loss, -(torch.exp(logp) * adv).mean())
    assert metrics["policy/clip_frac"] == 0.0
