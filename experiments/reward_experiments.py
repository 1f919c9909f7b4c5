"""The reward experiments of docs/results.md (issue 6): help-seeking, and accuracy + response time.

    python -m experiments.reward_experiments [--only KEY ...] [--seeds 0 1 2] [--dry-run] [--table-only] [--force]

Like `experiments.gym_cards`, one list of runs (`runs(runs_dir)`) is the single
source of the tables: every row is the exact `rlvlm train ...` command behind
it, and every run is repeated on the seeds `SEEDS` (0, 1, 2), because one seed
cannot tell a reward's effect from the luck of its seed. Seed S of run KEY
writes `RUNS_DIR/KEY/seedS` in its own process from an empty cache
(experiments.gym_cards.run_seeds); a run that starts from another run's policy
(`FromRun`) takes that run's policy of the same seed. Seeds whose report exists
are skipped (`--force` re-runs); a failed seed is missing from the tables, not
fatal. The tables (experiments.reward_tables: mean ± std (worst seed) of every
figure, the worst being the min or the max as the column says) and PNGs are
rewritten in place between `<!-- rewards:NAME -->` markers of docs/results.md.

help-seeking: SFT on demonstrations that never choose to ask (the guessing
  baseline), then GRPO with the ternary help reward, in single-turn (ask =
  abstain) and multi-turn (ask, then answer from the clean image) modes; plus
  RL from a warm-start that never saw the ask reply at all, and multi-turn RL
  from the single-turn RL policy.
fast-and-right: one shared warm-start per seed (`far-sft`, updates=0) that is
  verbose, then Dr. GRPO on accuracy - alpha * tokens for several alpha
  (alpha = 0 is RL on accuracy only), one run pricing measured seconds
  instead, and a stability ablation: the preset's alpha with and without its
  entropy bonus, compared by their spread over the seeds. (The other
  stabiliser, running reward scaling, is for GAE returns; the config check
  refuses it with a group estimator, so it has no arm here.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from rlvlm.config import load_config
from rlvlm.train.config import TrainConfig
from rlvlm.train.run_dir import read_metrics

from experiments import gym_cards as gc
from experiments import reward_tables as rt
from experiments.gym_cards import SEEDS, Run, seed_dir
from experiments.records import table_data

RUNS_DIR = "runs/rewards"
ALPHAS = (0.01, 0.02, 0.03)  # token prices of the sweep; 0.02 is the preset's
STABILITY_ALPHA = 0.02
SECONDS_PRICE = 5.0  # reward per second of generation: ~0.02 per token at ~4 ms a token (CPU, batch 64)


@dataclass(frozen=True)
class FromRun(Run):
    """A training run that starts from the policy another run saved: seed S from that run's seed S,
    so each seed's chain (warm-start, then RL) is one independent replicate."""

    start: str  # key of the run whose policy it starts from
    policy: str  # where that policy lies inside the start run's output_dir

    def _resolved(self, runs_dir: str | Path, seed: int | None) -> Run:
        """The plain Run with `model.name_or_path` pointing at the start run's seed-`seed` policy
        (`seedS` literally for the docs' template), right after the preset like a user would write it."""
        start = Path(runs_dir) / self.start / ("seedS" if seed is None else f"seed{seed}") / self.policy
        return Run(self.key, self.task, self.kind, (*self.args[:2], f"model.name_or_path={start}", *self.args[2:]))

    def seed_argv(self, runs_dir: str | Path, seed: int) -> list[str]:
        return self._resolved(runs_dir, seed).seed_argv(runs_dir, seed)

    def seed_command(self, runs_dir: str | Path, seed: int | None = None) -> str:
        return self._resolved(runs_dir, seed).seed_command(runs_dir, seed)

    def argv(self, runs_dir: str | Path) -> list[str]:
        # The single-seed form has no seed to choose the start run's policy by; a command without it
        # would silently train from the untrained model.
        raise TypeError(f"{self.key} starts from a per-seed policy of {self.start}: use seed_argv")


