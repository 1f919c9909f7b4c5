"""Entropy bonus: a fixed coefficient, or one adapted toward a target entropy.

Entropy collapse is the usual failure of RL on language policies (Cui et al.,
2025): once the policy is near-deterministic, every sample of a group agrees
and group advantages vanish. A fixed bonus is usually 0 or 1e-4…1e-3; an
adaptive one raises its coefficient while entropy sits below a target and
lowers it above, like SAC's temperature α.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rlvlm.algos._checks import check_range, to_floats
from rlvlm.algos.enums import AggregationMode
from rlvlm.algos.masked import aggregate, masked_mean


def entropy_bonus(
    entropy: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    coef: float,
    aggregation: AggregationMode | str = AggregationMode.TOKEN_MEAN,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The entropy term to *add* to the loss: −coef · aggregate(H, mask).

    H = per-token entropy of the policy's next-token distribution (with grad),
    shape `(B, T)` with a mask, or `(B,)`. Minimising −coef·H maximises entropy.
    Metrics: loss/entropy (the term itself), policy/entropy (token mean of H,
    comparable across aggregation modes), policy/entropy_coef.
    """
    check_range("entropy.coef", coef, 0.0, float("inf"))
    m = torch.ones_like(entropy, dtype=torch.bool) if mask is None else mask.bool()
    safe = torch.where(m, entropy, torch.zeros((), dtype=entropy.dtype, device=entropy.device))
    loss = -coef * aggregate(safe, m, aggregation)
    with torch.no_grad():
        metrics = {
            "loss/entropy": loss,
            "policy/entropy": masked_mean(safe, m),
            "policy/entropy_coef": coef,
        }
    return loss, to_floats(metrics)


class EntropyCoefficient:
    """The entropy coefficient: fixed, or adapted toward `target` nats per token.

    Fixed (target=None): `coef` never changes; `update` is a no-op.

    Adaptive: the state is log c, moved by an integral controller on the gap
    between the target and the measured mean entropy H̄:

        log c ← clip(log c + lr · (target − H̄), log min_coef, log max_coef)

    This is SAC's temperature update written as a plain step (SAC descends on
    −log α · (H_target − H), whose gradient in log α is the same gap). Working
    in log space makes the step multiplicative: a coefficient of 1e-4 can move
    to 1e-3 as readily as 1e-2 to 1e-1. The clip stops wind-up while the
    policy cannot reach the target.

    All state is plain Python floats/ints: `state_dict()` is JSON-serialisable
    and `load_state_dict` restores it exactly, so resuming continues identically.
    """

    def __init__(
        self,
        coef: float = 0.0,
        target: float | None = None,
        lr: float = 0.01,
        min_coef: float = 1e-6,
        max_coef: float = 1.0,
    ):
        check_range("entropy.coef", coef, 0.0, float("inf"))
        self.target = target
        self.lr = lr
        self.min_coef = min_coef
        self.max_coef = max_coef
        self.steps = 0
        if target is None:
            # None stands for a zero coefficient (log 0 = -inf is not valid JSON).
            self._log_coef: float | None = math.log(coef) if coef > 0 else None
            return
        check_range("entropy.target", target, 0.0, float("inf"))
        check_range("entropy.lr", lr, 0.0, float("inf"), low_open=True)
        check_range("entropy.min_coef", min_coef, 0.0, float("inf"), low_open=True)
        check_range("entropy.max_coef", max_coef, min_coef, float("inf"))
        check_range("entropy.coef", coef, min_coef, max_coef)
        self._log_coef = math.log(coef)

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    @property
    def coef(self) -> float:
        return 0.0 if self._log_coef is None else math.exp(self._log_coef)

    def update(self, entropy: float) -> float:
        """Feed the latest mean per-token entropy; return the new coefficient."""
        if not self.adaptive or self._log_coef is None:
            return self.coef
        entropy = float(entropy)
        if not math.isfinite(entropy):  # a bad batch must not wreck the controller
            return self.coef
        step = self.lr * (self.target - entropy)
        self._log_coef = min(max(self._log_coef + step, math.log(self.min_coef)), math.log(self.max_coef))
        self.steps += 1
        return self.coef

    def state_dict(self) -> dict[str, Any]:
        return {
            "log_coef": self._log_coef,
            "target": self.target,
            "lr": self.lr,
            "min_coef": self.min_coef,
            "max_coef": self.max_coef,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._log_coef = None if state["log_coef"] is None else float(state["log_coef"])
        self.target = None if state["target"] is None else float(state["target"])
        self.lr = float(state["lr"])
        self.min_coef = float(state["min_coef"])
        self.max_coef = float(state["max_coef"])
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        kind = f"adaptive, target={self.target}" if self.adaptive else "fixed"
        return f"EntropyCoefficient(coef={self.coef:.3g}, {kind})"
