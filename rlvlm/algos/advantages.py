"""Advantage estimators: GAE and discounted returns over rollouts, and the
critic-free group estimators (GRPO, Dr. GRPO, RLOO, REINFORCE++).

Rollout layout for GAE: time-major `(T, N)`, N environments stepped in
lockstep for T steps, each auto-resetting when its episode ends. So step t+1 of
env n belongs to a *new* episode whenever step t ended one, and its value must
not be bootstrapped into step t. Whether the end was a real termination (value
0 after it) or a time-limit truncation (the episode would have gone on, so its
final observation's value should be bootstrapped) is the `truncated` flag.
"""

from __future__ import annotations

import torch

from rlvlm.algos._checks import check_range, check_same_shape, float_dtype


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    *,
    gamma: float = 0.99,
    lam: float = 0.95,
    truncated: torch.Tensor | None = None,
    truncation_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016), N envs at once.

    Shapes: rewards, values, dones, truncated, truncation_values `(T, N)`;
    last_values `(N,)`. A 1-D `(T,)` rollout of one env is accepted too (then
    last_values is a scalar or `(1,)`). Returns (advantages, returns), `(T, N)`.

    - rewards[t, n]: reward for the action taken at step t in env n;
    - values[t, n]: V(s_t), the critic's value of the observation acted on;
    - dones[t, n]: the episode ended at step t (terminated *or* truncated), so
      s_{t+1} in the buffer is the next episode's first observation;
    - last_values[n]: V(s_T), the value of the observation after the last step,
      used when step T−1 did not end the episode;
    - truncated[t, n]: the end at step t was a time limit, not a terminal state;
      it implies done. Needs truncation_values[t, n] = V(final observation of
      that episode), which the collector must compute before the auto-reset
      replaced it. Entries where truncated is false are ignored (may be NaN).
      Without `truncated` every done is treated as a termination.

    With e_t = 1 if the episode ended at t, the bootstrap value is
        b_t = truncation_values[t]   if truncated at t,
              0                      if terminated at t,
              V(s_{t+1})             otherwise (last_values for t = T−1),
    and
        δ_t = r_t + γ·b_t − V(s_t),
        A_t = δ_t + γ·λ·(1 − e_t)·A_{t+1},       A_T = 0,
        returns_t = A_t + V(s_t)   (the value-function target).
    The recursion runs backwards over T; each step is one vector op over N.
    """
    check_range("gamma", gamma, 0.0, 1.0)
    check_range("lam", lam, 0.0, 1.0)
    squeeze = rewards.dim() == 1
    if squeeze:
        rewards, values, dones = rewards[:, None], values[:, None], dones[:, None]
        last_values = last_values.reshape(1)
        truncated = None if truncated is None else truncated[:, None]
        truncation_values = None if truncation_values is None else truncation_values[:, None]
    if rewards.dim() != 2:
        raise ValueError(f"gae expects rewards (T, N) or (T,), got shape {list(rewards.shape)}")
    check_same_shape(
        rewards=rewards, values=values, dones=dones, truncated=truncated, truncation_values=truncation_values
    )
    if tuple(last_values.shape) != (rewards.shape[1],):
        raise ValueError(
            f"last_values must have shape [{rewards.shape[1]}] (one per env), got {list(last_values.shape)}"
        )
    if (truncated is None) != (truncation_values is None):
        raise ValueError("pass truncated and truncation_values together: a truncated step needs V(final observation)")

    dt = float_dtype(rewards)
    r, v = rewards.to(dt), values.to(dt)
    ended = dones.bool()
    next_values = torch.cat([v[1:], last_values.to(dt)[None]], dim=0)
    zero = torch.zeros((), dtype=dt, device=r.device)
    if truncated is not None:
        trunc = truncated.bool()
        ended = ended | trunc
        boot = torch.where(ended, zero, next_values)
        boot = torch.where(trunc, truncation_values.to(dt), boot)
    else:
        boot = torch.where(ended, zero, next_values)

    deltas = r + gamma * boot - v
    carry = (~ended).to(dt) * (gamma * lam)
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + carry[t] * running
        advantages[t] = running
    returns = advantages + v
    if squeeze:
        return advantages[:, 0], returns[:, 0]
    return advantages, returns


def discounted_returns(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor | None = None,
    *,
    gamma: float = 0.99,
    truncated: torch.Tensor | None = None,
    truncation_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Discounted reward-to-go G_t = r_t + γ·(1 − e_t)·G_{t+1}, per env.

    Shapes as in `gae`: rewards, dones `(T, N)`; last_values `(N,)` bootstraps
    the unfinished tail (default 0: the rollout is taken as complete).
    Truncated steps bootstrap γ·truncation_values[t] instead of 0.

    This is GAE with V ≡ 0 and λ = 1, so it shares `gae`'s done and truncation
    handling exactly instead of re-implementing it.
    """
    zeros = torch.zeros_like(rewards, dtype=float_dtype(rewards))
    if last_values is None:
        n_envs = rewards.shape[1:] if rewards.dim() == 2 else (1,)
        last_values = torch.zeros(n_envs, dtype=zeros.dtype, device=zeros.device)
    advantages, _ = gae(
        rewards, zeros, dones, last_values,
        gamma=gamma, lam=1.0, truncated=truncated, truncation_values=truncation_values,
    )
    return advantages


