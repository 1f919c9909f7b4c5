"""GAE, discounted returns and the group advantage estimators."""

import math

import pytest
import torch
from torch.testing import assert_close

from rlvlm.algos import (
    discounted_returns,
    dr_grpo_advantages,
    gae,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    zero_variance_group_fraction,
)
from rlvlm.errors import ConfigError


def gae_loop(rewards, values, dones, last_values, gamma, lam, truncated=None, truncation_values=None):
    """Reference GAE: plain Python floats, one env at a time, one step at a time."""
    T, N = len(rewards), len(rewards[0])
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            is_trunc = bool(truncated and truncated[t][n])
            ended = bool(dones[t][n]) or is_trunc
            if is_trunc:
                next_value = truncation_values[t][n]
            elif ended:
                next_value = 0.0
            elif t == T - 1:
                next_value = last_values[n]
            else:
                next_value = values[t + 1][n]
            delta = rewards[t][n] + gamma * next_value - values[t][n]
            running = delta + (0.0 if ended else gamma * lam * running)
            adv[t][n] = running
    return torch.tensor(adv, dtype=torch.float64)


# --- GAE -----------------------------------------------------------------------------


def test_gae_hand_values_one_env():
    # γ = λ = 0.5, r = [1, 2, 3], V = [0.5, 1, 1.5], V(s_3) = 2, no dones.
    # δ2 = 3 + 0.5·2   − 1.5 = 2.5
    # δ1 = 2 + 0.5·1.5 − 1.0 = 1.75
    # δ0 = 1 + 0.5·1.0 − 0.5 = 1.0
    # A2 = 2.5;  A1 = 1.75 + 0.25·2.5 = 2.375;  A0 = 1.0 + 0.25·2.375 = 1.59375
    # returns = A + V = [2.09375, 3.375, 4.0]
    r = torch.tensor([1.0, 2.0, 3.0])
    v = torch.tensor([0.5, 1.0, 1.5])
    d = torch.zeros(3)
    adv, ret = gae(r, v, d, torch.tensor(2.0), gamma=0.5, lam=0.5)
    assert_close(adv, torch.tensor([1.59375, 2.375, 2.5]))
    assert_close(ret, torch.tensor([2.09375, 3.375, 4.0]))


def test_gae_hand_values_termination_and_truncation():
    # Same rollout, the episode ends at t = 1 and t = 2 starts a new one.
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    d = torch.tensor([[0.0], [1.0], [0.0]])
    last = torch.tensor([2.0])
    # Terminated at 1: δ1 = 2 + 0 − 1 = 1; A1 = 1 (no carry from the new episode);
    # A0 = δ0 + 0.25·A1 = 1 + 0.25 = 1.25; A2 = 2.5 as before.
    adv, _ = gae(r, v, d, last, gamma=0.5, lam=0.5)
    assert_close(adv, torch.tensor([[1.25], [1.0], [2.5]]))
    # Truncated at 1 with V(final obs) = 4: δ1 = 2 + 0.5·4 − 1 = 3; A1 = 3;
    # A0 = 1 + 0.25·3 = 1.75. The non-truncated entries of truncation_values
    # (NaN here) must be ignored.
    tv = torch.tensor([[math.nan], [4.0], [math.nan]])
    trunc = torch.tensor([[False], [True], [False]])
    adv, _ = gae(r, v, d, last, gamma=0.5, lam=0.5, truncated=trunc, truncation_values=tv)
    assert_close(adv, torch.tensor([[1.75], [3.0], [2.5]]))


def test_gae_truncated_implies_done():
    # truncated without the done flag set still cuts the chain.
    r, v = torch.ones(3, 1), torch.zeros(3, 1)
    d = torch.zeros(3, 1)
    trunc = torch.tensor([[False], [True], [False]])
    a1, _ = gae(r, v, d, torch.zeros(1), gamma=0.9, lam=1.0, truncated=trunc, truncation_values=torch.zeros(3, 1))
    a2, _ = gae(r, v, trunc.float(), torch.zeros(1), gamma=0.9, lam=1.0)
    assert_close(a1, a2)


@pytest.mark.parametrize("with_truncation", [False, True])
def test_gae_matches_plain_loop_on_random_data(with_truncation):
    g = torch.Generator().manual_seed(0)
    T, N = 17, 5
    r = torch.randn(T, N, generator=g, dtype=torch.float64)
    v = torch.randn(T, N, generator=g, dtype=torch.float64)
    d = torch.rand(T, N, generator=g) < 0.2
    last = torch.randn(N, generator=g, dtype=torch.float64)
    kwargs = {}
    if with_truncation:
        trunc = d & (torch.rand(T, N, generator=g) < 0.5)
        tv = torch.randn(T, N, generator=g, dtype=torch.float64)
        kwargs = dict(truncated=trunc, truncation_values=tv)
    adv, ret = gae(r, v, d, last, gamma=0.9, lam=0.95, **kwargs)
    expected = gae_loop(
        r.tolist(), v.tolist(), d.tolist(), last.tolist(), 0.9, 0.95,
        kwargs["truncated"].tolist() if with_truncation else None,
        kwargs["truncation_values"].tolist() if with_truncation else None,
    )  # fmt: skip
    assert_close(adv, expected)
    assert_close(ret, expected + v)


