"""The shared shape of every rlvlm env: image + prompt in, raw text out.

Subclasses supply the game (`_new_episode`, `_act`, `_draw`, `_state`, the
prompt pieces and the oracle's reply); this class owns what must be the same
everywhere:
- spaces: observation {"image": uint8 HxWx3, "text": prompt}, action = text;
- parsing, and the invalid-action rule (no-op + penalty, never random);
- seeding: everything random comes from `self.np_random`, reset by
  `reset(seed=)`, so a seed fixes the state and the image bytes;
- info keys: `action_valid`, `action`, `parse_error`, the task state, and
  `is_success` / `episode_return` when the episode ends.
"""

from __future__ import annotations

import json
import string

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlvlm.envs.parsing import DEFAULT_MAX_CHARS, ParsedAction, parse_action
from rlvlm.tasks.render import to_array
from rlvlm.errors import ConfigError, RlvlmError, did_you_mean

PROMPT_STYLES = ("cot", "action_only")
MAX_PROMPT_CHARS = 8192


class AnyText(spaces.Text):
    """A Text space holding any string of allowed length.

    gymnasium's Text only contains strings over a fixed charset; prompts hold
    JSON punctuation and questions from real datasets hold any unicode, and
    the env must accept whatever a model writes. Sampling still draws
    printable ASCII."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed=None):
        super().__init__(max_length, min_length=min_length, charset=string.printable, seed=seed)

    def contains(self, x) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"AnyText({self.min_length}, {self.max_length})"


# ------------------------------------------------------ config validation ---
def check_choice(field: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{field}={value!r} is not one of {', '.join(map(str, choices))}{did_you_mean(str(value), choices)}")


def check_int(field: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{field}={value!r} must be an integer; fix: pass e.g. {field}={lo}")
    if value < lo or (hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{field}={value} is out of range; fix: use a value in {span}")
    return int(value)


def check_float(field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):
        raise ConfigError(f"{field}={value!r} must be a finite number")
    return float(value)


def format_reply(fields: dict, prompt_style: str, key: str = "action") -> str:
    """The JSON reply a perfect model would write: all fields for CoT,
    only the action for the action-only style. Fields keep their order."""
    if prompt_style == "action_only":
        fields = {key: fields[key]}
    return json.dumps(fields, ensure_ascii=True)


def reply_format(fields: list[tuple[str, str]], prompt_style: str, key: str = "action") -> str:
    """The format line of a prompt, e.g. `Reply in JSON: {"thoughts": "...",
    "action": "+ or -"}`. Placeholders are written without quotes-in-quotes."""
    if prompt_style == "action_only":
        fields = [f for f in fields if f[0] == key]
    body = ", ".join(f'"{k}": {v}' for k, v in fields)
    return "Reply in JSON: {" + body + "}"


class TextImageEnv(gym.Env):
    """Base class; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}
    #: Normalised legal actions, or None for free text (VisualQA).
    legal_actions: tuple[str, ...] | None = ()
    #: JSON key that holds the action in a reply.
    action_key = "action"
    #: One-step envs end on any action, valid or not.
    invalid_terminates = False

    def __init__(
        self,
        *,
        image_size: int = 224,
        prompt_style: str = "cot",
        invalid_penalty: float = -1.0,
        state_in_prompt: bool = False,
        max_steps: int = 20,
        max_action_chars: int = DEFAULT_MAX_CHARS,
        render_mode: str | None = None,
    ):
        self.image_size = check_int("image_size", image_size, 32, 4096)
        check_choice("prompt_style", prompt_style, PROMPT_STYLES)
        self.prompt_style = prompt_style
        self.invalid_penalty = check_float("invalid_penalty", invalid_penalty)
        self.state_in_prompt = bool(state_in_prompt)
        self.max_steps = check_int("max_steps", max_steps, 1)
        self.max_action_chars = check_int("max_action_chars", max_action_chars, 16)
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode
        s = self.image_size
        self.observation_space = spaces.Dict(
            {"image": spaces.Box(0, 255, (s, s, 3), np.uint8), "text": AnyText(MAX_PROMPT_CHARS)}
        )
        self.action_space = AnyText(self.max_action_chars)
        self._started = False
        self._done = True
        self._image: np.ndarray | None = None

    # ---------------------------------------------------- subclass hooks ---
    def _new_episode(self, options: dict) -> None:
        raise NotImplementedError

    def _act(self, action: str) -> tuple[float, bool, dict]:
        """Apply a parsed legal action: (reward, terminated, extra info)."""
        raise NotImplementedError

    def _draw(self):
        """The current state as a PIL image (or uint8 array) of image_size x image_size."""
        raise NotImplementedError

    def _state(self) -> dict:
        """Task state for `info` (plain Python values)."""
        raise NotImplementedError

    def _instructions(self) -> str:
        """The prompt: rules plus the reply format for self.prompt_style."""
        raise NotImplementedError

    def _state_text(self) -> str:
        """The state in words, appended to the prompt when state_in_prompt."""
        raise NotImplementedError

    def _over_limit(self) -> bool:
        """Game-specific truncation (e.g. formula too long); max_steps is generic."""
        return False

    # The two policies below read only `info` and the env's configuration
    # (prompt style, target, ...), never the live episode, so a policy can
    # act for any copy of the env, e.g. one step of a vector env.
    def oracle_reply(self, info: dict) -> str:
        """What the oracle writes in this state: full CoT JSON (or action only)."""
        raise NotImplementedError

    def demo_reply(self, info: dict, action: str) -> str:
        """The oracle's reply had it decided on `action`: its reading of the state, then that decision.

        Demonstrations with random decisions (sft.random_action_rate) teach the reply format and
        the reading of the image but not which action is right. Only envs whose oracle thoughts
        separate reading from deciding define it."""
        raise NotImplementedError(f"{type(self).__name__} has no demo_reply for a chosen action")

    def random_reply(self, info: dict, rng: np.random.Generator) -> str:
        """A uniformly random legal action, written in the prompt's format."""
        action = str(rng.choice(self.legal_actions))
        return self.reply({"thoughts": "random", self.action_key: action})

    def reply(self, fields: dict) -> str:
        """Format reply fields for this env's prompt style."""
        return format_reply(fields, self.prompt_style, self.action_key)

    # ------------------------------------------------------- public API ---
    def parse(self, text) -> ParsedAction:
        """Parse a completion the way `step` does (handy for callers and tests)."""
        return parse_action(text, self.legal_actions, key=self.action_key, max_chars=self.max_action_chars)

    def prompt(self) -> str:
        text = self._instructions()
        state = self._state_text() if self.state_in_prompt else ""
        return text + "\n" + state if state else text

    def current_observation(self) -> dict:
        """The observation of the current state (a fresh copy)."""
        return {"image": self._image.copy(), "text": self.prompt()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._steps = 0
        self._return = 0.0
        self._started = True
        self._done = False
        self._new_episode(dict(options or {}))
        return self._observe(), self._info()

    def step(self, action):
        if not self._started or self._done:
            raise RlvlmError("step() called on a finished or never-reset episode; fix: call reset() first")
        parsed = self.parse(action)
        self._steps += 1
        extra: dict = {}
        if parsed.valid:
            reward, terminated, extra = self._act(parsed.action)
        else:
            reward, terminated = self.invalid_penalty, self.invalid_terminates
        truncated = not terminated and (self._steps >= self.max_steps or self._over_limit())
        self._return += float(reward)
        self._done = terminated or truncated
        info = self._info()
        # action_valid: the text parsed to a legal action; action_legal: the
        # game also accepted it here (e.g. not a reused card).
        info.update(action_valid=parsed.valid, action_legal=parsed.valid, action=parsed.action, parse_error=parsed.error)
        info.update(extra)
        if self._done:
            info.update(episode_return=self._return, is_success=self._return > 0)
        return self._observe(), float(reward), bool(terminated), bool(truncated), info

    def render(self):
        if self.render_mode == "rgb_array":
            return None if self._image is None else self._image.copy()
        return None

    # --------------------------------------------------------- internals ---
    def _observe(self) -> dict:
        img = self._draw()
        self._image = img if isinstance(img, np.ndarray) else to_array(img)
        return {"image": self._image.copy(), "text": self.prompt()}

    def _info(self) -> dict:
        return {"step": self._steps, **self._state()}
