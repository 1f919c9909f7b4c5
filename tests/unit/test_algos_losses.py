"""PPO / REINFORCE policy losses, value loss, action log-probs, masked reductions."""

import math

import pytest
import torch
from torch.testing import assert_close

from rlvlm.algos import (
    action_logprob,
    aggregate,
    explained_variance,
    masked_mean,
    masked_var,
    masked_whiten,
    ppo_clip_loss,
    reinforce_loss,
    sequence_logprob,
    value_loss,
)
from rlvlm.errors import ConfigError

LOG = math.log

# --- masked reductions and aggregation ------------------------------------------------


def test_masked_mean_var_whiten_hand_values():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    m = torch.tensor([1, 1, 1, 0])
    assert masked_mean(x, m).item() == 2.0
    assert masked_var(x, m).item() == 1.0  # ((−1)² + 0 + 1²) / (3 − 1)
    assert_close(masked_var(x, m, unbiased=False), torch.tensor(2 / 3))
    # (x − 2)/1 on valid entries, masked entry → 0
    assert_close(masked_whiten(x, m, eps=0.0), torch.tensor([-1.0, 0.0, 1.0, 0.0]))
    assert_close(masked_whiten(x, m, shift_mean=False, eps=0.0), torch.tensor([1.0, 2.0, 3.0, 0.0]))


def test_masked_reductions_empty_and_nan_padding():
    x = torch.tensor([math.nan, -math.inf, 4.0])
    m = torch.tensor([0, 0, 1])
    assert masked_mean(x, m).item() == 4.0  # NaN/inf on masked slots never leak
    assert masked_mean(x, torch.zeros(3)).item() == 0.0  # empty → 0, not NaN
    assert masked_var(x, m).item() == 0.0  # one entry: variance undefined → 0
    assert torch.isfinite(masked_whiten(x, m)).all()


