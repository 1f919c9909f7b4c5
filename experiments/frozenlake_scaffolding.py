"""Does a local caption help a tiny VLM learn FrozenLake? (issue 19, an experiment, not the library)

The shipped FrozenLake profile captions the state globally ("you are at (row 1, column 2) of a 4x4
lake; goal at (3,3); holes at (1,1), (2,3)"), and its oracle's thoughts name the position and the
goal. A policy then has to match coordinates to find which neighbour is a hole. This script swaps
in, the way a user would (`register_gym_profile(..., replace=True)`), a profile whose caption and
thoughts describe the four neighbours ("left ice, down hole, right ice, up edge; goal 2 down, 3
right"), and trains the `frozenlake` preset with it.

    python experiments/frozenlake_scaffolding.py --out runs/fl-local --set updates=30 rollout.max_new_tokens=72

Seed 0, 200 held-out maps, 2026-12-07 (the longer thoughts need max_new_tokens 72; at the preset's 40
every reply was cut off and the warm-start scored 0.000):

    shipped profile (rlvlm train frozenlake updates=30 ...)   warm-start 0.440, after RL 0.330-0.390
    local caption, no KL                                      warm-start 0.765, rollouts 0.75-1.0, then at
                                                              update 26 approx KL 8.8 and the format collapsed
                                                              (invalid 0.94): after RL 0.000
    local caption, model.reference=copy algo.kl_coef=0.05     warm-start 0.765, after RL 0.765: stable, but by
                                                              update 29 every group's plays were identical
                                                              (entropy 0.006, gradient 0): no signal left
    + sft.random_action_rate=0.3                              0.765 -> 0.765
    + algo.entropy_coef=0.01 sft.epochs=3                     0.765 -> 0.745

Why 0.765 every time: a rule that reads only the caption (step to the safe neighbour closest to the
goal, never planning around a dead end) succeeds on exactly 0.765 of the same 200 evaluation maps
(seeds 1000000-1000199, computed without a model). The model learned that rule and takes nothing
from the picture; going further needs the whole map in words, or a policy that reads the image.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from rlvlm.config import load_config
from rlvlm.envs import GYM_PROFILES, register_gym_profile
from rlvlm.envs.frozenlake import ACTIONS, action_values
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import train

_STEPS = {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}
_CELL = {"F": "ice", "S": "ice", "H": "hole", "G": "goal"}


def neighbours(info: dict) -> str:
    desc, r, c = info["map"], info["row"], info["col"]
    parts = []
    for name, (dr, dc) in _STEPS.items():
        rr, cc = r + dr, c + dc
        inside = 0 <= rr < len(desc) and 0 <= cc < len(desc[0])
        parts.append(f"{name} {_CELL[desc[rr][cc]] if inside else 'edge'}")
    goal = next((i, row.index("G")) for i, row in enumerate(desc) if "G" in row)
    return f"{', '.join(parts)}; goal {goal[0] - r} down, {goal[1] - c} right"


def local_oracle(info: dict, legal: tuple[str, ...]) -> tuple[str, str]:
    q = action_values(info["map"], info["slippery"], info["success_rate"])[info["row"], info["col"]]
    return neighbours(info), ACTIONS[int(q.argmax())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", nargs="*", default=[], help="key=value overrides of the frozenlake preset")
    args = ap.parse_args()
    base = GYM_PROFILES["FrozenLake-v1"]
    register_gym_profile("FrozenLake-v1", replace(base, caption=neighbours, oracle=local_oracle), replace=True)
    cfg = load_config(TrainConfig, "frozenlake", [f"output_dir={args.out}", *args.set])
    report = train(cfg, progress=print)
    print(json.dumps({"warm_start": report["sft"]["success_rate"], "final": report["final"]["success_rate"]}))


if __name__ == "__main__":
    main()
