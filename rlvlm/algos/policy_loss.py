"""Policy-gradient surrogates and the log-probabilities they take.

Two granularities, chosen in config (see DESIGN.md):
- token-level (RLHF/GRPO): logp, old_logp `(B, T)` per completion token with a
  mask; one ratio per token; the per-token loss is reduced by `aggregate`;
- action-level (RL4VLM): one log-prob per env step, `(B,)`, from
  `action_logprob`; one ratio per step; mask `(B,)` or None.
Both go through the same loss functions: the shapes decide.

Masked positions are replaced by 0 *before* any arithmetic. Padding log-probs
are often -inf, and a NaN computed on a masked position poisons the gradient
even when the forward pass selects it away (0 · NaN = NaN in the backward).
"""

from __future__ import annotations

import torch

from rlvlm.algos._checks import check_range, check_same_shape, to_floats
from rlvlm.algos.enums import AggregationMode
from rlvlm.algos.masked import aggregate, masked_mean, masked_sum

# exp(20) ≈ 4.9e8: far past any clip range, yet finite in float32/bf16. A
# summed action-level log-prob can move by tens of nats after an update, and
# exp of that must not overflow to inf.
MAX_LOG_RATIO = 20.0


def sequence_logprob(token_logp: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """log π(sequence) = Σ_t m_t · logp_t. Shapes: token_logp, mask `(B, T)` → `(B,)`."""
    return masked_sum(token_logp, mask, dim=-1)


def action_logprob(
    token_logp: torch.Tensor,
    thought_mask: torch.Tensor,
    action_mask: torch.Tensor,
    thought_coef: float = 1.0,
) -> torch.Tensor:
    """RL4VLM's log-probability of one env step's action (Zhai et al., 2024).

        log π(a_t | s_t) = λ · Σ_{thought tokens} logp + Σ_{action tokens} logp

    with λ = `thought_coef`: 0.5 for gym-cards and 0.2 for ALFWorld in the
    paper (0.1 and 0.9 failed). Down-weighting the chain of thought stops its
    many tokens from swamping the few tokens that decide the action, while still
    crediting the reasoning. The thought/action split must come from character
    offsets of the text, never from hard-coded token ids.

    Shapes: token_logp, thought_mask, action_mask `(B, T)` → `(B,)`. Tokens in
    neither mask (prompt, padding, JSON punctuation before the thought) count 0.
    """
    check_range("thought_coef", thought_coef, 0.0, 1.0)
    check_same_shape(token_logp=token_logp, thought_mask=thought_mask, action_mask=action_mask)
    if bool((thought_mask.bool() & action_mask.bool()).any()):
        raise ValueError("thought_mask and action_mask overlap: a token is either thought or action, not both")
    return thought_coef * sequence_logprob(token_logp, thought_mask) + sequence_logprob(token_logp, action_mask)


def _prepare(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check shapes, broadcast per-sequence advantages to tokens, zero masked slots.

    Returns (log_ratio, ratio, advantages, bool mask), all shaped like logp.
    old_logp and advantages are detached: they are targets, not parameters.
    """
    check_same_shape(logp=logp, old_logp=old_logp, mask=mask)
    if advantages.dim() == 1 and logp.dim() == 2:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(
                f"shape mismatch: advantages{list(advantages.shape)} must be (B,) or (B, T) for logp{list(logp.shape)}"
            )
        advantages = advantages[:, None].expand_as(logp)
    check_same_shape(logp=logp, advantages=advantages)
    m = torch.ones_like(logp, dtype=torch.bool) if mask is None else mask.bool()
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    logp = torch.where(m, logp, zero)
    old_logp = torch.where(m, old_logp.detach(), zero)
    advantages = torch.where(m, advantages.detach().to(logp.dtype), zero)
    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return log_ratio, torch.exp(log_ratio), advantages, m


def _ratio_metrics(log_ratio: torch.Tensor, ratio: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
    """approx KL(π_old ‖ π) by k3 = (r − 1) − log r, and the ratio's mean/min/max."""
    with torch.no_grad():
        one = torch.ones((), dtype=ratio.dtype, device=ratio.device)
        valid_any = m.any()
        return {
            "policy/approx_kl": masked_mean((ratio - 1) - log_ratio, m),
            "policy/ratio_mean": torch.where(valid_any, masked_mean(ratio, m), one),
            "policy/ratio_max": torch.where(valid_any, torch.where(m, ratio, -torch.inf).max(), one),
            "policy/ratio_min": torch.where(valid_any, torch.where(m, ratio, torch.inf).min(), one),
        }


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
    aggregation: AggregationMode | str = AggregationMode.TOKEN_MEAN,
    norm_constant: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate (Schulman et al., 2017) with clip-higher and dual clip.

        r = exp(logp − old_logp)
        ℓ = max(−r·A, −clip(r, 1 − ε_low, 1 + ε_high)·A)          per token/step
        ℓ = min(ℓ, −c·A)   where A < 0, if dual_clip = c > 1      (Ye et al., 2020)
        loss = aggregate(ℓ, mask, aggregation)

    - ε_high = `clip_high` defaults to ε_low = `clip_low`. A larger ε_high
      (DAPO: 0.2/0.28) lets low-probability tokens with positive advantage grow
      faster, which counters entropy collapse.
    - Dual clip bounds the loss of a negative-advantage sample whose ratio has
      exploded (r ≫ 1), which otherwise dominates the batch.

    Shapes: logp, old_logp, mask `(B, T)` (token-level) or `(B,)`
    (action-level); advantages like logp, or `(B,)` broadcast over T.

    Metrics: loss/policy; policy/clip_frac = fraction of valid entries whose
    gradient the clip zeroes, split into clip_frac_low (A < 0, r < 1 − ε_low)
    and clip_frac_high (A > 0, r > 1 + ε_high); policy/dual_clip_frac;
    policy/approx_kl (k3 estimate of KL(π_old ‖ π)); policy/ratio_mean/min/max.
    """
    check_range("clip_low", clip_low, 0.0, 1.0, low_open=True, high_open=True)
    clip_high = clip_low if clip_high is None else clip_high
    check_range("clip_high", clip_high, 0.0, float("inf"), low_open=True)
    if dual_clip is not None:
        check_range("dual_clip", dual_clip, 1.0, float("inf"), low_open=True)

    log_ratio, ratio, adv, m = _prepare(logp, old_logp, advantages, mask)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        bounded = torch.minimum(per_token, -dual_clip * adv)
        dual_active = (adv < 0) & (bounded < per_token)
        per_token = torch.where(adv < 0, bounded, per_token)
    loss = aggregate(per_token, m, aggregation, norm_constant)

    with torch.no_grad():
        active = clipped > unclipped  # strictly: at the boundary the gradient still flows
        metrics = {
            "loss/policy": loss,
            "policy/clip_frac": masked_mean(active.to(ratio.dtype), m),
            "policy/clip_frac_low": masked_mean((active & (adv < 0)).to(ratio.dtype), m),
            "policy/clip_frac_high": masked_mean((active & (adv > 0)).to(ratio.dtype), m),
            "policy/dual_clip_frac": (
                masked_mean(dual_active.to(ratio.dtype), m) if dual_clip is not None else 0.0
            ),
            **_ratio_metrics(log_ratio, ratio, m),
        }
    return loss, to_floats(metrics)


def reinforce_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    aggregation: AggregationMode | str = AggregationMode.TOKEN_MEAN,
    norm_constant: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Vanilla policy gradient as an unclipped importance-weighted surrogate.

        ℓ = −r·A,   r = exp(logp − old_logp),   loss = aggregate(ℓ, mask)

    On fresh samples r = 1 and ∇ℓ = −A·∇logp, the REINFORCE gradient exactly;
    on a reused minibatch the ratio corrects for the policy having moved. Use
    it with one update per rollout, or when comparing against PPO's clip.
    Shapes and metrics as `ppo_clip_loss` (clip fractions are 0: nothing is clipped).
    """
    log_ratio, ratio, adv, m = _prepare(logp, old_logp, advantages, mask)
    loss = aggregate(-adv * ratio, m, aggregation, norm_constant)
    with torch.no_grad():
        metrics = {
            "loss/policy": loss,
            "policy/clip_frac": 0.0,
            "policy/clip_frac_low": 0.0,
            "policy/clip_frac_high": 0.0,
            "policy/dual_clip_frac": 0.0,
            **_ratio_metrics(log_ratio, ratio, m),
        }
    return loss, to_floats(metrics)
