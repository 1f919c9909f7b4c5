"""Building a `RolloutBatch`, once per rollout: from the collector's transitions,
or straight from samples (one-step episodes, e.g. question answering)."""

from __future__ import annotations

from typing import Sequence

import torch

from rlvlm.algos.batch import RolloutBatch

NAN = float("nan")


def _pad(rows: Sequence[Sequence], width: int, dtype: torch.dtype) -> torch.Tensor:
    out = torch.zeros((len(rows), width), dtype=dtype)
    for i, r in enumerate(rows):
        if len(r):
            out[i, : len(r)] = torch.as_tensor(r, dtype=dtype)
    return out


def _long(x, default: torch.Tensor) -> torch.Tensor:
    return default if x is None else torch.as_tensor(x, dtype=torch.long)


def batch_from_samples(samples: Sequence, rewards, *, group_ids=None, episode_ids=None, step_ids=None,
                       env_ids=None, terminated=None, truncated=None, num_envs: int | None = None,
                       num_steps: int = 0, last_values: Sequence[float] | None = None,
                       truncation_values=None, state_ids=None) -> RolloutBatch:
    """A `RolloutBatch` of `samples` (rlvlm `Sample`s) with their rewards `(B,)`.

    Defaults describe B one-step episodes: episode i is sample i, which ended
    there (terminated), in its own group unless `group_ids` says otherwise.
    """
    B = len(samples)
    arange = torch.arange(B)
    width = max((s.num_tokens for s in samples), default=0)
    lengths = torch.tensor([s.num_tokens for s in samples], dtype=torch.long)
    tv = torch.full((B,), NAN) if truncation_values is None else torch.as_tensor(truncation_values, dtype=torch.float32)
    return RolloutBatch(
        rewards=torch.as_tensor(rewards, dtype=torch.float32).reshape(B),
        terminated=torch.ones(B, dtype=torch.bool) if terminated is None else torch.as_tensor(terminated, dtype=torch.bool),
        truncated=torch.zeros(B, dtype=torch.bool) if truncated is None else torch.as_tensor(truncated, dtype=torch.bool),
        values=torch.tensor([NAN if s.value is None else s.value for s in samples], dtype=torch.float32),
        truncation_values=tv,
        episode_ids=_long(episode_ids, arange),
        group_ids=_long(group_ids, arange),
        step_ids=_long(step_ids, torch.zeros(B, dtype=torch.long)),
        env_ids=_long(env_ids, arange),
        state_ids=None if state_ids is None else torch.as_tensor(state_ids, dtype=torch.long),
        completion_ids=_pad([s.completion_ids for s in samples], width, torch.long),
        completion_mask=torch.arange(width)[None, :] < lengths[:, None],
        old_logprobs=_pad([s.logprobs for s in samples], width, torch.float32),
        thought_mask=_pad([s.thought_mask for s in samples], width, torch.bool),
        action_mask=_pad([s.action_mask for s in samples], width, torch.bool),
        prompts=list(samples),
        num_envs=B if num_envs is None else num_envs,
        num_steps=num_steps,
        last_values=None if last_values is None else torch.tensor(list(last_values), dtype=torch.float32),
    )


def build_batch(transitions: Sequence, *, num_envs: int, num_steps: int,
                last_values: Sequence[float] | None = None,
                truncation_values: dict[tuple[int, int], float] | None = None) -> RolloutBatch:
    """The `RolloutBatch` of the collector's `Transition`s, in their order.

    `truncation_values` maps (step, env) of a truncated step to V(its final
    observation); `last_values` are V(observation after the last step) per env.
    """
    tv = truncation_values or {}
    return batch_from_samples(
        [tr.sample for tr in transitions], [tr.reward for tr in transitions],
        group_ids=[tr.group_id for tr in transitions], episode_ids=[tr.episode_id for tr in transitions],
        step_ids=[tr.t for tr in transitions], env_ids=[tr.env_index for tr in transitions],
        terminated=[tr.terminated for tr in transitions], truncated=[tr.truncated for tr in transitions],
        num_envs=num_envs, num_steps=num_steps, last_values=last_values,
        truncation_values=[tv.get((tr.t, tr.env_index), NAN) for tr in transitions],
        state_ids=[tr.state_key for tr in transitions],
    )
