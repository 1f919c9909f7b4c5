"""The built-in advantage estimators and policy losses, registered by name.

Each adapter reads a `RolloutBatch` and calls the pure math in `advantages.py`
/ `policy_loss.py`. Group estimators score whole episodes: an episode's return
(the sum of its shaped rewards) is compared within its group, and every step of
the episode shares that advantage. `reward_to_go` gives each step its own
discounted return instead (credit by step, no critic, no groups).
"""

from __future__ import annotations

from typing import Any

import torch

from rlvlm.algos.advantages import (
    discounted_returns,
    dr_grpo_advantages,
    gae,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from rlvlm.algos.batch import RolloutBatch
from rlvlm.algos.policy_loss import ppo_clip_loss, reinforce_loss
from rlvlm.algos.registry import register_advantage, register_policy_loss


@register_advantage("gae", needs_critic=True, summary="critic + generalised advantage estimation (PPO, RL4VLM)")
def gae_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the lockstep `(T, N)` grid, bootstrapped at truncations and at the rollout's end."""
    if batch.last_values is None:
        raise ValueError("algo.advantage=gae needs the values after the last step (last_values); collect the "
                         "rollout with values (a value head)")
    grid = batch.grid
    truncated = grid(batch.truncated)
    tv = grid(batch.truncation_values)
    # A truncated step whose final observation had no value (it cannot happen with a
    # value head; kept for safety) bootstraps 0, as a termination would.
    tv = torch.where(truncated & tv.isnan(), torch.zeros_like(tv), tv)
    adv, ret = gae(grid(batch.rewards), grid(batch.values), grid(batch.dones).float(), batch.last_values,
                   gamma=cfg.gamma, lam=cfg.lam, truncated=truncated, truncation_values=tv)
    return adv.reshape(-1), ret.reshape(-1)


def _per_episode(batch: RolloutBatch, fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a group estimator `fn(episode_returns (E,), group_ids (E,))` and spread it to the steps."""
    ep_return, ep_group, row = batch.episode_sums(batch.rewards)
    ep_adv = fn(ep_return, ep_group)
    return ep_adv[row], ep_return[row]


@register_advantage("grpo", needs_groups=True, summary="group mean/std normalised (DeepSeekMath)")
def grpo_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return _per_episode(batch, grpo_advantages)


@register_advantage("dr_grpo", needs_groups=True, summary="group mean-centred, no std division (Dr. GRPO)")
def dr_grpo_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return _per_episode(batch, dr_grpo_advantages)


@register_advantage("rloo", needs_groups=True, summary="leave-one-out group baseline (Ahmadian et al., 2024)")
def rloo_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return _per_episode(batch, rloo_advantages)


@register_advantage("reinforce_pp", summary="episode returns whitened over the batch (REINFORCE++)")
def reinforce_pp_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return _per_episode(batch, reinforce_pp_advantages)


@register_advantage("reward_to_go", summary="each step's discounted return-to-go minus the batch mean (REINFORCE)")
def reward_to_go_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE with per-step credit: G_t = r_t + γ·G_{t+1} within the episode, A_t = G_t − mean_batch(G).

    Unlike the group estimators, a late step is not credited with rewards that
    came before it (a step-level signal for multi-step agents), and no critic or
    groups are needed. Shapes: the batch's `(B,)` rewards → `(B,)`, `(B,)`.
    Episodes are laid out as rows `(E, L)` by position and discounted with
    `discounted_returns`, so the done handling is GAE's.
    """
    row, pos, _, E = batch.episodes()
    L = int(pos.max()) + 1 if len(batch) else 0
    r = torch.zeros(L, E, dtype=torch.float32)
    r[pos, row] = batch.rewards.float()
    ends = torch.zeros(L, E)
    ends[pos, row] = batch.dones.float()  # padding past an episode's end never reaches back: it ended there
    g = discounted_returns(r, ends, gamma=cfg.gamma)
    rtg = g[pos, row]
    return rtg - rtg.mean(), rtg


@register_policy_loss("ppo_clip", summary="clipped surrogate with clip-higher and dual clip (PPO, DAPO)")
def ppo_clip(logp, old_logp, advantages, mask, cfg):
    kwargs = {} if mask is None else {"aggregation": cfg.aggregation}
    return ppo_clip_loss(logp, old_logp, advantages, mask, clip_low=cfg.clip_low, clip_high=cfg.clip_high, **kwargs)


@register_policy_loss("reinforce", summary="unclipped importance-weighted surrogate -r·A")
def reinforce(logp, old_logp, advantages, mask, cfg):
    kwargs = {} if mask is None else {"aggregation": cfg.aggregation}
    return reinforce_loss(logp, old_logp, advantages, mask, **kwargs)
