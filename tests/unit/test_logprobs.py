"""The fused, chunked log-prob / entropy function: hand-worked values, and op-by-op agreement."""

from __future__ import annotations

import math

import pytest
import torch

from rlvlm.algos import token_logprobs


def test_hand_worked_two_tokens():
    # logits [0, ln 3] -> p = [1/4, 3/4]
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    lp, ent = token_logprobs(logits, torch.tensor([[1]]))
    assert lp.item() == pytest.approx(math.log(0.75), abs=1e-6)
    assert ent.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)


def test_temperature_divides_logits():
    # [0, 2 ln 3] at T = 2 is [0, ln 3] at T = 1.
    logits = torch.tensor([[[0.0, 2 * math.log(3.0)]]])
    lp, _ = token_logprobs(logits, torch.tensor([[0]]), temperature=2.0)
    assert lp.item() == pytest.approx(math.log(0.25), abs=1e-6)


def test_blocked_ids_have_zero_probability():
    # Token 2 would dominate (logit 5) but is blocked: the rest is uniform over {0, 1}.
    logits = torch.tensor([[[0.0, 0.0, 5.0]]], requires_grad=True)
    lp, ent = token_logprobs(logits, torch.tensor([[0]]), blocked=[2])
    assert lp.item() == pytest.approx(math.log(0.5), abs=1e-6)
    assert ent.item() == pytest.approx(math.log(2.0), abs=1e-6)
    (lp + ent).sum().backward()
    # d lp / dz = onehot - p = [0.5, -0.5, 0]; d H / dz = -p (log p + H) = 0 for a uniform p.
    assert torch.allclose(logits.grad, torch.tensor([[[0.5, -0.5, 0.0]]]), atol=1e-6)
    assert torch.isfinite(logits.grad).all()


def _reference(logits, targets, temps, blocked):
    z = logits / temps.view(-1, 1, 1)
    if blocked:
        z = z.clone()
        z[..., blocked] = float("-inf")
    logp = torch.log_softmax(z, dim=-1)
    lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp.masked_fill(torch.isinf(logp), 0.0)).sum(-1)
    return lp, ent


@pytest.mark.parametrize("chunk", [0, 1, 3, 64])
@pytest.mark.parametrize("blocked", [[], [1, 7]])
def test_values_and_gradients_match_op_by_op(chunk, blocked):
    g = torch.Generator().manual_seed(0)
    B, T, V = 5, 4, 11
    base = torch.randn(B, T, V, generator=g) * 3
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[targets == 1] = 0  # targets are never blocked ids
    targets[targets == 7] = 2
    temps = torch.tensor([1.0, 0.7, 1.3, 1.0, 2.0])
    up_lp, up_ent = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    x1 = base.clone().requires_grad_(True)
    x2 = base.clone().requires_grad_(True)
    lp1, ent1 = token_logprobs(x1, targets, temps, blocked, chunk_rows=chunk)
    lp2, ent2 = _reference(x2, targets, temps, blocked)
    assert torch.allclose(lp1, lp2, atol=1e-5) and torch.allclose(ent1, ent2, atol=1e-5)
    ((lp1 * up_lp).sum() + (ent1 * up_ent).sum()).backward()
    ((lp2 * up_lp).sum() + (ent2 * up_ent).sum()).backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 6, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randint(0, 5, (3, 2), generator=g)
    temps = torch.tensor([1.0, 0.5, 1.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: token_logprobs(z, y, temps, [5], chunk_rows=2), (x,))


def test_bfloat16_logits_give_fp32_results():
    logits = torch.randn(2, 3, 8).to(torch.bfloat16)
    lp, ent = token_logprobs(logits, torch.zeros(2, 3, dtype=torch.long))
    assert lp.dtype == torch.float32 and ent.dtype == torch.float32
    ref, _ = _reference(logits.float(), torch.zeros(2, 3, dtype=torch.long), torch.ones(2), [])
    assert torch.allclose(lp, ref, atol=1e-5)
