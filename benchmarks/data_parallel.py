#!/usr/bin/env python
"""Throughput of one `rlvlm train` job on 1 process against N data-parallel processes (issue 18).

    python benchmarks/data_parallel.py                       # NumberLine PPO, 1 vs 2 processes (DDP), 6 updates
    python benchmarks/data_parallel.py --processes 1 2 --backend fsdp2 --json runs/bench/dp.json
    python benchmarks/data_parallel.py --processes 1 8 --set model.device=cuda   # on a GPU machine

Every point is the same run config (the global batch: `rollout.num_envs`,
`algo.minibatch_size` are per run and split over the processes), started with
`accelerate launch` for N > 1. From each run's metrics.jsonl, skipping the
first update (warm-up):

- env steps/s: env steps of all ranks / rollout seconds (generation + env);
- completions/s (update): samples scored with grad per second of the update phase
  (epochs x samples / update seconds);
- loop steps/s: env steps / seconds of the whole update loop (rollout, score,
  advantage, update, log).

On this 2-core machine each process gets one thread, so 2 processes use both
cores where 1 uses one; `threads` is pinned to 1 in every run. The env side
with slow envs (in-process against worker processes) is
benchmarks/env_workers.py.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCELERATE = Path(sys.executable).with_name("accelerate")
BACKENDS = {"ddp": ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
            "fsdp2": ["--config_file", str(ROOT / "configs" / "accelerate" / "fsdp2.yaml")],
            "zero2": ["--config_file", str(ROOT / "configs" / "accelerate" / "zero2.yaml")],  # pip install deepspeed
            "zero3": ["--config_file", str(ROOT / "configs" / "accelerate" / "zero3.yaml")]}
LOOP = ("rollout", "score", "reward", "advantage", "update", "log")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(processes: int, backend: str, args, out: Path) -> dict:
    train = ["-m", "rlvlm.cli", "train", args.preset, f"updates={args.updates}", "sft.episodes=0",
             f"eval.episodes={args.eval_episodes}", "threads=1", f"output_dir={out}", *args.set]
    if processes == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [str(ACCELERATE), "launch", *BACKENDS[backend], "--num_processes", str(processes),
               "--num_cpu_threads_per_process", "1", "--main_process_port", str(_port()), *train]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][1:]  # first: warm-up
    steps = sum(r["rollout/steps"] for r in rows)
    epochs = int(args.epochs)
    t = {k: sum(r.get(f"time/{k}", 0.0) for r in rows) for k in LOOP}
    return {
        "processes": processes, "backend": backend if processes > 1 else "none", "updates_timed": len(rows),
        "env_steps": steps,
        "env_steps_per_s": steps / t["rollout"],
        "update_completions_per_s": epochs * steps / t["update"],
        "loop_steps_per_s": steps / sum(t.values()),
        "rollout_s": t["rollout"], "update_s": t["update"],
        "final_success": json.loads((out / "report.json").read_text())["final"]["success_rate"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backend", choices=sorted(BACKENDS), default="ddp")
    ap.add_argument("--preset", default="numberline")
    ap.add_argument("--updates", type=int, default=6, help="updates per run; the first is not timed")
    ap.add_argument("--eval-episodes", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=None, help="algo.epochs (default: the preset's)")
    ap.add_argument("--set", nargs="*", default=[], help="more key=value overrides for every run")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    if args.epochs is None:
        from rlvlm.config import load_config
        from rlvlm.train.config import TrainConfig

        args.epochs = load_config(TrainConfig, args.preset, args.set).algo.epochs
    else:
        args.set = [*args.set, f"algo.epochs={args.epochs}"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.processes:
            rows.append(run(n, args.backend, args, Path(tmp) / f"p{n}"))
            print(f"  {n} process(es): {rows[-1]['env_steps_per_s']:.1f} env steps/s", file=sys.stderr)
    base = rows[0]
    print(f"`rlvlm train {args.preset}` ({args.updates} updates, first not timed; {' '.join(args.set)})\n")
    print("| processes | backend | env steps/s | x | update completions/s | x | loop env steps/s | x |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['backend']} | {r['env_steps_per_s']:.1f} | "
              f"{r['env_steps_per_s'] / base['env_steps_per_s']:.2f} | {r['update_completions_per_s']:.1f} | "
              f"{r['update_completions_per_s'] / base['update_completions_per_s']:.2f} | "
              f"{r['loop_steps_per_s']:.1f} | {r['loop_steps_per_s'] / base['loop_steps_per_s']:.2f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
