"""Summarise how large a run's updates were and how healthy its critic was, from metrics.jsonl.

    python experiments/update_stats.py runs/seeds/nl-base/seed*/

Per run: the largest approx KL of one update to its rollout policy, the
largest probability ratio, the peak per-token entropy and invalid-action rate
of the rollouts, and the mean explained variance of the critic over the run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = (("policy/approx_kl", max, "max approx KL"), ("policy/ratio_max", max, "max ratio"),
           ("policy/entropy", max, "peak entropy"), ("rollout/invalid_action_rate", max, "peak invalid"),
           ("value/explained_var", lambda v: sum(v) / len(v), "mean expl. var"))


def stats(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    out = {}
    for key, fn, label in COLUMNS:
        vals = [r[key] for r in rows if r.get(key) is not None]
        out[label] = fn(vals) if vals else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    print("| run | " + " | ".join(label for *_, label in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for run in args.runs:
        s = stats(run)
        print(f"| {run} | " + " | ".join("–" if v is None else f"{v:.3g}" for v in s.values()) + " |")


if __name__ == "__main__":
    main()
