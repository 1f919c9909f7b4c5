"""The critic's loss and its diagnostic."""

from __future__ import annotations

import torch

from rlvlm.algos._checks import check_range, check_same_shape, to_floats
from rlvlm.algos.enums import AggregationMode
from rlvlm.algos.masked import aggregate, masked_mean, masked_var


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    clip: float | None = None,
    aggregation: AggregationMode | str = AggregationMode.TOKEN_MEAN,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO2-style clipped value loss.

        ℓ = ½ · (V − R)²                                    if clip is None
        ℓ = ½ · max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)   otherwise
        loss = aggregate(ℓ, mask, aggregation)

    V = `values` (current critic, with grad), V_old = `old_values` (the critic
    at rollout time), R = `returns` (e.g. GAE's returns). Taking the max is
    pessimistic: a step that moves V more than c away from V_old gets no credit
    for the part beyond c, keeping the critic close to where the advantages
    were computed. Note c is in reward units, so it interacts with reward scale.

    Shapes: `(B,)` (one value per env step) or `(B, T)` with a mask.
    Metrics: loss/value, value/clip_frac (entries where the clipped error is
    the larger one), value/mean, value/explained_var.
    """
    check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    if clip is not None:
        check_range("value_clip", clip, 0.0, float("inf"), low_open=True)
    m = torch.ones_like(values, dtype=torch.bool) if mask is None else mask.bool()
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    # Zero masked slots first so NaN padding cannot reach the gradient.
    values = torch.where(m, values, zero)
    old_values = torch.where(m, old_values.detach().to(values.dtype), zero)
    returns = torch.where(m, returns.detach().to(values.dtype), zero)

    unclipped = (values - returns) ** 2
    if clip is None:
        per_entry = 0.5 * unclipped
        clip_frac: torch.Tensor | float = 0.0
    else:
        v_clipped = old_values + (values - old_values).clamp(-clip, clip)
        clipped = (v_clipped - returns) ** 2
        per_entry = 0.5 * torch.maximum(unclipped, clipped)
        clip_frac = masked_mean((clipped > unclipped).to(values.dtype), m)
    loss = aggregate(per_entry, m, aggregation)
    with torch.no_grad():
        metrics = {
            "loss/value": loss,
            "value/clip_frac": clip_frac,
            "value/mean": masked_mean(values, m),
            "value/explained_var": _explained_variance(values, returns, m),
        }
    return loss, to_floats(metrics)


def _explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    var_r = masked_var(returns, mask)
    ev = 1.0 - masked_var(returns - values, mask) / var_r.clamp(min=torch.finfo(var_r.dtype).tiny)
    return torch.where(var_r > 0, ev, torch.zeros_like(ev))


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """EV = 1 − Var[R − V] / Var[R] over the valid entries.

    1 means the critic predicts the returns perfectly, 0 means no better than a
    constant, negative means worse than a constant. Undefined when Var[R] = 0
    (e.g. all episodes returned the same); 0.0 is returned then, so logs stay
    finite. Shapes: values, returns, mask `(...)`.
    """
    check_same_shape(values=values, returns=returns, mask=mask)
    with torch.no_grad():
        dt = torch.promote_types(values.dtype, torch.float32)
        return float(_explained_variance(values.to(dt), returns.to(dt), mask))
