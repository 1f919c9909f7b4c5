"""The RLHF experiment of docs/results.md (issue 7): preferences -> reward model -> PPO, with DPO beside it.

    python -m experiments.rlhf_experiments [--only KEY ...] [--seeds 0 1 2] [--dry-run] [--table-only] [--force]

Like `experiments.gym_cards`, one list of runs (`runs(runs_dir)`) is the single
source of the tables: every row is the exact command behind it. The WHOLE
pipeline is repeated on each seed of `SEEDS` (0, 1, 2): seed S's runs take
`seed=S` and read seed S's own upstream outputs (RUNS_DIR/rlhf-sft/seedS/...,
RUNS_DIR/prefs/seedS/pairs.jsonl, RUNS_DIR/rm/seedS/model), so a seed's luck
travels through preferences, reward model and policy together and the spread
over seeds covers all of it. Each seed of each run is its own process from an
empty cache (experiments.seeds.run_one) writing RUNS_DIR/KEY/seedS. A seed
whose output exists is skipped (`--force` re-runs); a seed whose input is
missing brings the run that makes it along; a failed seed is missing from the
tables, not fatal (its downstream runs on that seed are not started). The
tables (experiments.rlhf_tables: mean ± std (worst seed), "spread > gain" where
a row has a before -> after pair) and rlhf_curves.png are rewritten in place
between `<!-- rlhf:NAME -->` markers of docs/results.md.

rlhf-sft: the warm-start policy (the fast-and-right SFT, updates=0) of each seed.
prefs:    K=4 replies per training question, paired by the training heuristic (mentions + structure).
rm, rm-vlm: Bradley-Terry reward models on those pairs (frozen-VLM features + MLP; the whole VLM).
rm-onpolicy, rm-vlm-onpolicy: rlvlm.eval.reward_model_check of each reward model on its seed's SFT policy
          (it has no seed option: every seed's check samples on the same 200 test questions).
ppo:      RL on the mlp reward model's score alone; dpo: DPO on the same pairs.
Both are graded on held-out TEST questions on four axes: the reward model's score, the
training heuristic, a held-out heuristic the pairs never saw, and ground-truth accuracy.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from rlvlm.train.run_dir import read_metrics

from experiments import rlhf_tables as tables
from experiments.gym_cards import (CACHE_PREFIX, SEEDS, Run, harness_parser, print_seed_commands, process_argv,
                                   replace_blocks, run_pairs, seed_dir, select_runs)
from experiments.records import table_data
from experiments.rlhf_tables import AXES, RM_KINDS, axes, onpolicy_key, plot_curves
from experiments.seeds import aggregate, with_process_seconds

RUNS_DIR = "runs/rlhf"
PPO_ARGS: tuple[str, ...] = ()  # the rlhf preset as is (150 updates, 1,000 test questions)
FAR_ARGS = ("rollout.num_envs=64", "rollout.num_steps=1", "algo.lr=0.0003", "algo.minibatch_size=64",
            "algo.clip_high=0.28", "algo.entropy_coef=0.001", "algo.kl_coef=0")
# model.value_head=false: the rlhf preset's critic is for PPO. Before issue 15's check refused it, these rows
# kept it, fitted it to raw reward-model scores through the shared trunk, and collapsed (docs/results.md).
GRPO_ARGS = ("algo.advantage=grpo", "algo.reward_norm=false", "model.value_head=false",
             "rollout.num_envs=64", "rollout.group_size=8", "algo.lr=0.0003",
             "algo.minibatch_size=64", "algo.clip_high=0.28", "algo.entropy_coef=0.001", "algo.kl_coef=0")
# Dr. GRPO: advantage r - mean(group), no division by the group's std, which turns the small score
# differences a reward model gives two near-identical replies into ±1 advantages. (The update then
# whitens advantages over the rollout, algo.normalize_advantages, so only the weighting between groups changes.)
DR_GRPO_ARGS = tuple(a if a != "algo.advantage=grpo" else "algo.advantage=dr_grpo" for a in GRPO_ARGS)
SHORT_ARGS = ("updates=60", "eval.episodes=200")  # the comparison runs: shorter than the preset's 150 updates
GT_ARGS = ("reward.weights.reward_model=0", "reward.weights.accuracy=1")  # ground truth as the reward
DPO_GENTLE_ARGS = ("beta=0.5", "lr=0.00001", "epochs=2")  # rlvlm dpo's defaults since issue 15
DPO_OLD_ARGS = ("beta=0.1", "lr=0.0001", "epochs=3")  # its defaults before: common settings, spelled out
N_PROMPTS = 8192
ONPOLICY_FILE = "onpolicy.json"  # rlvlm.eval.reward_model_check's output in each check's seed dir
# Stands for the seed inside a run's arguments (its upstream paths); Step.seed_argv writes the seed in.
SEED_SLOT = "{seed}"
Seed = int | str  # a seed, or "S" for the template the docs show


@dataclass(frozen=True)
class Step(Run):
    """One run of the pipeline, run once per seed into RUNS_DIR/KEY/seedS.

    `args` name upstream outputs with SEED_SLOT for the seed, so one Step serves every seed and
    seed S's command reads seed S's inputs. Not every command has gym_cards' `seed=` + `output_dir=`
    shape, hence the fields.
    """

    program: tuple[str, ...] = ("rlvlm",)
    takes_seed: bool = True  # rlvlm.eval.reward_model_check has no seed option
    takes_output_dir: bool = True  # rlvlm preferences and the check write to a file named in args
    marker: str = "report.json"  # the file in the seed dir whose existence marks the seed done

    def argv(self, runs_dir: str | Path) -> list[str]:
        # The single-seed command would leave SEED_SLOT in the paths: there is no such run here.
        raise NotImplementedError(f"{self.key} runs per seed: use seed_argv(runs_dir, seed)")

    def seed_argv(self, runs_dir: str | Path, seed: Seed) -> list[str]:
        args = [a.replace(SEED_SLOT, str(seed)) for a in self.args]
        tail = ([f"seed={seed}"] if self.takes_seed else []) + \
            ([f"output_dir={_seed_dir(runs_dir, self.key, seed)}"] if self.takes_output_dir else [])
        return [*self.program, *args, *tail]

    def seed_command(self, runs_dir: str | Path, seed: int | None = None) -> str:
        """One seed's shell command; seed=None gives the docs' template, `seed=S` and `.../seedS/...`."""
        return shlex.join(self.seed_argv(runs_dir, "S" if seed is None else seed))


def _seed_dir(runs_dir: str | Path, key: str, seed: Seed) -> Path:
    """gym_cards.seed_dir, also for SEED_SLOT and "S" (its f"seed{seed}" writes them as they are)."""
    return seed_dir(runs_dir, key, seed)  # type: ignore[arg-type]


def sft_policy(runs_dir: str | Path, seed: Seed = SEED_SLOT) -> str:
    """Where seed S's warm-start saves its policy (updates=0 -> checkpoint step-0)."""
    return str(_seed_dir(runs_dir, "rlhf-sft", seed) / "checkpoints" / "step-0" / "policy")


