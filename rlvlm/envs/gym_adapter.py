"""Any gymnasium env with a `Discrete` action space and `rgb_array` rendering, as an rlvlm env.

    env = from_gymnasium("FrozenLake-v1", env_kwargs={"is_slippery": False})
    env = from_gymnasium(my_env, actions=["noop", "fire", "left", "right"], task="Shoot the aliens.")
    # in a config:  env.id=gymnasium:FrozenLake-v1  env.kwargs.env_kwargs.is_slippery=false

What the adapter owns, and what it leaves to the wrapped env:

- the observation is the env's own rendered frame, resized to `image_size`,
  with a prompt: the task, the legal action names, optionally the last
  `history` turns and a caption of the state, and the reply format;
- action names come from the user (`actions=`, a list by index or a
  name -> index dict), else from the env (`get_action_meanings()`, or an
  `actions` enum as MiniGrid has), else from a registered profile; an env with
  none of these is refused with the fix;
- the reply is parsed by rlvlm's strict parser; an invalid reply is a no-op
  (the wrapped env is not stepped) with `invalid_penalty` and
  `action_valid=False`; a valid one steps the env, whose reward, termination
  and truncation pass through unchanged;
- `reset(seed=)` seeds the wrapped env, so a seed fixes the episode.

Known envs get a `GymProfile` (`register_gym_profile`): action names, a task
text, a caption, a per-episode layout (e.g. a random FrozenLake map per seed),
the state the oracle reads and the oracle itself. A user's own env needs
none of it: `actions=` (when the env has no names) and `task=` are enough.

History (`history=k`): the prompt lists the last k turns (action, reward) and
what the model wrote is re-scored under exactly that prompt, since the prompt
is part of the sampled observation. The history part is capped at
`history_chars` characters: the oldest turns are dropped first and the prompt
says how many were left out. Characters bound tokens here: the history is
ASCII, and every tokenizer rlvlm loads spends at least one character per token
on ASCII text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

from rlvlm.envs.base import TextImageEnv, check_int, reply_format
from rlvlm.envs.parsing import normalize_action
from rlvlm.errors import ConfigError, register_into

# rgb_array rendering needs no display; SDL (pygame) otherwise looks for one.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

GYM_PREFIX = "gymnasium:"


@dataclass(frozen=True)
class GymProfile:
    """What rlvlm knows about one gymnasium env id (every part optional).

    actions: action names by index, when the env has none of its own.
    task: the task description opening the prompt.
    make: builds the wrapped env for an episode from (env_kwargs, seed), for envs
        whose layout is fixed at construction (a random map per seed); None: one
        env, made once with `gymnasium.make(id, render_mode="rgb_array", **env_kwargs)`.
    state: plain-value state of the unwrapped env, put in `info` (what oracles read).
    caption: the state in words, from that `state` (text scaffolding).
    oracle: (state, legal action names) -> (thoughts, action name) for the optimal or
        planned move; used for warm-start demonstrations and as a baseline.
    success: (env return, last info) -> bool; default: the env's `is_success`, else return > 0.
    """

    actions: tuple[str, ...] | None = None
    task: str = ""
    make: Callable[[dict, int | None], gym.Env] | None = None
    state: Callable[[gym.Env], dict] | None = None
    caption: Callable[[dict], str] | None = None
    oracle: Callable[[dict, tuple[str, ...]], tuple[str, str]] | None = None
    success: Callable[[float, dict], bool] | None = None
    defaults: dict = field(default_factory=dict)  # adapter kwargs this env plays best with (e.g. max_steps)


GYM_PROFILES: dict[str, GymProfile] = {}


def register_gym_profile(env_id: str, profile: GymProfile, *, replace: bool = False) -> GymProfile:
    """Teach the adapter about a gymnasium env id, or every id starting with PREFIX for "PREFIX*"
    (see `GymProfile`)."""
    register_into(GYM_PROFILES, env_id, profile, "gymnasium profile", replace=replace)
    return profile


def profile_for(env_id: str) -> GymProfile | None:
    """The profile registered for `env_id`, or for the longest `PREFIX*` pattern it starts with."""
    if env_id in GYM_PROFILES:
        return GYM_PROFILES[env_id]
    patterns = [k for k in GYM_PROFILES if k.endswith("*") and env_id.startswith(k[:-1])]
    return GYM_PROFILES[max(patterns, key=len)] if patterns else None


def gymnasium_id(env_id: str) -> str | None:
    """`ID` of a config id `gymnasium:ID`; None for any other id."""
    return env_id[len(GYM_PREFIX):] if env_id.startswith(GYM_PREFIX) else None


def action_names(env: gym.Env, actions: Sequence[str] | dict | None, profile: GymProfile | None) -> tuple[str, ...]:
    """The legal action names by index (see the module docstring for where they come from)."""
    space = env.action_space
    if not isinstance(space, spaces.Discrete):
        raise ConfigError(f"{env.spec.id if env.spec else type(env.unwrapped).__name__} has a "
                          f"{type(space).__name__} action space; the adapter takes Discrete ones: fix: wrap the env "
                          "so its actions are a Discrete set of named moves")
    n, start = int(space.n), int(space.start)
    if actions is None:
        base = env.unwrapped
        if hasattr(base, "get_action_meanings"):
            actions = list(base.get_action_meanings())
        elif hasattr(base, "actions") and hasattr(base.actions, "__members__"):  # an IntEnum (MiniGrid)
            actions = sorted(base.actions.__members__, key=lambda k: int(base.actions[k]))
        elif profile is not None and profile.actions is not None:
            actions = list(profile.actions)
        else:
            raise ConfigError(f"{type(base).__name__} does not name its {n} actions; fix: pass actions=[...] "
                              f"(one name per action index 0..{n - 1}) to from_gymnasium, or env.kwargs.actions")
    if isinstance(actions, dict):
        by_index = {int(i): str(a) for a, i in actions.items()}
        if sorted(by_index) != list(range(start, start + n)):
            raise ConfigError(f"actions={actions!r} must name every action index {start}..{start + n - 1} once")
        actions = [by_index[i] for i in range(start, start + n)]
    names = tuple(normalize_action(str(a)) for a in actions)
    if len(names) != n:
        raise ConfigError(f"actions has {len(names)} names for {n} actions; fix: give one name per action index")
    if len(set(names)) != n or any(not a or '"' in a for a in names):
        raise ConfigError(f"actions={list(names)} must be distinct, non-empty names without quotes")
    return names


class GymnasiumEnv(TextImageEnv):
    """A gymnasium env as a text+image env; see the module docstring."""

    legal_actions: tuple[str, ...] = ()

    def __init__(self, env: str | gym.Env, *, actions: Sequence[str] | dict | None = None, task: str | None = None,
                 env_kwargs: dict | None = None, history: int = 0, history_chars: int = 1500,
                 invalid_penalty: float = -0.1, max_steps: int = 100, **kwargs):
        self._seeded_now: int | None = None
        self.env_id = (gymnasium_id(env) or env) if isinstance(env, str) else (env.spec.id if env.spec else None)
        self.profile = profile_for(self.env_id or "")
        self.env_kwargs = dict(env_kwargs or {})
        super().__init__(invalid_penalty=invalid_penalty, max_steps=max_steps, **kwargs)
        self.history = check_int("history", history, 0, 64)
        self.history_chars = check_int("history_chars", history_chars, 0)
        if isinstance(env, str):
            self.env = self._make(None)
        else:
            if getattr(env, "render_mode", None) != "rgb_array":
                raise ConfigError(f"the env's render_mode is {getattr(env, 'render_mode', None)!r}; the adapter "
                                  "observes rendered frames: fix: make it with render_mode=\"rgb_array\"")
            if self.env_kwargs:
                raise ConfigError("env_kwargs are used when the adapter makes the env from its id; fix: configure "
                                  "the env you pass")
            self.env = env
        self.legal_actions = action_names(self.env, actions, self.profile)
        self._index = {a: i + int(self.env.action_space.start) for i, a in enumerate(self.legal_actions)}
        self.task = task if task is not None else (self.profile.task if self.profile else "") or (
            f"Play the {self.env_id or type(self.env.unwrapped).__name__} environment.")
        self._turns: list[tuple[str, float]] = []
        self._inner_truncated = False
        self._env_return = 0.0
        self._last_info: dict = {}

    # ------------------------------------------------------------ wrapped env
    def _make(self, seed: int | None) -> gym.Env:
        try:
            if self.profile is not None and self.profile.make is not None:
                return self.profile.make(self.env_kwargs, seed)
            return gym.make(self.env_id, render_mode="rgb_array", **self.env_kwargs)
        except gym.error.Error as err:
            raise ConfigError(f"env.id={GYM_PREFIX}{self.env_id}: gymnasium cannot make it ({err}); fix: check the "
                              "id (and install the package that registers it) and env_kwargs") from None

    def _new_episode(self, options: dict) -> None:
        seed = int(self.np_random.integers(2**31 - 1)) if self._seeded_now is None else self._seeded_now
        if self.profile is not None and self.profile.make is not None:
            self.env.close()
            self.env = self._make(seed)  # the episode's layout comes from its seed
        _, info = self.env.reset(seed=seed)
        self._turns, self._inner_truncated, self._env_return = [], False, 0.0
        self._last_info = dict(info)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # The wrapped env is reset with this seed (or, unseeded, a draw from our stream).
        self._seeded_now = seed
        return super().reset(seed=seed, options=options)

    def _act(self, action: str) -> tuple[float, bool, dict]:
        index = self._index[action]
        _, reward, terminated, truncated, info = self.env.step(index)
        self._inner_truncated = bool(truncated) and not terminated
        self._env_return += float(reward)
        self._last_info = dict(info)
        self._turns.append((action, float(reward)))
        return float(reward), bool(terminated), {"env_action": index}

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if not info["action_valid"]:
            self._turns.append(("(invalid reply)", float(reward)))
            obs = {"image": obs["image"], "text": self.prompt()}  # the turn is in the history now
        if terminated or truncated:
            info["env_return"] = self._env_return
            info["is_success"] = self._succeeded()
        return obs, reward, terminated, truncated, info

    def _succeeded(self) -> bool:
        if self.profile is not None and self.profile.success is not None:
            return bool(self.profile.success(self._env_return, self._last_info))
        if "is_success" in self._last_info:
            return bool(self._last_info["is_success"])
        return self._env_return > 0

    def _over_limit(self) -> bool:
        return self._inner_truncated  # the wrapped env's own time limit passes through

    def close(self):
        self.env.close()
        super().close()

    # ----------------------------------------------------------------- views
    def _draw(self) -> np.ndarray:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] < 3:
            raise ConfigError(f"the env rendered {type(frame).__name__} {getattr(frame, 'shape', '')}; the adapter "
                              "needs an HxWx3 rgb_array frame: fix: make it with render_mode=\"rgb_array\"")
        img = Image.fromarray(np.ascontiguousarray(frame[:, :, :3]).astype(np.uint8))
        return np.asarray(img.resize((self.image_size, self.image_size), Image.BILINEAR), dtype=np.uint8)

    def _state(self) -> dict:
        out = {"legal_actions": list(self.legal_actions), "env_return": self._env_return}
        if self.profile is not None and self.profile.state is not None:
            out.update(self.profile.state(self.env.unwrapped))
        return out

    def _instructions(self) -> str:
        """The task, the legal actions and the history (the caption and reply format follow)."""
        mission = getattr(self.env.unwrapped, "mission", None)  # MiniGrid-style envs say their goal
        parts = [self.task] + ([f"Mission: {mission}."] if isinstance(mission, str) and mission else [])
        parts.append(f"Actions: {', '.join(self.legal_actions)}.")
        history = self._history_text()
        return "\n".join(parts + ([history] if history else []))

    def prompt(self) -> str:
        parts = [self._instructions()]
        caption = self._state_text() if self.state_in_prompt else ""
        if caption:
            parts.append(caption)
        fields = [("thoughts", '"..."'), ("action", f'"one of {", ".join(self.legal_actions)}"')]
        return "\n".join(parts + [reply_format(fields, self.prompt_style)])

    def _state_text(self) -> str:
        if self.profile is None or self.profile.caption is None:
            return ""
        return "State: " + self.profile.caption(self._info())

    def _history_text(self) -> str:
        """The last `history` turns, newest last, within `history_chars` (oldest dropped first)."""
        if not self.history or not self._turns:
            return ""
        turns = self._turns[-self.history:]
        first = len(self._turns) - len(turns) + 1
        lines = [f"turn {first + i}: {a} (reward {r:g})" for i, (a, r) in enumerate(turns)]
        while lines and sum(len(x) + 1 for x in lines) > self.history_chars:
            lines.pop(0)
        left_out = len(self._turns) - len(lines)
        head = f"Earlier turns ({left_out} older not shown):" if left_out else "Earlier turns:"
        return "\n".join([head, *lines]) if lines else head

    # -------------------------------------------------------------- policies
    def oracle_reply(self, info: dict) -> str:
        if self.profile is None or self.profile.oracle is None:
            raise ConfigError(f"{self.env_id or type(self.env.unwrapped).__name__} has no oracle; fix: register a "
                              "GymProfile with an oracle, or set sft.episodes=0")
        thoughts, action = self.profile.oracle(info, self.legal_actions)
        return self.reply({"thoughts": thoughts, "action": action})

    def demo_reply(self, info: dict, action: str) -> str:
        """The oracle's reading of the state (its thoughts), then `action` (sft.random_action_rate)."""
        thoughts = self.profile.oracle(info, self.legal_actions)[0] if self.profile and self.profile.oracle else ""
        return self.reply({"thoughts": thoughts or "I choose a move.", "action": action})


def from_gymnasium(env: str | gym.Env, *, actions: Sequence[str] | dict | None = None,
                   describe: Callable[[dict], str] | None = None, task: str | None = None,
                   **kwargs: Any) -> GymnasiumEnv:
    """`env` (an id, or a gymnasium env made with render_mode="rgb_array") as an rlvlm env.

    actions: names by index (or name -> index) when the env has none of its own.
    describe: a caption of the state from `info` (text scaffolding, shown with
        state_in_prompt=True); overrides the profile's.
    task: the task description opening the prompt.
    The other keywords are `GymnasiumEnv`'s (image_size, history, max_steps, env_kwargs, ...).
    """
    out = GymnasiumEnv(env, actions=actions, task=task, **kwargs)
    if describe is not None:
        out.profile = replace(out.profile or GymProfile(), caption=describe)
        out.state_in_prompt = True
    return out
