"""Envs and a scripted act_fn for the env-pool tests and benchmarks/env_workers.py.

They live in an importable module (not a test function) because a worker
process or a Ray actor builds its env from a pickled factory, and pickle
finds a class by its module and name. The module imports no torch at its
top, so a worker importing it stays light.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from rlvlm.envs import EnvFactory, NumberLineEnv, RandomPolicy


class SleepyNumberLine(NumberLineEnv):
    """NumberLine whose step sleeps `step_seconds` first (a slow simulator or browser)."""

    def __init__(self, step_seconds: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.step_seconds = step_seconds

    def step(self, action):
        time.sleep(self.step_seconds)
        return super().step(action)


class FaultyNumberLine(NumberLineEnv):
    """NumberLine whose step misbehaves on chosen (seed, step) pairs: `raise_at` raises
    inside step, `die_at` ends the whole process (os._exit, as a native crash would),
    `hang_at` sleeps a minute (a stuck browser)."""

    def __init__(self, raise_at=(), die_at=(), hang_at=(), **kwargs):
        super().__init__(**kwargs)
        self.raise_at, self.die_at = {tuple(x) for x in raise_at}, {tuple(x) for x in die_at}
        self.hang_at = {tuple(x) for x in hang_at}
        self._seed, self._t = None, 0

    def reset(self, *, seed=None, options=None):
        self._seed, self._t = seed, 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._t += 1
        if (self._seed, self._t) in self.raise_at:
            raise RuntimeError(f"simulator fault at seed {self._seed} step {self._t}")
        if (self._seed, self._t) in self.die_at:
            os._exit(3)
        if (self._seed, self._t) in self.hang_at:
            time.sleep(60)
        return super().step(action)


@dataclass
class ClassFactory:
    """A picklable factory for the classes above (EnvFactory builds registered env ids)."""

    cls: type
    kwargs: dict = field(default_factory=dict)

    def __call__(self):
        return self.cls(**self.kwargs)


def numberline_factory(**kwargs) -> EnvFactory:
    return EnvFactory("rlvlm/NumberLine-v0", {"disable_env_checker": True, "image_size": 32, **kwargs})


def scripted_act_fn(seed: int = 0):
    """(observations, infos) -> Samples replying as a seeded random NumberLine player would,
    with a one-token completion so the collector can build its batch without a model."""
    from rlvlm.models.batching import Sample  # torch: imported here, so env workers unpickling a factory skip it

    policy = RandomPolicy(NumberLineEnv(image_size=32), seed=seed)

    def act(observations, infos):
        return [Sample(prompt_text=o["text"], image=o["image"], prompt_ids=[1], completion_ids=[2],
                       text=policy.act(o, info), logprobs=[0.0], thought_mask=[False], action_mask=[True],
                       temperature=1.0)
                for o, info in zip(observations, infos)]
    return act


def rollout_summary(rollout) -> dict:
    """What two backends must agree on: each transition's env, step, reward, flags, ids, texts and
    info (errors aside), the episodes, and the observation images' bytes."""
    trs = [(tr.env_index, tr.t, tr.reward, tr.terminated, tr.truncated, tr.episode_id, tr.group_id, tr.sample.text,
            tr.sample.prompt_text, np.asarray(tr.sample.image).tobytes(),
            sorted((k, repr(v)) for k, v in tr.info.items() if k != "traceback"))
           for tr in rollout.transitions]
    return {"transitions": trs, "episodes": rollout.episodes}
