"""The RLHF experiment of docs/results.md (issue 7): preferences -> reward model -> PPO, with DPO beside it.

    python -m experiments.rlhf_experiments [--only KEY ...] [--dry-run] [--table-only] [--force]

Like `experiments.reward_experiments`, one list of runs (`runs(runs_dir)`) is
the single source of the tables: every row is the exact `rlvlm ...` command
behind it. Runs whose output exists are skipped (a run whose input is missing
brings the run that makes it along); the tables and rlhf_curves.png are
rewritten in place between `<!-- rlhf:NAME -->` markers of docs/results.md.

rlhf-sft: the warm-start policy (the fast-and-right SFT, updates=0), shared by all.
prefs:    K=4 replies per training question, paired by the training heuristic (mentions + structure).
rm, rm-vlm: Bradley-Terry reward models on those pairs (frozen-VLM features + MLP; the whole VLM).
ppo:      RL on the mlp reward model's score alone; dpo: DPO on the same pairs.
Both are graded on held-out TEST questions on four axes: the reward model's score, the
training heuristic, a held-out heuristic the pairs never saw, and ground-truth accuracy.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from rlvlm.train.run_dir import read_metrics

from experiments.gym_cards import Run, harness_parser, print_commands, replace_blocks, run_all, select_runs

RUNS_DIR = "runs/rlhf"
PPO_ARGS: tuple[str, ...] = ()  # the rlhf preset as is (150 updates, 1,000 test questions)
FAR_ARGS = ("rollout.num_envs=64", "rollout.num_steps=1", "algo.lr=0.0003", "algo.minibatch_size=64",
            "algo.clip_high=0.28", "algo.entropy_coef=0.001", "algo.kl_coef=0")
GRPO_ARGS = ("algo.name=grpo", "algo.advantage=grpo", "rollout.num_envs=64", "rollout.group_size=8", "algo.lr=0.0003",
             "algo.minibatch_size=64", "algo.clip_high=0.28", "algo.entropy_coef=0.001", "algo.kl_coef=0")
# Dr. GRPO: advantage r - mean(group), no division by the group's std. A reward model gives two
# near-identical replies near-identical scores; dividing by their tiny std turns noise into ±1 advantages.
DR_GRPO_ARGS = tuple(a if a != "algo.advantage=grpo" else "algo.advantage=dr_grpo" for a in GRPO_ARGS)
SHORT_ARGS = ("updates=60", "eval.episodes=200")  # the comparison runs: shorter than the preset's 150 updates
GT_ARGS = ("reward.weights.reward_model=0", "reward.weights.accuracy=1")  # ground truth as the reward
DPO_GENTLE_ARGS = ("beta=0.5", "lr=0.00001", "epochs=2")
N_PROMPTS = 8192
RM_TARGET = 0.90  # held-out pair accuracy the reward model should reach
AXES = (("reward-model score", "reward_model"), ("training heuristic", "heuristic_train"),
        ("held-out heuristic", "heuristic_heldout"), ("ground-truth accuracy", "accuracy"))
RM_KINDS = (("mlp", "rm"), ("vlm", "rm-vlm"))  # (kind, run key)
ONPOLICY_FILE = "onpolicy.json"  # rlvlm.eval.reward_model_check's output in each reward model's run dir


class PrefsRun(Run):
    """`rlvlm preferences` takes out=FILE.jsonl (writing FILE.summary.json beside it), not output_dir."""

    def argv(self, runs_dir: str | Path) -> list[str]:
        return ["rlvlm", *self.args]


def sft_policy(runs_dir: str | Path) -> str:
    """Where the warm-start saves its policy (updates=0 -> checkpoint step-0)."""
    return str(Path(runs_dir) / "rlhf-sft" / "checkpoints" / "step-0" / "policy")


def pairs_path(runs_dir: str | Path) -> str:
    return str(Path(runs_dir) / "prefs" / "pairs.jsonl")


def rm_model(runs_dir: str | Path) -> str:
    return str(Path(runs_dir) / "rm" / "model")


def runs(runs_dir: str | Path = RUNS_DIR) -> tuple[Run, ...]:
    sft, pairs = sft_policy(runs_dir), pairs_path(runs_dir)
    return (
        # model.value_head=true: the PPO runs below continue from this warm-start with a critic
        # (the fast-and-right preset itself is GRPO since issue 15 and has none).
        Run("rlhf-sft", "rlhf", "train", ("train", "fast-and-right", "updates=0", "model.value_head=true")),
        PrefsRun("prefs", "rlhf", "preferences",
                 ("preferences", f"policy={sft}", "task=digits", f"n_prompts={N_PROMPTS}", "k=4",
                  "weights.mentions=1", "weights.structure=1", "image_size=56", f"out={pairs}")),
        Run("rm", "rlhf", "reward-model", ("reward-model", f"pairs={pairs}", "image_size=56", f"name_or_path={sft}")),
        Run("rm-vlm", "rlhf", "reward-model",
            ("reward-model", "kind=vlm", "epochs=4", f"pairs={pairs}", "image_size=56", f"name_or_path={sft}")),
        Run("ppo", "rlhf", "train", ("train", "rlhf", f"model.name_or_path={sft}", "sft.episodes=0",
                                     f"reward.options.reward_model.path={rm_model(runs_dir)}", *PPO_ARGS)),
        Run("dpo", "rlhf", "dpo", ("dpo", f"policy={sft}", f"pairs={pairs}", f"reward_model={rm_model(runs_dir)}")),
        # The same RL on the reward model and, as a control, on ground truth: does the learned reward
        # train like the true one? (settings of the fast-and-right runs: 64 envs, lr 3e-4, no KL.)
        *(Run(key, "rlhf", "train", ("train", "rlhf", f"model.name_or_path={sft}", "sft.episodes=0",
                                     f"reward.options.reward_model.path={rm_model(runs_dir)}", *algo, *gt,
                                     *SHORT_ARGS))
          for key, algo, gt in (("ppo-far", FAR_ARGS, ()), ("ppo-far-gt", FAR_ARGS, GT_ARGS),
                                ("grpo", GRPO_ARGS, ()), ("grpo-gt", GRPO_ARGS, GT_ARGS),
                                ("grpo-dr", DR_GRPO_ARGS, ()), ("grpo-dr-gt", DR_GRPO_ARGS, GT_ARGS))),
        Run("dpo-gentle", "rlhf", "dpo", ("dpo", f"policy={sft}", f"pairs={pairs}",
                                          f"reward_model={rm_model(runs_dir)}", *DPO_GENTLE_ARGS)),
    )


NEEDS = {"prefs": ("rlhf-sft",), "rm": ("rlhf-sft", "prefs"), "rm-vlm": ("rlhf-sft", "prefs"),
         "ppo": ("rlhf-sft", "rm"), "dpo": ("rlhf-sft", "prefs", "rm"),
         **{k: ("rlhf-sft", "rm") for k in ("ppo-far", "ppo-far-gt", "grpo", "grpo-gt", "grpo-dr", "grpo-dr-gt")},
         "dpo-gentle": ("rlhf-sft", "prefs", "rm")}  # run -> runs whose outputs it reads
# Rows of the RL table: (label, run key); train runs read sft/final, DPO runs before/after.
RL_ROWS = (("PPO on the reward model (rlhf preset, 150 updates)", "ppo"),
           ("PPO on the reward model, 64 envs, lr 3e-4, no KL, 60 updates", "ppo-far"),
           ("  same, on ground truth (control)", "ppo-far-gt"),
           ("GRPO on the reward model (groups of 8, 60 updates)", "grpo"),
           ("  same, on ground truth (control)", "grpo-gt"),
           ("Dr. GRPO on the reward model (no std division)", "grpo-dr"),
           ("  same, on ground truth (control)", "grpo-dr-gt"),
           ("DPO on the pairs (beta 0.1, lr 1e-4, 3 epochs)", "dpo"),
           ("DPO on the pairs (beta 0.5, lr 1e-5, 2 epochs)", "dpo-gentle"))


def report_path(run: Run, runs_dir: str | Path) -> Path:
    """The file whose existence marks `run` done (and that holds its figures)."""
    if isinstance(run, PrefsRun):  # = rlvlm.rewards.collect_preferences.summary_path (not imported: it pulls torch)
        out = Path(pairs_path(runs_dir))
        return out.with_name(out.stem + ".summary.json")
    return Path(runs_dir) / run.key / "report.json"


def with_inputs(selected: list[Run], all_runs, runs_dir: str | Path) -> list[Run]:
    """`selected` plus every run it needs whose output is missing, in the order of `all_runs`."""
    by_key = {r.key: r for r in all_runs}
    keys, grow = {r.key for r in selected}, True
    while grow:
        missing = {n for k in keys for n in NEEDS.get(k, ()) if not report_path(by_key[n], runs_dir).is_file()} - keys
        keys, grow = keys | missing, bool(missing)
    return [r for r in all_runs if r.key in keys]


def run_pending(selected: list[Run], runs_dir: str | Path, *, force: bool = False, progress=print) -> None:
    """Run, in order, each selected run whose output is missing (all of them with force=True)."""
    todo = []
    for run in selected:
        if report_path(run, runs_dir).is_file() and not force:
            progress(f"{run.key}: done already ({report_path(run, runs_dir)})")
        else:
            todo.append(run)
    run_all(todo, runs_dir, force=True, progress=progress)


# --------------------------------------------------------------- collecting
def collect(runs_dir: str | Path) -> dict[str, dict]:
    """run key -> its report (the pair summary for prefs); train runs also get "metrics" (per update)."""
    out = {}
    for run in runs(runs_dir):
        path = report_path(run, runs_dir)
        if not path.is_file():
            continue
        out[run.key] = res = json.loads(path.read_text())
        metrics = path.parent / "metrics.jsonl"
        if run.kind == "train" and metrics.is_file():
            res["metrics"] = read_metrics(metrics)
    return out


def axes(ev: Mapping | None) -> dict[str, float]:
    """The four axes of an evaluation: train runs say reward/<axis>, dpo says <axis>."""
    if not ev:
        return {}
    out = {a: ev.get(f"reward/{a}", ev.get(a)) for _, a in AXES}
    if out["accuracy"] is None:
        out["accuracy"] = ev.get("success_rate")
    return {a: v for a, v in out.items() if isinstance(v, (int, float))}


# ------------------------------------------------------------------- tables
def _f(x, spec: str = ".3f") -> str:
    return "–" if not isinstance(x, (int, float)) else format(x, spec)


def _arrow(before, after) -> str:
    return f"{_f(before)} → {_f(after)}"


def _not_run(run_key: str, runs_dir: str | Path) -> str:
    run = next(r for r in runs(runs_dir) if r.key == run_key)
    return f"not run yet: `{run.command(runs_dir)}`"


def prefs_table(results: Mapping[str, dict], runs_dir: str | Path) -> str:
    s = results.get("prefs")
    if s is None:
        return f"_{_not_run('prefs', runs_dir)}_"
    scorers = list(s.get("agreement", {}))
    lines = ["| prompts | replies | pairs | mean margin | reply accuracy | chosen correct | rejected correct | "
             + "".join(f"agreement: {k} | " for k in scorers) + "seconds |", "|---" * (8 + len(scorers)) + "|"]
    cells = [str(s.get("prompts", "–")), str(s.get("replies", "–")), str(s.get("pairs", "–")), _f(s.get("mean_margin")),
             _f(s.get("reply_accuracy")), _f(s.get("chosen_correct")), _f(s.get("rejected_correct")),
             *(_f(s["agreement"][k]) for k in scorers), _f(s.get("seconds"), ".0f")]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _seconds(res: Mapping) -> float | None:
    s = res.get("wall_seconds", res.get("seconds"))
    return s.get("total") if isinstance(s, Mapping) else s


def rm_table(results: Mapping[str, dict], runs_dir: str | Path) -> str:
    lines = ["| reward model | pairs (train / held-out) | held-out pair accuracy (before → after) | train accuracy | "
             f"ECE | seconds | target {RM_TARGET:.2f} |", "|---" * 7 + "|"]
    for kind, key in RM_KINDS:
        r = results.get(key)
        if r is None:
            lines.append(f"| {kind} | {_not_run(key, runs_dir)} | | | | | |")
            continue
        acc = r.get("held_out_accuracy")
        met = "–" if acc is None else ("met" if acc >= RM_TARGET else "missed")
        pairs = r.get("pairs", {})
        lines.append(f"| {r.get('kind', kind)} | {pairs.get('train', '–')} / {pairs.get('held_out', '–')} | "
                     f"{_arrow(r.get('held_out_accuracy_before'), acc)} | {_f(r.get('train_accuracy'))} | "
                     f"{_f(r.get('calibration', {}).get('ece'))} | {_f(_seconds(r), '.0f')} | {met} |")
    return "\n".join(lines)


def _start(results: Mapping[str, dict]) -> tuple[dict | None, int | None]:
    """The SFT policy's evaluation on the four axes (PPO's, else DPO's, else the warm-start run's) and its size."""
    if results.get("ppo", {}).get("sft"):
        return results["ppo"]["sft"], results["ppo"]["sft"].get("episodes")
    if "dpo" in results:
        return results["dpo"].get("before"), results["dpo"].get("config", {}).get("eval_episodes")
    final = results.get("rlhf-sft", {}).get("final")
    return final, final and final.get("episodes")


def rl_table(results: Mapping[str, dict], runs_dir: str | Path) -> str:
    lines = ["| policy | test questions | " + " | ".join(name for name, _ in AXES) + " |", "|---" * (len(AXES) + 2) + "|"]
    start, n = _start(results)
    if start:
        a = axes(start)
        lines.append(f"| SFT warm-start (common start) | {n or '–'} | " + " | ".join(_f(a.get(k)) for _, k in AXES) + " |")
    else:
        lines.append(f"| SFT warm-start | {_not_run('rlhf-sft', runs_dir)} |" + " |" * len(AXES))
    for label, key in RL_ROWS:
        r = results.get(key)
        is_dpo = key.startswith("dpo")
        before = r and (r.get("before") if is_dpo else r.get("sft"))
        after = r and (r.get("after") if is_dpo else r.get("final"))
        n = r and (r.get("config", {}).get("eval_episodes") if is_dpo else (after or {}).get("episodes"))
        if after is None:
            lines.append(f"| {label} | {_not_run(key, runs_dir)} |" + " |" * len(AXES))
            continue
        b, a = axes(before), axes(after)
        lines.append(f"| {label} | {n or '–'} | " + " | ".join(_arrow(b.get(k), a.get(k)) for _, k in AXES) + " |")
    notes = [f"{key}: {_arrow(d.get('held_out_accuracy_before'), d.get('held_out_accuracy'))} on "
             f"{d.get('pairs', {}).get('held_out', '–')} pairs" for key in ("dpo", "dpo-gentle") if (d := results.get(key))]
    if notes:
        lines += ["", "DPO held-out pair accuracy (implicit reward): " + "; ".join(notes) + "."]
    return "\n".join(lines)


def commands_table(results: Mapping[str, dict], runs_dir: str | Path) -> str:
    lines = ["| run | command | wall |", "|---|---|---|"]
    for run in runs(runs_dir):
        res = results.get(run.key)
        sec = None if res is None else _seconds(res)
        wall = "not run yet" if res is None else "–" if sec is None else f"{sec / 60:.1f} min"
        lines.append(f"| {run.key} | `{run.command(runs_dir)}` | {wall} |")
    return "\n".join(lines)


def onpolicy_argv(runs_dir: str | Path, key: str) -> list[str]:
    """`python -m rlvlm.eval.reward_model_check ...` of reward model `key` (module args, after the interpreter)."""
    return ["-m", "rlvlm.eval.reward_model_check", sft_policy(runs_dir), str(Path(runs_dir) / key / "model"),
            "--out", str(Path(runs_dir) / key / ONPOLICY_FILE)]


def onpolicy_command(runs_dir: str | Path, key: str) -> str:
    return "python " + shlex.join(onpolicy_argv(runs_dir, key))


def onpolicy_table(runs_dir: str | Path) -> str:
    """rlvlm.eval.reward_model_check of each reward model: its ranking of the SFT policy's own replies."""
    lines = ["| reward model | mixed (right, wrong) pairs | ranks the right reply higher | mean score right / wrong | "
             "score std between / within questions |", "|---|---|---|---|---|"]
    for kind, key in RM_KINDS:
        path = Path(runs_dir) / key / ONPOLICY_FILE
        if not path.is_file():
            lines.append(f"| {kind} | not run yet: `{onpolicy_command(runs_dir, key)}` | | | |")
            continue
        r = json.loads(path.read_text())
        lines.append(f"| {kind} | {r['mixed_pairs']} ({r['questions']} questions x {r['k']}) | {_f(r['ranking'])} | "
                     f"{_f(r['score_correct'], '.2f')} / {_f(r['score_wrong'], '.2f')} | "
                     f"{_f(r['std_between_questions'], '.2f')} / {_f(r['std_within_question'], '.2f')} |")
    return "\n".join(lines)


