"""Registries for the open axes, and uniform entry points for the trainer.

The raw functions have the signatures their math needs (GAE wants values and
dones, GRPO wants group ids). The trainer holds one config and calls
`compute_advantages` / `compute_policy_loss`, which pass each function only the
inputs it uses and say which input is missing, rather than failing deep inside.
"""

from __future__ import annotations

from typing import Callable

import torch

from rlvlm.algos.advantages import (
    dr_grpo_advantages,
    gae,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from rlvlm.algos.enums import AdvantageEstimator, AggregationMode, PolicyLoss, parse_choice
from rlvlm.algos.policy_loss import ppo_clip_loss, reinforce_loss

ADVANTAGE_ESTIMATORS: dict[AdvantageEstimator, Callable[..., object]] = {
    AdvantageEstimator.GAE: gae,
    AdvantageEstimator.GRPO: grpo_advantages,
    AdvantageEstimator.DR_GRPO: dr_grpo_advantages,
    AdvantageEstimator.RLOO: rloo_advantages,
    AdvantageEstimator.REINFORCE_PP: reinforce_pp_advantages,
}

POLICY_LOSSES: dict[PolicyLoss, Callable[..., tuple[torch.Tensor, dict[str, float]]]] = {
    PolicyLoss.PPO_CLIP: ppo_clip_loss,
    PolicyLoss.REINFORCE: reinforce_loss,
}


def get_advantage_estimator(name: AdvantageEstimator | str) -> Callable[..., object]:
    """The raw estimator function for a config string; `ConfigError` if unknown."""
    return ADVANTAGE_ESTIMATORS[parse_choice(AdvantageEstimator, name, field="algo.advantage")]


def get_policy_loss(name: PolicyLoss | str) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
    """The raw policy-loss function for a config string; `ConfigError` if unknown."""
    return POLICY_LOSSES[parse_choice(PolicyLoss, name, field="algo.policy_loss")]


def _require(estimator: AdvantageEstimator, **inputs: torch.Tensor | None) -> None:
    missing = [k for k, v in inputs.items() if v is None]
    if missing:
        raise ValueError(f"advantage estimator {estimator.value!r} needs {', '.join(missing)}, which was not given")


def compute_advantages(
    estimator: AdvantageEstimator | str,
    *,
    rewards: torch.Tensor,
    values: torch.Tensor | None = None,
    dones: torch.Tensor | None = None,
    last_values: torch.Tensor | None = None,
    truncated: torch.Tensor | None = None,
    truncation_values: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    gamma: float = 0.99,
    lam: float = 0.95,
    eps: float = 1e-6,
    reinforce_baseline: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets with the named estimator.

    - gae: rewards, values, dones, truncated, truncation_values `(T, N)`,
      last_values `(N,)` → (advantages, returns) `(T, N)`; see `gae`.
    - grpo / dr_grpo / rloo: rewards, group_ids `(B,)` → advantages `(B,)`;
      returns = rewards (there is no critic to fit).
    - reinforce_pp: rewards `(B,)` (group_ids only with reinforce_baseline).
    """
    kind = parse_choice(AdvantageEstimator, estimator, field="algo.advantage")
    if kind is AdvantageEstimator.GAE:
        _require(kind, values=values, dones=dones, last_values=last_values)
        return gae(
            rewards, values, dones, last_values,
            gamma=gamma, lam=lam, truncated=truncated, truncation_values=truncation_values,
        )  # fmt: skip
    if kind is AdvantageEstimator.REINFORCE_PP:
        if reinforce_baseline:
            _require(kind, group_ids=group_ids)
        adv = reinforce_pp_advantages(rewards, group_ids, eps, baseline=reinforce_baseline)
    elif kind is AdvantageEstimator.GRPO:
        _require(kind, group_ids=group_ids)
        adv = grpo_advantages(rewards, group_ids, eps)
    else:
        _require(kind, group_ids=group_ids)
        adv = ADVANTAGE_ESTIMATORS[kind](rewards, group_ids)
    return adv, rewards.to(adv.dtype)


def compute_policy_loss(
    kind: PolicyLoss | str,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    aggregation: AggregationMode | str = AggregationMode.TOKEN_MEAN,
    norm_constant: float | None = None,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The named policy loss; clip settings reach only the losses that clip."""
    loss_kind = parse_choice(PolicyLoss, kind, field="algo.policy_loss")
    common = dict(aggregation=aggregation, norm_constant=norm_constant)
    if loss_kind is PolicyLoss.PPO_CLIP:
        return ppo_clip_loss(
            logp, old_logp, advantages, mask, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip, **common
        )
    return POLICY_LOSSES[loss_kind](logp, old_logp, advantages, mask, **common)
