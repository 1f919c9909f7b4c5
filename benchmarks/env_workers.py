#!/usr/bin/env python
"""Env steps per second of the collector, in-process envs against worker envs (issue 18).

    python benchmarks/env_workers.py                      # 8 envs, 50 ms a step, 10 steps x 3 rounds
    python benchmarks/env_workers.py --envs 16 --step-ms 200 --backends inprocess processes ray

Each env is NumberLine whose `step` sleeps `--step-ms` first (a slow
simulator or browser); a scripted random player replies (no model), so the
figures are the env side of a rollout alone. For each backend the pool is
started (timed apart), then `collect_steps(--steps)` and `collect_episodes()`
rounds are timed; env steps/s counts every env step of a round.

Heavy imports (the collector pulls in torch) stay inside main(): a worker
process imports this script as its main module, and stays light that way.
"""

from __future__ import annotations

import argparse
import json
import time

from rlvlm.envs.numberline import NumberLineEnv


class SleepyNumberLine(NumberLineEnv):
    """NumberLine whose step sleeps first: the cost of a slow env, with nothing else."""

    def __init__(self, step_seconds: float, **kwargs):
        super().__init__(**kwargs)
        self.step_seconds = step_seconds

    def step(self, action):
        time.sleep(self.step_seconds)
        return super().step(action)


class Factory:
    """Picklable: the worker backends build each env in its worker from it."""

    def __init__(self, step_seconds: float):
        self.step_seconds = step_seconds

    def __call__(self):
        return SleepyNumberLine(self.step_seconds, image_size=32)


def scripted_act_fn(seed: int):
    from rlvlm.envs import RandomPolicy
    from rlvlm.models.batching import Sample

    player = RandomPolicy(NumberLineEnv(image_size=32), seed=seed)

    def act(observations, infos):
        return [Sample(prompt_text=o["text"], image=o["image"], prompt_ids=[1], completion_ids=[2],
                       text=player.act(o, info), logprobs=[0.0], thought_mask=[False], action_mask=[True],
                       temperature=1.0) for o, info in zip(observations, infos)]
    return act


def measure(backend: str, args) -> dict:
    from rlvlm.envs import make_env_pool
    from rlvlm.rollout.collector import Collector

    t0 = time.perf_counter()
    pool = make_env_pool(backend, Factory(args.step_ms / 1000), args.envs)
    start_s = time.perf_counter() - t0
    try:
        # One collector per mode, as in training (a run collects steps or whole episodes, never both).
        steps = Collector(pool, None, None, seed=0, need_values=False, act_fn=scripted_act_fn(0))
        steps.reset()  # the first resets are not part of a round
        rates: dict[str, list[float]] = {"steps": [], "episodes": []}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            n = len(steps.collect_steps(args.steps))
            rates["steps"].append(n / (time.perf_counter() - t0))
        episodes = Collector(pool, None, None, seed=10_000, need_values=False, act_fn=scripted_act_fn(1))
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            n = len(episodes.collect_episodes())  # its resets included: each round starts new episodes
            rates["episodes"].append(n / (time.perf_counter() - t0))
    finally:
        pool.close()
    return {"backend": backend, "start_s": start_s,
            **{f"{mode}_per_s": sum(r) / len(r) for mode, r in rates.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--step-ms", type=float, default=50.0)
    ap.add_argument("--steps", type=int, default=10, help="lockstep steps per collect_steps round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["inprocess", "processes"])
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()

    rows = [measure(b, args) for b in args.backends]
    base = rows[0]
    ideal = 1000 / args.step_ms * args.envs  # every env stepping at once, nothing else costing time
    print(f"{args.envs} envs, {args.step_ms:g} ms per step, scripted player; means of {args.rounds} rounds "
          f"(collect_steps: {args.steps} lockstep steps; collect_episodes: whole episodes). "
          f"All {args.envs} steps at once would be {ideal:.0f} steps/s.\n")
    print(f"| backend | pool start s | collect_steps env steps/s | x {base['backend']} | "
          f"collect_episodes env steps/s | x {base['backend']} |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['start_s']:.2f} | {r['steps_per_s']:.1f} | "
              f"{r['steps_per_s'] / base['steps_per_s']:.2f} | {r['episodes_per_s']:.1f} | "
              f"{r['episodes_per_s'] / base['episodes_per_s']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