# ---------------------------------------------------------------------------
# Group (critic-free) estimators. Input: one scalar reward per sample, `(B,)`,
# and `group_ids (B,)`: samples with the same id answered the same prompt (or
# started from the same env seed). Ids are arbitrary ints and need not be
# contiguous or sorted. Output: advantages `(B,)`, in the rewards' float dtype
# (at least float32); the statistics are computed in float64.
#
# Degenerate groups, a group of one sample or a group whose rewards are all
# equal, get an advantage of exactly 0: there is nothing to compare against, so
# they carry no learning signal. They are zeroed explicitly because float
# rounding of a group mean would otherwise leave ~1e-9 residues, which GRPO's
# division by a near-zero std would blow up.
# ---------------------------------------------------------------------------


class _Groups:
    """Per-group count, mean, unbiased variance and degeneracy of a reward batch."""

    def __init__(self, rewards: torch.Tensor, group_ids: torch.Tensor):
        if rewards.dim() != 1:
            raise ValueError(f"group advantages expect rewards of shape (B,), got {list(rewards.shape)}")
        check_same_shape(rewards=rewards, group_ids=group_ids)
        self.r = rewards.to(torch.float64)
        _, self.index = torch.unique(group_ids, return_inverse=True)
        n_groups = int(self.index.max()) + 1 if self.index.numel() else 0
        zeros = torch.zeros(n_groups, dtype=torch.float64, device=rewards.device)
        self.count = zeros.index_add(0, self.index, torch.ones_like(self.r))
        self.sum = zeros.index_add(0, self.index, self.r)
        self.mean = self.sum / self.count.clamp(min=1)
        sq_dev = (self.r - self.mean[self.index]) ** 2
        self.var = zeros.index_add(0, self.index, sq_dev) / (self.count - 1).clamp(min=1)
        g_min = zeros.scatter_reduce(0, self.index, self.r, reduce="amin", include_self=False)
        g_max = zeros.scatter_reduce(0, self.index, self.r, reduce="amax", include_self=False)
        self.degenerate = (self.count < 2) | (g_min == g_max)

    def finish(self, adv: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Zero the degenerate groups and cast back to the caller's dtype."""
        adv = torch.where(self.degenerate[self.index], torch.zeros_like(adv), adv)
        return adv.to(float_dtype(like))


def grpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6, *, unbiased_std: bool = True
) -> torch.Tensor:
    """GRPO (Shao et al., 2024): A_i = (r_i − mean_g) / (std_g + eps).

    mean_g and std_g are over the samples of i's group g; std uses Bessel's
    correction (n − 1) by default, like TRL and verl. Dividing by std makes a
    group with one rare failure give that failure a huge advantage — Dr. GRPO's
    criticism; see `dr_grpo_advantages`. Shapes: rewards, group_ids `(B,)` → `(B,)`.
    """
    check_range("eps", eps, 0.0, float("inf"), low_open=True)
    g = _Groups(rewards, group_ids)
    var = g.var if unbiased_std else g.var * (g.count - 1).clamp(min=0) / g.count.clamp(min=1)
    std = var.sqrt()[g.index]
    return g.finish((g.r - g.mean[g.index]) / (std + eps), rewards)