def test_aggregate_modes_hand_values():
    # Two sequences: per-token losses 1 (3 tokens) and −2 (1 token), T = 3.
    loss = torch.tensor([[1.0, 1.0, 1.0], [-2.0, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert_close(aggregate(loss, mask, "token_mean"), torch.tensor(0.25))  # (3 − 2)/4
    assert_close(aggregate(loss, mask, "seq_mean"), torch.tensor(-0.5))  # (1 + −2)/2
    assert_close(aggregate(loss, mask, "seq_mean_token_sum"), torch.tensor(0.5))  # (3 + −2)/2
    assert_close(aggregate(loss, mask, "seq_mean_token_sum_norm"), torch.tensor(1 / 6))  # 1/(2·3)
    assert_close(aggregate(loss, mask, "seq_mean_token_sum_norm", norm_constant=10), torch.tensor(0.05))


def test_aggregate_skips_empty_sequences_and_handles_1d():
    loss = torch.tensor([[2.0, 4.0], [9.0, 9.0]])
    mask = torch.tensor([[1, 1], [0, 0]])
    assert aggregate(loss, mask, "seq_mean").item() == 3.0  # the empty row is not a sequence
    assert aggregate(loss, torch.zeros(2, 2), "seq_mean").item() == 0.0
    v = torch.tensor([1.0, 2.0, 6.0])
    for mode in ("token_mean", "seq_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"):
        assert aggregate(v, torch.tensor([1, 1, 0]), mode).item() == 1.5
    with pytest.raises(ConfigError, match="aggregation"):
        aggregate(loss, mask, "token-sum")


# --- action-level log-probs -----------------------------------------------------------


def test_action_logprob_hand_value():
    # prompt token, two thought tokens, two action tokens; λ = 0.5
    # 0.5·(−2 − 3) + (−4 − 5) = −11.5
    logp = torch.tensor([[-1.0, -2.0, -3.0, -4.0, -5.0]])
    thought = torch.tensor([[0, 1, 1, 0, 0]])
    action = torch.tensor([[0, 0, 0, 1, 1]])
    assert_close(action_logprob(logp, thought, action, thought_coef=0.5), torch.tensor([-11.5]))
    assert_close(sequence_logprob(logp, thought + action), torch.tensor([-14.0]))
    with pytest.raises(ValueError, match="overlap"):
        action_logprob(logp, thought, thought, 0.5)
    with pytest.raises(ConfigError, match="thought_coef"):
        action_logprob(logp, thought, action, thought_coef=2.0)


def test_action_logprob_ignores_inf_padding():
    logp = torch.tensor([[-1.0, -2.0, -math.inf]], requires_grad=True)
    lp = action_logprob(logp, torch.tensor([[1, 0, 0]]), torch.tensor([[0, 1, 0]]), 0.5)
    lp.sum().backward()
    assert lp.item() == -2.5
    assert_close(logp.grad, torch.tensor([[0.5, 1.0, 0.0]]))


# --- PPO clip ------------------------------------------------------------------------

# Action-level case, ε = 0.2:
#   r     A    −rA   −clip(r)A   max    clip active?
#   1.5   +1   −1.5  −1.2        −1.2   yes (high)
#   0.5   −1   +0.5  +0.8        +0.8   yes (low)
#   1.5   −1   +1.5  +1.2        +1.5   no
#   0.5   +1   −0.5  −0.8        −0.5   no
# loss = (−1.2 + 0.8 + 1.5 − 0.5)/4 = 0.15
# approx KL (k3, (r−1) − log r): 1.5 → 0.5 − 0.405465 = 0.094535; 0.5 → −0.5 + 0.693147 = 0.193147
#   mean = (2·0.094535 + 2·0.193147)/4 = 0.143841
RATIOS = torch.tensor([1.5, 0.5, 1.5, 0.5])
ADV = torch.tensor([1.0, -1.0, -1.0, 1.0])


def _logps(ratios):
    old = torch.tensor([-1.0, -2.0, -0.7, -3.0])
    return (old + ratios.log()).requires_grad_(True), old


def test_ppo_clip_hand_values_and_metrics():
    logp, old = _logps(RATIOS)
    loss, m = ppo_clip_loss(logp, old, ADV, clip_low=0.2)
    assert_close(loss, torch.tensor(0.15))
    assert m["loss/policy"] == pytest.approx(0.15)
    assert m["policy/clip_frac"] == 0.5
    assert m["policy/clip_frac_low"] == 0.25
    assert m["policy/clip_frac_high"] == 0.25
    assert m["policy/dual_clip_frac"] == 0.0
    assert m["policy/approx_kl"] == pytest.approx(0.143841, abs=1e-6)
    assert m["policy/ratio_mean"] == pytest.approx(1.0)
    assert m["policy/ratio_max"] == pytest.approx(1.5)
    assert m["policy/ratio_min"] == pytest.approx(0.5)
    # Gradient: clipped entries get none; unclipped −rA has ∂/∂logp = −A·r, over 4.
    loss.backward()
    assert_close(logp.grad, torch.tensor([0.0, 0.0, 1.5, -0.5]) / 4)


def test_ppo_clip_higher():
    # ε_high = 0.6: r = 1.5 with A > 0 is inside [0.8, 1.6], no longer clipped:
    # loss = (−1.5 + 0.8 + 1.5 − 0.5)/4 = 0.075; only the low clip stays active.
    logp, old = _logps(RATIOS)
    loss, m = ppo_clip_loss(logp, old, ADV, clip_low=0.2, clip_high=0.6)
    assert_close(loss, torch.tensor(0.075))
    assert (m["policy/clip_frac"], m["policy/clip_frac_low"], m["policy/clip_frac_high"]) == (0.25, 0.25, 0.0)


def test_ppo_dual_clip():
    # r = 5, A = −1: max(5, 1.2) = 5, then dual clip c = 3 bounds it: min(5, 3) = 3.
    # r = 2, A = −1: max(2, 1.2) = 2 < 3, untouched. r = 5, A = +1: max(−5, −1.2) = −1.2.
    ratios = torch.tensor([5.0, 2.0, 5.0])
    old = torch.zeros(3)
    logp = ratios.log().requires_grad_(True)
    adv = torch.tensor([-1.0, -1.0, 1.0])
    loss, m = ppo_clip_loss(logp, old, adv, clip_low=0.2, dual_clip=3.0)
    assert_close(loss, torch.tensor((3.0 + 2.0 - 1.2) / 3))
    assert m["policy/dual_clip_frac"] == pytest.approx(1 / 3)
    loss.backward()
    assert logp.grad[0].item() == 0.0  # the dual-clipped sample no longer pulls
    loss_no_dual, _ = ppo_clip_loss(ratios.log(), old, adv, clip_low=0.2)
    assert_close(loss_no_dual, torch.tensor((5.0 + 2.0 - 1.2) / 3))


def test_ppo_ratio_one_gives_minus_mean_advantage_token_level():
    # Token level, per-sequence advantages broadcast over T, −inf padding.
    # At r = 1 the loss is −token_mean(A) = −(3·1 + 1·(−2))/4 = −0.25, and
    # ∂loss/∂logp = −A/4 on valid tokens, 0 on padding.
    logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.3, -math.inf, -math.inf]], requires_grad=True)
    old = logp.detach().clone()
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.tensor([1.0, -2.0])
    loss, m = ppo_clip_loss(logp, old, adv, mask)
    assert_close(loss, torch.tensor(-0.25))
    assert m["policy/clip_frac"] == 0.0 and m["policy/approx_kl"] == 0.0
    assert m["policy/ratio_mean"] == m["policy/ratio_max"] == 1.0
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    assert_close(logp.grad, torch.tensor([[-0.25, -0.25, -0.25], [0.5, 0.0, 0.0]]))
    # seq_mean weighs the two sequences equally: −(1 + (−2))/2 = 0.5
    loss_seq, _ = ppo_clip_loss(logp, old, adv, mask, aggregation="seq_mean")
    assert_close(loss_seq, torch.tensor(0.5))