def render_blocks(results: Mapping[str, dict], runs_dir: str | Path) -> dict[str, str]:
    return {"prefs": prefs_table(results, runs_dir), "reward-models": rm_table(results, runs_dir),
            "rm-onpolicy": onpolicy_table(runs_dir),
            "rl": rl_table(results, runs_dir), "commands": commands_table(results, runs_dir)}


# -------------------------------------------------------------------- plots
def ppo_curves(res: Mapping) -> dict[str, tuple[list, list]]:
    """axis -> (updates, values): update 0 = the SFT evaluation, then the evaluations every eval.every updates."""
    pts: dict[str, list] = {a: [] for _, a in AXES}
    for a, v in axes(res.get("sft")).items():
        pts[a].append((0, v))
    for m in res.get("metrics", []):
        for _, a in AXES:
            v = m.get(f"eval/reward/{a}", m.get("eval/success_rate") if a == "accuracy" else None)
            if isinstance(v, (int, float)) and "update" in m:
                pts[a].append((m["update"], v))
    return {a: ([x for x, _ in p], [y for _, y in p]) for a, p in pts.items()}


def plot_curves(results: Mapping[str, dict], out_png: str | Path) -> Path | None:
    """2 x 4 panels: PPO against updates (top) and DPO against epochs (bottom), one column per axis."""
    ppo, dpo = results.get("ppo"), results.get("dpo")
    if ppo is None and dpo is None:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 6.0), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.subplots(2, len(AXES))
    if ppo is not None:
        curves = ppo_curves(ppo)
        last = max([m["update"] for m in ppo.get("metrics", []) if "update" in m], default=0)
        final = axes(ppo.get("final"))
        n = ppo.get("final", {}).get("episodes", "?")
        for ax, (_, a) in zip(grid[0], AXES):
            xs, ys = curves[a]
            if a in final:  # the curve ends on the final evaluation (more questions than the ones during training)
                xs, ys = [*xs, last], [*ys, final[a]]
                ax.plot([last], [final[a]], "*", ms=11, color="C3", label=f"final ({n} questions)")
            ax.plot(xs, ys, "o-", ms=3, lw=1.4, color="C0", label="0 = SFT, then every eval.every updates")
    if dpo is not None:
        for ax, (_, a) in zip(grid[1], AXES):
            pts = [(e["epoch"], v) for e in dpo.get("evals", []) if isinstance(v := axes(e).get(a), (int, float))]
            if pts:
                ax.plot(*zip(*pts), "s-", ms=4, lw=1.4, color="C1", label="DPO (epoch 0 = SFT)")
    for row, (name, xlabel, res) in enumerate((("PPO", "update", ppo), ("DPO", "epoch", dpo))):
        for col, (title, _) in enumerate(AXES):
            ax = grid[row][col]
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.grid(alpha=0.3)
            if res is None:
                ax.text(0.5, 0.5, "not run yet", ha="center", va="center", transform=ax.transAxes, color="grey")
            elif col == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("RLHF on held-out test questions (greedy): reward hacking = RM score up while held-out axes fall",
                 fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png


def write_results(runs_dir: str | Path, doc: str | Path, fig_dir: str | Path) -> dict[str, dict]:
    results = collect(runs_dir)
    doc = Path(doc)
    doc.write_text(replace_blocks(doc.read_text(), render_blocks(results, runs_dir), tag="rlhf"))
    plot_curves(results, Path(fig_dir) / "rlhf_curves.png")
    return results


def main(argv: list[str] | None = None) -> int:
    p = harness_parser("python -m experiments.rlhf_experiments", __doc__.split("\n\n")[0], RUNS_DIR, "rlhf")
    args = p.parse_args(argv)
    all_runs = runs(args.runs_dir)
    selected = select_runs(p, all_runs, args.only)
    if args.dry_run:
        print_commands(selected, args.runs_dir)
        return 0
    if not args.table_only:
        run_pending(with_inputs(selected, all_runs, args.runs_dir), args.runs_dir, force=args.force)
        for _kind, key in RM_KINDS:  # the on-policy check of each reward model that exists
            rm_dir = Path(args.runs_dir) / key
            if (rm_dir / "model").is_dir() and (args.force or not (rm_dir / ONPOLICY_FILE).is_file()):
                subprocess.run([sys.executable, *onpolicy_argv(args.runs_dir, key)], check=True)
    results = write_results(args.runs_dir, args.doc, args.figures)
    print(f"{len(results)}/{len(all_runs)} runs have outputs; wrote {args.doc} and {args.figures}/rlhf_curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
