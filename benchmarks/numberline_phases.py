#!/usr/bin/env python
"""Where the time goes in the PPO NumberLine main job (`rlvlm train`, preset numberline), per update.

    python benchmarks/numberline_phases.py                 # the preset's warm-start, then 6 updates
    python benchmarks/numberline_phases.py --quick --updates 3 model.decoder=hf

Runs the real driver (rlvlm.train.rl.train) and reads its per-update phase
timings from metrics.jsonl: rollout (generate + env + bootstrap values), reward, score (reference
log-probs, only with a KL term), advantage, update (forward, backward,
optimizer), log, eval. Prints environment steps/s and each phase's share of an
update, and writes OUT/numberline_phases.json. The first update is left out
(warm-up). Extra key=value arguments override the preset.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PHASES = ["rollout", "generate", "env", "bootstrap", "reward", "score", "advantage", "update", "update/forward",
          "update/backward", "update/optimizer", "log", "eval"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=6)
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--report-only", action="store_true", help="re-read the last run's metrics, train nothing")
    ap.add_argument("--quick", action="store_true", help="64-episode, 2-epoch warm-start instead of the preset's")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the numberline preset")
    a = ap.parse_args(argv)
    if a.updates < 2:
        ap.error("--updates must be >= 2 (the first one is a warm-up)")
    from rlvlm.config import load_config
    from rlvlm.train.config import TrainConfig
    from rlvlm.train.rl import train
    from rlvlm.train.run_dir import read_metrics

    out = Path(a.out)
    run_dir = out / "numberline-phases"
    quick = ["sft.episodes=64", "sft.epochs=2"] if a.quick else []
    cfg = load_config(TrainConfig, "numberline", [
        f"updates={a.updates}", *quick, "eval.episodes=32", "eval.every=0",
        "checkpoint_every=0", f"output_dir={run_dir}", *a.overrides])
    t0 = time.perf_counter()
    if not a.report_only:
        train(cfg, progress=lambda s: print(s, flush=True))
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "rollout/steps" in r]
    starts = [i for i, r in enumerate(rows) if r.get("update") == 1]
    rows = rows[(starts[-1] if starts else 0) + 1:]  # the last run's records, less its warm-up update
    seconds = {p: sum(r.get(f"time/{p}", 0.0) for r in rows) / len(rows) for p in PHASES}
    top = ["rollout", "reward", "score", "advantage", "update", "log", "eval"]
    per_update = sum(seconds[p] for p in top)
    steps = sum(r["rollout/steps"] for r in rows) / len(rows)
    result = {
        "config": {"num_envs": cfg.rollout.num_envs, "num_steps": cfg.rollout.num_steps,
                   "max_new_tokens": cfg.rollout.max_new_tokens, "epochs": cfg.algo.epochs,
                   "minibatch_size": cfg.algo.minibatch_size, "model": cfg.model.name_or_path},
        "updates_timed": len(rows), "seconds_per_update": per_update, "env_steps_per_update": steps,
        "env_steps_per_s": steps / per_update,
        "phase_seconds": seconds, "phase_share": {p: seconds[p] / per_update for p in PHASES},
        "wall_seconds": time.perf_counter() - t0,
        "command": "python benchmarks/numberline_phases.py " + " ".join(sys.argv[1:]),
    }
    (out / "numberline_phases.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"[phases] {steps:.0f} env steps per update, {per_update:.2f} s per update: "
          f"{result['env_steps_per_s']:.1f} env steps/s")
    for p in PHASES:
        indent = "    " if p in ("generate", "env", "bootstrap") or p.startswith("update/") else "  "
        print(f"{indent}{p:<18} {seconds[p]:7.3f} s  {100 * result['phase_share'][p]:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
