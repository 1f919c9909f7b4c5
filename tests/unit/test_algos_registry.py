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
    gigpo_advantages,
    register_advantage,
    rloo_advantages,
)
from rlvlm.errors import ConfigError

CFG = SimpleNamespace(gamma=0.5, lam=1.0, clip_low=0.1, clip_high=None, aggregation="token_mean", step_weight=1.0)


def batch(rewards, *, episodes, groups=None, steps=None, envs=None, values=None, num_envs=None, num_steps=0,
          last_values=None, terminated=None, truncated=None, truncation_values=None, states=None):
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
        state_ids=None if states is None else torch.tensor(states),
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


def _gigpo_batch():
    """Group 0: episode A visits states 10, 20, 30 (rewards 0, 0, 1: return 1); episode B visits 10, 20,
    20 (rewards 0, 0, 0; a no-op repeats state 20) and is cut off. Group 1: episodes C and D each take one
    step from state 10 (rewards 1 and 0): the same state id as group 0's, which must not pool with it."""
    return batch([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0],
                 episodes=[0, 1, 0, 1, 0, 1, 2, 3], groups=[0, 0, 0, 0, 0, 0, 1, 1],
                 steps=[0, 0, 1, 1, 2, 2, 0, 0], states=[10, 10, 20, 20, 30, 20, 10, 10],
                 terminated=[False, False, False, False, True, False, True, True],
                 truncated=[False, False, False, False, False, True, False, False])


def test_gigpo_adds_anchor_state_groups_to_episode_groups():
    # gamma 0.5, returns-to-go: A = (0.25, 0.5, 1), B = (0, 0, 0), C = 1, D = 0.
    # Episode level (mean-centred, scale=False): group 0 returns (1, 0) -> A +0.5, B -0.5; group 1 C +0.5, D -0.5.
    # Step level: (g0, s10) = {A 0.25, B 0} -> +0.125, -0.125; (g0, s20) = {A 0.5, B 0, B 0} mean 1/6 ->
    # +1/3, -1/6, -1/6; (g0, s30) = {A 1} alone -> 0; (g1, s10) = {C 1, D 0} -> +0.5, -0.5.
    b = _gigpo_batch()
    row = b.episodes()[0]
    ep_ret, ep_group, _ = b.episode_sums(b.rewards)
    rtg = torch.tensor([0.25, 0.0, 0.5, 0.0, 1.0, 0.0, 1.0, 0.0])
    adv = gigpo_advantages(ep_ret, ep_group, rtg, row, b.state_ids, scale=False)
    expected = torch.tensor([0.5 + 0.125, -0.5 - 0.125, 0.5 + 1 / 3, -0.5 - 1 / 6, 0.5 + 0.0, -0.5 - 1 / 6,
                             0.5 + 0.5, -0.5 - 0.5])
    assert_close(adv, expected)
    # The registered estimator computes the returns-to-go itself and scales by the groups' std:
    # every group here has two values +-d around its mean, so each term becomes +-d / std = +-1/sqrt(2)
    # except (g0, s20): values (0.5, 0, 0), std 0.2887 -> (1/3) / 0.2887 = 1.1547, -0.5774.
    adv, ret = advantage_estimator("gigpo")(b, CFG)
    h, big, small = 2 ** -0.5, 1.1547005, 0.5773503
    assert_close(adv, torch.tensor([h + h, -h - h, h + big, -h - small, h, -h - small, h + h, -h - h]),
                 atol=1e-5, rtol=0)
    assert_close(ret, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))  # the episode returns


def test_gigpo_without_repeated_states_is_grpo_and_step_weight_scales_the_step_term():
    b = _gigpo_batch()
    b.state_ids = torch.arange(len(b))  # every step from its own state: no anchors
    assert_close(advantage_estimator("gigpo")(b, CFG)[0], advantage_estimator("grpo")(b, CFG)[0])
    b = _gigpo_batch()
    none = advantage_estimator("gigpo")(b, SimpleNamespace(**{**vars(CFG), "step_weight": 0.0}))[0]
    assert_close(none, advantage_estimator("grpo")(b, CFG)[0])
    b.state_ids = None
    with pytest.raises(ValueError, match=r"gigpo needs the state each step acted from"):
        advantage_estimator("gigpo")(b, CFG)


def test_turn_gae_gives_each_turn_of_a_whole_episode_its_own_credit():
    # gamma 0.5, lam 1. Episode 0: turns with V = 1, 2, 4 and rewards 0, 0, 8, terminated:
    #   G_2 = 8, G_1 = 0 + 0.5*8 = 4, G_0 = 2 -> A = G - V = (1, 2, 4).
    # Episode 1: two turns, V = 0, 2, rewards 1, 1, truncated with V(final observation) = 6:
    #   G_1 = 1 + 0.5*6 = 4, G_0 = 1 + 0.5*4 = 3 -> A = (3, 2).
    b = batch([0.0, 1.0, 0.0, 1.0, 8.0], episodes=[0, 1, 0, 1, 0], steps=[0, 0, 1, 1, 2],
              values=[1.0, 0.0, 2.0, 2.0, 4.0], terminated=[False, False, False, False, True],
              truncated=[False, False, False, True, False],
              truncation_values=[float("nan"), float("nan"), float("nan"), 6.0, float("nan")])
    adv, ret = advantage_estimator("turn_gae")(b, CFG)
    assert_close(ret, torch.tensor([2.0, 3.0, 4.0, 4.0, 8.0]))
    assert_close(adv, torch.tensor([1.0, 3.0, 2.0, 2.0, 4.0]))
    spec = advantage_estimator("turn_gae")
    assert spec.needs_critic and spec.whole_episodes and not spec.needs_groups