def pairs_path(runs_dir: str | Path, seed: Seed = SEED_SLOT) -> str:
    return str(_seed_dir(runs_dir, "prefs", seed) / "pairs.jsonl")


def rm_model(runs_dir: str | Path, seed: Seed = SEED_SLOT, key: str = "rm") -> str:
    return str(_seed_dir(runs_dir, key, seed) / "model")


def runs(runs_dir: str | Path = RUNS_DIR) -> tuple[Step, ...]:
    sft, pairs, rm = sft_policy(runs_dir), pairs_path(runs_dir), rm_model(runs_dir)

    def check(rm_key: str) -> Step:
        out = _seed_dir(runs_dir, onpolicy_key(rm_key), SEED_SLOT) / ONPOLICY_FILE
        return Step(onpolicy_key(rm_key), "rlhf", "check", (sft, rm_model(runs_dir, key=rm_key), "--out", str(out)),
                    program=("python", "-m", "rlvlm.eval.reward_model_check"), takes_seed=False,
                    takes_output_dir=False, marker=ONPOLICY_FILE)

    def train(key: str, *args: str) -> Step:  # RL from seed S's warm-start on seed S's reward model
        return Step(key, "rlhf", "train", ("train", "rlhf", f"model.name_or_path={sft}", "sft.episodes=0",
                                           f"reward.options.reward_model.path={rm}", *args))

    def dpo(key: str, *args: str) -> Step:
        return Step(key, "rlhf", "dpo", ("dpo", f"policy={sft}", f"pairs={pairs}", f"reward_model={rm}", *args))

    return (
        # model.value_head=true: the PPO runs below continue from this warm-start with a critic
        # (the fast-and-right preset itself is GRPO since issue 15 and has none).
        Step("rlhf-sft", "rlhf", "train", ("train", "fast-and-right", "updates=0", "model.value_head=true")),
        # = rlvlm.train.preferences.summary_path of out= (not imported: it pulls torch)
        Step("prefs", "rlhf", "preferences",
             ("preferences", f"policy={sft}", "task=digits", f"n_prompts={N_PROMPTS}", "k=4",
              "weights.mentions=1", "weights.structure=1", "image_size=56", f"out={pairs}"),
             takes_output_dir=False, marker="pairs.summary.json"),
        Step("rm", "rlhf", "reward-model", ("reward-model", f"pairs={pairs}", "image_size=56", f"name_or_path={sft}")),
        Step("rm-vlm", "rlhf", "reward-model",
             ("reward-model", "kind=vlm", "epochs=4", f"pairs={pairs}", "image_size=56", f"name_or_path={sft}")),
        train("ppo", *PPO_ARGS),
        dpo("dpo", *DPO_OLD_ARGS),
        # The same RL on the reward model and, as a control, on ground truth: does the learned reward
        # train like the true one? (settings of the fast-and-right runs: 64 envs, lr 3e-4, no KL.)
        *(train(key, *algo, *gt, *SHORT_ARGS)
          for key, algo, gt in (("ppo-far", FAR_ARGS, ()), ("ppo-far-gt", FAR_ARGS, GT_ARGS),
                                ("grpo", GRPO_ARGS, ()), ("grpo-gt", GRPO_ARGS, GT_ARGS),
                                ("grpo-dr", DR_GRPO_ARGS, ()), ("grpo-dr-gt", DR_GRPO_ARGS, GT_ARGS))),
        dpo("dpo-gentle", *DPO_GENTLE_ARGS),
        check("rm"),
        check("rm-vlm"),
    )


