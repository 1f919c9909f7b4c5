#!/usr/bin/env python
"""Rewrite the tables of docs/performance.md and the README's Performance table from benchmark outputs.

    python benchmarks/render_perf.py --main runs/bench-final --extra runs/bench

--main holds grpo_vs_trl.py's results.json (side by side + levers); --extra
holds logprobs.json, scaling.json and numberline_phases.json. Blocks live
between `<!-- perf:NAME -->` markers; a missing input leaves its block as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the repo root, for experiments/

import grpo_vs_trl as bench  # noqa: E402

from experiments.gym_cards import replace_blocks  # noqa: E402

PHASES = ("generate", "reward", "other_prep", "forward", "backward", "optimizer")


def _mean_rows(results: list[dict]) -> list[dict]:
    """One row per (shape, framework, options): means over rounds (peak RSS: the highest)."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["shape"]["size"], r["framework"], json.dumps(r["options"], sort_keys=True)), []).append(r)
    out = []
    for (size, fw, opts), rows in groups.items():
        n = len(rows)
        out.append({"size": size, "framework": fw, "options": json.loads(opts), "rounds": n, "shape": rows[0]["shape"],
                    "parameters": rows[0]["parameters"],
                    "completions_per_s": sum(r["completions_per_s"] for r in rows) / n,
                    "tokens_per_s": sum(r["tokens_per_s"] for r in rows) / n,
                    "seconds_per_step": sum(r["seconds_per_step"] for r in rows) / n,
                    "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
                    "fill": sum(r["mean_completion_tokens"] for r in rows) / n / rows[0]["shape"]["max_new_tokens"],
                    "phases": {p: sum(r["phase_seconds"][p] for r in rows) / n for p in PHASES}})
    return out


def main_block(summary: dict) -> str:
    rows = [r for r in _mean_rows(summary["results"]) if not r["options"]]
    ratio = {r["shape"]: r for r in summary["ratios"]}
    lines = ["| shape | framework | completions/s | generated tokens/s | s/step | peak RSS (MiB) | generate | "
             "reward | other prep | loss forward | backward | optimizer |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["parameters"], r["framework"] != "trl")):
        s = r["shape"]
        x = ratio.get(r["size"])
        cps = f"{r['completions_per_s']:.1f}"
        rss = f"{r['peak_rss_mib']:.0f}"
        if r["framework"] == "rlvlm" and x:
            cps = f"**{cps}** ({x['completions_per_s_ratio']:.2f}x)"
            rss = f"**{rss}** ({x['peak_rss_ratio']:.2f}x)"
        lines.append(f"| {s['size']} ({r['parameters'] / 1e6:.2f}M) {s['prompts']}x{s['generations']}x"
                     f"{s['max_new_tokens']} | {r['framework']} | {cps} | {r['tokens_per_s']:.0f} | "
                     f"{r['seconds_per_step']:.3f} | {rss} | "
                     + " | ".join(f"{r['phases'][p]:.3f}" for p in PHASES) + " |")
    return (f"Means of {rows[0]['rounds']} alternating rounds of {summary['steps']} timed steps "
            f"(after {summary['warmup']} warm-up); phase columns in seconds per step.\n\n" + "\n".join(lines))


def levers_block(summary: dict) -> str:
    lines = ["| shape | lever (default) | toggled with | completions/s with / without | speed-up | "
             "generate s with / without | train s with / without | peak RSS MiB with / without |",
             "|---|---|---|---|---|---|---|---|"]
    means = _mean_rows(summary["results"])
    for e in summary["levers"]:
        def cps(opts):
            return next(r["completions_per_s"] for r in means if r["size"] == e["shape"] and r["framework"] == "rlvlm"
                        and r["options"] == opts)
        on, off = (cps({}), cps(e["toggle"])) if e["default"] else (cps(e["toggle"]), cps({}))
        toggle = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in e["toggle"].items())
        lines.append(f"| {e['shape']} | {e['lever']} ({'on' if e['default'] else 'off'}) | `model.{toggle}` | "
                     f"{on:.1f} / {off:.1f} | {e['speedup']:.2f}x | {e['generate_s_on']:.3f} / {e['generate_s_off']:.3f} | "
                     f"{e['train_s_on']:.3f} / {e['train_s_off']:.3f} | {e['peak_rss_on']:.0f} / {e['peak_rss_off']:.0f} |")
    return "\n".join(lines)


