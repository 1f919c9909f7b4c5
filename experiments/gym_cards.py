"""The gym-cards results table (docs/results.md): which runs, how to run them, how to tabulate them.

One list, `RUNS`, is the single source of truth: each entry is the exact
`rlvlm ...` command behind one number of the table. This module can

- print the commands (`--dry-run`), so a reader can re-run any one by hand;
- run them in order, skipping runs whose report already exists (`--only`
  picks a subset, `--force` re-runs);
- read every run's report and rewrite the generated blocks of
  docs/results.md (between `<!-- gym-cards:NAME -->` markers, so the
  hand-written analysis around them survives) and the learning-curve PNGs.

    python -m experiments.gym_cards [--only KEY ...] [--dry-run] [--table-only]

All numbers are success rates on the same held-out seeds: every run uses the
run seed 0, so evaluation episodes are seeds 1,000,000 ... 1,000,499, disjoint
from demonstration (500,000+) and training (0+) seeds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from rlvlm.train.run_dir import _ema, read_metrics

EPISODES = 500
EVAL_SEED = 1_000_000  # = train seed 0 + rlvlm.eval.episodes.EVAL_SEED_OFFSET

TASKS = {  # preset name -> (env id, column title)
    "numberline": ("rlvlm/NumberLine-v0", "NumberLine"),
    "ezpoints": ("rlvlm/EZPoints-v0", "EZPoints"),
    "points24": ("rlvlm/Points24-v0", "Points24"),
    "blackjack": ("rlvlm/Blackjack-v0", "Blackjack"),
}

# RL4VLM (Zhai et al. 2024), fine-tuned LLaVA-1.6-7B with CoT, success in %
# (../shared/MISSION.md). Their images were 300x300; their Points24 deals
# were not filtered for solvability.
RL4VLM = {"numberline": 89.4, "ezpoints": 50.0, "points24": 2.3, "blackjack": 40.2}

TARGETS = {"numberline": 0.95, "ezpoints": 0.90, "points24": 0.30, "blackjack": 0.41}


@dataclass(frozen=True)
class Run:
    key: str  # run directory name under runs_dir, e.g. "numberline-ppo"
    task: str  # preset name of the task (a TASKS key)
    kind: str  # "baseline" (rlvlm eval env=...) or "train" (rlvlm train ...)
    args: tuple[str, ...]  # everything after `rlvlm`, without output_dir

    def argv(self, runs_dir: str | Path) -> list[str]:
        return ["rlvlm", *self.args, f"output_dir={Path(runs_dir) / self.key}"]

    def command(self, runs_dir: str | Path) -> str:
        return shlex.join(self.argv(runs_dir))


def _baseline(task: str, policy: str) -> Run:
    env_id = TASKS[task][0]
    return Run(f"{task}-{policy}", task, "baseline",
               ("eval", f"env={env_id}", f"policy={policy}", f"episodes={EPISODES}", f"seed={EVAL_SEED}"))


def _train(key: str, task: str, *args: str) -> Run:
    return Run(key, task, "train", ("train", *args))


RUNS: tuple[Run, ...] = (
    *(_baseline(t, p) for t in TASKS for p in ("random", "oracle")),
    # The main rows: each task's PPO preset (points24 is at the end) (its SFT evaluation is the "SFT only" row).
    _train("numberline-ppo", "numberline", "numberline"),
    _train("ezpoints-ppo", "ezpoints", "ezpoints"),
    _train("blackjack-ppo", "blackjack", "blackjack"),
    # GRPO: no critic, whole episodes in groups sharing a reset seed.
    _train("numberline-grpo", "numberline", "numberline-grpo"),
    _train("ezpoints-grpo", "ezpoints", "ezpoints-grpo"),
    # Ablations on NumberLine: no chain of thought; the thought weight lambda.
    _train("numberline-ppo-nocot", "numberline", "numberline", "env.prompt_style=action_only"),
    _train("numberline-ppo-lambda0.1", "numberline", "numberline", "algo.thought_coef=0.1"),
    _train("numberline-ppo-lambda1.0", "numberline", "numberline", "algo.thought_coef=1.0"),
    _train("blackjack-grpo", "blackjack", "blackjack-grpo"),
    # Last: the longest run.
    _train("points24-ppo", "points24", "points24"),
)
RUNS_BY_KEY = {r.key: r for r in RUNS}


# ------------------------------------------------------------------ running
def run_all(runs: list[Run], runs_dir: str | Path, *, force: bool = False, progress=print) -> None:
    """Run each command whose report.json is missing (all of them with force=True), in order."""
    for i, run in enumerate(runs, 1):
        report = Path(runs_dir) / run.key / "report.json"
        if report.is_file() and not force:
            progress(f"[{i}/{len(runs)}] {run.key}: done already ({report})")
            continue
        progress(f"[{i}/{len(runs)}] {run.command(runs_dir)}")
        t0 = time.perf_counter()
        argv = [sys.executable, "-m", "rlvlm.cli", *run.argv(runs_dir)[1:]]
        proc = subprocess.run(argv)
        if proc.returncode != 0:
            raise SystemExit(f"gym_cards: {run.key} failed with exit code {proc.returncode}; "
                             f"re-run it alone with: {run.command(runs_dir)}")
        progress(f"[{i}/{len(runs)}] {run.key}: {time.perf_counter() - t0:.0f}s")


# --------------------------------------------------------------- collecting
def read_result(run: Run, runs_dir: str | Path) -> dict | None:
    """The figures of one run, or None when its report does not exist yet.

    Baselines give {"success", "episodes"}; training runs also give the SFT
    evaluation ("sft_success"), wall seconds and the last update's rollout
    entropy and invalid-action rate.
    """
    path = Path(runs_dir) / run.key / "report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    if run.kind == "baseline":
        return {"success": report["success_rate"], "episodes": report["episodes"]}
    final, sft = report["final"], report.get("sft", {})
    out = {"success": final["success_rate"], "episodes": final["episodes"],
           "invalid_action_rate": final.get("invalid_action_rate"),
           "sft_success": sft.get("success_rate"), "sft_episodes": sft.get("episodes"),
           "wall_seconds": report.get("wall_seconds"), "env_steps": report.get("env_steps")}
    metrics = Path(runs_dir) / run.key / "metrics.jsonl"
    if metrics.is_file():
        records = read_metrics(metrics)
        if records:
            out["last_entropy"] = records[-1].get("policy/entropy")
    return out


def collect(runs_dir: str | Path, runs=RUNS) -> dict[str, dict]:
    return {r.key: res for r in runs if (res := read_result(r, runs_dir)) is not None}


# ------------------------------------------------------------------- tables
def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _opt(x, spec: str) -> str:
    """A figure that training runs have and baselines lack: blank when absent."""
    return "" if x is None else format(x, spec)


def main_table(results: Mapping[str, dict]) -> str:
    """Success (%) per task: random, SFT only, PPO, GRPO, oracle, and RL4VLM's published numbers."""
    rows = [
        ("Random policy", lambda t: results.get(f"{t}-random", {}).get("success")),
        ("SFT only (warm-start of the PPO run)", lambda t: results.get(f"{t}-ppo", {}).get("sft_success")),
        ("**rlvlm PPO** (SFT + PPO)", lambda t: results.get(f"{t}-ppo", {}).get("success")),
        ("rlvlm GRPO (SFT + GRPO)", lambda t: results.get(f"{t}-grpo", {}).get("success")),
        ("Oracle (scripted)", lambda t: results.get(f"{t}-oracle", {}).get("success")),
        ("Target (issue 5)", lambda t: TARGETS[t]),
    ]
    head = "| | " + " | ".join(TASKS[t][1] for t in TASKS) + " |"
    lines = [head, "|---" * (len(TASKS) + 1) + "|"]
    for name, get in rows:
        lines.append(f"| {name} | " + " | ".join(_pct(get(t)) for t in TASKS) + " |")
    lines.append("| RL4VLM, LLaVA-7B (published) | " + " | ".join(f"{RL4VLM[t]:.1f}" for t in TASKS) + " |")
    return "\n".join(lines)


