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
    gigpo_advantages,
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


def _episode_columns(batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """(row, pos, E, ends): the batch's episodes laid out as columns of an `(L, E)` grid by position
    within the episode; `ends (L, E)` marks each episode's last step, so padding past it (zeros)
    never reaches back into the episode under `gae`'s done handling."""
    row, pos, _, E = batch.episodes()
    L = int(pos.max()) + 1 if len(batch) else 0
    ends = torch.zeros(L, E)
    ends[pos, row] = batch.dones.float()
    return row, pos, E, ends


def _columns(x: torch.Tensor, row: torch.Tensor, pos: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(ends.shape, dtype=torch.float32)
    out[pos, row] = x.float()
    return out


def _returns_to_go(batch: RolloutBatch, gamma: float) -> torch.Tensor:
    """(B,) G_t = r_t + γ·G_{t+1} within each episode (0 after its end)."""
    row, pos, _, ends = _episode_columns(batch)
    return discounted_returns(_columns(batch.rewards, row, pos, ends), ends, gamma=gamma)[pos, row]


@register_advantage("reward_to_go", summary="each step's discounted return-to-go minus the batch mean (REINFORCE)")
def reward_to_go_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE with per-step credit: G_t = r_t + γ·G_{t+1} within the episode, A_t = G_t − mean_batch(G).

    Unlike the group estimators, a late step is not credited with rewards that
    came before it (a step-level signal for multi-step agents), and no critic or
    groups are needed. Shapes: the batch's `(B,)` rewards → `(B,)`, `(B,)`.
    Episodes are laid out as rows `(E, L)` by position and discounted with
    `discounted_returns`, so the done handling is GAE's.
    """
    rtg = _returns_to_go(batch, cfg.gamma)
    return rtg - rtg.mean(), rtg


@register_advantage("gigpo", needs_groups=True,
                    summary="episode groups + step groups of identical anchor states (GiGPO, Feng et al., 2025)")
def gigpo_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """`gigpo_advantages` over whole episodes in groups: episode returns compared within the group,
    plus each step's return-to-go (γ = algo.gamma) compared with every step of the group taken from
    the same state (`batch.state_ids`), weighted by algo.step_weight. Returns: the episode returns."""
    if batch.state_ids is None:
        raise ValueError("algo.advantage=gigpo needs the state each step acted from (RolloutBatch.state_ids), "
                         "which the Collector records; this batch has none")
    ep_return, ep_group, row = batch.episode_sums(batch.rewards)
    adv = gigpo_advantages(ep_return, ep_group, _returns_to_go(batch, cfg.gamma), row, batch.state_ids,
                           step_weight=cfg.step_weight)
    return adv, ep_return[row]


@register_advantage("turn_gae", needs_critic=True, whole_episodes=True,
                    summary="GAE over whole episodes, one value per turn (VAGEN's turn level)")
def turn_gae_estimator(batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the turns of whole episodes: δ_t = r_t + γ·V(s_{t+1})·(1 − done_t) − V(s_t),
    A_t = δ_t + γλ·A_{t+1}, with V the value head's one value per turn (its prompt).

    Each episode is a column of an `(L, E)` grid (`gae` on it: a terminated last
    turn bootstraps 0, a truncated one γ·V(final observation)), so episodes of
    any length, played whole as group collection plays them, get per-turn
    credit from a critic. Shapes: `(B,)` → `(B,)`, `(B,)`.
    """
    row, pos, E, ends = _episode_columns(batch)
    truncated = _columns(batch.truncated, row, pos, ends).bool()
    tv = _columns(torch.nan_to_num(batch.truncation_values, nan=0.0), row, pos, ends)
    adv, ret = gae(_columns(batch.rewards, row, pos, ends), _columns(batch.values, row, pos, ends), ends,
                   torch.zeros(E), gamma=cfg.gamma, lam=cfg.lam, truncated=truncated, truncation_values=tv)
    return adv[pos, row], ret[pos, row]


@register_policy_loss("ppo_clip", summary="clipped surrogate with clip-higher and dual clip (PPO, DAPO)")
def ppo_clip(logp, old_logp, advantages, mask, cfg):
    kwargs = {} if mask is None else {"aggregation": cfg.aggregation}
    return ppo_clip_loss(logp, old_logp, advantages, mask, clip_low=cfg.clip_low, clip_high=cfg.clip_high, **kwargs)


@register_policy_loss("reinforce", summary="unclipped importance-weighted surrogate -r·A")
def reinforce(logp, old_logp, advantages, mask, cfg):
    kwargs = {} if mask is None else {"aggregation": cfg.aggregation}
    return reinforce_loss(logp, old_logp, advantages, mask, **kwargs)