def _train(key: str, group: str, *args: str) -> Run:
    return Run(key, group, "train", ("train", *args))


def _policy(updates: int) -> str:
    """Where a run's policy after `updates` updates lies inside its output_dir."""
    return str(Path("checkpoints") / f"step-{updates}" / "policy")


def runs(runs_dir: str | Path = RUNS_DIR) -> tuple[Run, ...]:
    # No reveal note: the tiny model reads the second turn like a first turn on a clean image
    # (with the note, its post-reveal answers were near chance and RL dropped asking).
    help_multi = ("env.kwargs.ask_for_help.mode=multi_turn", 'env.kwargs.ask_for_help.reveal_note=""',
                  "reward.options.help_ternary.ask_cost=0.1")
    help_updates = load_config(TrainConfig, "help-seeking").updates  # help-single's last checkpoint

    def far(key: str, *args: str) -> FromRun:  # from far-sft's warm-start (updates=0 -> checkpoint step-0)
        return FromRun(key, "far", "train", ("train", "fast-and-right", "sft.episodes=0", *args), "far-sft", _policy(0))

    return (
        _train("help-single", "help", "help-seeking"),
        _train("help-multi", "help", "help-seeking", *help_multi),
        # 100 updates (the preset's count before it became 300): it never samples an ask, so more cannot help.
        _train("help-single-noask", "help", "help-seeking", "sft.ask_rate=0", "updates=100"),
        # Multi-turn from scratch did not learn to ask; from the single-turn RL policy it keeps asking.
        FromRun("help-multi-from-single", "help", "train",
                ("train", "help-seeking", "sft.episodes=0", *help_multi, "updates=30"), "help-single",
                _policy(help_updates)),
        _train("far-sft", "far", "fast-and-right", "updates=0"),
        far("far-acc", "reward.weights.tokens=0"),
        *(far(f"far-tok{a:g}", f"reward.weights.tokens={-a:g}") for a in ALPHAS),
        far("far-sec", "reward.weights.tokens=0", f"reward.weights.seconds={-SECONDS_PRICE:g}"),
        # The stability ablation's other arm; its preset arm is far-tok{STABILITY_ALPHA} on the same seeds.
        far("far-plain", "algo.entropy_coef=0"),
    )


# The rows of the tables (experiments.reward_tables renders them).
HELP_ROWS = [  # (key, setting, starting policy, RL policy)
    ("help-single", "single-turn (ask = abstain)", "SFT (guessing baseline)", "**SFT + GRPO**"),
    ("help-multi", "multi-turn (ask, then answer)", "SFT (guessing baseline)", "**SFT + GRPO**"),
    ("help-single-noask", "single-turn, warm-start never saw an ask", "SFT (guessing baseline)", "**SFT + GRPO**"),
    ("help-multi-from-single", "multi-turn, from the single-turn RL policy", "single-turn RL policy", "**+ GRPO**"),
]
FAR_BASELINE = "far-sft"
FAR_ROWS = [(FAR_BASELINE, "SFT only (verbose warm-start)"), ("far-acc", "RL, accuracy only (α = 0)"),
            *((f"far-tok{a:g}", f"RL, accuracy − {a:g}·tokens") for a in ALPHAS),
            ("far-sec", f"RL, accuracy − {SECONDS_PRICE:g}·seconds")]
STABILITY_ROWS = [(f"far-tok{STABILITY_ALPHA:g}", "entropy bonus (preset)"),
                  ("far-plain", "no entropy bonus")]


# --------------------------------------------------------------- collecting
def read_report(runs_dir: str | Path, key: str, seed: int) -> dict | None:
    """Seed `seed`'s report.json with its per-update records under "metrics", None without a report."""
    d = seed_dir(runs_dir, key, seed)
    if not (d / "report.json").is_file():
        return None
    report = json.loads((d / "report.json").read_text())
    report["metrics"] = read_metrics(d / "metrics.jsonl") if (d / "metrics.jsonl").is_file() else []
    return report