NEEDS = {"prefs": ("rlhf-sft",), "rm": ("rlhf-sft", "prefs"), "rm-vlm": ("rlhf-sft", "prefs"),
         "ppo": ("rlhf-sft", "rm"), "dpo": ("rlhf-sft", "prefs", "rm"),
         **{k: ("rlhf-sft", "rm") for k in ("ppo-far", "ppo-far-gt", "grpo", "grpo-gt", "grpo-dr", "grpo-dr-gt")},
         "dpo-gentle": ("rlhf-sft", "prefs", "rm"),
         "rm-onpolicy": ("rlhf-sft", "rm"), "rm-vlm-onpolicy": ("rlhf-sft", "rm-vlm")}  # run -> runs it reads, same seed


def report_path(run: Step, runs_dir: str | Path, seed: int) -> Path:
    """The file whose existence marks seed `seed` of `run` done (and that holds its figures)."""
    return seed_dir(runs_dir, run.key, seed) / run.marker


def with_inputs(selected: Sequence[Run], all_runs: Sequence[Step], runs_dir: str | Path, seed: int) -> list[Step]:
    """`selected` plus every run it needs whose output on `seed` is missing, in the order of `all_runs`."""
    by_key = {r.key: r for r in all_runs}
    keys, grow = {r.key for r in selected}, True
    while grow:
        missing = {n for k in keys for n in NEEDS.get(k, ())
                   if not report_path(by_key[n], runs_dir, seed).is_file()} - keys
        keys, grow = keys | missing, bool(missing)
    return [r for r in all_runs if r.key in keys]


def plan(selected: Sequence[Run], all_runs: Sequence[Step], seeds: Sequence[int],
         runs_dir: str | Path) -> list[tuple[Step, int]]:
    """(run, seed) pairs to consider, in pipeline order and all seeds of a run before the next run,
    so each row's aggregate is complete as early as possible and every input precedes its readers."""
    per_seed = {s: {r.key for r in with_inputs(selected, all_runs, runs_dir, s)} for s in seeds}
    return [(r, s) for r in all_runs for s in seeds if r.key in per_seed[s]]


def run_seeds(todo: Sequence[tuple[Step, int]], runs_dir: str | Path, *, force: bool = False,
              progress: Callable[[str], None] = print) -> list[str]:
    """gym_cards.run_pairs over `todo` (each seed from an empty cache, its wall time in
    process_seconds.txt), where a seed whose input on that seed does not exist (an upstream seed
    failed) is not started. Failed and unstarted seeds are missing seeds in the tables; the rest go
    on. Returns one line per such seed.
    """
    by_key = {r.key: r for r, _ in todo}

    def blocked(run: Run, seed: int) -> str | None:
        absent = [n for n in NEEDS.get(run.key, ())
                  if n in by_key and not report_path(by_key[n], runs_dir, seed).is_file()]
        return f"its input {', '.join(absent)} seed {seed} is missing" if absent else None

    return run_pairs(todo, runs_dir, force=force, progress=progress, blocked=blocked)


# --------------------------------------------------------------- collecting
def flatten(obj: Mapping, prefix: str = "") -> dict[str, float]:
    """The numbers of a report by dotted path ("calibration.ece", "pairs.held_out"); lists are left out."""
    out: dict[str, float] = {}
    for k, v in obj.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def _seconds(report: Mapping) -> float | None:
    s = report.get("wall_seconds", report.get("seconds"))
    return s.get("total") if isinstance(s, Mapping) else s


