"""MiniGrid (the `minigrid` package) through the adapter: state, caption and a planning oracle.

    env = from_gymnasium("MiniGrid-DoorKey-5x5-v0")      # any MiniGrid-* id

The envs, their layouts (one per seed), rendering and dynamics are MiniGrid's.
The action names are MiniGrid's own (`left, right, forward, pickup, drop,
toggle, done`), and its mission string is in the prompt. rlvlm adds, for
every `MiniGrid-*` id:

- `state`: the grid as MiniGrid encodes it (object type, colour, state per
  cell), the agent's position and direction, and what it carries;
- a caption (state_in_prompt): the agent, the goal, keys and doors in words;
- the oracle: breadth-first search over (position, direction, key carried,
  doors opened) under MiniGrid's rules for walls, doors, keys, lava and the
  goal; it plays the first move of a shortest plan. Grids with objects it
  does not model (balls, boxes) have no plan, and the oracle says so.
"""

from __future__ import annotations

from collections import deque

import minigrid  # noqa: F401  (registers the MiniGrid-* ids with gymnasium)

from rlvlm.envs.gym_adapter import GymProfile, register_gym_profile
from rlvlm.errors import RlvlmError

# MiniGrid's encoding (minigrid.core.constants): object types, door states, direction vectors.
EMPTY, WALL, FLOOR, DOOR, KEY, BALL, BOX, GOAL, LAVA, AGENT = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
OPEN, CLOSED, LOCKED = 0, 1, 2
DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # right, down, left, up
DIR_NAMES = ("right", "down", "left", "up")


def minigrid_state(env) -> dict:
    grid = env.grid.encode().tolist()  # [x][y] -> [type, colour, state]
    carrying = env.carrying.type if env.carrying is not None else None
    return {"grid": grid, "x": int(env.agent_pos[0]), "y": int(env.agent_pos[1]), "dir": int(env.agent_dir),
            "carrying": carrying, "mission": env.mission}


def _find(grid, kind) -> list[tuple[int, int]]:
    return [(x, y) for x, col in enumerate(grid) for y, cell in enumerate(col) if cell[0] == kind]


def minigrid_caption(info: dict) -> str:
    grid = info["grid"]
    parts = [f"you are at ({info['x']},{info['y']}) facing {DIR_NAMES[info['dir']]}"]
    parts += [f"goal at ({x},{y})" for x, y in _find(grid, GOAL)]
    parts += [f"key at ({x},{y})" for x, y in _find(grid, KEY)]
    parts += [f"{('open', 'closed', 'locked')[grid[x][y][2]]} door at ({x},{y})" for x, y in _find(grid, DOOR)]
    if info.get("carrying"):
        parts.append(f"you carry a {info['carrying']}")
    return "; ".join(parts)


def plan(info: dict) -> list[str] | None:
    """A shortest list of MiniGrid actions from the state in `info` to the goal, or None."""
    grid = info["grid"]
    W, H = len(grid), len(grid[0])
    if any(cell[0] in (BALL, BOX) for col in grid for cell in col):
        return None
    doors = tuple(sorted(_find(grid, DOOR)))
    keys = frozenset(_find(grid, KEY))
    start = (info["x"], info["y"], info["dir"], info.get("carrying") == "key",
             frozenset(d for d in doors if grid[d[0]][d[1]][2] == OPEN), keys)
    queue, seen = deque([(start, [])]), {start}
    while queue:
        (x, y, d, key, opened, left), path = queue.popleft()
        fx, fy = x + DIRS[d][0], y + DIRS[d][1]
        front = grid[fx][fy][0] if 0 <= fx < W and 0 <= fy < H else WALL
        moves = [("left", (x, y, (d - 1) % 4, key, opened, left)), ("right", (x, y, (d + 1) % 4, key, opened, left))]
        if front == GOAL:
            return path + ["forward"]
        # MiniGrid lets the agent onto empty cells, floor, a picked-up key's cell and open doors.
        if front in (EMPTY, FLOOR) or (front == KEY and (fx, fy) not in left) or \
                (front == DOOR and (fx, fy) in opened):
            moves.append(("forward", (fx, fy, d, key, opened, left)))
        if front == KEY and (fx, fy) in left and not key:
            moves.append(("pickup", (x, y, d, True, opened, left - {(fx, fy)})))
        if front == DOOR and (fx, fy) not in opened:
            locked = grid[fx][fy][2] == LOCKED
            if key or not locked:
                moves.append(("toggle", (x, y, d, key, opened | {(fx, fy)}, left)))
        for name, nxt in moves:
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, path + [name]))
    return None


def minigrid_oracle(info: dict, legal: tuple[str, ...]) -> tuple[str, str]:
    steps = plan(info)
    if not steps:
        raise RlvlmError(f"the MiniGrid oracle found no plan to the goal ({info.get('mission')!r})")
    return minigrid_caption(info), steps[0]


PROFILE = register_gym_profile("MiniGrid-*", GymProfile(
    task="You are the red triangle in a grid world seen from above; it points the way you face.",
    state=minigrid_state,
    caption=minigrid_caption,
    oracle=minigrid_oracle,
))
