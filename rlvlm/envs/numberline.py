"""NumberLine (RL4VLM gym-cards): move "Current" to "Target" one step at a time.

Rules (../shared/MISSION.md):
- target and start are uniform in 0..max_position, and differ;
- "+" adds 1, "-" subtracts 1 (clamped to the line);
- reward +1 on reaching the target (the episode ends), -1 for a step that
  does not reduce the distance, 0 otherwise;
- the episode truncates after 2 x max_position steps.
"""

from __future__ import annotations

from rlvlm.envs.base import TextImageEnv, check_int, reply_format
from rlvlm.tasks.render import draw_text, fit_size, new_canvas
from rlvlm.errors import ConfigError


class NumberLineEnv(TextImageEnv):
    legal_actions = ("+", "-")

    def __init__(self, max_position: int = 5, **kwargs):
        self.max_position = check_int("max_position", max_position, 1, 10**6)
        kwargs.setdefault("max_steps", 2 * self.max_position)
        super().__init__(**kwargs)

    def _new_episode(self, options: dict) -> None:
        """options={"target": t, "current": c} sets the state (e.g. for tests)."""
        n = self.max_position + 1
        self.target = int(self.np_random.integers(n))
        # Draw the start from the other n-1 positions, so it never equals the target.
        self.current = int((self.target + 1 + self.np_random.integers(n - 1)) % n)
        if "target" in options or "current" in options:
            self.target = check_int("options.target", options.get("target", self.target), 0, self.max_position)
            self.current = check_int("options.current", options.get("current", self.current), 0, self.max_position)
            if self.target == self.current:
                raise ConfigError("options target and current are equal; fix: start away from the target")

    def _act(self, action: str):
        before = abs(self.current - self.target)
        step = 1 if action == "+" else -1
        self.current = min(max(self.current + step, 0), self.max_position)
        after = abs(self.current - self.target)
        if after == 0:
            return 1.0, True, {}
        return (-1.0 if after >= before else 0.0), False, {}

    def _state(self) -> dict:
        return {"target": self.target, "current": self.current, "max_position": self.max_position}

    def _draw(self):
        s = self.image_size
        img, draw = new_canvas(s)
        pad = s * 0.06
        half = (s - 2 * pad) / 2
        # Two lines, "Target: N" and "Current: M". The numbers are what the
        # model must read, so each gets its own box and is drawn as tall as
        # the line allows; the labels fill the rest of the width.
        # Both lines share one label size and one number size (fitted to the
        # longest label and the widest number), so the layout never shifts.
        line_h = half * 0.8
        label_size = fit_size("Current:", int(s * 0.64 - pad), int(line_h * 0.7))
        number_size = fit_size(str(self.max_position), int(s * 0.33 - pad), int(line_h))
        for i, (label, value) in enumerate((("Target:", self.target), ("Current:", self.current))):
            top = pad + i * half + half * 0.1
            draw_text(draw, (pad, top, s * 0.64, top + line_h), label, align="left", max_size=label_size)
            draw_text(draw, (s * 0.67, top, s - pad, top + line_h), str(value), max_size=number_size)
        return img

    def _instructions(self) -> str:
        fmt = reply_format(
            [("thoughts", '"target N, current M, move + or -"'), ("action", '"+" or "-"')], self.prompt_style
        )
        return (
            'Number line game. The image shows "Target: N" and "Current: M". '
            'Action "+" adds 1 to Current, "-" subtracts 1. Reach the target.\n' + fmt
        )

    def _state_text(self) -> str:
        return f"Target: {self.target}. Current: {self.current}."

    def oracle_reply(self, info: dict) -> str:
        return self.demo_reply(info, "+" if info["target"] > info["current"] else "-")

    def demo_reply(self, info: dict, action: str) -> str:
        thoughts = f"target {info['target']}, current {info['current']}, move {action}"
        return self.reply({"thoughts": thoughts, "action": action})
