"""Step N environments in lockstep, batching generation across them.

The collector owns episode bookkeeping: reset seeds, per-step prompts and
images (each `Sample` keeps the exact prompt it was sampled under, so the
update re-scores under that prompt, not the episode's first), episode and
group ids, and the value of the last observation for bootstrapping across
truncation and across the rollout boundary.

Two modes:
- `collect_steps(T)`: every env acts every step and auto-resets (PPO + GAE);
- `collect_episodes()`: groups of G envs reset with one shared seed and play
  whole episodes (GRPO-style group advantages over episode returns). An env
  whose episode ended waits for the rest of its group.

Each sample's `meta["obs_text"]` is the env's raw observation text (reward
models score (image, observation text, reply)).

The envs sit behind an env pool (rlvlm/envs/pool.py): every reset, step and
replay goes through it, so this code is the same whether the envs live in
this process (`env.backend=inprocess`, also what a plain list of envs gets)
or in worker processes or Ray actors. A crash inside one env's `step` ends
that episode (reward 0, info["error"]) and the env is reset; it never takes
down training.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from rlvlm.algos.batch import RolloutBatch
from rlvlm.envs.help_metrics import help_episode_fields
from rlvlm.envs.pool import EnvPool, as_env_pool
from rlvlm.envs.wrappers import find_ask_wrapper
from rlvlm.errors import ConfigError
from rlvlm.models.batching import Sample
from rlvlm.rollout.batch import build_batch


def state_key(obs: dict, info: dict) -> int:
    """An int naming the env state an observation shows: the env's own `info["state_key"]` when it
    gives one, else a hash of the image (the prompt is left out: it may carry history or captions
    that differ between visits of the same state). Equal keys are GiGPO's anchor states."""
    if "state_key" in info:
        return int(info["state_key"])
    image = obs.get("image") if isinstance(obs, dict) else None
    data = np.ascontiguousarray(image).tobytes() if image is not None else str(obs.get("text", "")).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


@dataclass
class Transition:
    """One env step: the sample that produced the action and what the env said."""

    sample: Sample
    env_index: int
    t: int  # collector step index
    reward: float
    terminated: bool
    truncated: bool
    episode_id: int
    group_id: int
    info: dict
    state_key: int = 0  # the state acted from (`state_key`): GiGPO groups steps of equal keys

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass
class Rollout:
    """What passes from rollout/ to train/: the tensor batch, plus the transitions
    (each step's sample and env info, which reward functions and metrics read) and
    the finished episodes' summaries."""

    batch: RolloutBatch
    transitions: list[Transition]
    episodes: list[dict] = field(default_factory=list)  # finished episodes: return, length, success, ...
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def num_envs(self) -> int:
        return self.batch.num_envs

    @property
    def num_steps(self) -> int:  # lockstep steps (columns of the (T, N) grid); 0 in episode mode
        return self.batch.num_steps

    def __len__(self) -> int:
        return len(self.transitions)


