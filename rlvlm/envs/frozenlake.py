"""gymnasium's FrozenLake-v1 through the adapter: a random map per seed, a caption and an oracle.

    env = from_gymnasium("FrozenLake-v1", env_kwargs={"size": 4, "is_slippery": False})

The game, its rendering and its dynamics are gymnasium's. rlvlm adds:

- a new map for every episode, `generate_random_map(size, p, seed)` (gymnasium's
  own generator, which guarantees a path), so held-out seeds are held-out maps
  as in RAGEN; `map_name=` or `desc=` in env_kwargs keeps one fixed map;
- a caption (state_in_prompt): where the player, the holes and the goal are;
- the oracle: value iteration on the map under the documented dynamics (a
  slippery move goes the intended way with `success_rate`, else to either side),
  maximising the chance of reaching the goal. Without slip it is the shortest
  safe path, and it always succeeds on gymnasium's maps.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text.frozen_lake import generate_random_map

from rlvlm.envs.base import check_float, check_int
from rlvlm.envs.gym_adapter import GymProfile, register_gym_profile

ACTIONS = ("left", "down", "right", "up")  # gymnasium's indices 0..3
_MOVES = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}


def make_frozenlake(env_kwargs: dict, seed: int | None) -> gym.Env:
    """The episode's env: gymnasium's map when one is named, else a random `size` map from `seed`."""
    kw = dict(env_kwargs)
    if "desc" not in kw and "map_name" not in kw:
        size = check_int("env_kwargs.size", kw.pop("size", 4), 2, 64)
        p = check_float("env_kwargs.p", kw.pop("p", 0.8))
        kw["desc"] = generate_random_map(size=size, p=p, seed=seed)
    return gym.make("FrozenLake-v1", render_mode="rgb_array", **kw)


def frozenlake_state(env) -> dict:
    """Plain-value state: the map rows, the player's cell and the slip model (read off env.P)."""
    desc = ["".join(c.decode() for c in row) for row in env.desc]
    s = int(env.s)
    start = int(np.argmax(np.asarray(env.initial_state_distrib)))
    outcomes = env.P[start][0]
    success_rate = max(p for p, *_ in outcomes) if len(outcomes) > 1 else 1.0
    return {"map": desc, "row": s // env.ncol, "col": s % env.ncol, "slippery": len(outcomes) > 1,
            "success_rate": float(success_rate)}


def _cells(desc: list[str], letter: str) -> list[tuple[int, int]]:
    return [(r, c) for r, row in enumerate(desc) for c, ch in enumerate(row) if ch == letter]


def frozenlake_caption(info: dict) -> str:
    desc = info["map"]
    holes = ", ".join(f"({r},{c})" for r, c in _cells(desc, "H")) or "none"
    goal = _cells(desc, "G")[0]
    return (f"you are at (row {info['row']}, column {info['col']}) of a {len(desc)}x{len(desc[0])} lake; "
            f"goal at ({goal[0]},{goal[1]}); holes at {holes}")


def action_values(desc: list[str] | tuple[str, ...], slippery: bool, success_rate: float = 1 / 3,
                  gamma: float = 0.99, sweeps: int = 500) -> np.ndarray:
    """(rows, cols, 4) Q-values of the chance to reach the goal, discounted by `gamma` per step so
    that shorter routes win ties; from value iteration on the map's dynamics (cached per map: the
    oracle asks once per step of an episode on the same map)."""
    return _action_values(tuple(desc), bool(slippery), float(success_rate), float(gamma), int(sweeps)).copy()


@functools.lru_cache(maxsize=256)
def _action_values(desc: tuple[str, ...], slippery: bool, success_rate: float, gamma: float,
                   sweeps: int) -> np.ndarray:
    rows, cols = len(desc), len(desc[0])
    grid = np.array([list(row) for row in desc])
    r, c = np.divmod(np.arange(rows * cols), cols)
    # Where each move leads from each cell (walls keep you in place), as flat cell indices.
    dest = np.stack([np.clip(r + _MOVES[a][0], 0, rows - 1) * cols + np.clip(c + _MOVES[a][1], 0, cols - 1)
                     for a in range(4)])  # (4, cells)
    goal, hole = (grid == "G").ravel(), (grid == "H").ravel()
    side = (1 - success_rate) / 2
    outcomes = [[(a, 1.0)] if not slippery else [(a, success_rate), ((a - 1) % 4, side), ((a + 1) % 4, side)]
                for a in range(4)]
    v = np.zeros(rows * cols)
    for _ in range(sweeps):
        landing = np.where(goal, 1.0, np.where(hole, 0.0, gamma * v))  # worth of arriving in each cell
        q = np.stack([sum(p * landing[dest[b]] for b, p in outcomes[a]) for a in range(4)], axis=1)  # (cells, 4)
        q[goal | hole] = 0.0  # episodes end there
        new = q.max(axis=1)
        if np.allclose(new, v, atol=1e-12):
            break
        v = new
    return q.reshape(rows, cols, 4)


def frozenlake_oracle(info: dict, legal: tuple[str, ...]) -> tuple[str, str]:
    q = action_values(info["map"], info["slippery"], info["success_rate"])[info["row"], info["col"]]
    best = int(np.argmax(q))  # the first of equal values: a fixed order, so demonstrations are consistent
    goal = _cells(info["map"], "G")[0]
    thoughts = f"I am at ({info['row']},{info['col']}); the goal is at ({goal[0]},{goal[1]})."
    return thoughts, ACTIONS[best]


PROFILE = register_gym_profile("FrozenLake-v1", GymProfile(
    actions=ACTIONS,
    task="You walk on a frozen lake (the picture, seen from above). Reach the gift without stepping into a hole.",
    make=make_frozenlake,
    state=frozenlake_state,
    caption=frozenlake_caption,
    oracle=frozenlake_oracle,
))