def logprobs_block(rows: list[dict]) -> str:
    lines = ["| logits (B x T x V) | method | seconds fwd+bwd | peak RSS above start (MiB) | logits alone (MiB) |",
             "|---|---|---|---|---|"]
    for r in rows:
        b, t, v = r["shape"]
        lines.append(f"| {b} x {t} x {v:,} | {r['method']} | {r['seconds']:.3f} | {r['extra_peak_rss_mib']:.0f} | "
                     f"{r['logits_mib']:.0f} |")
    return "\n".join(lines)


def scaling_block(data: dict) -> str:
    lines = ["| sweep | prompts x G x T | completions/s | generated tokens/s | s/step | peak RSS (MiB) |",
             "|---|---|---|---|---|---|"]
    for r in data["points"]:
        s = r["shape"]
        lines.append(f"| {r['sweep']} | {s['prompts']}x{s['generations']}x{s['max_new_tokens']} | "
                     f"{r['completions_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['seconds_per_step']:.2f} | "
                     f"{r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def numberline_block(d: dict) -> str:
    c = d["config"]
    head = (f"{c['num_envs']} envs x {c['num_steps']} steps per update, {c['epochs']} PPO epochs, minibatch "
            f"{c['minibatch_size']}, max {c['max_new_tokens']} new tokens; mean of {d['updates_timed']} updates: "
            f"**{d['seconds_per_update']:.2f} s per update, {d['env_steps_per_s']:.1f} env steps/s**.\n\n")
    lines = ["| phase | seconds per update | share |", "|---|---|---|"]
    for p, sec in d["phase_seconds"].items():
        name = f"&nbsp;&nbsp;{p}" if p in ("generate", "env", "bootstrap") or p.startswith("update/") else p
        lines.append(f"| {name} | {sec:.3f} | {100 * d['phase_share'][p]:.1f} % |")
    return head + "\n".join(lines)


def readme_block(summary: dict) -> str:
    rows = [r for r in _mean_rows(summary["results"]) if not r["options"]]
    ratio = {r["shape"]: r for r in summary["ratios"]}
    lines = ["| shape | | completions/s | generated tokens/s | peak RSS | generate | loss forward | backward |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["parameters"], r["framework"] != "trl")):
        s, x = r["shape"], ratio.get(r["size"])
        label = f"{s['size']} ({r['parameters'] / 1e6:.2f}M) {s['prompts']}×{s['generations']}×{s['max_new_tokens']}"
        if r["framework"] == "trl":
            cps, rss = f"{r['completions_per_s']:.1f}", f"{r['peak_rss_mib']:.0f} MiB"
        else:
            label = ""
            cps = f"**{r['completions_per_s']:.1f} ({x['completions_per_s_ratio']:.2f}×)**"
            rss = f"**{r['peak_rss_mib']:.0f} MiB ({x['peak_rss_ratio']:.2f}×)**"
        ph = r["phases"]
        lines.append(f"| {label} | {'TRL' if r['framework'] == 'trl' else 'rlvlm'} | {cps} | {r['tokens_per_s']:.0f} | "
                     f"{rss} | {ph['generate']:.3f} s | {ph['forward']:.3f} s | {ph['backward']:.3f} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--main", default="runs/bench-final")
    ap.add_argument("--extra", default="runs/bench")
    ap.add_argument("--doc", default="docs/performance.md")
    ap.add_argument("--readme", default="README.md")
    a = ap.parse_args(argv)
    main_dir, extra = Path(a.main), Path(a.extra)
    blocks: dict[str, str] = {}
    readme: dict[str, str] = {}
    if (main_dir / "results.json").is_file():
        summary = json.loads((main_dir / "results.json").read_text())
        blocks["main"] = main_block(summary)
        readme["readme"] = readme_block(summary)
        if summary.get("levers"):
            blocks["levers"] = levers_block(summary)
    if (extra / "logprobs.json").is_file():
        blocks["logprobs"] = logprobs_block(json.loads((extra / "logprobs.json").read_text()))
    if (extra / "scaling.json").is_file():
        blocks["scaling"] = scaling_block(json.loads((extra / "scaling.json").read_text()))
    if (extra / "numberline_phases.json").is_file():
        blocks["numberline"] = numberline_block(json.loads((extra / "numberline_phases.json").read_text()))
    doc = Path(a.doc)
    doc.write_text(replace_blocks(doc.read_text(), blocks, tag="perf"))
    if readme:
        path = Path(a.readme)
        path.write_text(replace_blocks(path.read_text(), readme, tag="perf"))
    print(f"[perf] rewrote {', '.join(blocks)} in {doc}" + (f" and the table in {a.readme}" if readme else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
