"""Argument checks shared by the algos modules.

Hyperparameters come from user config, so a bad one raises `ConfigError`
naming it. Shape mismatches are bugs in the calling code, so they raise a plain
`ValueError` naming the tensors and their shapes.
"""

from __future__ import annotations

import math

import torch

from rlvlm.errors import ConfigError


def check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    """Raise `ConfigError` unless `low ≤ value ≤ high` (strict on open ends)."""
    ok = not math.isnan(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ConfigError(f"{name}={value!r} is out of range; use a value in {lo}{low}, {high}{hi}")


def check_same_shape(**tensors: torch.Tensor | None) -> None:
    """Raise `ValueError` unless all the given (non-None) tensors share a shape."""
    shapes = {k: tuple(t.shape) for k, t in tensors.items() if t is not None}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{k}{list(s)}" for k, s in shapes.items())
        raise ValueError(f"shape mismatch: {listing}; these must have the same shape")


def float_dtype(t: torch.Tensor) -> torch.dtype:
    """At least float32: sums and recursions in bf16/fp16 lose too much precision."""
    return torch.promote_types(t.dtype, torch.float32)


def to_floats(metrics: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Detach metric tensors into Python floats with one device→host copy.

    One `.tolist()` on a stacked tensor instead of an `.item()` per metric:
    each `.item()` is a separate GPU sync.
    """
    keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor)}
    if keys:
        stacked = torch.stack([metrics[k].detach().to(torch.float64).reshape(()) for k in keys])
        out.update(zip(keys, stacked.cpu().tolist()))
    return {k: out[k] for k in metrics}
