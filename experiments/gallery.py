"""Write example observations of every env as PNGs (for the README / docs).

    python -m experiments.gallery docs/envs [--size 224]

Files: <env>.png for the four card games (mid-episode, after a few oracle
steps), visualqa_<task>.png for each procedural task, and
missing_<mode>.png for each degradation of MissingVisualInfo.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

from rlvlm.envs import degrade
from rlvlm.envs.policies import oracle
from rlvlm.envs.vector import make_env
from rlvlm.tasks.procedural import make_task

_GAMES = {
    "numberline": ("rlvlm/NumberLine-v0", 1),
    "ezpoints": ("rlvlm/EZPoints-v0", 2),
    "points24": ("rlvlm/Points24-v0", 4),
    "blackjack": ("rlvlm/Blackjack-v0", 0),
}


def save_gallery(out_dir: str, image_size: int = 224, seed: int = 0) -> list[str]:
    """Write the gallery PNGs; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []

    def save(name, image):
        path = os.path.join(out_dir, f"{name}.png")
        Image.fromarray(image).save(path)
        paths.append(path)

    for name, (env_id, steps) in _GAMES.items():
        env = make_env(env_id, image_size=image_size)
        pi = oracle(env)
        obs, info = env.reset(seed=seed)
        for _ in range(steps):  # a few oracle moves, so the formula is part-built
            obs, _, terminated, truncated, info = env.step(pi.act(obs, info))
            if terminated or truncated:
                break
        save(name, obs["image"])
    for task in ("digits", "counting", "colours", "spatial"):
        save(f"visualqa_{task}", make_task(task, "train", seed=seed, image_size=image_size)[0]["image"])
    records = make_task("spatial", "train", seed=seed, image_size=image_size)
    digits = make_task("digits", "train", seed=seed, image_size=image_size)
    rng = np.random.default_rng(seed)
    for mode in degrade.MODES:
        # Show each mode on a record where it really hides the answer
        # (blur only does so for digit and shape questions).
        pool = digits if mode == "blur" else records
        record = next(r for r in pool[:50] if mode in degrade.applicable_modes([mode], r["image"], r["facts"]))
        how = degrade.plan(mode, record["image"], record["facts"], rng)
        save(f"missing_{mode}", degrade.apply(record["image"], how, record["facts"]))
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in save_gallery(args.out_dir, args.size, args.seed):
        print(path)


if __name__ == "__main__":
    main()
