#!/usr/bin/env python
"""Per-token log-probs + entropies, forward and backward: op-by-op torch vs rlvlm's fused, chunked function.

    python benchmarks/logprobs.py             # the 14M benchmark shape (64 x 64, V=2048) and Qwen's vocabulary

Each (shape, method) runs in its own process: seconds per forward+backward
(median of --repeats) and the process's peak RSS above the logits themselves.
Writes OUT/logprobs.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {"small-8x8x64": (64, 64, 2048), "qwen-vocab-16x64": (16, 64, 151_936)}
METHODS = ["op-by-op", "fused", "fused-chunk4"]


def op_by_op(logits, targets):
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    return lp, ent


def run_one(shape, method: str, repeats: int) -> dict:
    import torch

    from rlvlm.algos import token_logprobs

    torch.manual_seed(0)
    B, T, V = shape
    base = torch.randn(B, T, V)
    targets = torch.randint(0, V, (B, T))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(repeats + 1):
        x = base.clone().requires_grad_(True)
        t0 = time.perf_counter()
        if method == "op-by-op":
            lp, ent = op_by_op(x, targets)
        else:
            lp, ent = token_logprobs(x, targets, chunk_rows=4 if method == "fused-chunk4" else 0)
        (lp.sum() + 0.01 * ent.sum()).backward()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = sorted(times[1:])
    return {"shape": list(shape), "method": method, "seconds": times[len(times) // 2],
            "extra_peak_rss_mib": peak - rss0, "logits_mib": B * T * V * 4 / 2**20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(run_one(SHAPES[a.child[0]], a.child[1], a.repeats)))
        return 0
    rows = []
    for name in SHAPES:
        for method in METHODS:
            proc = subprocess.run([sys.executable, __file__, "--child", name, method, "--repeats", str(a.repeats)],
                                  capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["name"] = name
            rows.append(r)
            print(f"[logprobs] {name} {method}: {r['seconds']:.3f} s fwd+bwd, +{r['extra_peak_rss_mib']:.0f} MiB "
                  f"peak RSS (logits {r['logits_mib']:.0f} MiB)", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logprobs.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
