"""Scripted text policies: the oracle and the random baseline.

A text policy has one method, `act(obs, info) -> str`, returning the reply
a model would write (CoT JSON, or the action only, matching the env's
prompt style). Both policies derive everything from `info` and the env's
configuration, never from hidden episode state, so one policy object can act
for any number of copies of an env (e.g. the sub-envs of a vector env) and
its replies double as SFT demonstrations.

    pi = oracle("rlvlm/Points24-v0")          # or oracle(env)
    obs, info = env.reset(seed=0)
    text = pi.act(obs, info)                  # '{"cards": [...], ..., "action": "6"}'

Oracles: NumberLine, EZPoints, Points24 optimal (100% on solvable deals);
Blackjack basic strategy; VisualQA the majority reference answer with the
record's rationale. Under AskForHelp the oracle asks exactly when the view
is degraded (ask=False gives the guessing oracle, which never asks).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from rlvlm.envs.base import TextImageEnv
from rlvlm.envs.vector import make_env
from rlvlm.envs.wrappers import find_ask_wrapper
from rlvlm.errors import ConfigError, did_you_mean


@runtime_checkable
class TextPolicy(Protocol):
    def act(self, obs: dict, info: dict) -> str: ...


def _resolve(env_or_id, env_kwargs: dict):
    """(outermost env, base env, AskForHelp wrapper or None)."""
    if isinstance(env_or_id, str):

        env = make_env(env_or_id, **env_kwargs)
    elif hasattr(env_or_id, "envs") and not isinstance(env_or_id, gym.Env):  # a sync vector env
        env = env_or_id.envs[0]
    elif isinstance(env_or_id, gym.Env):
        if env_kwargs:
            raise ConfigError("env kwargs are only used with an env id; fix: configure the env you pass")
        env = env_or_id
    else:
        raise ConfigError(
            f"expected an env id or a gymnasium env, got {type(env_or_id).__name__}; an async vector env "
            "cannot be inspected: fix: pass the env id and its kwargs"
        )
    base = env.unwrapped
    if not isinstance(base, TextImageEnv):
        raise ConfigError(f"{type(base).__name__} is not an rlvlm env; scripted policies need one")
    return env, base, find_ask_wrapper(env)


class OraclePolicy:
    """The env's oracle (see the module docstring)."""

    name = "oracle"

    def __init__(self, base: TextImageEnv, helper=None, ask: bool = True):
        self.base, self.helper, self.ask = base, helper, ask

    def act(self, obs: dict, info: dict) -> str:
        if self.helper is not None and self.ask and info.get("info_missing") and not info.get("revealed"):
            return self.helper.ask_reply()
        return self.base.oracle_reply(info)


class RandomPolicy:
    """Uniform over the legal actions (plus the ask action under AskForHelp);
    for VisualQA, uniform over the record's answer choices."""

    name = "random"

    def __init__(self, base: TextImageEnv, helper=None, seed: int | None = None):
        self.base, self.helper = base, helper
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict, info: dict) -> str:
        if self.helper is not None:
            n = len(info.get("choices") or self.base.legal_actions or ())
            if self.rng.random() < 1.0 / (n + 1):
                return self.helper.ask_reply()
        return self.base.random_reply(info, self.rng)


def oracle(env_or_id, *, ask: bool = True, **env_kwargs) -> OraclePolicy:
    """The oracle for an env (or env id + the kwargs the env is made with)."""
    _, base, helper = _resolve(env_or_id, env_kwargs)
    return OraclePolicy(base, helper, ask)


def random_policy(env_or_id, *, seed: int | None = None, **env_kwargs) -> RandomPolicy:
    """The random baseline for an env (or env id + kwargs)."""
    _, base, helper = _resolve(env_or_id, env_kwargs)
    return RandomPolicy(base, helper, seed)


POLICIES = {"oracle": oracle, "random": random_policy}


def make_policy(name: str, env_or_id, **kwargs) -> TextPolicy:
    """A scripted policy by name: "oracle" or "random"."""
    if name not in POLICIES:
        raise ConfigError(f"policy={name!r} is not one of {', '.join(POLICIES)}{did_you_mean(name, POLICIES)}")
    return POLICIES[name](env_or_id, **kwargs)