def figures(run: Step, report: Mapping) -> dict[str, float]:
    """A seed's figures: the report's numbers (flatten), plus the same names for every run kind:
    before.<axis> / after.<axis> and before/after.episodes (train: sft / final; dpo: before / after)
    and wall_seconds."""
    figs = flatten(report)
    if run.kind in ("train", "dpo"):
        dpo = run.kind == "dpo"
        n = report.get("config", {}).get("eval_episodes")
        for side, name in (("before", "before" if dpo else "sft"), ("after", "after" if dpo else "final")):
            ev = report.get(name) or {}
            figs.update({f"{side}.{a}": float(v) for a, v in axes(ev).items()})
            if isinstance(episodes := n if dpo else ev.get("episodes"), (int, float)):
                figs[f"{side}.episodes"] = float(episodes)
    if isinstance(sec := _seconds(report), (int, float)):
        figs["wall_seconds"] = float(sec)
    return figs


def collect(runs_dir: str | Path, seeds: Sequence[int] = SEEDS) -> dict[str, dict]:
    """run key -> {"reports": {seed: report}, "metrics": {seed: per-update records} (train runs),
    "agg": {figure: experiments.seeds.aggregate over `seeds`}}; a seed without output counts as missing."""
    out = {}
    for run in runs(runs_dir):
        reports, metrics, per_seed = {}, {}, {}
        for seed in seeds:
            path = report_path(run, runs_dir, seed)
            if not path.is_file():
                per_seed[seed] = {}
                continue
            reports[seed] = report = json.loads(path.read_text())
            per_seed[seed] = with_process_seconds(figures(run, report), path.parent)
            if run.kind == "train" and (m := path.parent / "metrics.jsonl").is_file():
                metrics[seed] = read_metrics(m)
        names = sorted({name for figs in per_seed.values() for name in figs})
        agg = {name: aggregate([per_seed[s].get(name) for s in seeds]) for name in names}
        out[run.key] = {"reports": reports, "metrics": metrics, "agg": agg}
    return out


def templates(runs_dir: str | Path) -> dict[str, str]:
    """run key -> its command with the seed written `S` (what the docs show)."""
    return {r.key: r.seed_command(runs_dir) for r in runs(runs_dir)}


def render_blocks(results: Mapping[str, dict], runs_dir: str | Path, seeds: Sequence[int] = SEEDS,
                  measured_on: Mapping[str, str] | None = None) -> dict[str, str]:
    return tables.render_blocks(results, templates(runs_dir), seeds, CACHE_PREFIX, measured_on)


def write_results(runs_dir: str | Path, doc: str | Path, fig_dir: str | Path,
                  records_dir: str | Path | None = None) -> dict[str, dict]:
    """Rewrite the doc's rlhf blocks and the PNG; with `records_dir`, from the records of every finished
    seed (experiments.records, recorded first from `runs_dir`), else straight from `runs_dir`."""
    data, on = table_data(runs(runs_dir), SEEDS, runs_dir, records_dir)
    results = collect(data)
    doc = Path(doc)
    doc.write_text(replace_blocks(doc.read_text(), render_blocks(results, runs_dir, measured_on=on), tag="rlhf"))
    plot_curves(results, Path(fig_dir) / "rlhf_curves.png")
    return results


def main(argv: list[str] | None = None) -> int:
    p = harness_parser("python -m experiments.rlhf_experiments", __doc__.split("\n\n")[0], RUNS_DIR, "rlhf")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), metavar="S",
                   help="run only these seeds (default %(default)s); the tables always cover SEEDS")
    args = p.parse_args(argv)
    all_runs = runs(args.runs_dir)
    selected = select_runs(p, all_runs, args.only)
    seeds = list(dict.fromkeys(args.seeds))
    if args.dry_run:
        print_seed_commands(selected, seeds, args.runs_dir)
        return 0
    todo = [] if args.table_only else plan(selected, all_runs, seeds, args.runs_dir)
    failed = run_seeds(todo, args.runs_dir, force=args.force)
    results = write_results(args.runs_dir, args.doc, args.figures, args.records)
    complete = sum(len(res["reports"]) == len(SEEDS) for res in results.values())
    print(f"{complete}/{len(all_runs)} runs have all {len(SEEDS)} seeds; wrote {args.doc} and "
          f"{args.figures}/rlhf_curves.png")
    for line in failed:
        print(f"failed (its log is stdout.log in its seed dir): {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