def test_gae_equals_lambda_weighted_sum_of_td_errors():
    # Without dones, A_t = Σ_k (γλ)^k δ_{t+k}: the closed form, not the recursion.
    g = torch.Generator().manual_seed(1)
    T, gamma, lam = 6, 0.8, 0.7
    r, v = torch.randn(T, 1, generator=g, dtype=torch.float64), torch.randn(T, 1, generator=g, dtype=torch.float64)
    last = torch.randn(1, generator=g, dtype=torch.float64)
    next_v = torch.cat([v[1:], last[None]])
    delta = (r + gamma * next_v - v)[:, 0]
    expected = torch.tensor([sum((gamma * lam) ** k * delta[t + k] for k in range(T - t)) for t in range(T)])
    adv, _ = gae(r, v, torch.zeros(T, 1), last, gamma=gamma, lam=lam)
    assert_close(adv[:, 0], expected.to(adv.dtype))


def test_gae_lambda_one_is_returns_minus_values_and_lambda_zero_is_td():
    g = torch.Generator().manual_seed(2)
    T, N, gamma = 9, 3, 0.9
    r, v = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g)
    d = (torch.rand(T, N, generator=g) < 0.3).float()
    last = torch.randn(N, generator=g)
    adv1, ret1 = gae(r, v, d, last, gamma=gamma, lam=1.0)
    assert_close(adv1, discounted_returns(r, d, last, gamma=gamma) - v)
    assert_close(ret1, discounted_returns(r, d, last, gamma=gamma))
    adv0, _ = gae(r, v, d, last, gamma=gamma, lam=0.0)
    next_v = torch.cat([v[1:], last[None]]) * (1 - d)
    assert_close(adv0, r + gamma * next_v - v)


def test_discounted_returns_hand_values():
    # γ = 0.5, r = [1, 2, 3], episode ends at t = 1, tail bootstrapped with 2:
    # G2 = 3 + 0.5·2 = 4;  G1 = 2 (terminal);  G0 = 1 + 0.5·2 = 2
    r = torch.tensor([[1.0], [2.0], [3.0]])
    d = torch.tensor([[0.0], [1.0], [0.0]])
    assert_close(discounted_returns(r, d, torch.tensor([2.0]), gamma=0.5), torch.tensor([[2.0], [2.0], [4.0]]))
    # Without last_values the tail is taken as complete: G2 = 3.
    assert_close(discounted_returns(r, d, gamma=0.5), torch.tensor([[2.0], [2.0], [3.0]]))
    # 1-D input works the same.
    assert_close(discounted_returns(r[:, 0], d[:, 0], gamma=0.5), torch.tensor([2.0, 2.0, 3.0]))


def test_gae_validates_inputs():
    r = torch.zeros(4, 2)
    with pytest.raises(ConfigError, match="gamma"):
        gae(r, r, r, torch.zeros(2), gamma=1.5)
    with pytest.raises(ValueError, match="last_values"):
        gae(r, r, r, torch.zeros(3))
    with pytest.raises(ValueError, match="shape mismatch"):
        gae(r, torch.zeros(4, 3), r, torch.zeros(2))
    with pytest.raises(ValueError, match="together"):
        gae(r, r, r, torch.zeros(2), truncated=r.bool())


def test_gae_bf16_inputs_accumulate_in_float32():
    r = torch.ones(50, 1, dtype=torch.bfloat16)
    adv, _ = gae(r, torch.zeros_like(r), torch.zeros_like(r), torch.zeros(1), gamma=0.99, lam=1.0)
    assert adv.dtype == torch.float32
    assert_close(adv[0, 0], torch.tensor((1 - 0.99**50) / (1 - 0.99)))


# --- group estimators ----------------------------------------------------------------

# Unsorted, non-contiguous, negative ids. Groups:
#   10: [1, 0, 0, 1]  mean 0.5, unbiased var = 4·0.25/3 = 1/3, std = 0.57735
#    7: [3, 0, 0]     mean 1, deviations [2, −1, −1], unbiased var = 6/2 = 3, std = √3
#   −1: [0.5]         singleton       → 0
#    4: [2, 2]        all equal       → 0
REWARDS = torch.tensor([1.0, 3.0, 0.0, 0.5, 0.0, 2.0, 0.0, 1.0, 2.0, 0.0])
GROUPS = torch.tensor([10, 7, 10, -1, 10, 4, 7, 10, 4, 7])


