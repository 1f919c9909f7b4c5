"""Per-token estimators of KL(π ‖ π_ref) from samples of π (Schulman, 2020,
"Approximating KL divergence").

With x ~ π and ρ = π_ref(x) / π(x), i.e. log ρ = ref_logp − logp:
    k1 = −log ρ                   unbiased; high variance; negative per sample
    k2 = ½ (log ρ)²               biased (exact to second order); ≥ 0
    k3 = (ρ − 1) − log ρ          unbiased (E[ρ] = 1); low variance; ≥ 0
k3 is GRPO's KL term ("low_var_kl" in verl). Used either as a loss (added to
the policy loss with a coefficient) or as a per-token reward penalty
(`rewards − β·kl`, PPO-RLHF style); these functions only estimate.
"""

from __future__ import annotations

import torch

from rlvlm.algos._checks import check_range, check_same_shape, to_floats
from rlvlm.algos.enums import AggregationMode, KLEstimator, parse_choice
from rlvlm.algos.masked import aggregate, masked_mean

# Bounds log ρ before exp() in k3, so a token the policy now finds far likelier
# than the reference does gives a large but finite penalty, not inf.
MAX_LOG_RATIO = 20.0


def _log_rho(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    check_same_shape(logp=logp, ref_logp=ref_logp)
    return (ref_logp.detach() - logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = logp − ref_logp per token. Shapes: `(B, T)` or any, elementwise."""
    return -_log_rho(logp, ref_logp)


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = ½ (logp − ref_logp)² per token. Shapes: elementwise."""
    return 0.5 * _log_rho(logp, ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = exp(ref_logp − logp) − 1 − (ref_logp − logp) per token; ≥ 0. Shapes: elementwise."""
    log_rho = _log_rho(logp, ref_logp)
    # expm1 keeps precision when the policy is still close to the reference.
    return torch.expm1(log_rho) - log_rho


KL_ESTIMATORS = {KLEstimator.K1: kl_k1, KLEstimator.K2: kl_k2, KLEstimator.K3: kl_k3}


def kl_estimate(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    kind: KLEstimator | str = KLEstimator.K3,
    clamp: float | None = None,
) -> torch.Tensor:
    """Per-token KL estimate of the chosen `kind`, optionally clamped to [−clamp, clamp].

    Clamping (verl uses 10) caps the penalty of a few runaway tokens so they
    cannot dominate the update; it biases the estimate. Shapes: elementwise.
    """
    kind = parse_choice(KLEstimator, kind, field="kl.estimator")
    kl = KL_ESTIMATORS[kind](logp, ref_logp)
    if clamp is not None:
        check_range("kl.clamp", clamp, 0.0, float("inf"), low_open=True)
        kl = kl.clamp(-clamp, clamp)
    return kl


def kl_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    kind: KLEstimator | str = KLEstimator.K3,
    clamp: float | None = None,
    aggregation: AggregationMode | str = AggregationMode.TOKEN_MEAN,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KL to the reference as a loss term: aggregate(kl_estimate(logp, ref_logp), mask).

    The caller multiplies by its coefficient. Shapes: logp, ref_logp, mask
    `(B, T)` or `(B,)`. Metrics: loss/kl (the aggregated estimate),
    policy/kl (its token mean, comparable across aggregation modes) and
    policy/kl_max (the largest valid per-token estimate).
    """
    check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    m = torch.ones_like(logp, dtype=torch.bool) if mask is None else mask.bool()
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    # Padding may hold -inf log-probs; zero them before any arithmetic.
    per_token = kl_estimate(torch.where(m, logp, zero), torch.where(m, ref_logp, zero), kind, clamp)
    loss = aggregate(per_token, m, aggregation)
    with torch.no_grad():
        kl_max = torch.where(m.any(), torch.where(m, per_token, -torch.inf).max(), zero)
        metrics = {"loss/kl": loss, "policy/kl": masked_mean(per_token, m), "policy/kl_max": kl_max}
    return loss, to_floats(metrics)
