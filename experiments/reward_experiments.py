"""The reward experiments of docs/results.md (issue 6): help-seeking, and accuracy + response time.

    python -m experiments.reward_experiments [--only KEY ...] [--dry-run] [--table-only] [--force]

Like `experiments.gym_cards`, one list of runs (`runs(runs_dir)`) is the single
source of the tables: every row is the exact `rlvlm train ...` command behind
it. Runs whose report exists are skipped; the tables and PNGs are rewritten in
place between `<!-- rewards:NAME -->` markers of docs/results.md.

help-seeking: SFT on demonstrations that never choose to ask (the guessing
  baseline), then GRPO with the ternary help reward, in single-turn (ask =
  abstain) and multi-turn (ask, then answer from the clean image) modes; plus
  RL from a warm-start that never saw the ask reply at all.
fast-and-right: one shared warm-start (`far-sft`, updates=0) that is verbose,
  then PPO on accuracy - alpha * tokens for several alpha (alpha = 0 is RL on
  accuracy only), one run pricing measured seconds instead, and a stability
  ablation: 3 seeds with and without reward scaling + entropy bonus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from rlvlm.config import load_config
from rlvlm.train.config import TrainConfig
from rlvlm.train.run_dir import read_metrics

from experiments.gym_cards import Run, harness_parser, print_commands, replace_blocks, run_all, select_runs

RUNS_DIR = "runs/rewards"
ALPHAS = (0.01, 0.02, 0.03)  # token prices of the sweep; 0.02 is the preset's
STABILITY_ALPHA = 0.02
SEEDS = (0, 1, 2)
SECONDS_PRICE = 5.0  # reward per second of generation: ~0.02 per token at ~4 ms a token (CPU, batch 64)


def _train(key: str, group: str, *args: str) -> Run:
    return Run(key, group, "train", ("train", *args))


def sft_policy(runs_dir: str | Path) -> str:
    """Where the shared fast-and-right warm-start saves its policy (updates=0 -> checkpoint step-0)."""
    return str(Path(runs_dir) / "far-sft" / "checkpoints" / "step-0" / "policy")


def help_policy(runs_dir: str | Path) -> str:
    """The single-turn help-seeking run's final policy (checkpoint step-U, U = the preset's updates)."""

    updates = load_config(TrainConfig, "help-seeking").updates
    return str(Path(runs_dir) / "help-single" / "checkpoints" / f"step-{updates}" / "policy")


def runs(runs_dir: str | Path = RUNS_DIR) -> tuple[Run, ...]:
    # No reveal note: the tiny model reads the second turn like a first turn on a clean image
    # (with the note, its post-reveal answers were near chance and RL dropped asking).
    help_multi = ("env.kwargs.ask_for_help.mode=multi_turn", 'env.kwargs.ask_for_help.reveal_note=""',
                  "reward.options.help_ternary.ask_cost=0.1")
    far = ("fast-and-right", f"model.name_or_path={sft_policy(runs_dir)}", "sft.episodes=0")
    plain = ("algo.reward_norm=false", "algo.entropy_coef=0")
    out = [
        _train("help-single", "help", "help-seeking"),
        _train("help-multi", "help", "help-seeking", *help_multi),
        # 100 updates (the preset's count before it became 300): it never samples an ask, so more cannot help.
        _train("help-single-noask", "help", "help-seeking", "sft.ask_rate=0", "updates=100"),
        # Multi-turn from scratch did not learn to ask; from the single-turn RL policy it keeps asking.
        _train("help-multi-from-single", "help", "help-seeking", f"model.name_or_path={help_policy(runs_dir)}",
               "sft.episodes=0", *help_multi, "updates=30"),
        _train("far-sft", "far", "fast-and-right", "updates=0"),
        _train("far-acc", "far", *far, "reward.weights.tokens=0"),
        *(_train(f"far-tok{a:g}", "far", *far, f"reward.weights.tokens={-a:g}") for a in ALPHAS),
        _train("far-sec", "far", *far, "reward.weights.tokens=0", f"reward.weights.seconds={-SECONDS_PRICE:g}"),
    ]
    for seed in SEEDS[1:]:
        out.append(_train(f"far-tok{STABILITY_ALPHA:g}-s{seed}", "far", *far, f"seed={seed}"))
    for seed in SEEDS:
        out.append(_train(f"far-plain-s{seed}", "far", *far, *plain, f"seed={seed}"))
    return tuple(out)


def stability_keys(stabilised: bool) -> list[str]:
    if stabilised:
        return [f"far-tok{STABILITY_ALPHA:g}"] + [f"far-tok{STABILITY_ALPHA:g}-s{s}" for s in SEEDS[1:]]
    return [f"far-plain-s{s}" for s in SEEDS]


# --------------------------------------------------------------- collecting
def read_run(runs_dir: str | Path, key: str) -> dict | None:
    """{"sft": eval, "final": eval, "wall_seconds", "metrics": [per-update records]} or None."""
    path = Path(runs_dir) / key / "report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    out = {"sft": report.get("sft"), "final": report["final"], "wall_seconds": report.get("wall_seconds"), "metrics": []}
    metrics = Path(runs_dir) / key / "metrics.jsonl"
    if metrics.is_file():
        out["metrics"] = read_metrics(metrics)
    return out


def collect(runs_dir: str | Path) -> dict[str, dict]:
    return {r.key: res for r in runs(runs_dir) if (res := read_run(runs_dir, r.key)) is not None}


# ------------------------------------------------------------------- tables
HELP_COLUMNS = [("ask recall", "ask_recall"), ("ask precision", "ask_precision"), ("ask F1", "ask_f1"),
                ("false asks", "false_ask_rate"), ("accuracy (clear)", "accuracy_clear"), ("Φ₁", "phi_1"),
                ("Φ₁₀", "phi_10"), ("coverage", "coverage")]
HELP_LABELS = {"help-single": "single-turn (ask = abstain)", "help-multi": "multi-turn (ask, then answer)",
               "help-single-noask": "single-turn, warm-start never saw an ask",
               "help-multi-from-single": "multi-turn, from the single-turn RL policy"}


def help_table(results: Mapping[str, dict]) -> str:
    lines = ["| setting | policy | " + " | ".join(c for c, _ in HELP_COLUMNS) + " |", "|---" * (len(HELP_COLUMNS) + 2) + "|"]
    for key, label in HELP_LABELS.items():
        res = results.get(key)
        if res is None:
            lines.append(f"| {label} | not run yet |" + " |" * len(HELP_COLUMNS))
            continue
        start = "single-turn RL policy" if key == "help-multi-from-single" else "SFT (guessing baseline)"
        for name, ev in ((start, res["sft"]), ("**+ GRPO**" if key == "help-multi-from-single" else "**SFT + GRPO**", res["final"])):
            cells = [f"{ev[f'help/{k}']:.3f}" if f"help/{k}" in ev else "–" for _, k in HELP_COLUMNS]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def help_modes_table(results: Mapping[str, dict]) -> str:
    """Ask rate per degradation mode (recall within the mode), SFT -> RL."""
    keys = [k for k in HELP_LABELS if k in results]
    modes = sorted({m for k in keys for m in results[k]["final"].get("help/per_mode", {})})
    if not keys or not modes:
        return "_not run yet_"
    lines = ["| mode | " + " | ".join(f"{k}: SFT → RL (n)" for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for mode in modes:
        cells = []
        for k in keys:
            sft = results[k]["sft"].get("help/per_mode", {}).get(mode, {})
            fin = results[k]["final"].get("help/per_mode", {}).get(mode, {})
            cells.append(f"{sft.get('ask_recall', 0):.2f} → {fin.get('ask_recall', 0):.2f} ({fin.get('episodes', 0)})")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cost(ev: Mapping) -> tuple[float, float, float]:
    return ev["success_rate"], ev.get("mean_completion_tokens", float("nan")), ev.get("mean_reply_seconds", float("nan"))


def far_rows(results: Mapping[str, dict]) -> list[tuple[str, str, tuple[float, float, float]]]:
    """(key, label, (accuracy, tokens, seconds)) for the baseline and each sweep run that exists."""
    rows = []
    if "far-sft" in results:
        rows.append(("far-sft", "SFT only (verbose warm-start)", _cost(results["far-sft"]["final"])))
    labels = [("far-acc", "RL, accuracy only (α = 0)")]
    labels += [(f"far-tok{a:g}", f"RL, accuracy − {a:g}·tokens") for a in ALPHAS]
    labels += [("far-sec", f"RL, accuracy − {SECONDS_PRICE:g}·seconds")]
    rows += [(k, label, _cost(results[k]["final"])) for k, label in labels if k in results]
    return rows


def far_table(results: Mapping[str, dict]) -> str:
    rows = far_rows(results)
    if not rows:
        return "_not run yet_"
    base = rows[0][2] if rows[0][0] == "far-sft" else None
    lines = ["| policy | accuracy | tokens / reply | seconds / reply | tokens vs SFT |", "|---|---|---|---|---|"]
    for _key, label, (acc, tok, sec) in rows:
        rel = "" if base is None or _key == "far-sft" else f"{100 * (tok / base[1] - 1):+.0f}%"
        lines.append(f"| {label} | {acc:.3f} | {tok:.1f} | {sec:.3f} | {rel} |")
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def curve_spread(results: Mapping[str, dict], keys: list[str], metric: str = "rollout/success_rate") -> float | None:
    """Mean over updates of the across-seed standard deviation of `metric` (how far seeds' curves disagree)."""
    curves = [[m[metric] for m in results[k]["metrics"] if isinstance(m.get(metric), (int, float))] for k in keys if k in results]
    if len(curves) < 2:
        return None
    n = min(len(c) for c in curves)
    if n == 0:
        return None
    stds = []
    for t in range(n):
        vals = [c[t] for c in curves]
        mean = sum(vals) / len(vals)
        stds.append((sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5)
    return sum(stds) / n


def stability_table(results: Mapping[str, dict]) -> str:
    lines = ["| setting | seeds | final accuracy (mean ± sd) | final tokens (mean ± sd) | curve spread (sd of rollout accuracy) |",
             "|---|---|---|---|---|"]
    for stabilised, label in ((True, "reward scaling + entropy bonus (preset)"), (False, "neither")):
        keys = [k for k in stability_keys(stabilised) if k in results]
        if not keys:
            lines.append(f"| {label} | not run yet | | | |")
            continue
        acc = [results[k]["final"]["success_rate"] for k in keys]
        tok = [results[k]["final"].get("mean_completion_tokens", float("nan")) for k in keys]
        spread = curve_spread(results, keys)
        lines.append(f"| {label} | {len(keys)} | {_spread(acc)} | {_spread(tok)} | "
                     f"{'' if spread is None else f'{spread:.3f}'} |")
    return "\n".join(lines)


def commands_table(results: Mapping[str, dict], runs_dir: str | Path) -> str:
    lines = ["| run | command | wall |", "|---|---|---|"]
    for run in runs(runs_dir):
        res = results.get(run.key)
        wall = "not run yet" if res is None else f"{(res.get('wall_seconds') or 0) / 60:.1f} min"
        lines.append(f"| {run.key} | `{run.command(runs_dir)}` | {wall} |")
    return "\n".join(lines)


def render_blocks(results: Mapping[str, dict], runs_dir: str | Path) -> dict[str, str]:
    return {"help": help_table(results), "help-modes": help_modes_table(results), "far": far_table(results),
            "stability": stability_table(results), "commands": commands_table(results, runs_dir)}


# -------------------------------------------------------------------- plots
def _figure(width: float = 7.0, height: float = 3.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: Path) -> Path:
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png


def _series(res: Mapping, metric: str) -> tuple[list[float], list[float]]:
    pts = [(m["update"], m[metric]) for m in res["metrics"] if isinstance(m.get(metric), (int, float))]
    return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])