def test_ppo_huge_log_ratio_stays_finite():
    # A summed action-level log-prob can jump by hundreds of nats; exp must not overflow.
    logp = torch.tensor([500.0, -500.0], requires_grad=True)
    loss, m = ppo_clip_loss(logp, torch.zeros(2), torch.tensor([-1.0, 1.0]))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(logp.grad).all()
    assert all(math.isfinite(v) for v in m.values())


def test_ppo_all_masked_is_zero_not_nan():
    logp = torch.full((2, 2), -math.inf, requires_grad=True)
    loss, m = ppo_clip_loss(logp, logp.detach(), torch.ones(2), torch.zeros(2, 2))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logp.grad, torch.zeros(2, 2))
    assert m["policy/ratio_max"] == 1.0 and all(math.isfinite(v) for v in m.values())


def test_ppo_validates_clip_settings():
    x = torch.zeros(2)
    with pytest.raises(ConfigError, match="clip_low"):
        ppo_clip_loss(x, x, x, clip_low=0.0)
    with pytest.raises(ConfigError, match="dual_clip"):
        ppo_clip_loss(x, x, x, dual_clip=0.9)
    with pytest.raises(ValueError, match="shape mismatch"):
        ppo_clip_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))


def test_reinforce_loss_value_and_gradient():
    # −r·A: at r = 1 the gradient is −A·∇logp (REINFORCE); value = −mean(A) = −0.5.
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    loss, m = reinforce_loss(logp, logp.detach(), adv)
    loss.backward()
    assert_close(loss, torch.tensor(-0.5))
    assert_close(logp.grad, torch.tensor([-1.0, 0.5]))
    assert m["policy/clip_frac"] == 0.0
    # off-policy: r = [1.5, 0.5] → −(1.5·2 + 0.5·(−1))/2 = −1.25, no clipping
    loss, _ = reinforce_loss(RATIOS[:2].log(), torch.zeros(2), adv)
    assert_close(loss, torch.tensor(-1.25))


# --- value loss ----------------------------------------------------------------------

# V = [1, 1, 2], V_old = [0, 0, 2], R = [0.5, 2, 3], c = 0.2:
#   (V−R)²   V_clip = V_old + clip(V−V_old, ±0.2)   (V_clip−R)²   max
#   0.25     0.2                                    0.09          0.25
#   1        0.2                                    3.24          3.24   (clipped larger)
#   1        2                                      1             1
# loss = ½·(0.25 + 3.24 + 1)/3 = 0.748333;   unclipped: ½·(0.25 + 1 + 1)/3 = 0.375


def test_value_loss_hand_values():
    v = torch.tensor([1.0, 1.0, 2.0], requires_grad=True)
    old, ret = torch.tensor([0.0, 0.0, 2.0]), torch.tensor([0.5, 2.0, 3.0])
    loss, m = value_loss(v, old, ret, clip=0.2)
    assert_close(loss, torch.tensor(0.748333), atol=1e-6, rtol=0)
    assert m["value/clip_frac"] == pytest.approx(1 / 3)
    assert m["value/mean"] == pytest.approx(4 / 3)
    loss.backward()
    # entry 1 is clipped: the clamp saturates, no gradient; others ½·2(V−R)/3
    assert_close(v.grad, torch.tensor([0.5 / 3, 0.0, -1.0 / 3]))
    loss_plain, m_plain = value_loss(v, old, ret)
    assert_close(loss_plain, torch.tensor(0.375))
    assert m_plain["value/clip_frac"] == 0.0


def test_value_loss_token_level_mask_with_nan_padding():
    v = torch.tensor([[1.0, math.nan], [2.0, 3.0]], requires_grad=True)
    ret = torch.tensor([[0.0, math.nan], [2.0, 1.0]])
    loss, m = value_loss(v, v.detach(), ret, torch.tensor([[1, 0], [1, 1]]), clip=0.5)
    loss.backward()
    assert_close(loss, torch.tensor(0.5 * (1 + 0 + 4) / 3))
    assert torch.isfinite(v.grad).all() and all(math.isfinite(x) for x in m.values())


def test_explained_variance():
    # R − V = [1, 0, −1, 0]: var 2/3; var R = 5/3 → 1 − 0.4 = 0.6
    ret = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(torch.tensor([0.0, 2.0, 4.0, 4.0]), ret) == pytest.approx(0.6)
    assert explained_variance(ret, ret) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), ret) == pytest.approx(0.0)
    assert explained_variance(torch.zeros(3), torch.ones(3)) == 0.0  # constant returns: undefined → 0
    masked = explained_variance(torch.tensor([0.0, 2.0, 4.0, 4.0, 9.0]), torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0]),
                                torch.tensor([1, 1, 1, 1, 0]))  # fmt: skip
    assert masked == pytest.approx(0.6)