def commands_table(results: Mapping[str, dict], runs_dir: str | Path, runs=RUNS) -> str:
    """Every run: its command, success, held-out episodes, wall time and final invalid-action rate."""
    lines = ["| run | command | success | SFT | episodes | wall | invalid | entropy |", "|---" * 8 + "|"]
    for run in runs:
        res = results.get(run.key)
        if res is None:
            lines.append(f"| {run.key} | `{run.command(runs_dir)}` | not run yet | | | | | |")
            continue
        wall = res.get("wall_seconds")
        cells = [f"{res['success']:.3f}", _opt(res.get("sft_success"), ".3f"), str(res["episodes"]),
                 "" if wall is None else f"{wall / 60:.1f} min", _opt(res.get("invalid_action_rate"), ".3f"),
                 _opt(res.get("last_entropy"), ".3f")]
        lines.append(f"| {run.key} | `{run.command(runs_dir)}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(results: Mapping[str, dict], keys: list[tuple[str, str]]) -> str:
    lines = ["| setting | SFT only | after RL | gain |", "|---|---|---|---|"]
    for label, key in keys:
        res = results.get(key)
        if res is None:
            lines.append(f"| {label} | not run yet | | |")
            continue
        sft, fin = res.get("sft_success"), res["success"]
        gain = "" if sft is None else f"{100 * (fin - sft):+.1f}"
        lines.append(f"| {label} | {_pct(sft)} | {_pct(fin)} | {gain} |")
    return "\n".join(lines)


COT_KEYS = [("NumberLine, CoT (preset)", "numberline-ppo"), ("NumberLine, no CoT", "numberline-ppo-nocot")]
LAMBDA_KEYS = [("λ = 0.1", "numberline-ppo-lambda0.1"), ("λ = 0.5 (preset)", "numberline-ppo"),
               ("λ = 1.0", "numberline-ppo-lambda1.0")]


# -------------------------------------------------------------------- plots
CURVE_SETS = {  # PNG name -> (title, [(label, run key)])
    "numberline": ("NumberLine", [("PPO", "numberline-ppo"), ("GRPO", "numberline-grpo")]),
    "ezpoints": ("EZPoints", [("PPO", "ezpoints-ppo"), ("GRPO", "ezpoints-grpo")]),
    "points24": ("Points24", [("PPO", "points24-ppo")]),
    "blackjack": ("Blackjack", [("PPO", "blackjack-ppo"), ("GRPO", "blackjack-grpo")]),
    "cot_ablation": ("Chain of thought vs none (PPO)", [(label, key) for label, key in COT_KEYS]),
    "lambda_ablation": ("Thought weight λ on NumberLine (PPO)", LAMBDA_KEYS),
}


def plot_set(runs_dir: str | Path, out_png: str | Path, title: str, series: list[tuple[str, str]],
             results: Mapping[str, dict], smooth: float = 0.6) -> Path | None:
    """Rollout success (EMA-smoothed) against env steps for several runs, with each run's
    held-out SFT and final success as hollow and filled markers at the ends."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure


    fig = Figure(figsize=(7.0, 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    drawn = 0
    for i, (label, key) in enumerate(series):
        path = Path(runs_dir) / key / "metrics.jsonl"
        if not path.is_file():
            continue
        pts = [(r["rollout/env_steps"], r["rollout/success_rate"]) for r in read_metrics(path)
               if isinstance(r.get("rollout/env_steps"), (int, float)) and isinstance(r.get("rollout/success_rate"), (int, float))]
        if not pts:
            continue
        xs, ys = zip(*pts)
        color = f"C{i}"
        ax.plot(xs, ys, lw=0.8, alpha=0.3, color=color)
        ax.plot(xs, _ema(list(ys), smooth), lw=1.8, color=color, label=f"{label} (rollout, T=1)")
        res = results.get(key, {})
        if res.get("sft_success") is not None:
            ax.plot([0], [res["sft_success"]], marker="o", mfc="none", color=color, ms=7)
        ax.plot([xs[-1]], [res.get("success", ys[-1])], marker="o", color=color, ms=7)
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("environment steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}\nhollow: SFT, filled: final (greedy, {EPISODES} held-out episodes)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png


# -------------------------------------------------------------- the document
def replace_blocks(text: str, blocks: Mapping[str, str], tag: str = "gym-cards") -> str:
    """Replace the body between `<!-- TAG:NAME -->` and `<!-- /TAG:NAME -->` for each block."""
    for name, body in blocks.items():
        start, end = f"<!-- {tag}:{name} -->", f"<!-- /{tag}:{name} -->"
        i, j = text.find(start), text.find(end)
        if i < 0 or j < i:
            raise ValueError(f"docs block {name!r} is missing: add the lines {start} and {end}")
        text = text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]
    return text


def render_blocks(results: Mapping[str, dict], runs_dir: str | Path) -> dict[str, str]:
    return {
        "main": main_table(results),
        "commands": commands_table(results, runs_dir),
        "cot": ablation_table(results, COT_KEYS),
        "lambda": ablation_table(results, LAMBDA_KEYS),
    }


def write_results(runs_dir: str | Path, doc: str | Path, fig_dir: str | Path) -> dict[str, dict]:
    results = collect(runs_dir)
    doc = Path(doc)
    doc.write_text(replace_blocks(doc.read_text(), render_blocks(results, runs_dir)))
    for name, (title, series) in CURVE_SETS.items():
        plot_set(runs_dir, Path(fig_dir) / f"{name}.png", title, series, results)
    return results


def harness_parser(prog: str, description: str, runs_dir: str, blocks: str) -> argparse.ArgumentParser:
    """The command line shared by the results harnesses (this module, experiments.reward_experiments)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--runs-dir", default=runs_dir, help=f"where the runs write (default {runs_dir})")
    p.add_argument("--doc", default="docs/results.md", help=f"document whose {blocks} blocks are rewritten")
    p.add_argument("--figures", default="docs/results", help="directory of the PNGs")
    p.add_argument("--only", nargs="+", metavar="KEY", help="run only these (see --dry-run for keys)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    p.add_argument("--table-only", action="store_true", help="do not run anything; rebuild tables and plots")
    p.add_argument("--force", action="store_true", help="re-run even when a report exists")
    return p


def select_runs(parser: argparse.ArgumentParser, runs, only: list[str] | None) -> list[Run]:
    """`runs`, or the ones `--only` names in that order (an unknown key is a parser error listing the keys)."""
    by_key = {r.key: r for r in runs}
    unknown = [k for k in only or () if k not in by_key]
    if unknown:
        parser.error(f"--only: unknown run {unknown[0]!r}; keys: {', '.join(by_key)}")
    return [by_key[k] for k in only] if only else list(runs)


def print_commands(runs: list[Run], runs_dir: str | Path) -> None:
    width = max((len(r.key) for r in runs), default=0) + 2
    for run in runs:
        print(f"{run.key:{width}s}{run.command(runs_dir)}")


def main(argv: list[str] | None = None) -> int:
    p = harness_parser("python -m experiments.gym_cards", __doc__.split("\n\n")[0], "runs/gym_cards", "gym-cards")
    args = p.parse_args(argv)
    runs = select_runs(p, RUNS, args.only)
    if args.dry_run:
        print_commands(runs, args.runs_dir)
        return 0
    if not args.table_only:
        run_all(runs, args.runs_dir, force=args.force)
    results = write_results(args.runs_dir, args.doc, args.figures)
    print(f"{len(results)}/{len(RUNS)} runs have reports; wrote {args.doc} and {args.figures}/*.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