def plot_help(results: Mapping[str, dict], out_png: Path) -> Path | None:
    """Rollout ask rate on degraded images (recall) and on clear ones (false asks) per update."""
    keys = [k for k in HELP_LABELS if k in results and results[k]["metrics"]]
    if not keys:
        return None
    fig = _figure()
    ax = fig.subplots()
    for i, k in enumerate(keys):
        for metric, style, what in (("rollout/ask_recall", "-", "asks | missing"), ("rollout/false_ask_rate", ":", "asks | clear")):
            xs, ys = _series(results[k], metric)
            if xs:
                ax.plot(xs, ys, style, color=f"C{i}", lw=1.6, label=f"{k}: {what}")
    ax.set_xlabel("update")
    ax.set_ylabel("ask rate in rollouts (T=1)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("Help-seeking: asking when the image lacks the digit, not when it shows it", fontsize=10)
    ax.legend(fontsize=7, loc="center right")
    return _save(fig, out_png)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (tokens, accuracy) points no other point beats on both (fewer tokens, higher accuracy), by tokens."""
    front = [p for p in points if not any(q != p and q[0] <= p[0] and q[1] >= p[1] for q in points)]
    return sorted(set(front))


def plot_pareto(results: Mapping[str, dict], out_png: Path) -> Path | None:
    rows = far_rows(results)
    if not rows:
        return None
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    for i, (key, label, (acc, tok, _sec)) in enumerate(rows):
        ax.plot([tok], [acc], "o", color=f"C{i}", ms=8, label=label)
    front = pareto_front([(tok, acc) for _k, _l, (acc, tok, _s) in rows])
    ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", lw=1, label="Pareto front")
    ax.set_xlabel("mean completion tokens per reply (greedy)")
    ax.set_ylabel("accuracy (500 held-out test images)")
    ax.grid(alpha=0.3)
    ax.set_title("Accuracy vs response length", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, out_png)


def plot_stability(results: Mapping[str, dict], out_png: Path) -> Path | None:
    fig = _figure(7.6, 3.6)
    axes = fig.subplots(1, 2)
    drawn = 0
    for col, (metric, ylabel) in enumerate((("rollout/success_rate", "rollout accuracy (T=1)"),
                                            ("rollout/completion_tokens", "rollout tokens / reply"))):
        ax = axes[col]
        for i, (stabilised, label) in enumerate(((True, "scaling + entropy"), (False, "neither"))):
            for j, k in enumerate(k for k in stability_keys(stabilised) if k in results):
                xs, ys = _series(results[k], metric)
                if xs:
                    ax.plot(xs, ys, color=f"C{i}", lw=1.2, alpha=0.8, label=label if j == 0 else None)
                    drawn += 1
        ax.set_xlabel("update")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not drawn:
        return None
    fig.suptitle(f"Stability over {len(SEEDS)} seeds (α = {STABILITY_ALPHA:g})", fontsize=10)
    return _save(fig, out_png)


def write_results(runs_dir: str | Path, doc: str | Path, fig_dir: str | Path) -> dict[str, dict]:
    results = collect(runs_dir)
    doc = Path(doc)
    doc.write_text(replace_blocks(doc.read_text(), render_blocks(results, runs_dir), tag="rewards"))
    fig_dir = Path(fig_dir)
    plot_help(results, fig_dir / "help_seeking.png")
    plot_pareto(results, fig_dir / "fast_and_right_pareto.png")
    plot_stability(results, fig_dir / "fast_and_right_stability.png")
    return results


def main(argv: list[str] | None = None) -> int:
    p = harness_parser("python -m experiments.reward_experiments", __doc__.split("\n\n")[0], RUNS_DIR, "rewards")
    args = p.parse_args(argv)
    all_runs = runs(args.runs_dir)
    by_key = {r.key: r for r in all_runs}
    selected = select_runs(p, all_runs, args.only)
    if args.dry_run:
        print_commands(selected, args.runs_dir)
        return 0
    if not args.table_only:
        if by_key["help-multi-from-single"] in selected and not Path(help_policy(args.runs_dir)).is_dir() \
                and by_key["help-single"] not in selected:
            selected.insert(0, by_key["help-single"])  # it continues from that run's policy
        needs_sft = any(r.task == "far" and r.key != "far-sft" for r in selected)
        if needs_sft and not Path(sft_policy(args.runs_dir)).is_dir() and by_key["far-sft"] not in selected:
            selected.insert(0, by_key["far-sft"])  # the sweep starts from the shared warm-start
        run_all(selected, args.runs_dir, force=args.force)
    results = write_results(args.runs_dir, args.doc, args.figures)
    print(f"{len(results)}/{len(all_runs)} runs have reports; wrote {args.doc} and {args.figures}/*.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
