"""Help-seeking wrappers: hide the visual information, and let the model ask.

    env = AskForHelp(MissingVisualInfo(gym.make("rlvlm/VisualQA-v0"), p=0.3), mode="multi_turn")

`MissingVisualInfo` degrades the episode's image with probability p (see
`rlvlm.envs.degrade` for the modes). `AskForHelp` adds an ask action:
- single_turn: asking ends the episode as an abstention;
- multi_turn: asking reveals the clean image (ProactiveBench-style) at a
  small cost, and the model answers in the next turn; the prompt then starts
  with `reveal_note` ("" repeats the first turn's prompt on the clean image).

Rewards (configurable): +1 correct, -1 wrong, 0 for asking when information
was missing, a small penalty (-0.2) for asking when it was not; multi-turn
asks also pay `ask_cost`. For QA envs the answer's reward is
wrong + (correct - wrong) * accuracy, so soft accuracy interpolates.

Info keys for help rewards and metrics (issue 6), on every step:
- info_missing: the episode's first image lacked the answer (stays True
  after a reveal); degraded: this observation is degraded; degradation: the
  mode or None; revealed: the clean view was given;
- help_action: "ask" | "answer" | "invalid"; asked: asked at least once;
- ask_needed (ask steps only): the view was degraded when the model asked;
- abstained: the episode ended on an ask; answered: a valid answer was given;
- correct: the answer was correct (accuracy > 0), None if no answer yet;
- help_mode: "single_turn" | "multi_turn".
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlvlm.envs import degrade
from rlvlm.envs.base import check_choice, check_float
from rlvlm.envs.parsing import parse_action
from rlvlm.errors import ConfigError, RlvlmError

HELP_MODES = ("single_turn", "multi_turn")
REVEAL_NOTE = "You asked for help; here is the clear image. Answer now."
DROP_NOTE = "(No image is available.)"
_SEED_SALT = 0x4D495353  # separates the wrapper's stream from the env's


class MissingVisualInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """With probability `p` per episode, degrade every observation of the
    episode with one of `modes` that hides the answer.

    reset(options={"degradation": mode_or_None}) forces a mode (or a clean
    episode), for evaluating each mode on the same seeds.
    """

    def __init__(self, env, p: float = 0.3, modes=degrade.MODES, seed: int | None = None, blur_radius: float = 0.12):
        # Recording the arguments lets gymnasium rebuild the wrapped env from its spec.
        gym.utils.RecordConstructorArgs.__init__(self, p=p, modes=modes, seed=seed, blur_radius=blur_radius)
        gym.Wrapper.__init__(self, env)
        self.p = check_float("p", p)
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"p={p} must be a probability in [0, 1]")
        modes = (modes,) if isinstance(modes, str) else tuple(modes)
        if not modes:
            raise ConfigError(f"modes is empty; fix: choose from {', '.join(degrade.MODES)}")
        for m in modes:
            check_choice("modes", m, degrade.MODES)
        self.modes = modes
        self.seed = seed
        self.blur_radius = check_float("blur_radius", blur_radius)
        self._rng = np.random.default_rng(None if seed is None else [_SEED_SALT, seed])
        self._plan: dict | None = None
        self._revealed = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:  # the same reset seed gives the same degradation
            self._rng = np.random.default_rng([_SEED_SALT, 0 if self.seed is None else self.seed + 1, seed])
        facts = info.get("facts")
        usable = degrade.applicable_modes(self.modes, obs["image"], facts)
        # Draw both numbers every episode so the stream does not depend on the outcome.
        u, pick = self._rng.random(), self._rng.random()
        options = options or {}
        if "degradation" in options:
            mode = options["degradation"]
            if mode is not None:
                check_choice("degradation", mode, degrade.MODES)
        else:
            mode = usable[int(pick * len(usable))] if (u < self.p and usable) else None
        self._plan = None if mode is None else degrade.plan(mode, obs["image"], facts, self._rng)
        self._info_missing = mode is not None
        self._revealed = False
        self._clean = obs
        return self._observe(obs, info), self._add_info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._clean = obs
        return self._observe(obs, info), reward, terminated, truncated, self._add_info(info)

    def reveal(self) -> dict:
        """Stop degrading this episode and return the clean observation."""
        self._revealed = True
        return {"image": self._clean["image"].copy(), "text": self._clean["text"]}

    @property
    def degrading(self) -> bool:
        return self._plan is not None and not self._revealed

    def _observe(self, obs: dict, info: dict) -> dict:
        if not self.degrading:
            return obs
        image = degrade.apply(obs["image"], self._plan, info.get("facts"), self.blur_radius)
        text = obs["text"] + ("\n" + DROP_NOTE if self._plan["mode"] == "drop" else "")
        return {"image": image, "text": text}

    def _add_info(self, info: dict) -> dict:
        info = dict(info)
        info.update(
            info_missing=self._info_missing,
            degraded=self.degrading,
            degradation=None if self._plan is None else self._plan["mode"],
            revealed=self._revealed,
        )
        return info


class AskForHelp(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds an explicit ask-for-help action; see the module docstring."""

    def __init__(
        self,
        env,
        mode: str = "single_turn",
        ask_token: str = "ask",
        correct: float = 1.0,
        wrong: float = -1.0,
        ask_missing: float = 0.0,
        ask_clear: float = -0.2,
        ask_cost: float = 0.1,
        remap_rewards: bool = True,
        reveal_note: str = REVEAL_NOTE,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self, mode=mode, ask_token=ask_token, correct=correct, wrong=wrong, ask_missing=ask_missing,
            ask_clear=ask_clear, ask_cost=ask_cost, remap_rewards=remap_rewards, reveal_note=reveal_note,
        )  # fmt: skip
        gym.Wrapper.__init__(self, env)
        check_choice("mode", mode, HELP_MODES)
        if not isinstance(ask_token, str) or not ask_token.strip() or ask_token != ask_token.strip().lower():
            raise ConfigError(f"ask_token={ask_token!r} must be a non-empty lower-case word, e.g. 'ask'")
        self.mode, self.ask_token = mode, ask_token
        self.correct, self.wrong = check_float("correct", correct), check_float("wrong", wrong)
        self.ask_missing, self.ask_clear = check_float("ask_missing", ask_missing), check_float("ask_clear", ask_clear)
        self.ask_cost = check_float("ask_cost", ask_cost)
        self.remap_rewards = bool(remap_rewards)
        if not isinstance(reveal_note, str):
            raise ConfigError(f"reveal_note={reveal_note!r} must be a string (\"\" for none)")
        self.reveal_note = reveal_note
        base = env.unwrapped
        self.key = getattr(base, "action_key", "action")
        self.max_chars = getattr(base, "max_action_chars", 4096)
        legal = getattr(base, "legal_actions", None)
        if legal is not None and ask_token in legal:
            raise ConfigError(f"ask_token={ask_token!r} is already an action of {type(base).__name__}; fix: pick another word")

    # ------------------------------------------------------------ prompts ---
    def help_instruction(self) -> str:
        return f'If the image does not show what you need, ask for help: reply "{self.key}": "{self.ask_token}".'

    def ask_reply(self) -> str:
        """The reply that asks, in the env's prompt style (used by the oracle)."""
        return self.env.unwrapped.reply({"thoughts": "image unclear, ask", self.key: self.ask_token})

    @property
    def asked(self) -> bool:
        """Whether this episode has asked already (in multi-turn, the view is then revealed)."""
        return self._asked

    def asks(self, reply: str) -> bool:
        """Whether `reply` is the ask action (parsed as step() parses it)."""
        parsed = parse_action(reply, None, key=self.key, max_chars=self.max_chars)
        return bool(parsed.valid and parsed.action == self.ask_token)

    def _with_instruction(self, obs: dict) -> dict:
        return {"image": obs["image"], "text": obs["text"] + "\n" + self.help_instruction()}

    # -------------------------------------------------------------- steps ---
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._asked = False
        self._done = False
        self._return = 0.0
        self._last_info = info
        self._last_obs = self._with_instruction(obs)
        return self._last_obs, self._help_info(info, "none", abstained=False, answered=False, correct=None)

    def step(self, action):
        if self._done:
            raise RlvlmError("step() called after the episode ended; fix: call reset() first")
        if self.asks(action):
            return self._ask()
        obs, reward, terminated, truncated, info = self.env.step(action)
        valid = bool(info.get("action_valid", True))
        if self.remap_rewards and info.get("accuracy") is not None:
            reward = self.wrong + (self.correct - self.wrong) * float(info["accuracy"])
        self._last_info = info
        info = self._help_info(
            info, "answer" if valid else "invalid", abstained=False, answered=valid, correct=info.get("correct"), reward=reward
        )
        self._done = terminated or truncated
        self._last_obs = self._with_instruction(obs)
        return self._last_obs, float(reward), terminated, truncated, info

    def _ask(self):
        missing = bool(self._last_info.get("info_missing", False))
        revealed = bool(self._last_info.get("revealed", False))
        # Asking pays off only while the view is still degraded.
        needed = missing and not revealed
        reward = self.ask_missing if needed else self.ask_clear
        first_ask = not self._asked
        self._asked = True
        if self.mode == "multi_turn" and first_ask:
            reward -= self.ask_cost
            obs = self._reveal()
            info = dict(self._last_info, revealed=True, degraded=False, action_valid=True, action=self.ask_token, parse_error=None,
                        ask_needed=needed)
            self._last_info = info
            # With no note the second turn reads exactly like a first turn on a clear
            # image (a small model trained on first turns transfers its reading).
            text = (self.reveal_note + "\n" + obs["text"]) if self.reveal_note else self._with_instruction(obs)["text"]
            info = self._help_info(info, "ask", abstained=False, answered=False, correct=None, reward=reward)
            self._last_obs = {"image": obs["image"], "text": text}
            return self._last_obs, float(reward), False, False, info
        # single-turn ask, or asking again after the reveal: an abstention.
        info = dict(self._last_info, action_valid=True, action=self.ask_token, parse_error=None, ask_needed=needed)
        info = self._help_info(info, "ask", abstained=True, answered=False, correct=None, reward=reward, done=True)
        self._done = True
        return self._last_obs, float(reward), True, False, info

    def _reveal(self) -> dict:
        try:
            return self.env.get_wrapper_attr("reveal")()
        except AttributeError:  # no MissingVisualInfo below: the view was clean already
            return self.env.unwrapped.current_observation()

    def _help_info(self, info: dict, action: str, *, abstained: bool, answered: bool, correct, reward: float = 0.0, done: bool = False) -> dict:
        info = dict(info)
        self._return += float(reward)
        info.update(
            help_action=action,
            asked=self._asked,
            abstained=abstained,
            answered=answered,
            correct=correct,
            help_mode=self.mode,
            info_missing=bool(info.get("info_missing", False)),
        )
        if done or "episode_return" in info:  # the episode ended: success by this wrapper's rewards
            info.update(episode_return=self._return, is_success=self._return > 0)
        return info


def find_ask_wrapper(env) -> AskForHelp | None:
    """The AskForHelp layer in `env`'s wrapper stack (the innermost if several), or None."""
    helper, layer = None, env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, AskForHelp):
            helper = layer
        layer = layer.env
    return helper
