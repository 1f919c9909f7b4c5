"""Per-state view of a NumberLine policy: for every (target, current) state, the
greedy action and the sampled probability of the right one.

Greedy held-out success is a step function of these: a greedy episode fails as
soon as its path meets one state whose greedy action is wrong (it then walks
back and forth until truncation), so one state flipping moves success by the
share of start states whose path crosses it.

    python experiments/numberline_states.py RUN_DIR [--samples 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import torch

import rlvlm.envs  # noqa: F401
from rlvlm.envs.parsing import parse_action
from rlvlm.models.policy import Policy, SamplingConfig
from rlvlm.train.config import TrainConfig
from rlvlm.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--samples", type=int, default=32)
    args = ap.parse_args()
    ckpts = sorted((args.run_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    cfg = load_config(TrainConfig, str(args.run_dir / "config.yaml"), [])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = Policy.load(ckpts[-1] / "policy")
    env = gym.make(cfg.env.id, image_size=cfg.env.image_size, prompt_style=cfg.env.prompt_style, **cfg.env.kwargs)
    n = env.unwrapped.max_position + 1
    wrong = []
    print(f"{ckpts[-1]}: P(right action) sampled at T=1 over {args.samples}; * = greedy wrong")
    for t in range(n):
        row = []
        for c in range(n):
            if c == t:
                row.append("   .  ")
                continue
            obs, _ = env.reset(seed=0, options={"target": t, "current": c})
            right = "+" if t > c else "-"
            greedy = policy.sample([obs], SamplingConfig(temperature=0.0, max_new_tokens=cfg.rollout.max_new_tokens))[0]
            sampled = policy.sample([obs] * args.samples,
                                    SamplingConfig(temperature=1.0, max_new_tokens=cfg.rollout.max_new_tokens))
            p = sum(parse_action(s.text, ("+", "-")).action == right for s in sampled) / args.samples
            g_ok = parse_action(greedy.text, ("+", "-")).action == right
            if not g_ok:
                wrong.append((t, c, greedy.text.strip().replace("\n", " ")[:60]))
            row.append(f" {p:4.2f}{' ' if g_ok else '*'}")
        print(f"target {t}: " + "".join(row))
    print("columns: current 0..%d" % (n - 1))
    for t, c, text in wrong:
        print(f"greedy wrong at target {t}, current {c}: {text}")


if __name__ == "__main__":
    main()
