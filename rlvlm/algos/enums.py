"""The open axes of the RL algorithms, as string enums.

Each member's value is the exact string a config file or CLI override uses
(`algo.aggregation=seq_mean`), so a config string maps to a member with
`parse_choice(AggregationMode, "seq_mean", field="algo.aggregation")`, which
fails with a `ConfigError` naming the field and the close matches.

These are the closed axes (fixed sets of reductions and estimators inside one
loss). The open axes, advantage estimators and policy losses, are registries
(`registry.py`) that code outside the library can extend.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from rlvlm.errors import ConfigError, did_you_mean

E = TypeVar("E", bound=StrEnum)


class AggregationMode(StrEnum):
    """How a per-token loss matrix `(B, T)` is reduced to a scalar."""

    TOKEN_MEAN = "token_mean"  # Σ all tokens / number of tokens
    SEQ_MEAN = "seq_mean"  # mean over each sequence's tokens, then over sequences
    SEQ_MEAN_TOKEN_SUM = "seq_mean_token_sum"  # Σ over each sequence, mean over sequences
    SEQ_MEAN_TOKEN_SUM_NORM = "seq_mean_token_sum_norm"  # Σ all tokens / (B · constant), Dr. GRPO


class KLEstimator(StrEnum):
    """Schulman's per-sample estimators of KL(π ‖ π_ref)."""

    K1 = "k1"  # log(π/π_ref): unbiased, high variance, can be negative
    K2 = "k2"  # ½·log²(π/π_ref): biased, low variance, ≥ 0
    K3 = "k3"  # (ρ − 1) − log ρ with ρ = π_ref/π: unbiased, low variance, ≥ 0


def parse_choice(enum_cls: type[E], value: str | E, field: str = "") -> E:
    """Map a config string (or a member) to a member of `enum_cls`.

    Matching is exact after lower-casing and turning '-' into '_', so
    `"Dr-GRPO"` finds `dr_grpo`. An unknown value raises `ConfigError` naming
    the field, the bad value, the valid values and the close matches.
    """
    if isinstance(value, enum_cls):
        return value
    choices = [m.value for m in enum_cls]
    key = str(value).strip().lower().replace("-", "_")
    if key in choices:
        return enum_cls(key)
    where = f"{field}=" if field else f"{enum_cls.__name__} "
    raise ConfigError(
        f"{where}{value!r} is not a known {enum_cls.__name__}; "
        f"use one of: {', '.join(choices)}{did_you_mean(key, choices)}"
    )
