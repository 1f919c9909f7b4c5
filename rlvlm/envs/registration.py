"""Register rlvlm's envs with gymnasium under `rlvlm/<Name>-v0`."""

from __future__ import annotations

import gymnasium as gym

ENTRY_POINTS = {
    "rlvlm/NumberLine-v0": "rlvlm.envs.numberline:NumberLineEnv",
    "rlvlm/EZPoints-v0": "rlvlm.envs.points:EZPointsEnv",
    "rlvlm/Points24-v0": "rlvlm.envs.points:Points24Env",
    "rlvlm/Blackjack-v0": "rlvlm.envs.blackjack:BlackjackEnv",
    "rlvlm/VisualQA-v0": "rlvlm.envs.visual_qa:VisualQAEnv",
}
ENV_IDS = tuple(ENTRY_POINTS)


def register_envs() -> None:
    """Idempotent: safe to call from every worker process."""
    for env_id, entry_point in ENTRY_POINTS.items():
        if env_id not in gym.registry:
            # No TimeLimit wrapper: each env truncates by its own rules
            # (e.g. NumberLine after 2 x max_position steps).
            gym.register(id=env_id, entry_point=entry_point)