def collect(runs_dir: str | Path, seeds: Sequence[int] = SEEDS) -> dict[str, dict[int, dict]]:
    """{run key: {seed: report}} for every run and every seed of `seeds` that has a report."""
    out: dict[str, dict[int, dict]] = {}
    for run in runs(runs_dir):
        out[run.key] = {s: rep for s in seeds if (rep := read_report(runs_dir, run.key, s)) is not None}
    return out


def render_blocks(results: rt.Results, summaries: Mapping[str, dict], runs_dir: str | Path,
                  seeds: Sequence[int] = SEEDS, measured_on: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every `rewards:` block; `summaries` are experiments.gym_cards.collect's, for the commands table
    (each seed's success before -> after RL, mean ± std (worst), wall time, spread > gain)."""
    return {
        "help": rt.help_table(results, HELP_ROWS, seeds),
        "help-modes": rt.help_modes_table(results, [k for k, *_ in HELP_ROWS], seeds),
        "far": rt.far_table(results, FAR_ROWS, seeds, FAR_BASELINE),
        "stability": rt.stability_table(results, STABILITY_ROWS, seeds),
        "commands": gc.commands_table(summaries, runs_dir, runs(runs_dir), seeds, measured_on),
    }


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


def _draw_seeds(ax, results: rt.Results, key: str, metric: str, color: str, style: str, label: str) -> bool:
    """Each seed's per-update curve of `metric` thin, their mean bold (over the updates every seed
    has: the seeds of one command log the same updates, so a short one is a run cut short)."""
    curves = [ys for rep in results.get(key, {}).values() if (ys := rt.rollout_curve(rep, metric))]
    if not curves:
        return False
    for ys in curves:
        ax.plot(range(1, len(ys) + 1), ys, style, color=color, lw=0.7, alpha=0.35)
    n = min(len(ys) for ys in curves)
    mean = [sum(ys[t] for ys in curves) / len(curves) for t in range(n)]
    ax.plot(range(1, n + 1), mean, style, color=color, lw=1.8, label=f"{label} (mean of {len(curves)} seeds)")
    return True


def plot_help(results: rt.Results, out_png: Path) -> Path | None:
    """Rollout ask rate on degraded images (recall) and on clear ones (false asks) per update."""
    fig = _figure()
    ax = fig.subplots()
    drawn = False
    for i, (key, *_) in enumerate(HELP_ROWS):
        for metric, style, what in (("rollout/ask_recall", "-", "asks | missing"),
                                    ("rollout/false_ask_rate", ":", "asks | clear")):
            drawn |= _draw_seeds(ax, results, key, metric, f"C{i}", style, f"{key}: {what}")
    if not drawn:
        return None
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


def plot_pareto(results: rt.Results, out_png: Path, seeds: Sequence[int] = SEEDS) -> Path | None:
    """Each policy's mean (tokens, accuracy) over seeds with ± std bars, its seeds as small dots;
    the Pareto front is drawn through the means."""
    means = []
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    for i, (key, label) in enumerate(FAR_ROWS):
        acc, tok = (rt.over_seeds(results, key, seeds, rt.at("final", m)) for m in ("success_rate", "mean_completion_tokens"))
        if not acc["n"] or not tok["n"]:
            continue
        reps = [results[key][s] for s in seeds if s in results[key]]
        ax.plot([rt.at("final", "mean_completion_tokens")(r) for r in reps],
                [rt.at("final", "success_rate")(r) for r in reps], ".", color=f"C{i}", alpha=0.5)
        ax.errorbar([tok["mean"]], [acc["mean"]], xerr=[tok["std"]], yerr=[acc["std"]], fmt="o", color=f"C{i}",
                    ms=8, capsize=3, label=f"{label} ({acc['n']} seeds)")
        means.append((tok["mean"], acc["mean"]))
    if not means:
        return None
    front = pareto_front(means)
    ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", lw=1, label="Pareto front (means)")
    ax.set_xlabel("mean completion tokens per reply (greedy)")
    ax.set_ylabel("accuracy (500 held-out test images)")
    ax.grid(alpha=0.3)
    ax.set_title("Accuracy vs response length (mean ± std over seeds; dots: single seeds)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, out_png)


def plot_stability(results: rt.Results, out_png: Path) -> Path | None:
    fig = _figure(7.6, 3.6)
    axes = fig.subplots(1, 2)
    drawn = False
    for ax, (metric, ylabel) in zip(axes, (("rollout/success_rate", "rollout accuracy (T=1)"),
                                           ("rollout/completion_tokens", "rollout tokens / reply"))):
        for i, (key, label) in enumerate(STABILITY_ROWS):
            drawn |= _draw_seeds(ax, results, key, metric, f"C{i}", "-", label)
        ax.set_xlabel("update")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not drawn:
        return None
    fig.suptitle(f"Stability over seeds (α = {STABILITY_ALPHA:g}): each seed thin, the mean bold", fontsize=10)
    return _save(fig, out_png)


def write_results(runs_dir: str | Path, doc: str | Path, fig_dir: str | Path,
                  records_dir: str | Path | None = None) -> rt.Results:
    """Rewrite the doc's rewards blocks and the PNGs; with `records_dir`, from the records of every
    finished seed (experiments.records, recorded first from `runs_dir`), else straight from `runs_dir`."""
    data, on = table_data(runs(runs_dir), SEEDS, runs_dir, records_dir)
    results = collect(data)
    summaries = gc.collect(data, runs(data), SEEDS)
    doc = Path(doc)
    doc.write_text(gc.replace_blocks(doc.read_text(), render_blocks(results, summaries, runs_dir, measured_on=on),
                                     tag="rewards"))
    fig_dir = Path(fig_dir)
    plot_help(results, fig_dir / "help_seeking.png")
    plot_pareto(results, fig_dir / "fast_and_right_pareto.png")
    plot_stability(results, fig_dir / "fast_and_right_stability.png")
    return results


def with_starts(selected: Sequence[Run], all_runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """(the start runs the selected ones need that are not selected themselves, the selected runs
    in the order of `all_runs`), so every start runs before the runs that continue from it."""
    by_key = {r.key: r for r in all_runs}
    starts = [by_key[k] for k in dict.fromkeys(r.start for r in selected if isinstance(r, FromRun))
              if by_key[k] not in selected]
    return starts, sorted(selected, key=list(all_runs).index)


def main(argv: list[str] | None = None) -> int:
    p = gc.harness_parser("python -m experiments.reward_experiments", __doc__.split("\n\n")[0], RUNS_DIR, "rewards")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), metavar="S",
                   help="run only these seeds (default %(default)s); the tables always cover SEEDS")
    args = p.parse_args(argv)
    all_runs = runs(args.runs_dir)
    selected = gc.select_runs(p, all_runs, args.only)
    seeds = list(dict.fromkeys(args.seeds))
    if args.dry_run:
        gc.print_seed_commands(selected, seeds, args.runs_dir)
        return 0
    failed: list[str] = []
    if not args.table_only:
        starts, ordered = with_starts(selected, all_runs)
        # A start's seeds that have a report are kept even with --force: --force is for the runs named.
        failed = gc.run_seeds(starts, seeds, args.runs_dir) + gc.run_seeds(ordered, seeds, args.runs_dir,
                                                                           force=args.force)
    results = write_results(args.runs_dir, args.doc, args.figures, args.records)
    complete = sum(len(reps) == len(SEEDS) for reps in results.values())
    print(f"{complete}/{len(all_runs)} runs have all {len(SEEDS)} seeds; wrote {args.doc} and {args.figures}/*.png")
    for command in failed:
        print(f"failed (its log is stdout.log in its output_dir): {command}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
