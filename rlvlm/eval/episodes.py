"""Episode evaluation on held-out seeds.

Training resets draw seeds from `seed, seed+1, ...`; evaluation uses a
disjoint range (`eval_seed_base`, default one million above), so success
rates are measured on states the policy did not train on.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from rlvlm.envs.help_metrics import help_metrics
from rlvlm.models.policy import SamplingConfig
from rlvlm.models.seeding import private_stream
from rlvlm.rollout.collector import Collector

EVAL_SEED_OFFSET = 1_000_000


def summarize_episodes(episodes: Sequence[dict]) -> dict:
    """Success rate, mean return/length and invalid-action rate of finished episodes."""
    if not episodes:
        return {"episodes": 0, "success_rate": 0.0, "mean_return": 0.0, "mean_length": 0.0,
                "invalid_action_rate": 0.0}
    steps = sum(e["length"] for e in episodes)
    return {
        "episodes": len(episodes),
        "success_rate": float(np.mean([e["success"] for e in episodes])),
        "mean_return": float(np.mean([e["return"] for e in episodes])),
        "mean_length": float(np.mean([e["length"] for e in episodes])),
        "invalid_action_rate": sum(e["invalid_actions"] for e in episodes) / max(steps, 1),
        "truncated_rate": float(np.mean([e["truncated"] for e in episodes])),
        # Response cost per reply (model call): completion tokens and seconds from
        # the batch's start until that reply stopped (what a caller would wait).
        "mean_completion_tokens": sum(e.get("tokens", 0) for e in episodes) / max(steps, 1),
        "mean_reply_seconds": sum(e.get("gen_seconds", 0.0) for e in episodes) / max(steps, 1),
        **help_metrics(episodes),  # only under the help wrappers
    }


def evaluate(policy, make_env: Callable[[], object], *, episodes: int, seed: int,
             sampling: SamplingConfig | None = None, num_envs: int = 32, act_fn=None, reward=None,
             shard: tuple[int, int] = (0, 1), gather: Callable[[Any], list] | None = None) -> dict:
    """Play `episodes` episodes with seeds seed, seed+1, ... and summarise them.

    `act_fn` replaces the policy (oracle/random baselines). Greedy decoding
    (temperature 0) unless `sampling` says otherwise. With `reward` (a
    `CompositeReward`), every evaluated reply is also scored by its
    components, and the summary gains their means "reward/<name>" (e.g. the
    reward model's score and a held-out heuristic on held-out questions).

    Sharded (`shard=(rank, world)` with `gather`, e.g. `Distributed.gather`):
    rank r plays its contiguous share of the episodes (their seeds are those a
    single process would give them), and the summary is of every rank's
    episodes, in seed order, so it is the same on every rank.
    """
    sampling = sampling or SamplingConfig(temperature=0.0)
    rank, world = shard
    if world > 1 and gather is None:
        raise ValueError("evaluate(shard=(rank, world)) needs gather, the all-gather of the ranks' results")
    base, extra = divmod(episodes, world)
    start = rank * base + min(rank, extra)
    mine = base + (1 if rank < extra else 0)
    t0 = time.perf_counter()
    # Sampled evaluation draws from its own stream (seeded by the first episode's seed):
    # the same held-out episodes give the same replies wherever the evaluation runs, and
    # a periodic evaluation never shifts the training run's random numbers.
    with private_stream(seed + start):
        done, parts = _play(policy, make_env, mine, seed + start, sampling, num_envs, act_fn, reward)
    if world > 1:
        pieces = gather((done, parts))
        done = [e for d, _ in pieces for e in d]
        parts = _merge_parts([p for _, p in pieces])
    out = summarize_episodes(done)
    out.update({k: v for k, (v, _n) in parts.items()})
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["seed"] = seed
    return out


def _merge_parts(pieces: Sequence[dict]) -> dict:
    """Step-weighted means of the ranks' reward components: {name: (mean, steps)}."""
    out: dict = {}
    for name in {k for p in pieces for k in p}:
        total = sum(p[name][1] for p in pieces if name in p)
        out[name] = (sum(p[name][0] * p[name][1] for p in pieces if name in p) / max(total, 1), total)
    return out


def _play(policy, make_env, episodes, seed, sampling, num_envs, act_fn, reward) -> tuple[list[dict], dict]:
    """The finished episodes, in seed order, and {reward component: (mean over the replies, replies)}."""
    if episodes <= 0:
        return [], {}
    n = max(1, min(num_envs, episodes))
    envs = [make_env() for _ in range(n)]
    done: list[dict] = []
    steps: list = []  # transitions of the evaluated episodes, kept only for `reward`
    next_seed = seed
    while len(done) < episodes:
        k = min(n, episodes - len(done))  # the last batch uses fewer envs, same seed sequence
        collector = Collector(envs[:k], policy, sampling, seed=next_seed, need_values=False, act_fn=act_fn)
        rollout = collector.collect_episodes()
        next_seed = collector.next_seed
        done.extend(sorted(rollout.episodes, key=lambda e: e["episode_id"]))
        if reward is not None:
            steps.extend(rollout.transitions)
    parts: dict = {}
    if reward is not None and steps:
        # Scored once after collection, so batched components (a reward model) see every reply at once.
        _, means = reward.score(steps)
        parts = {k: (v, len(steps)) for k, v in means.items() if k != "reward/total"}
    return done[:episodes], parts