def dr_grpo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO (Liu et al., 2025): A_i = r_i − mean_g, no std division.

    Shapes: rewards, group_ids `(B,)` → `(B,)`.
    """
    g = _Groups(rewards, group_ids)
    return g.finish(g.r - g.mean[g.index], rewards)


def rloo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """RLOO (Ahmadian et al., 2024): A_i = r_i − mean_{j ∈ g, j ≠ i} r_j.

    The baseline excludes the sample itself, so it is independent of the
    sample's own action and the estimate unbiased. Equivalent to
    n/(n − 1)·(r_i − mean_g) for a group of n. A group of one has no
    leave-one-out baseline and gets 0. Shapes: rewards, group_ids `(B,)` → `(B,)`.
    """
    g = _Groups(rewards, group_ids)
    n = g.count[g.index]
    baseline = (g.sum[g.index] - g.r) / (n - 1).clamp(min=1)
    return g.finish(g.r - baseline, rewards)


def reinforce_pp_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor | None = None, eps: float = 1e-6, *, baseline: bool = False
) -> torch.Tensor:
    """REINFORCE++ (Hu, 2025): returns whitened over the global batch.

        A_i = (x_i − mean_batch(x)) / (std_batch(x) + eps),
        x_i = r_i                with baseline=False,
        x_i = r_i − mean_g(r)    with baseline=True ("REINFORCE++-baseline").

    Normalising over the whole batch rather than per group keeps the scale
    stable when groups are small. `rewards` are the (already KL-shaped, if the
    trainer shapes them) returns per sample. An all-equal batch (or a batch of
    one) gives zeros. Shapes: rewards, group_ids `(B,)` → `(B,)`.
    """
    check_range("eps", eps, 0.0, float("inf"), low_open=True)
    if rewards.dim() != 1:
        raise ValueError(f"reinforce_pp_advantages expects rewards of shape (B,), got {list(rewards.shape)}")
    if baseline:
        if group_ids is None:
            raise ValueError("reinforce_pp_advantages(baseline=True) needs group_ids")
        g = _Groups(rewards, group_ids)
        centred = g.r - g.mean[g.index]
        x = torch.where(g.degenerate[g.index], torch.zeros_like(centred), centred)
    else:
        x = rewards.to(torch.float64)
    if x.numel() < 2 or bool(x.max() == x.min()):
        return torch.zeros_like(x).to(float_dtype(rewards))
    adv = (x - x.mean()) / (x.std() + eps)
    return adv.to(float_dtype(rewards))


def zero_variance_group_fraction(rewards: torch.Tensor, group_ids: torch.Tensor) -> float:
    """Fraction of groups whose rewards are all equal (or of size one).

    Such groups give no gradient under any group estimator; a high fraction
    means the policy is too deterministic or the task too easy/hard for it.
    """
    g = _Groups(rewards, group_ids)
    return float(g.degenerate.double().mean()) if g.degenerate.numel() else 0.0


# ---------------------------------------------------------------------------
# Step-level credit for multi-turn agents.
# ---------------------------------------------------------------------------


def gigpo_advantages(
    episode_returns: torch.Tensor,
    episode_groups: torch.Tensor,
    step_returns: torch.Tensor,
    step_episode: torch.Tensor,
    step_states: torch.Tensor,
    *,
    step_weight: float = 1.0,
    scale: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """GiGPO (Feng et al., 2025): episode-level groups plus step-level anchor-state groups.

        A^E(τ_i)   = (R(τ_i) − mean_g R) / F_g            over the episodes of group g (GRPO)
        A^S(i, t)  = (G_t^i − mean_a G) / F_a             over every step, in any episode of group g,
                                                          taken from the same env state ("anchor" a)
        A(i, t)    = A^E(τ_i) + ω · A^S(i, t)

    G_t^i is step t's discounted return-to-go in episode i. F is the group's std
    (`scale=True`) or 1 (`scale=False`, the paper's mean-only variant). A step
    whose state no other step of its group visited has a step group of one,
    and a group whose values are all equal carries no comparison: both give
    A^S = 0 (as `grpo_advantages` zeroes degenerate groups), so with no repeated
    states GiGPO is episode-level GRPO.

    Shapes: episode_returns, episode_groups `(E,)`; step_returns, step_episode
    (each step's episode, 0..E-1), step_states (anchor-state ids) `(B,)` → `(B,)`.
    """
    check_range("step_weight", step_weight, 0.0, float("inf"))
    check_same_shape(step_returns=step_returns, step_episode=step_episode, step_states=step_states)
    group_adv = (lambda r, g: grpo_advantages(r, g, eps)) if scale else dr_grpo_advantages
    episode_adv = group_adv(episode_returns, episode_groups)[step_episode]
    # A step group is (episode group, state): anchors never pair steps of different start states.
    pairs = torch.stack([episode_groups[step_episode].long(), step_states.long()], dim=1)
    _, anchor = torch.unique(pairs, dim=0, return_inverse=True)
    step_adv = group_adv(step_returns, anchor)
    return (episode_adv.double() + step_weight * step_adv.double()).to(float_dtype(step_returns))