class Collector:
    """Lockstep stepping of `envs` (an `EnvPool`, or env objects) with batched `policy.sample` calls.

    The caller owns the envs: closing the pool (worker backends) is its job."""

    def __init__(self, envs: EnvPool | Sequence[Any], policy, sampling, *, seed: int = 0, group_size: int = 1,
                 need_values: bool = True, act_fn: Callable | None = None, explore_ask: int = 0,
                 seed_stride: int = 1):
        self.pool = as_env_pool(envs)
        n = len(self.pool)
        if group_size < 1 or n % group_size:
            raise ConfigError(f"rollout.group_size={group_size} must divide rollout.num_envs={n}")
        self.envs = self.pool.local_envs  # the env objects in this process; None under a worker backend
        self.policy = policy
        self.sampling = sampling
        self.group_size = group_size
        self.need_values = need_values and getattr(policy, "value_head", None) is not None
        self.act_fn = act_fn  # optional override: (observations, infos) -> list[Sample]
        self.explore_ask = explore_ask
        if explore_ask:
            if self.envs is None:
                raise ConfigError(f"rollout.explore_ask={explore_ask} reads each env's ask wrapper, which needs the "
                                  f"envs in the trainer's process, not in {type(self.pool).__name__} workers; fix: "
                                  "set env.backend=inprocess, or rollout.explore_ask=0")
            helpers = [find_ask_wrapper(e) for e in self.envs]
            if not 0 < explore_ask < group_size or any(h is None for h in helpers):
                raise ConfigError(f"rollout.explore_ask={explore_ask} needs envs under the ask wrapper "
                                  f"(env.kwargs.ask_for_help) and 0 < explore_ask < rollout.group_size={group_size}")
            self._helpers = helpers
            self._asks = [h.asks for h in helpers]
            self._ask_reply = [h.ask_reply for h in helpers]
        self.forced_asks = 0  # teacher-forced ask replies put into rollouts so far
        self.seed = seed
        # Reset seeds are seed, seed + stride, ...: rank r of W data-parallel ranks uses
        # seed + r with stride W, so the ranks' episodes are disjoint and together use
        # the seeds a single process would.
        self.seed_stride = seed_stride
        self._next_seed = seed
        self._episode_counter = 0
        self._obs: list[dict | None] = [None] * n
        self._info: list[dict] = [{} for _ in range(n)]
        self._episode: list[int] = [0] * n
        self._group: list[int] = [0] * n
        self._ep_return = [0.0] * n
        self._ep_len = [0] * n
        self._ep_invalid = [0] * n
        self._ep_seed = [0] * n
        self._ep_actions: list[list[str]] = [[] for _ in range(n)]
        self._ep_tokens = [0] * n  # completion tokens and generation seconds, summed over the episode
        self._ep_seconds = [0.0] * n
        self._ep_forced = [False] * n  # a step of the episode was teacher-forced (explore_ask)
        self._t = 0

    @property
    def next_seed(self) -> int:
        """The seed the next reset will use (seeds are consumed in order)."""
        return self._next_seed

    @property
    def num_envs(self) -> int:
        return len(self.pool)

    # ------------------------------------------------------------ resets
    def _reset_envs(self, requests: list[tuple[int, int, int]]) -> None:
        """Reset env i with `seed` into group `group_id` for each (i, seed, group_id), in one pool call
        (a worker backend resets them side by side); episode ids follow the request order."""
        for (i, seed, group_id), (obs, info) in zip(requests, self.pool.reset([(i, s) for i, s, _ in requests])):
            self._start_episode(i, seed, group_id, obs, info)

    def _start_episode(self, i: int, seed: int, group_id: int, obs, info: dict) -> None:
        self._obs[i], self._info[i] = obs, info
        self._episode[i] = self._episode_counter
        self._episode_counter += 1
        self._group[i] = group_id
        self._ep_return[i], self._ep_len[i], self._ep_invalid[i] = 0.0, 0, 0
        self._ep_seed[i], self._ep_actions[i] = seed, []
        self._ep_tokens[i], self._ep_seconds[i] = 0, 0.0
        self._ep_forced[i] = False

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: seeds, counters and each env's
        current episode as (reset seed, actions so far). Envs are deterministic
        given both, so restoring replays the actions instead of pickling envs."""
        return {
            "next_seed": self._next_seed, "episode_counter": self._episode_counter, "t": self._t,
            "started": self._obs[0] is not None,
            "envs": [{"seed": self._ep_seed[i], "actions": list(self._ep_actions[i]), "episode": self._episode[i],
                      "group": self._group[i], "return": self._ep_return[i], "length": self._ep_len[i],
                      "invalid": self._ep_invalid[i], "tokens": self._ep_tokens[i], "seconds": self._ep_seconds[i],
                      "forced": self._ep_forced[i]}
                     for i in range(self.num_envs)],
        }

    def load_state_dict(self, state: dict) -> None:
        self._next_seed, self._episode_counter, self._t = state["next_seed"], state["episode_counter"], state["t"]
        if not state["started"]:
            return
        replayed = self.pool.replay([(i, e["seed"], e["actions"]) for i, e in enumerate(state["envs"])])
        for i, (e, (obs, info)) in enumerate(zip(state["envs"], replayed)):
            self._obs[i], self._info[i] = obs, info
            self._ep_seed[i], self._ep_actions[i] = e["seed"], list(e["actions"])
            self._episode[i], self._group[i] = e["episode"], e["group"]
            self._ep_return[i], self._ep_len[i], self._ep_invalid[i] = e["return"], e["length"], e["invalid"]
            self._ep_tokens[i], self._ep_seconds[i] = e.get("tokens", 0), e.get("seconds", 0.0)  # older checkpoints lack them
            self._ep_forced[i] = e.get("forced", False)

    def reset(self) -> None:
        """Reset every group, each with its own seed shared by its envs (identical initial states)."""
        G, groups = self.group_size, self.num_envs // self.group_size
        seeds = range(self._next_seed, self._next_seed + groups)
        self._next_seed += groups
        self._reset_envs([(i, seed, seed) for g, seed in enumerate(seeds) for i in range(g * G, (g + 1) * G)])

    # ------------------------------------------------------------ acting
    def _act(self, idx: list[int]) -> list[Sample]:
        obs = [self._obs[i] for i in idx]
        if self.act_fn is not None:
            samples = self.act_fn(obs, [self._info[i] for i in idx])
        else:
            samples = self.policy.sample(obs, self.sampling)
        # Keep the env's raw observation text with each sample (one per observation
        # here): a reward model reads (image, text, reply) and may use another chat
        # template than the policy, so the templated `prompt_text` will not do.
        for o, s in zip(obs, samples):
            text = o.get("text") if isinstance(o, dict) else getattr(o, "text", None)
            if isinstance(text, str) and isinstance(getattr(s, "meta", None), dict):
                s.meta.setdefault("obs_text", text)
        return samples

    def _explore_asks(self, idx: list[int], samples: list[Sample]) -> list[Sample]:
        """Guided exploration of the ask reply (group mode, `explore_ask` > 0).

        A policy that never samples "ask" on some input (a blank page the
        warm-start never saw) gives its group identical, never-asking replies, so
        the group advantage says nothing about asking there. In every group whose
        envs all act at this step and none of whose samples asks, the last
        `explore_ask` samples are replaced by the env's ask reply, teacher-forced
        and scored under the current policy (PPO ratio 1 at the start). Its
        reward then tells the update whether asking beats the answers here:
        ask_missing on a degraded image, ask_clear on a clear one.

        A group any of whose episodes has asked already is left alone: in
        multi-turn mode that episode's view is revealed, a second ask only
        abstains (ask_clear), and forcing it would charge the whole episode,
        its right first ask included, for an action the policy never chose.
        """
        pos = {i: k for k, i in enumerate(idx)}
        G = self.group_size
        out = list(samples)
        forced_at: list[int] = []
        for g in range(self.num_envs // G):
            members = range(g * G, (g + 1) * G)
            if not all(i in pos for i in members) or any(self._helpers[i].asked for i in members):
                continue
            if any(self._asks[i](out[pos[i]].text) for i in members):
                continue
            forced_at.extend(list(members)[-self.explore_ask:])
        if not forced_at:
            return out
        obs = [self._obs[i] for i in forced_at]
        forced = self.policy.forced_samples(obs, [self._ask_reply[i]() for i in forced_at],
                                            temperature=self.sampling.temperature)
        for i, f in zip(forced_at, forced):
            out[pos[i]] = f
        self.forced_asks += len(forced)
        return out

    def _step(self, idx: list[int], samples: list[Sample]) -> list[tuple]:
        """Each env's step outcome; a crash in one env's step comes back as its episode's end (info["error"])."""
        return self.pool.step([(i, s.text) for i, s in zip(idx, samples)])

    def _record(self, i: int, sample: Sample, out, transitions: list[Transition], episodes: list[dict]) -> bool:
        obs, reward, terminated, truncated, info = out
        self._ep_actions[i].append(sample.text)
        self._ep_return[i] += reward
        self._ep_len[i] += 1
        self._ep_invalid[i] += int(not info.get("action_valid", True))
        self._ep_tokens[i] += sample.num_tokens
        self._ep_seconds[i] += sample.gen_seconds
        self._ep_forced[i] |= bool(sample.meta.get("forced"))
        transitions.append(Transition(sample, i, self._t, float(reward), bool(terminated), bool(truncated),
                                      self._episode[i], self._group[i], info,
                                      state_key(self._obs[i], self._info[i])))  # the state before this step
        done = terminated or truncated
        if done:
            episodes.append({
                "episode_id": self._episode[i], "group_id": self._group[i], "return": self._ep_return[i],
                "length": self._ep_len[i], "success": bool(info.get("is_success", self._ep_return[i] > 0)),
                "invalid_actions": self._ep_invalid[i], "truncated": bool(truncated), "error": "error" in info,
                "tokens": self._ep_tokens[i], "gen_seconds": self._ep_seconds[i],
                "forced": self._ep_forced[i],
                **help_episode_fields(info),  # ask/abstain/correct flags under the help wrappers
            })
        else:
            self._obs[i], self._info[i] = obs, info
        return done

    # ------------------------------------------------------------ modes
    def collect_steps(self, num_steps: int) -> Rollout:
        """T lockstep steps of all envs, auto-resetting finished ones (group_size 1)."""
        if self._obs[0] is None:
            self.reset()
        transitions: list[Transition] = []
        episodes: list[dict] = []
        trunc_values: dict[tuple[int, int], float] = {}
        t_gen = t_env = 0.0
        all_idx = list(range(self.num_envs))
        for _ in range(num_steps):
            t0 = time.perf_counter()
            samples = self._act(all_idx)
            t1 = time.perf_counter()
            truncated_now: list[tuple[int, dict]] = []
            resets: list[tuple[int, int, int]] = []
            for i, sample, out in zip(all_idx, samples, self._step(all_idx, samples)):
                if self._record(i, sample, out, transitions, episodes):
                    if out[3] and out[0] is not None:
                        truncated_now.append((i, out[0]))
                    resets.append((i, self._next_seed, self._next_seed))  # each new episode its own seed, in env order
                    self._next_seed += self.seed_stride
            if resets:
                self._reset_envs(resets)
            t_env += time.perf_counter() - t1
            t_gen += t1 - t0
            if truncated_now and self.need_values:
                # Bootstrap from V(final observation) before it is gone (auto-reset).
                vals = self.policy.values([o for _, o in truncated_now])
                for (i, _), v in zip(truncated_now, vals):
                    trunc_values[(self._t, i)] = v
            self._t += 1
        t0 = time.perf_counter()
        # V(s_T) for bootstrapping: a prompt-only pass under the current weights (the
        # next rollout's first step prompts the same observations after the update).
        last_values = self.policy.values(self._obs) if self.need_values else None
        t_boot = time.perf_counter() - t0
        first_t = self._t - num_steps
        for tr in transitions:  # make t relative to this rollout
            tr.t -= first_t
        trunc_values = {(t - first_t, i): v for (t, i), v in trunc_values.items()}
        batch = build_batch(transitions, num_envs=self.num_envs, num_steps=num_steps, last_values=last_values,
                            truncation_values=trunc_values)
        return Rollout(batch, transitions, episodes,
                       {"generate": t_gen, "env": t_env, "bootstrap": t_boot})

    def collect_episodes(self, max_steps: int = 1000) -> Rollout:
        """Reset every group (shared seed per group) and play all episodes to the end."""
        self.reset()
        transitions: list[Transition] = []
        episodes: list[dict] = []
        active = list(range(self.num_envs))
        t_gen = t_env = 0.0
        self._t = 0
        while active and self._t < max_steps:
            t0 = time.perf_counter()
            samples = self._act(active)
            if self.explore_ask:
                samples = self._explore_asks(active, samples)
            t1 = time.perf_counter()
            still = []
            for i, sample, out in zip(active, samples, self._step(active, samples)):
                if not self._record(i, sample, out, transitions, episodes):
                    still.append(i)
            t_env += time.perf_counter() - t1
            t_gen += t1 - t0
            active = still
            self._t += 1
        batch = build_batch(transitions, num_envs=self.num_envs, num_steps=0)
        return Rollout(batch, transitions, episodes, {"generate": t_gen, "env": t_env})

