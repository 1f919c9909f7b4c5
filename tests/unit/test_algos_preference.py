"""Bradley–Terry and DPO losses.

Reference values: −log σ(z) = log(1 + e^{−z}):
  z = 1 → 0.313262;  z = 0 → 0.693147;  z = −0.5 → 0.974077;  z = 0.5 → 0.474077
  z = −1 → 1.313262; z = −2 → 2.126928; z = −3 → 3.048587
"""

import math

import pytest
import torch
from torch.testing import assert_close

from rlvlm.algos import bradley_terry_loss, dpo_loss
from rlvlm.errors import ConfigError


def test_bradley_terry_hand_values():
    # diffs r_c − r_r = [1, 0, −2] → mean(0.313262, 0.693147, 2.126928) = 1.044446
    chosen = torch.tensor([2.0, 0.0, 1.0], requires_grad=True)
    rejected = torch.tensor([1.0, 0.0, 3.0])
    loss, m = bradley_terry_loss(chosen, rejected)
    assert_close(loss, torch.tensor(1.044446), atol=1e-6, rtol=0)
    assert m["reward_model/accuracy"] == pytest.approx(0.5)  # right, tie (½), wrong
    assert m["reward_model/margin"] == pytest.approx(-1 / 3)
    assert m["reward_model/chosen"] == pytest.approx(1.0)
    loss.backward()
    # ∂/∂r_c of −log σ(d) = −σ(−d), averaged over 3
    assert_close(chosen.grad, -torch.sigmoid(-torch.tensor([1.0, 0.0, -2.0])) / 3)


def test_bradley_terry_margin():
    # z = diff − 1 = [0, −1, −3] → mean(0.693147, 1.313262, 3.048587) = 1.684999
    loss, m = bradley_terry_loss(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 3.0]), margin=1.0)
    assert_close(loss, torch.tensor(1.684999), atol=1e-6, rtol=0)
    assert m["reward_model/accuracy"] == pytest.approx(0.5)  # accuracy ignores the margin
    per_pair, _ = bradley_terry_loss(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 3.0]),
                                     margin=torch.tensor([1.0, 1.0, 1.0]))  # fmt: skip
    assert_close(per_pair, loss)


def test_bradley_terry_extreme_scores_are_finite():
    loss, _ = bradley_terry_loss(torch.tensor([-1e4]), torch.tensor([1e4]))
    assert loss.item() == pytest.approx(2e4)


def test_dpo_hand_values():
    # β = 0.5. implicit rewards: chosen 0.5·([−1, −2] − [−2, −2]) = [0.5, 0]
    #                            rejected 0.5·([−3, −1] − [−2, −2]) = [−0.5, 0.5]
    # z = [1, −0.5] → mean(0.313262, 0.974077) = 0.643669
    pc = torch.tensor([-1.0, -2.0], requires_grad=True)
    pr = torch.tensor([-3.0, -1.0], requires_grad=True)
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    loss, m = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert_close(loss, torch.tensor(0.643669), atol=1e-6, rtol=0)
    assert m["dpo/accuracy"] == 0.5
    assert m["dpo/margin"] == pytest.approx(0.25)
    assert m["dpo/reward_chosen"] == pytest.approx(0.25)
    assert m["dpo/reward_rejected"] == pytest.approx(0.0)
    loss.backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()  # raise chosen, lower rejected


def test_dpo_label_smoothing():
    # ε = 0.1: 0.9·(−log σ(z)) + 0.1·(−log σ(−z)):
    #   z = 1:    0.9·0.313262 + 0.1·1.313262 = 0.413262
    #   z = −0.5: 0.9·0.974077 + 0.1·0.474077 = 0.924077   → mean 0.668669
    pc, pr, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -2.0])
    args = (pc, pr, ref, ref)
    loss, _ = dpo_loss(*args, beta=0.5, label_smoothing=0.1)
    assert_close(loss, torch.tensor(0.668669), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        dpo_loss(*args, label_smoothing=0.5)
    with pytest.raises(ConfigError, match="beta"):
        dpo_loss(*args, beta=0.0)


def test_dpo_policy_equal_to_reference_is_log2():
    lp = torch.tensor([-3.0, -7.0, -1.0])
    loss, m = dpo_loss(lp, lp + 1, lp, lp + 1)
    assert loss.item() == pytest.approx(math.log(2))
    assert m["dpo/accuracy"] == 0.5


def test_dpo_rounding_noise_is_a_tie():
    # The policy and its frozen copy may round one sequence's log-prob differently (~1e-6):
    # z = 0.1 * 2e-6 is a tie (½), z = 0.1 * 1.0 a win.
    lp = torch.tensor([-20.0, -20.0])
    ref_r = torch.tensor([-20.0 + 2e-6, -19.0])
    _, m = dpo_loss(lp, lp, lp, ref_r)
    assert m["dpo/accuracy"] == pytest.approx(0.75)
