"""KL estimators, the KL loss, the entropy bonus and the adaptive coefficient."""

import json
import math

import pytest
import torch
from torch.testing import assert_close

from rlvlm.algos import EntropyCoefficient, entropy_bonus, kl_estimate, kl_k1, kl_k2, kl_k3, kl_loss
from rlvlm.errors import ConfigError

LN2 = math.log(2.0)


def test_kl_estimators_hand_values():
    # π = 0.5, π_ref = 0.25 → log ρ = log(π_ref/π) = −ln 2
    #   k1 = ln 2 = 0.693147;  k2 = ½ ln²2 = 0.240227;  k3 = (0.5 − 1) + ln 2 = 0.193147
    # π = 0.25, π_ref = 0.5 → log ρ = +ln 2
    #   k1 = −0.693147;        k2 = 0.240227;           k3 = (2 − 1) − ln 2 = 0.306853
    logp = torch.tensor([math.log(0.5), math.log(0.25)])
    ref = torch.tensor([math.log(0.25), math.log(0.5)])
    assert_close(kl_k1(logp, ref), torch.tensor([LN2, -LN2]))
    assert_close(kl_k2(logp, ref), torch.tensor([0.5 * LN2**2] * 2))
    assert_close(kl_k3(logp, ref), torch.tensor([LN2 - 0.5, 1 - LN2]))
    assert_close(kl_estimate(logp, ref, "k3"), kl_k3(logp, ref))


def test_k1_and_k3_are_unbiased_k3_nonnegative():
    # Exact expectation over a small categorical: E_π[k] = Σ_x π(x)·k(x).
    # k1 and k3 are unbiased for KL(π ‖ π_ref); k2 is not (but ≥ 0).
    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(7, generator=g, dtype=torch.float64), 0)
    ref = torch.log_softmax(torch.randn(7, generator=g, dtype=torch.float64), 0)
    p = logp.exp()
    kl = (p * (logp - ref)).sum()
    assert_close((p * kl_k1(logp, ref)).sum(), kl)
    assert_close((p * kl_k3(logp, ref)).sum(), kl)
    many = torch.randn(1000, generator=g) * 5
    assert (kl_k3(many, torch.randn(1000, generator=g) * 5) >= 0).all()
    assert (kl_k2(many, -many) >= 0).all()


def test_kl_clamps_and_stays_finite():
    logp, ref = torch.tensor([-200.0]), torch.tensor([0.0])  # ρ = e^200 would overflow
    assert torch.isfinite(kl_k3(logp, ref)).all()
    assert kl_estimate(logp, ref, "k3", clamp=10.0).item() == 10.0
    assert kl_estimate(-logp, ref, "k1", clamp=10.0).item() == 10.0
    with pytest.raises(ConfigError, match="kl.estimator"):
        kl_estimate(logp, ref, "k4")


def test_kl_loss_masked_and_gradient_only_through_policy():
    logp = torch.tensor([[math.log(0.5), -math.inf], [math.log(0.25), math.log(0.5)]], requires_grad=True)
    ref = torch.tensor([[math.log(0.25), -math.inf], [math.log(0.5), math.log(0.5)]], requires_grad=True)
    mask = torch.tensor([[1, 0], [1, 1]])
    loss, m = kl_loss(logp, ref, mask, kind="k3")
    # token mean of k3 over valid tokens: (0.193147 + 0.306853 + 0)/3 = 1/6
    assert_close(loss, torch.tensor(1 / 6))
    assert m["policy/kl_max"] == pytest.approx(1 - LN2)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and ref.grad is None


def test_entropy_bonus_hand_value():
    # valid entropies 1, 2, 3 → token mean 2; bonus term −0.1·2 = −0.2
    h = torch.tensor([[1.0, 2.0, math.nan], [3.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, m = entropy_bonus(h, mask, coef=0.1)
    assert_close(loss, torch.tensor(-0.2))
    assert m == pytest.approx({"loss/entropy": -0.2, "policy/entropy": 2.0, "policy/entropy_coef": 0.1})
    loss.backward()
    assert_close(h.grad, torch.tensor([[-0.1 / 3, -0.1 / 3, 0.0], [-0.1 / 3, 0.0, 0.0]]))


def test_fixed_entropy_coefficient():
    c = EntropyCoefficient(coef=1e-3)
    assert not c.adaptive and c.update(0.0) == pytest.approx(1e-3)
    zero = EntropyCoefficient()
    assert zero.coef == 0.0 and zero.update(5.0) == 0.0
    json.dumps(zero.state_dict())  # no -inf in the state


def test_adaptive_entropy_coefficient_hand_values_and_state():
    # log c ← log c + lr·(target − H): lr 0.5, target 1
    #   H = 0 → c = 0.01·e^{0.5} = 0.0164872;  H = 2 → back to 0.01
    c = EntropyCoefficient(coef=0.01, target=1.0, lr=0.5, max_coef=0.02)
    assert c.update(0.0) == pytest.approx(0.01 * math.exp(0.5))
    assert c.update(2.0) == pytest.approx(0.01)
    assert c.update(math.nan) == pytest.approx(0.01)  # a bad batch is ignored
    assert c.update(-10.0) == pytest.approx(0.02)  # clipped at max_coef: no wind-up
    state = json.loads(json.dumps(c.state_dict()))
    resumed = EntropyCoefficient(coef=0.5, target=3.0)
    resumed.load_state_dict(state)
    assert resumed.coef == c.coef and resumed.steps == c.steps == 3
    assert resumed.update(0.7) == c.update(0.7)


def test_adaptive_entropy_coefficient_validation():
    with pytest.raises(ConfigError, match="entropy.coef"):
        EntropyCoefficient(coef=0.0, target=1.0)  # log-space controller needs c > 0
    with pytest.raises(ConfigError, match="entropy.lr"):
        EntropyCoefficient(coef=0.01, target=1.0, lr=0.0)
