"""Markdown table of per-seed results from `experiments/seeds.py` summaries.

    python experiments/seed_table.py "new preset=runs/seeds/numberline" "old preset=runs/seeds/nl-base"

One row per summary: SFT -> final for each seed, then the mean ± sample std
and the worst seed of the final figure and of the gain, the wall time range,
and whether the spread over seeds is larger than the mean gain.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seeds import fmt  # experiments/ is run as a script directory


def row(label: str, run_dir: Path, seeds: list[int]) -> str:
    s = json.loads((run_dir / "summary.json").read_text())
    per = {int(k): v for k, v in s["per_seed"].items()}
    cells = [f"{per[k]['sft']:.3f} → **{per[k]['final']:.3f}**" if k in per and "final" in per[k] else "–"
             for k in seeds]
    agg = s["aggregate"]
    wall = agg.get("process_seconds") or agg.get("wall_seconds")
    wall_cell = f"{wall['min'] / 60:.1f}–{wall['max'] / 60:.1f} min" if wall and wall.get("n") else "–"
    flag = "yes" if agg.get("spread_exceeds_gain") else "no"
    return f"| {label} | " + " | ".join(cells) + f" | {fmt(agg['final'])} | {fmt(agg['gain'])} | {wall_cell} | {flag} |"


def main(args: list[str]) -> None:
    pairs = [a.split("=", 1) for a in args]
    seeds = sorted({int(k) for _, d in pairs for k in json.loads((Path(d) / "summary.json").read_text())["per_seed"]})
    print("| recipe | " + " | ".join(f"seed {k}" for k in seeds)
          + " | final: mean ± std (worst) | gain over SFT | wall per run | spread > gain |")
    print("|---" * (len(seeds) + 5) + "|")
    for label, d in pairs:
        print(row(label, Path(d), seeds))


if __name__ == "__main__":
    main(sys.argv[1:])
