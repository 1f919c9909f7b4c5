"""Enums, config-string parsing and the uniform registry entry points."""

import pytest
import torch
from torch.testing import assert_close

from rlvlm.algos import (
    ADVANTAGE_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageEstimator,
    PolicyLoss,
    compute_advantages,
    compute_policy_loss,
    gae,
    get_advantage_estimator,
    get_policy_loss,
    parse_choice,
    ppo_clip_loss,
    rloo_advantages,
)
from rlvlm.errors import ConfigError


def test_every_enum_member_is_registered():
    assert set(ADVANTAGE_ESTIMATORS) == set(AdvantageEstimator)
    assert set(POLICY_LOSSES) == set(PolicyLoss)


def test_config_strings_map_to_members():
    assert parse_choice(AdvantageEstimator, "rloo") is AdvantageEstimator.RLOO
    assert parse_choice(AdvantageEstimator, "Dr-GRPO") is AdvantageEstimator.DR_GRPO
    assert get_advantage_estimator("gae") is gae
    assert get_policy_loss(PolicyLoss.PPO_CLIP) is ppo_clip_loss
    assert AdvantageEstimator.GAE.needs_critic and not AdvantageEstimator.GRPO.needs_critic
    assert AdvantageEstimator.RLOO.needs_groups and not AdvantageEstimator.REINFORCE_PP.needs_groups


def test_unknown_name_is_a_config_error_with_suggestions():
    with pytest.raises(ConfigError, match=r"algo.advantage='grop'.*did you mean: grpo"):
        get_advantage_estimator("grop")
    with pytest.raises(ConfigError, match=r"algo.policy_loss=.*ppo_clip"):
        get_policy_loss("ppo")


def test_compute_advantages_dispatch():
    r = torch.tensor([1.0, 0.0, 2.0, 2.0])
    g = torch.tensor([0, 0, 1, 1])
    adv, ret = compute_advantages("rloo", rewards=r, group_ids=g)
    assert_close(adv, rloo_advantages(r, g))
    assert_close(ret, r)  # no critic: the target is the reward itself
    adv, _ = compute_advantages("reinforce_pp", rewards=r, group_ids=g, reinforce_baseline=True)
    assert adv[2:].abs().sum() == 0  # the all-equal group has a zero centred reward
    rt = torch.ones(3, 2)
    adv, ret = compute_advantages("gae", rewards=rt, values=rt, dones=rt, last_values=torch.zeros(2), gamma=0.9)
    assert_close(adv, torch.zeros(3, 2))  # every step terminal: A = r − V = 0


def test_compute_advantages_names_missing_inputs():
    with pytest.raises(ValueError, match=r"'gae' needs values, dones, last_values"):
        compute_advantages("gae", rewards=torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"'grpo' needs group_ids"):
        compute_advantages("grpo", rewards=torch.ones(3))


def test_compute_policy_loss_dispatch():
    logp = torch.tensor([0.4, -0.4])
    old, adv = torch.zeros(2), torch.tensor([1.0, -1.0])
    ppo = compute_policy_loss("ppo_clip", logp, old, adv, clip_low=0.1)
    assert ppo[0] == ppo_clip_loss(logp, old, adv, clip_low=0.1)[0]
    loss, metrics = compute_policy_loss("reinforce", logp, old, adv, clip_low=0.1)
    assert_close(loss, -(torch.exp(logp) * adv).mean())
    assert metrics["policy/clip_frac"] == 0.0
