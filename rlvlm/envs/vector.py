"""Building envs (single or vectorised) and splitting vector batches.

    envs = make("rlvlm/VisualQA-v0", num_envs=8, task="counting",
                missing_info=0.3, ask_for_help="multi_turn")
    obs, infos = envs.reset(seed=0)              # sub-env i is seeded 0 + i
    per_env = unbatch_obs(obs), unbatch_info(infos, 8)

Vector envs are gymnasium's own (`gymnasium.make_vec`, sync by default):
images stack to (N, H, W, 3) and prompts come as a tuple of N strings.
Pass `vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}`
to change gymnasium's default next-step autoreset.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from rlvlm.envs.base import check_int
from rlvlm.envs.gym_adapter import GYM_PREFIX, from_gymnasium
from rlvlm.envs.registration import register_envs
from rlvlm.envs.wrappers import AskForHelp, MissingVisualInfo
from rlvlm.errors import ConfigError


def _as_kwargs(value, name: str, scalar_key: str) -> dict | None:
    """`missing_info=0.3` -> {"p": 0.3}; `ask_for_help="multi_turn"` -> {"mode": ...}."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (int, float, str)):
        return {scalar_key: value}
    raise ConfigError(f"{name}={value!r} must be None, a {scalar_key} value or a dict of {name} options")


def wrapper_fns(missing_info=None, ask_for_help=None) -> list:
    """The wrapper constructors for the help-seeking setup, innermost first."""
    fns = []
    mi = _as_kwargs(missing_info, "missing_info", "p")
    if mi is not None:
        fns.append(functools.partial(MissingVisualInfo, **mi))
    ah = _as_kwargs(ask_for_help, "ask_for_help", "mode")
    if ah is not None:
        fns.append(functools.partial(AskForHelp, **ah))
    return fns


def make_env(env_id: str, *, missing_info=None, ask_for_help=None, **kwargs) -> gym.Env:
    """One env: gymnasium.make(env_id, **kwargs), or for `gymnasium:<ID>` any gymnasium env
    through the adapter (`from_gymnasium(ID, **kwargs)`), optionally wrapped in
    MissingVisualInfo (missing_info=p or dict) and AskForHelp
    (ask_for_help="single_turn"|"multi_turn" or dict)."""
    register_envs()
    if env_id.startswith(GYM_PREFIX):
        kwargs.pop("disable_env_checker", None)  # a gymnasium.make option; the adapter is built directly
        env = from_gymnasium(env_id, **kwargs)
    else:
        env = gym.make(env_id, **kwargs)
    for fn in wrapper_fns(missing_info, ask_for_help):
        env = fn(env)
    return env


@dataclass
class EnvFactory:
    """A no-argument env constructor that pickles: `make_env(env_id, **kwargs)`.

    A worker backend (env.backend=processes or ray) builds each env inside its
    worker from this, so it must cross a process boundary; a closure over the
    config would not."""

    env_id: str
    kwargs: dict = field(default_factory=dict)

    def __call__(self) -> gym.Env:
        return make_env(self.env_id, **self.kwargs)


def make(
    env_id: str,
    num_envs: int = 1,
    *,
    vectorization_mode: str = "sync",
    vector_kwargs: dict | None = None,
    missing_info=None,
    ask_for_help=None,
    **kwargs,
) -> gym.vector.VectorEnv:
    """`num_envs` copies of an env as a gymnasium vector env (see make_env)."""
    register_envs()
    num_envs = check_int("num_envs", num_envs, 1)
    if vectorization_mode not in ("sync", "async"):
        raise ConfigError(f"vectorization_mode={vectorization_mode!r} is not 'sync' or 'async'")
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode=vectorization_mode,
        vector_kwargs=vector_kwargs or {},
        wrappers=wrapper_fns(missing_info, ask_for_help),
        **kwargs,
    )


def unbatch_obs(obs: dict) -> list[dict]:
    """Vector observation {"image": (N,H,W,3), "text": (N,)} -> N dicts."""
    return [{"image": img, "text": txt} for img, txt in zip(obs["image"], obs["text"])]


def _item(value):
    return value.item() if isinstance(value, np.generic) else value


def unbatch_info(infos: dict, num_envs: int) -> list[dict]:
    """gymnasium's batched info (arrays plus `_key` masks) -> one dict per
    sub-env holding only the keys that sub-env reported."""
    out = [{} for _ in range(num_envs)]
    for key, values in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get("_" + key, np.ones(num_envs, dtype=bool))
        if isinstance(values, dict):
            for i, sub in enumerate(unbatch_info(values, num_envs)):
                if mask[i]:
                    out[i][key] = sub
            continue
        for i in range(num_envs):
            if mask[i]:
                out[i][key] = _item(values[i])
    return out
