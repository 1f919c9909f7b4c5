"""Per-token log-probs and entropies from logits: one fused, row-chunked autograd function.

For logits z (B, T, V), targets y (B, T), per-row temperature τ (B,) and a set
of blocked vocabulary ids K (probability 0):

    z'      = z / τ_b, with z'_k = -inf for k ∈ K
    logZ    = log Σ_v exp z'_v
    lp[b,t] = z'_y - logZ                               (log softmax of the target)
    H[b,t]  = -Σ_v p_v log p_v = logZ - Σ_v p_v z'_v    (p = softmax z'; blocked terms are 0)

Gradients (backward, per row, with upstream g_lp, g_H):

    ∂lp/∂z'_j = 1[j = y] - p_j        ∂H/∂z'_j = -p_j (log p_j + H)
    ∂/∂z_j    = (g_lp (1[j = y] - p_j) - g_H p_j (log p_j + H)) / τ_b,   0 for j ∈ K

Written as a plain chain of torch ops, this keeps several (B, T, V) fp32
tensors (scaled logits, log-softmax, probabilities, their product) alive for
backward: with a 150k vocabulary that is gigabytes, and on a CPU each full pass
over them costs more than the matrix multiplies that made the logits. Here
nothing of size V is saved: backward recomputes p from the logits and logZ,
`chunk_rows` rows at a time, so the temporaries are one chunk's worth and
stay in cache. Values and gradients match the op-by-op version (tests).
"""

from __future__ import annotations

from typing import Sequence

import torch


def _scaled(logits: torch.Tensor, temps: torch.Tensor, blocked: torch.Tensor | None) -> torch.Tensor:
    """z / τ in at least fp32, blocked columns at -inf, always a fresh tensor (callers write into it)."""
    z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    z = z / temps.view(-1, 1, 1) if not bool((temps == 1).all()) else z.clone()
    if blocked is not None:
        z.masked_fill_(blocked, float("-inf"))
    return z


def _chunks(n: int, size: int):
    size = n if size <= 0 else size
    return [slice(s, min(n, s + size)) for s in range(0, n, size)] or [slice(0, 0)]


class _TokenLogprobEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, temps, blocked, chunk_rows):
        B, T, _ = logits.shape
        lp = torch.empty((B, T), dtype=torch.promote_types(logits.dtype, torch.float32), device=logits.device)
        ent = torch.empty_like(lp)
        log_z = torch.empty_like(lp)
        for s in _chunks(B, chunk_rows):
            z = _scaled(logits[s], temps[s], blocked)
            lz = torch.logsumexp(z, dim=-1)
            lp[s] = z.gather(-1, targets[s].unsqueeze(-1)).squeeze(-1) - lz
            p = torch.exp(z - lz.unsqueeze(-1))
            if blocked is not None:
                z.masked_fill_(blocked, 0.0)  # p is 0 there: 0 * -inf would be NaN
            ent[s] = lz - (p * z).sum(-1)
            log_z[s] = lz
        ctx.save_for_backward(logits, targets, temps, log_z, ent)
        ctx.blocked, ctx.chunk_rows = blocked, chunk_rows
        return lp, ent

    @staticmethod
    def backward(ctx, g_lp, g_ent):
        logits, targets, temps, log_z, ent = ctx.saved_tensors
        blocked = ctx.blocked
        grad = torch.empty_like(logits)
        g_lp = torch.zeros_like(log_z) if g_lp is None else g_lp
        g_ent = torch.zeros_like(log_z) if g_ent is None else g_ent
        for s in _chunks(logits.shape[0], ctx.chunk_rows):
            logp = _scaled(logits[s], temps[s], blocked).sub_(log_z[s].unsqueeze(-1))
            p = torch.exp(logp)
            if blocked is not None:
                logp.masked_fill_(blocked, 0.0)
            # g = -p * (g_lp + g_H (log p + H)), then + g_lp at the target.
            g = logp.add_(ent[s].unsqueeze(-1)).mul_(g_ent[s].unsqueeze(-1)).add_(g_lp[s].unsqueeze(-1)).mul_(p).neg_()
            g.scatter_add_(-1, targets[s].unsqueeze(-1), g_lp[s].unsqueeze(-1))
            if blocked is not None:
                g.masked_fill_(blocked, 0.0)
            g.div_(temps[s].view(-1, 1, 1))
            grad[s] = g.to(grad.dtype)
        return grad, None, None, None, None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: torch.Tensor | float = 1.0,
                   blocked: Sequence[int] = (), chunk_rows: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs, entropies), each (B, T) in fp32 (fp64 for fp64 logits), of `targets` under softmax(logits / τ) (module doc).

    logits: (B, T, V) any float dtype; targets: (B, T) long; temperature: a
    float or (B,) per-row values; blocked: vocabulary ids with probability 0;
    chunk_rows: rows per chunk of the V-sized work (0 = all rows at once).
    """
    B, _, V = logits.shape
    temps = torch.as_tensor(temperature, dtype=torch.promote_types(logits.dtype, torch.float32),
                            device=logits.device).expand(B).contiguous()
    mask = None
    if len(blocked):
        mask = torch.zeros(V, dtype=torch.bool, device=logits.device)
        mask[torch.as_tensor(list(blocked), device=logits.device)] = True
    return _TokenLogprobEntropy.apply(logits, targets, temps, mask, int(chunk_rows))