def test_grpo_hand_values():
    # group 10: ±0.5/0.57735 = ±0.866025; group 7: [2, −1, −1]/√3 = [1.154701, −0.577350, −0.577350]
    expected = torch.tensor([0.866025, 1.154701, -0.866025, 0.0, -0.866025, 0.0, -0.577350, 0.866025, 0.0, -0.577350])
    assert_close(grpo_advantages(REWARDS, GROUPS), expected, atol=1e-5, rtol=0)


def test_grpo_biased_std_option():
    # group [1, 0]: population std 0.5 → ±1 (the unbiased std 0.7071 gives ±0.7071).
    r, g = torch.tensor([1.0, 0.0]), torch.tensor([0, 0])
    assert_close(grpo_advantages(r, g, unbiased_std=False), torch.tensor([1.0, -1.0]), atol=1e-5, rtol=0)
    assert_close(grpo_advantages(r, g), torch.tensor([0.707107, -0.707107]), atol=1e-5, rtol=0)


def test_dr_grpo_hand_values():
    # mean-centred only: group 10 ±0.5, group 7 [2, −1, −1]
    expected = torch.tensor([0.5, 2.0, -0.5, 0.0, -0.5, 0.0, -1.0, 0.5, 0.0, -1.0])
    assert_close(dr_grpo_advantages(REWARDS, GROUPS), expected)


def test_rloo_hand_values():
    # group 10: r=1 → 1 − mean(0, 0, 1) = 2/3;  r=0 → 0 − mean(1, 0, 1) = −2/3
    # group 7:  r=3 → 3 − mean(0, 0) = 3;      r=0 → 0 − mean(3, 0) = −1.5
    expected = torch.tensor([2 / 3, 3.0, -2 / 3, 0.0, -2 / 3, 0.0, -1.5, 2 / 3, 0.0, -1.5])
    assert_close(rloo_advantages(REWARDS, GROUPS), expected)
    # RLOO = n/(n−1) · Dr. GRPO on every group of n ≥ 2
    n = torch.tensor([4, 3, 4, 1, 4, 2, 3, 4, 2, 3], dtype=torch.float32)
    scale = torch.where(n > 1, n / (n - 1).clamp(min=1), torch.zeros_like(n))
    assert_close(rloo_advantages(REWARDS, GROUPS), scale * dr_grpo_advantages(REWARDS, GROUPS))


def test_reinforce_pp_hand_values():
    # r = [1, 2, 3, 6]: mean 3, deviations [−2, −1, 0, 3], unbiased var 14/3, std 2.160247
    r = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert_close(reinforce_pp_advantages(r), torch.tensor([-0.925820, -0.462910, 0.0, 1.388730]), atol=1e-5, rtol=0)
    # baseline, groups [0, 0, 1, 1]: centred [−0.5, 0.5, −1.5, 1.5], mean 0, var 5/3, std 1.290994
    g = torch.tensor([0, 0, 1, 1])
    expected = torch.tensor([-0.387298, 0.387298, -1.161895, 1.161895])
    assert_close(reinforce_pp_advantages(r, g, baseline=True), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="group_ids"):
        reinforce_pp_advantages(r, baseline=True)


@pytest.mark.parametrize("fn", [grpo_advantages, dr_grpo_advantages, rloo_advantages])
def test_degenerate_groups_are_exact_zeros(fn):
    # 0.1 is not representable: a float mean leaves residues that GRPO's
    # 1/(std + eps) would amplify. The result must be exactly 0, and finite.
    r = torch.tensor([0.1, 0.1, 0.1, 0.7, 5.0])
    g = torch.tensor([3, 3, 3, 8, 9])
    out = fn(r, g)
    assert torch.equal(out, torch.zeros(5))


def test_reinforce_pp_degenerate_batches():
    assert torch.equal(reinforce_pp_advantages(torch.tensor([0.3, 0.3, 0.3])), torch.zeros(3))
    assert torch.equal(reinforce_pp_advantages(torch.tensor([2.0])), torch.zeros(1))
    # baseline mode: all groups all-equal → zeros, not 0/eps noise
    r, g = torch.tensor([0.1, 0.1, 0.7, 0.7]), torch.tensor([0, 0, 1, 1])
    assert torch.equal(reinforce_pp_advantages(r, g, baseline=True), torch.zeros(4))


def test_group_estimators_keep_dtype_and_empty_batch():
    r = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert grpo_advantages(r, torch.tensor([0, 0])).dtype == torch.float64
    assert grpo_advantages(r.half(), torch.tensor([0, 0])).dtype == torch.float32
    assert grpo_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.long)).shape == (0,)


def test_zero_variance_group_fraction():
    # groups 10 and 7 vary; −1 (singleton) and 4 (equal) do not → 2/4
    assert zero_variance_group_fraction(REWARDS, GROUPS) == 0.5
