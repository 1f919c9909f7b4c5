"""Run one training command on several seeds, each from an empty cache, and summarise the spread.

Uses rlvlm as a user would: each run is `rlvlm train PRESET seed=S output_dir=...`
in its own process with its own empty `XDG_CACHE_HOME`, so the tiny model is built
from nothing inside the run and its wall time counts. Runs whose `report.json`
exists are skipped (`--force` re-runs them).

    python experiments/seeds.py numberline --seeds 0 1 2 3 4 --out runs/seeds/numberline
    python experiments/seeds.py numberline --seeds 0 1 2 --set algo.lr=3e-4 --out runs/seeds/nl-lr3

It prints one line per seed and the aggregate (mean, sample std, worst seed),
and writes `summary.json` beside the runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence


def aggregate(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (n - 1; 0 for one value), min, max and n of per-seed figures.

    Non-finite values (a run that produced no figure) are kept out of the
    statistics and counted in `missing`, so one failed seed cannot turn the
    row into NaN silently.
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    missing = len(values) - len(vals)
    if not vals:
        return {"n": 0, "missing": missing, "mean": None, "std": None, "min": None, "max": None}
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "missing": missing, "mean": mean, "std": std, "min": min(vals), "max": max(vals)}


def spread_exceeds_gain(before: Mapping, after: Mapping) -> bool:
    """True when the seeds' spread of the final figure (max - min) is larger than the mean gain.

    Such a row cannot tell the method's gain from the luck of the seed, and the
    docs must say so.
    """
    if after.get("mean") is None or before.get("mean") is None:
        return False
    return (after["max"] - after["min"]) > (after["mean"] - before["mean"])


def fmt(agg: Mapping, digits: int = 3) -> str:
    """`mean ± std (worst min)` for a table cell; `–` when there is no value."""
    if not agg.get("n"):
        return "–"
    return f"{agg['mean']:.{digits}f} ± {agg['std']:.{digits}f} (worst {agg['min']:.{digits}f})"


# Figures read from each run's report.json, by name: (section, key).
FIGURES: dict[str, tuple[str, str]] = {
    "sft": ("sft", "success_rate"),
    "final": ("final", "success_rate"),
    "ask_f1": ("final", "help/ask_f1"),
    "accuracy_clear": ("final", "help/accuracy_clear"),
    "sft_accuracy_clear": ("sft", "help/accuracy_clear"),
    "tokens": ("final", "mean_completion_tokens"),
    "sft_tokens": ("sft", "mean_completion_tokens"),
}


def read_figures(report: Mapping) -> dict:
    out = {name: report.get(sec, {}).get(key) for name, (sec, key) in FIGURES.items()}
    out["wall_seconds"] = report.get("wall_seconds")
    if out["final"] is not None and out["sft"] is not None:
        out["gain"] = out["final"] - out["sft"]
    return {k: v for k, v in out.items() if v is not None}


def summarise(per_seed: Mapping[int, Mapping]) -> dict:
    """Aggregate every figure present in the per-seed dicts; `per_seed` keys are the seeds."""
    names = sorted({k for figs in per_seed.values() for k in figs})
    agg = {name: aggregate([per_seed[s].get(name, float("nan")) for s in per_seed]) for name in names}
    if "sft" in agg and "final" in agg:
        agg["spread_exceeds_gain"] = spread_exceeds_gain(agg["sft"], agg["final"])
    worst = min(per_seed, key=lambda s: per_seed[s].get("final", float("inf"))) if per_seed else None
    agg["worst_seed"] = worst
    return agg


def run_one(argv: list[str], out_dir: Path, log: Callable[[str], None] = print) -> float:
    """Run one command with an empty XDG_CACHE_HOME (and no RLVLM_CACHE); returns its wall seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rlvlm-cache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "RLVLM_CACHE"}
        env.update(XDG_CACHE_HOME=cache, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        log(f"$ XDG_CACHE_HOME=$(mktemp -d) {shlex.join(argv)}")
        t0 = time.perf_counter()
        with open(out_dir / "stdout.log", "w") as fh:
            proc = subprocess.run(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode:
        log(f"  exit {proc.returncode}; see {out_dir / 'stdout.log'}")
    return wall


PROCESS_SECONDS = "process_seconds.txt"  # a run's whole process wall time (model build from the empty cache included)


def save_process_seconds(run_dir: Path, wall: float) -> None:
    (run_dir / PROCESS_SECONDS).write_text(f"{wall:.1f}\n")


def with_process_seconds(figs: dict, run_dir: Path) -> dict:
    """`figs` plus "process_seconds" where the run directory recorded it."""
    ps = run_dir / PROCESS_SECONDS
    if ps.is_file():
        figs["process_seconds"] = float(ps.read_text())
    return figs


def git_commit() -> str | None:
    """The checkout's commit (with `+dirty` when tracked files differ), so a summary names the code it measured."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def train_argv(preset: str, seed: int, out_dir: Path, overrides: Sequence[str]) -> list[str]:
    rlvlm = str(Path(sys.executable).with_name("rlvlm"))
    return [rlvlm, "train", preset, *overrides, f"seed={seed}", f"output_dir={out_dir}"]


def run_seeds(preset: str, seeds: Sequence[int], out: Path, overrides: Sequence[str] = (), force: bool = False,
              log: Callable[[str], None] = print) -> dict:
    per_seed: dict[int, dict] = {}
    for seed in seeds:
        d = out / f"seed{seed}"
        report = d / "report.json"
        if force or not report.is_file():
            save_process_seconds(d, run_one(train_argv(preset, seed, d, overrides), d, log))
        if not report.is_file():
            per_seed[seed] = {}
            continue
        per_seed[seed] = figs = with_process_seconds(read_figures(json.loads(report.read_text())), d)
        log(f"  seed {seed}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in figs.items()))
    summary = {"preset": preset, "overrides": list(overrides), "seeds": list(seeds), "commit": git_commit(),
               "per_seed": per_seed, "aggregate": summarise(per_seed)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preset")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    s = run_seeds(args.preset, args.seeds, args.out, args.overrides, args.force)
    agg = s["aggregate"]
    for name in ("sft", "final", "gain", "ask_f1", "accuracy_clear", "tokens", "process_seconds"):
        if name in agg:
            print(f"{name:>16}: {fmt(agg[name])}  [min {agg[name]['min']}, max {agg[name]['max']}]")
    if agg.get("spread_exceeds_gain"):
        print("note: the spread over seeds is larger than the mean gain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
