#!/usr/bin/env python
"""rlvlm GRPO step throughput and memory against batch size and completion length (issue 8).

    python benchmarks/scaling.py                 # small model: batch sweep at T=64, length sweep at 8x8
    python benchmarks/scaling.py --size tiny --batches 4x4 8x4 --lengths 8 16

Each point is one process running benchmarks/grpo_vs_trl.py's rlvlm step
(same data, reward and settings), so its peak RSS is its own. Writes
OUT/scaling.json, OUT/scaling.md and OUT/scaling.png (completions/s against
batch size and against completion length, peak RSS against batch size).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpo_vs_trl as bench  # noqa: E402


def _shape(size: str, batch: str, length: int) -> dict:
    try:
        p, g = (int(x) for x in batch.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--batches entry {batch!r} must be PROMPTSxGENERATIONS, e.g. 8x8")
    return {"size": size, "prompts": p, "generations": g, "max_new_tokens": length}


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = sorted((r for r in points if r["sweep"] == "batch"), key=lambda r: r["batch"])
    length = sorted((r for r in points if r["sweep"] == "length"), key=lambda r: r["max_new_tokens"])
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    ax[0].plot([r["batch"] for r in batch], [r["completions_per_s"] for r in batch], "o-")
    ax[0].set(xlabel="completions per step (prompts x G)", ylabel="completions / s", title="throughput vs batch")
    ax[1].plot([r["max_new_tokens"] for r in length], [r["completions_per_s"] for r in length], "o-", label="completions/s")
    ax[1].set(xlabel="max new tokens", ylabel="completions / s", title="throughput vs completion length")
    ax[2].plot([r["batch"] for r in batch], [r["peak_rss_mib"] for r in batch], "o-", color="C3")
    ax[2].set(xlabel="completions per step (prompts x G)", ylabel="peak RSS (MiB)", title="memory vs batch")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small", choices=["tiny", "small"])
    ap.add_argument("--batches", nargs="+", default=["2x8", "4x8", "8x8", "16x8"])
    ap.add_argument("--batch-length", type=int, default=64, help="max new tokens of the batch sweep")
    ap.add_argument("--lengths", nargs="+", type=int, default=[16, 32, 64, 128])
    ap.add_argument("--length-batch", default="8x8", help="PROMPTSxGENERATIONS of the length sweep")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", default="runs/bench")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    bench.model_dir(a.size)
    plan = [("batch", _shape(a.size, b, a.batch_length)) for b in a.batches]
    plan += [("length", _shape(a.size, a.length_batch, n)) for n in a.lengths]
    points = []
    for sweep, shape in plan:
        name = f"scaling-{sweep}-{shape['prompts']}x{shape['generations']}x{shape['max_new_tokens']}"
        r = bench.child_run("rlvlm", shape, a.steps, a.warmup, {}, out / f"{name}.json")
        r.update(sweep=sweep, batch=shape["prompts"] * shape["generations"], max_new_tokens=shape["max_new_tokens"])
        points.append(r)
        print(f"[scaling] {name}: {r['completions_per_s']:.1f} completions/s, {r['tokens_per_s']:.0f} tokens/s, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    (out / "scaling.json").write_text(json.dumps({"points": points, "command": "python benchmarks/scaling.py "
                                                  + " ".join(sys.argv[1:])}, indent=2) + "\n")
    lines = ["| sweep | prompts x G x T | completions/s | tokens/s | s/step | peak RSS (MiB) |", "|---|---|---|---|---|---|"]
    for r in points:
        s = r["shape"]
        lines.append(f"| {r['sweep']} | {s['prompts']}x{s['generations']}x{s['max_new_tokens']} | "
                     f"{r['completions_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['seconds_per_step']:.2f} | "
                     f"{r['peak_rss_mib']:.0f} |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    plot(points, out / "scaling.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
