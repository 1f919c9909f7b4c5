"""`RolloutBatch`: one rollout as tensors, from the collector to the update.

The collector builds it once (`rlvlm.rollout.batch.build_batch`); every later
stage reads fields and adds its own (rewards, advantages, returns, reference
log-probs), and the update slices minibatches out of it with `select`. Nothing
is rebuilt from Python lists per minibatch or per epoch.

Shapes, with B transitions (one per env step, in collection order) and Tc the
longest completion of the rollout:

    per transition (B,)     rewards, terminated, truncated, values, truncation_values,
                            episode_ids, group_ids, step_ids, env_ids, state_ids
    per token (B, Tc)       completion_ids, completion_mask, old_logprobs,
                            thought_mask, action_mask, ref_logprobs
    per env (N,)            last_values
    added by stages (B,)    advantages, returns

Token tensors are right-padded: entries past a completion's length are 0 (ids,
log-probs) or False (masks), so slicing to a minibatch's own longest
completion is exact. `values` and `truncation_values` hold NaN where there is
no value (no value head, or a step that was not truncated): a missing value is
never silently 0. `prompts` keeps, per transition, what the learner re-scores
under (the exact prompt text and image of that step); it is a sequence
indexed like the tensors, never converted back into per-field lists.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import torch


@dataclass
class RolloutBatch:
    """B transitions of one rollout; see the module docstring for shapes."""

    rewards: torch.Tensor  # (B,) float32: the env's reward, replaced by the reward stage when shaped
    terminated: torch.Tensor  # (B,) bool
    truncated: torch.Tensor  # (B,) bool: time-limit end, bootstrapped from truncation_values
    values: torch.Tensor  # (B,) float32: V(prompt) at sampling time, NaN where none
    truncation_values: torch.Tensor  # (B,) float32: V(final observation) of truncated steps, else NaN
    episode_ids: torch.Tensor  # (B,) long
    group_ids: torch.Tensor  # (B,) long: envs sharing a reset seed
    step_ids: torch.Tensor  # (B,) long: lockstep index within this rollout
    env_ids: torch.Tensor  # (B,) long
    completion_ids: torch.Tensor  # (B, Tc) long
    completion_mask: torch.Tensor  # (B, Tc) bool
    old_logprobs: torch.Tensor  # (B, Tc) float32: under the sampling distribution
    thought_mask: torch.Tensor  # (B, Tc) bool
    action_mask: torch.Tensor  # (B, Tc) bool
    prompts: Sequence[Any]  # B items the learner scores under (rlvlm's `Sample`s)
    num_envs: int
    num_steps: int  # columns of the lockstep (T, N) grid; 0 when whole episodes were played
    last_values: torch.Tensor | None = None  # (N,) V(observation after the last step), lockstep mode
    advantages: torch.Tensor | None = None  # (B,)
    returns: torch.Tensor | None = None  # (B,): value targets (GAE) or episode returns
    ref_logprobs: torch.Tensor | None = None  # (B, Tc) under the KL reference
    state_ids: torch.Tensor | None = None  # (B,) long: the env state each step acted from (GiGPO's anchors)

    def __post_init__(self):
        B = self.rewards.shape[0]
        for f in fields(self):
            v = getattr(self, f.name)
            if torch.is_tensor(v) and f.name != "last_values" and v.shape[0] != B:
                raise ValueError(f"RolloutBatch.{f.name} has {v.shape[0]} rows, rewards has {B}")
        if len(self.prompts) != B:
            raise ValueError(f"RolloutBatch.prompts has {len(self.prompts)} items, rewards has {B}")

    def __len__(self) -> int:
        return self.rewards.shape[0]

    @property
    def dones(self) -> torch.Tensor:
        """(B,) bool: the episode ended at this step (terminated or truncated)."""
        return self.terminated | self.truncated

    @property
    def num_tokens(self) -> torch.Tensor:
        """(B,) long: completion lengths."""
        return self.completion_mask.sum(dim=1)

    def select(self, index: Sequence[int] | torch.Tensor) -> "RolloutBatch":
        """The transitions at `index` (a minibatch), token tensors cut to their own longest completion.

        The result is not a lockstep grid any more (`num_steps` 0, no last values).
        """
        idx = torch.as_tensor(index, dtype=torch.long)
        width = int(self.completion_mask[idx].sum(dim=1).max()) if len(idx) else 0
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "last_values" or not torch.is_tensor(v):
                continue
            v = v.index_select(0, idx.to(v.device))
            out[f.name] = v[:, :width] if v.dim() == 2 else v
        prompts = [self.prompts[i] for i in idx.tolist()]
        return replace(self, **out, prompts=prompts, num_steps=0, last_values=None)

    # ---------------------------------------------------------- layouts
    def grid(self, x: torch.Tensor) -> torch.Tensor:
        """A per-transition tensor `(B, ...)` as the lockstep grid `(T, N, ...)`.

        Checks the layout instead of assuming it: row t * N + n must be env n's
        step t, as `collect_steps` produces.
        """
        T, N = self.num_steps, self.num_envs
        if T < 1 or len(self) != T * N:
            raise ValueError(f"this batch is not a lockstep rollout (num_steps={T}, num_envs={N}, {len(self)} "
                             "transitions); the estimator needs one collected with collect_steps")
        steps = torch.arange(T).repeat_interleave(N)
        envs = torch.arange(N).repeat(T)
        if not (torch.equal(self.step_ids.cpu(), steps) and torch.equal(self.env_ids.cpu(), envs)):
            raise ValueError("RolloutBatch rows are not in (step, env) order; row t * N + n must be env n's step t")
        return x.reshape(T, N, *x.shape[1:])

    def episodes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-episode view: (episode_of_row (B,), position_in_episode (B,), episode_group (E,), E).

        episode_of_row indexes 0..E-1 in order of the episode ids; the position
        counts the episode's steps from 0 (its first step in this batch).
        """
        _, inverse = torch.unique(self.episode_ids, return_inverse=True)
        E = int(inverse.max()) + 1 if len(self) else 0
        first = torch.full((E,), torch.iinfo(torch.long).max, dtype=torch.long, device=inverse.device)
        first = first.scatter_reduce(0, inverse, self.step_ids, reduce="amin")
        position = self.step_ids - first[inverse]
        group = torch.zeros(E, dtype=torch.long, device=inverse.device).scatter(0, inverse, self.group_ids)
        return inverse, position, group, E

    def episode_sums(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sum of `x` over each episode (E,), each episode's group id (E,), episode_of_row (B,))."""
        inverse, _, group, E = self.episodes()
        # Summed in float64 and rounded once, so an episode's return does not depend on
        # the order float32 additions happen in.
        sums = torch.zeros(E, dtype=torch.float64, device=x.device).index_add(0, inverse, x.double())
        return sums.to(x.dtype), group, inverse

    def require_values(self, who: str) -> torch.Tensor:
        """`values`, or a ValueError naming `who` when any transition has none."""
        missing = int(torch.isnan(self.values).sum())
        if missing:
            raise ValueError(f"{who} needs a value for every step, but {missing} of {len(self)} transitions have "
                             "none (the policy has no value head, or the rollout was collected without values)")
        return self.values
