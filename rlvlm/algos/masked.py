"""Masked reductions and the loss aggregation modes.

Conventions used across `rlvlm.algos`:
- a mask is boolean or 0/1, shaped like the tensor it masks; `None` means all
  positions are valid;
- masked-out positions never influence a result, even when they hold NaN or
  inf (padding log-probs are often -inf), because they are selected away with
  `torch.where` rather than multiplied by zero (0 · inf = NaN);
- an empty selection gives 0, not NaN: a minibatch with no valid tokens must
  not poison the update.
"""

from __future__ import annotations

from typing import Callable

import torch

from rlvlm.algos._checks import check_same_shape
from rlvlm.algos.enums import AggregationMode, parse_choice


def _bool_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones_like(x, dtype=torch.bool)
    check_same_shape(x=x, mask=mask)
    return mask.bool()


def masked_sum(x: torch.Tensor, mask: torch.Tensor | None = None, dim: int | None = None) -> torch.Tensor:
    """Σ x over valid positions (all of them, or along `dim`). Shapes: x, mask `(...)`."""
    m = _bool_mask(x, mask)
    picked = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return picked.sum() if dim is None else picked.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None, dim: int | None = None) -> torch.Tensor:
    """Σ(x·m) / Σm over all positions or along `dim`; 0 where Σm = 0.

    Shapes: x, mask `(...)` → scalar, or `(...)` without `dim`.
    """
    m = _bool_mask(x, mask)
    count = m.sum() if dim is None else m.sum(dim)
    return masked_sum(x, m, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor | None = None, unbiased: bool = True) -> torch.Tensor:
    """Variance of the valid entries of x (all dims pooled); 0 if too few entries.

    var = Σ m·(x − x̄)² / (n − 1) with `unbiased`, else / n, where n = Σm.
    With n ≤ 1 (unbiased) or n = 0 the variance is undefined; 0 is returned so a
    downstream whitening divides by √eps instead of producing NaN.
    """
    m = _bool_mask(x, mask)
    n = m.sum()
    mean = masked_mean(x, m)
    sq = masked_sum((x - mean) ** 2, m)
    denom = (n - 1 if unbiased else n).to(x.dtype)
    # torch.where rather than an `if`: no host sync when x lives on a GPU.
    return torch.where(denom > 0, sq / denom.clamp(min=1), torch.zeros((), dtype=x.dtype, device=x.device))


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """(x − x̄) / √(var + eps) over the valid entries; masked positions become 0.

    With `shift_mean=False` the mean is added back after scaling, which keeps
    the sign of, e.g., all-positive advantages while still fixing their scale.
    Shapes: x, mask `(...)` → `(...)`.
    """
    m = _bool_mask(x, mask)
    mean = masked_mean(x, m)
    var = masked_var(x, m)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m, out, torch.zeros((), dtype=out.dtype, device=out.device))


def global_whiten(
    x: torch.Tensor, mask: torch.Tensor | None, all_sum: Callable[[torch.Tensor], torch.Tensor], eps: float = 1e-8
) -> torch.Tensor:
    """`masked_whiten` with the statistics of the union of every process's x.

    Data-parallel runs hold a shard of the batch each; whitening every shard by
    its own mean and variance would give the same advantage different values on
    different ranks. `all_sum(t)` is the element-wise sum of `t` over processes
    (identity for one process). Two passes, as `masked_whiten`:

        n = Σ_r Σ m,  x̄ = Σ_r Σ x·m / n,  var = Σ_r Σ m·(x − x̄)² / (n − 1),
        out = (x − x̄) / √(var + eps),  0 where masked (and var = 0 when n ≤ 1).

    Shapes: x, mask `(...)` → `(...)`.
    """
    m = _bool_mask(x, mask)
    first = all_sum(torch.stack([masked_sum(x, m), m.sum().to(x.dtype)]))
    n = first[1]
    mean = first[0] / n.clamp(min=1)
    sq = all_sum(masked_sum((x - mean) ** 2, m).reshape(1))[0]
    var = torch.where(n > 1, sq / (n - 1).clamp(min=1), torch.zeros((), dtype=x.dtype, device=x.device))
    out = (x - mean) * torch.rsqrt(var + eps)
    return torch.where(m, out, torch.zeros((), dtype=out.dtype, device=out.device))


def aggregate(
    loss_mat: torch.Tensor,
    mask: torch.Tensor | None = None,
    mode: AggregationMode | str = AggregationMode.TOKEN_MEAN,
    norm_constant: float | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss `(B, T)` (or per-step `(B,)`) with a mask to a scalar.

    With m the mask, S the set of sequences with at least one valid token and
    C = `norm_constant` (default T):
    - token_mean:  Σ_{b,t} l·m / Σ_{b,t} m. Every token weighs the same, so long
      completions dominate (DAPO's choice).
    - seq_mean:    (1/|S|) Σ_b [Σ_t l·m / Σ_t m]. Every sequence weighs the
      same, so a token of a short completion weighs more (original GRPO).
    - seq_mean_token_sum:  (1/|S|) Σ_b Σ_t l·m.
    - seq_mean_token_sum_norm:  Σ_{b,t} l·m / (|S|·C). Dr. GRPO: a constant
      divisor removes the length bias of both of the means above.
    A `(B,)` input is treated as B sequences of one token, where every mode is
    the masked mean (the norm mode divides by C as well).
    """
    mode = parse_choice(AggregationMode, mode, field="aggregation")
    if loss_mat.dim() == 1:
        loss_mat = loss_mat.unsqueeze(1)
        mask = None if mask is None else mask.unsqueeze(1)
        if norm_constant is None:
            norm_constant = 1.0
    if loss_mat.dim() != 2:
        raise ValueError(f"aggregate expects loss_mat (B, T) or (B,), got shape {list(loss_mat.shape)}")
    m = _bool_mask(loss_mat, mask)
    if mode is AggregationMode.TOKEN_MEAN:
        return masked_mean(loss_mat, m)
    seq_tokens = m.sum(dim=1)
    n_seq = (seq_tokens > 0).sum().clamp(min=1).to(loss_mat.dtype)
    seq_sum = masked_sum(loss_mat, m, dim=1)
    if mode is AggregationMode.SEQ_MEAN:
        return (seq_sum / seq_tokens.clamp(min=1).to(loss_mat.dtype)).sum() / n_seq
    if mode is AggregationMode.SEQ_MEAN_TOKEN_SUM:
        return seq_sum.sum() / n_seq
    c = float(loss_mat.shape[1] if norm_constant is None else norm_constant)
    return seq_sum.sum() / (n_seq * c)
