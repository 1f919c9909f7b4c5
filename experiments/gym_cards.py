"""The gym-cards results table (docs/results.md): which runs, how to run them, how to tabulate them.

One list, `RUNS`, is the single source of truth: each entry is the exact
`rlvlm ...` command behind one row of the tables. Every run is repeated on the
seeds `SEEDS` (0, 1, 2), because one seed cannot tell a method's gain from the
luck of its seed. This module can

- print the commands (`--dry-run`), one per run and seed, each prefixed with
  `XDG_CACHE_HOME=$(mktemp -d)` so a reader can paste any one by hand;
- run them in order, each seed in its own process from an empty cache (so the
  tiny model is built inside the run and its wall time counts), skipping seeds
  whose report already exists (`--only` picks runs, `--seeds` picks seeds,
  `--force` re-runs);
- read every seed's report and rewrite the generated blocks of
  docs/results.md (between `<!-- gym-cards:NAME -->` markers, so the
  hand-written analysis around them survives) and the learning-curve PNGs.
  Each figure is the mean over the seeds present, its sample std and its
  worst seed; a row whose spread (max - min over seeds) is larger than its
  mean gain over the SFT warm-start says so. A seed without a report yet is
  counted as missing, not an error.

    python -m experiments.gym_cards [--only KEY ...] [--seeds 0 1 2] [--dry-run] [--table-only]

All numbers are success rates on held-out seeds: a training run on seed S
writes `RUNS_DIR/KEY/seedS` and evaluates on episode seeds 1,000,000 + S ...
(rlvlm's eval offset), and the random/oracle baselines of seed S evaluate on
the same episodes (`seed=1000000+S`), disjoint from demonstration (500,000+)
and training (0+) seeds.

The reward and RLHF harnesses import this module's per-seed helpers
(`Run.seed_*`, `run_seeds`, `print_seed_commands`, the table and block code).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from rlvlm.train.run_dir import _ema, read_metrics

from experiments.records import RECORDS_DIR, config_changed, save_provenance, seed_dir, table_data
from experiments.seeds import (aggregate, fmt, read_figures, run_one, save_process_seconds, summarise,
                               with_process_seconds)

EPISODES = 500
SEEDS = (0, 1, 2)
# = rlvlm.eval.episodes.EVAL_SEED_OFFSET (not imported: that module pulls torch);
# a training run on seed S evaluates on episode seeds EVAL_SEED + S ...
EVAL_SEED = 1_000_000
CACHE_PREFIX = "XDG_CACHE_HOME=$(mktemp -d)"  # what run_one does, as a reader would type it

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
    # Everything after `rlvlm`, without output_dir; for the seed_* methods also without seed.
    args: tuple[str, ...]
    # The file in a seed's directory whose existence marks that seed done (a class attribute, not a
    # field, so subclasses keep their own fields; rlhf_experiments.Step makes it one).
    marker = "report.json"

    # Single-seed: the run writes runs_dir/KEY (the other harnesses use these).
    def argv(self, runs_dir: str | Path) -> list[str]:
        return ["rlvlm", *self.args, f"output_dir={Path(runs_dir) / self.key}"]

    def command(self, runs_dir: str | Path) -> str:
        return shlex.join(self.argv(runs_dir))

    # Per seed: seed S writes runs_dir/KEY/seedS.
    def seed_value(self, seed: int) -> int:
        """The `seed=` of seed S: the run seed of a training run; a baseline's is that run's
        evaluation seed, so both are scored on the same held-out episodes."""
        return EVAL_SEED + seed if self.kind == "baseline" else seed

    def seed_argv(self, runs_dir: str | Path, seed: int) -> list[str]:
        return ["rlvlm", *self.args, f"seed={self.seed_value(seed)}",
                f"output_dir={seed_dir(runs_dir, self.key, seed)}"]

    def seed_command(self, runs_dir: str | Path, seed: int | None = None) -> str:
        """One seed's shell command; seed=None gives the template the docs show, with `seed=S`
        (a baseline's `seed=1000000+S`) and `.../KEY/seedS` written literally."""
        if seed is not None:
            return shlex.join(self.seed_argv(runs_dir, seed))
        value = f"{EVAL_SEED}+S" if self.kind == "baseline" else "S"
        return shlex.join(["rlvlm", *self.args, f"seed={value}", f"output_dir={Path(runs_dir) / self.key / 'seedS'}"])


def _baseline(task: str, policy: str) -> Run:
    env_id = TASKS[task][0]
    return Run(f"{task}-{policy}", task, "baseline",
               ("eval", f"env={env_id}", f"policy={policy}", f"episodes={EPISODES}"))


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
def process_argv(argv: Sequence[str]) -> list[str]:
    """The command as this interpreter runs it (`rlvlm ...` -> python -m rlvlm.cli ..., `python ...` -> python ...)."""
    return [sys.executable, *(["-m", "rlvlm.cli"] if argv[0] == "rlvlm" else []), *argv[1:]]


def run_seeds(runs: Sequence[Run], seeds: Sequence[int], runs_dir: str | Path, *, force: bool = False,
              progress: Callable[[str], None] = print) -> list[str]:
    """Run each (run, seed) whose marker (report.json) is missing (all of them with force=True), all
    seeds of a run before the next run, so each row's aggregate is complete as early as possible."""
    return run_pairs([(run, seed) for run in runs for seed in seeds], runs_dir, force=force, progress=progress)


def run_pairs(todo: Sequence[tuple[Run, int]], runs_dir: str | Path, *, force: bool = False,
              progress: Callable[[str], None] = print,
              blocked: Callable[[Run, int], str | None] | None = None) -> list[str]:
    """Run each (run, seed) of `todo` whose marker file is missing (all with force=True), in order.

    Each seed runs in its own process from an empty cache (experiments.seeds.run_one), its output
    in KEY/seedS/stdout.log and its whole wall time in process_seconds.txt. `blocked(run, seed)`
    may name why a seed cannot start (e.g. its input is missing). A failed or blocked seed does not
    stop the others (it is a missing seed in the tables); one line per such seed is returned.
    """
    failed = []
    for i, (run, seed) in enumerate(todo, 1):
        out = seed_dir(runs_dir, run.key, seed)
        marker = out / run.marker
        tag = f"[{i}/{len(todo)}] {run.key} seed {seed}"
        if marker.is_file() and not force:
            if not config_changed(out / "config.yaml", run.seed_argv(runs_dir, seed), runs_dir):
                progress(f"{tag}: done already ({marker})")
                continue
            progress(f"{tag}: its config.yaml is not what the command resolves to now (a preset changed?): re-running")
        if blocked is not None and (why := blocked(run, seed)):
            failed.append(f"{run.key} seed {seed}: not started, {why}")
            progress(f"{tag}: skipped ({failed[-1]})")
            continue
        # A forced re-run that fails must not leave the old marker to pass for the new one.
        marker.unlink(missing_ok=True)
        save_provenance(out)
        progress(tag)
        wall = run_one(process_argv(run.seed_argv(runs_dir, seed)), out, progress)
        save_process_seconds(out, wall)
        if marker.is_file():
            progress(f"{tag}: {wall:.0f}s")
        else:
            failed.append(f"{CACHE_PREFIX} {run.seed_command(runs_dir, seed)}")
    return failed


# --------------------------------------------------------------- collecting
def read_seed(run: Run, runs_dir: str | Path, seed: int) -> dict:
    """The figures of one seed of a run, {} when its report does not exist yet.

    Named as experiments.seeds names them: "final" (held-out success), for
    training runs also "sft" (the warm-start's), "gain" and "wall_seconds";
    "process_seconds" (the whole process, model build from the empty cache
    included) where this harness ran it.
    """
    d = seed_dir(runs_dir, run.key, seed)
    path = d / "report.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    return with_process_seconds(read_figures(report) if run.kind == "train" else {"final": report["success_rate"]}, d)


def summarise_run(run: Run, per_seed: Mapping[int, Mapping]) -> dict:
    """experiments.seeds.summarise of one run's seeds, with every figure the tables read present
    (n=0, all missing, for a run not run yet) and the per-seed figures under "per_seed"."""
    agg = summarise(per_seed)
    names = ("final", "process_seconds", "wall_seconds") + (("sft", "gain") if run.kind == "train" else ())
    for name in names:
        agg.setdefault(name, aggregate([None] * len(per_seed)))
    agg.setdefault("spread_exceeds_gain", False)
    agg["per_seed"] = {s: dict(f) for s, f in per_seed.items()}
    return agg


def collect(runs_dir: str | Path, runs=RUNS, seeds: Sequence[int] = SEEDS) -> dict[str, dict]:
    """Every run's summary over `seeds`, keyed by run key (runs without any report included)."""
    return {r.key: summarise_run(r, {s: read_seed(r, runs_dir, s) for s in seeds}) for r in runs}


# ------------------------------------------------------------------- tables
def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def has_seeds(agg: Mapping | None) -> bool:
    return bool(agg and agg.get("n"))


def _mean_worst(agg: Mapping | None) -> str:
    """`mean (worst min)` in percent, the main table's cell."""
    return f"{100 * agg['mean']:.1f} ({100 * agg['min']:.1f})" if has_seeds(agg) else "–"


def _pct_fmt(agg: Mapping | None) -> str:
    """`mean ± std (worst min)` in percent."""
    return fmt({**agg, **{k: 100 * agg[k] for k in ("mean", "std", "min", "max")}}, 1) if has_seeds(agg) else "–"


def _flag(res: Mapping) -> str:
    return ("yes" if res["spread_exceeds_gain"] else "no") if has_seeds(res.get("final")) else "–"


def main_table(results: Mapping[str, dict]) -> str:
    """Success (%) per task, mean over seeds (worst seed): random, SFT only, PPO, GRPO, oracle,
    and RL4VLM's published numbers."""
    def fig(suffix: str, name: str) -> Callable[[str], str]:
        return lambda t: _mean_worst(results.get(f"{t}-{suffix}", {}).get(name))

    rows = [
        ("Random policy", fig("random", "final")),
        ("SFT only (warm-start of the PPO run)", fig("ppo", "sft")),
        ("**rlvlm PPO** (SFT + PPO)", fig("ppo", "final")),
        ("rlvlm GRPO (SFT + GRPO)", fig("grpo", "final")),
        ("Oracle (scripted)", fig("oracle", "final")),
        ("Target (issue 5)", lambda t: _pct(TARGETS[t])),
    ]
    head = "| | " + " | ".join(TASKS[t][1] for t in TASKS) + " |"
    lines = [head, "|---" * (len(TASKS) + 1) + "|"]
    for name, get in rows:
        lines.append(f"| {name} | " + " | ".join(get(t) for t in TASKS) + " |")
    lines.append("| RL4VLM, LLaVA-7B (published) | " + " | ".join(f"{RL4VLM[t]:.1f}" for t in TASKS) + " |")
    return "\n".join(lines)


def _seed_cell(figs: Mapping) -> str:
    if "final" not in figs:
        return "–"
    return f"{figs['sft']:.3f} → **{figs['final']:.3f}**" if "sft" in figs else f"**{figs['final']:.3f}**"


def wall_cell(res: Mapping) -> str:
    """Range over seeds of the whole process's minutes (the report's wall time where the harness did not run it)."""
    wall = res["process_seconds"] if has_seeds(res["process_seconds"]) else res["wall_seconds"]
    return f"{wall['min'] / 60:.1f}–{wall['max'] / 60:.1f} min" if has_seeds(wall) else "–"


def commands_table(results: Mapping[str, dict], runs_dir: str | Path, runs=RUNS, seeds: Sequence[int] = SEEDS,
                   measured_on: Mapping[str, str] | None = None) -> str:
    """Every run: its command (per seed), each seed's SFT → final success (fractions, as the
    seed tables above it), final and gain over SFT as mean ± std (worst), wall time, and
    whether the spread over seeds is larger than the gain; with `measured_on` (run key ->
    "commit, CPU" of its seeds, experiments.records.measured) a last column says what measured it."""
    extra = measured_on is not None
    lines = ["| run | command | " + " | ".join(f"seed {s}" for s in seeds)
             + " | final: mean ± std (worst) | gain over SFT | wall per run | spread > gain |"
             + (" measured at (commit, CPU) |" if extra else ""),
             "|---" * (len(seeds) + 6 + extra) + "|"]
    for run in runs:
        res = results[run.key]
        cells = [_seed_cell(res["per_seed"].get(s, {})) for s in seeds]
        train = run.kind == "train"
        cells += [fmt(res["final"]), fmt(res["gain"]) if train else "", wall_cell(res), _flag(res) if train else ""]
        if extra:
            cells.append(measured_on.get(run.key) or "–")
        lines.append(f"| {run.key} | `{CACHE_PREFIX} {run.seed_command(runs_dir)}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(results: Mapping[str, dict], keys: list[tuple[str, str]]) -> str:
    """Success (%) before and after RL and the gain, each mean ± std (worst seed)."""
    lines = ["| setting | SFT only | after RL | gain | spread > gain |", "|---|---|---|---|---|"]
    for label, key in keys:
        res = results[key]
        cells = [_pct_fmt(res["sft"]), _pct_fmt(res["final"]), _pct_fmt(res["gain"]), _flag(res)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
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


def _curve(path: Path, smooth: float) -> tuple[list[float], list[float]] | None:
    """A run's rollout success (EMA-smoothed) against env steps, None without any."""
    if not path.is_file():
        return None
    pts = [(r["rollout/env_steps"], r["rollout/success_rate"]) for r in read_metrics(path)
           if isinstance(r.get("rollout/env_steps"), (int, float)) and isinstance(r.get("rollout/success_rate"), (int, float))]
    if not pts:
        return None
    xs, ys = zip(*pts)
    return list(xs), _ema(list(ys), smooth)


def plot_set(runs_dir: str | Path, out_png: str | Path, title: str, series: list[tuple[str, str]],
             results: Mapping[str, dict], seeds: Sequence[int] = SEEDS, smooth: float = 0.6) -> Path | None:
    """Rollout success (EMA-smoothed) against env steps: each seed thin, the mean over seeds bold,
    with the held-out SFT and final success (means over seeds) as hollow and filled markers.
    None (nothing drawn) while any series has no seed with metrics."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    by_key = {key: [c for s in seeds if (c := _curve(seed_dir(runs_dir, key, s) / "metrics.jsonl", smooth))]
              for _, key in series}
    if not all(by_key.values()):  # a comparison is drawn only once every series it compares has run
        return None
    drawn = 0
    for i, (label, key) in enumerate(series):
        curves = by_key[key]
        color = f"C{i}"
        for xs, ys in curves:
            ax.plot(xs, ys, lw=0.8, alpha=0.35, color=color)
        # The seeds of one preset log at the same env steps; a seed cut short bounds the mean.
        xs = min((c[0] for c in curves), key=len)
        mean = [sum(ys[j] for _, ys in curves) / len(curves) for j in range(len(xs))]
        ax.plot(xs, mean, lw=2.0, color=color, label=f"{label}, mean of {len(curves)} seeds (rollout, T=1)")
        res = results.get(key, {})
        if has_seeds(res.get("sft")):
            ax.plot([0], [res["sft"]["mean"]], marker="o", mfc="none", color=color, ms=7)
        if has_seeds(res.get("final")):
            ax.plot([xs[-1]], [res["final"]["mean"]], marker="o", color=color, ms=7)
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("environment steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}\nhollow: SFT, filled: final (means over seeds; greedy, {EPISODES} held-out episodes)",
                 fontsize=10)
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


def render_blocks(results: Mapping[str, dict], runs_dir: str | Path,
                  measured_on: Mapping[str, str] | None = None) -> dict[str, str]:
    return {
        "main": main_table(results),
        "commands": commands_table(results, runs_dir, measured_on=measured_on),
        "cot": ablation_table(results, COT_KEYS),
        "lambda": ablation_table(results, LAMBDA_KEYS),
    }


def write_results(runs_dir: str | Path, doc: str | Path, fig_dir: str | Path,
                  records_dir: str | Path | None = None) -> dict[str, dict]:
    """Rewrite the doc's blocks and the PNGs. With `records_dir`, first record every finished seed of
    `runs_dir` there (experiments.records) and build everything from the records, so rows measured
    earlier (on another checkout) stay; without it, straight from `runs_dir`."""
    data, on = table_data(RUNS, SEEDS, runs_dir, records_dir)
    results = collect(data)
    doc = Path(doc)
    doc.write_text(replace_blocks(doc.read_text(), render_blocks(results, runs_dir, on)))
    for name, (title, series) in CURVE_SETS.items():
        plot_set(data, Path(fig_dir) / f"{name}.png", title, series, results)
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
    p.add_argument("--records", default=str(RECORDS_DIR / blocks),
                   help="where every finished seed is recorded and the tables are read from (default %(default)s)")
    return p


def select_runs(parser: argparse.ArgumentParser, runs, only: list[str] | None) -> list[Run]:
    """`runs`, or the ones `--only` names in that order (an unknown key is a parser error listing the keys)."""
    by_key = {r.key: r for r in runs}
    unknown = [k for k in only or () if k not in by_key]
    if unknown:
        parser.error(f"--only: unknown run {unknown[0]!r}; keys: {', '.join(by_key)}")
    return [by_key[k] for k in only] if only else list(runs)


def print_seed_commands(runs: Sequence[Run], seeds: Sequence[int], runs_dir: str | Path) -> None:
    """One line per run and seed, the command as a reader would paste it (from an empty cache)."""
    width = max((len(r.key) for r in runs), default=0) + 2
    for run in runs:
        for seed in seeds:
            print(f"{run.key:{width}s}seed {seed}  {CACHE_PREFIX} {run.seed_command(runs_dir, seed)}")


def main(argv: list[str] | None = None) -> int:
    p = harness_parser("python -m experiments.gym_cards", __doc__.split("\n\n")[0], "runs/gym_cards", "gym-cards")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), metavar="S",
                   help="run only these seeds (default %(default)s); the tables always cover SEEDS")
    args = p.parse_args(argv)
    runs = select_runs(p, RUNS, args.only)
    seeds = list(dict.fromkeys(args.seeds))
    if args.dry_run:
        print_seed_commands(runs, seeds, args.runs_dir)
        return 0
    failed = [] if args.table_only else run_seeds(runs, seeds, args.runs_dir, force=args.force)
    results = write_results(args.runs_dir, args.doc, args.figures, args.records)
    complete = sum(res["final"]["n"] == len(SEEDS) for res in results.values())
    print(f"{complete}/{len(RUNS)} runs have all {len(SEEDS)} seeds; wrote {args.doc} and {args.figures}/*.png")
    for command in failed:
        print(f"failed (its log is stdout.log in its output_dir): {command}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
