"""The tables and curves of the RLHF harness (experiments.rlhf_experiments), over seeds.

Every measured cell is a figure over the seeds that have an output: `mean ± std
(worst seed)`, where the worst seed is the lowest value of a figure whose higher
values are better (accuracies, pair accuracy) and the highest of one whose lower
values are better (ECE, seconds, the share of rejected replies that are right).
Each column says which (`Better`). A row with a before -> after pair also says
whether its spread over seeds (max - min of the after figure) is larger than
its mean gain, i.e. whether one seed's luck could be the whole effect. A run
with no seed yet renders as "–" or "not run yet".

`results` is what `experiments.rlhf_experiments.collect` returns: run key ->
{"reports": {seed: report}, "metrics": {seed: [...]}, "agg": {figure: aggregate}};
`commands` is run key -> its command with the seed written as `S`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Sequence

from experiments.gym_cards import has_seeds, wall_cell
from experiments.seeds import aggregate, fmt, spread_exceeds_gain

AXES = (("reward-model score", "reward_model"), ("training heuristic", "heuristic_train"),
        ("held-out heuristic", "heuristic_heldout"), ("ground-truth accuracy", "accuracy"))
RM_KINDS = (("mlp", "rm"), ("vlm", "rm-vlm"))  # (kind, run key)
RM_TARGET = 0.90  # held-out pair accuracy the reward model should reach
# Rows of the RL table: (label, run key); every row is read as before -> after.
RL_ROWS = (("PPO on the reward model (rlhf preset, 150 updates)", "ppo"),
           ("PPO on the reward model, 64 envs, lr 3e-4, no KL, 60 updates", "ppo-far"),
           ("  same, on ground truth (control)", "ppo-far-gt"),
           ("GRPO on the reward model (groups of 8, 60 updates)", "grpo"),
           ("  same, on ground truth (control)", "grpo-gt"),
           ("Dr. GRPO on the reward model (no std division)", "grpo-dr"),
           ("  same, on ground truth (control)", "grpo-dr-gt"),
           ("DPO on the pairs (beta 0.1, lr 1e-4, 3 epochs: the defaults before issue 15)", "dpo"),
           ("DPO on the pairs (beta 0.5, lr 1e-5, 2 epochs: the defaults)", "dpo-gentle"))

# Which seed is the worst one, per column: "higher" and "lower" are the better side (worst = min,
# worst = max); "neutral" has no better side (a reward model's score scale is arbitrary), shown as
# mean ± std (min to max); "count" is a size set by the data, not a merit, shown as its value or range.
Better = Literal["higher", "lower", "neutral", "count"]
Column = tuple[str, str, Better, int]  # (header, figure name, better side, digits)
EMPTY = aggregate([])

PREFS_COLUMNS: tuple[Column, ...] = (
    ("prompts", "prompts", "count", 0), ("replies", "replies", "count", 0), ("pairs", "pairs", "higher", 0),
    ("mean margin", "mean_margin", "higher", 3), ("reply accuracy", "reply_accuracy", "higher", 3),
    ("chosen correct", "chosen_correct", "higher", 3), ("rejected correct", "rejected_correct", "lower", 3))
RM_COLUMNS: tuple[Column, ...] = (
    ("train accuracy", "train_accuracy", "higher", 3), ("ECE", "calibration.ece", "lower", 3),
    ("seconds", "wall_seconds", "lower", 0))
ONPOLICY_COLUMNS: tuple[Column, ...] = (
    ("ranks the right reply higher", "ranking", "higher", 3),
    ("mean score right", "score_correct", "neutral", 2), ("mean score wrong", "score_wrong", "neutral", 2),
    ("score std between questions", "std_between_questions", "neutral", 2),
    ("score std within a question", "std_within_question", "neutral", 2))
SECONDS: Column = ("seconds", "wall_seconds", "lower", 0)


def onpolicy_key(rm_key: str) -> str:
    """The run key of reward model `rm_key`'s on-policy check (rlvlm.eval.reward_model_check)."""
    return f"{rm_key}-onpolicy"


def fig(res: Mapping | None, name: str) -> Mapping:
    """The aggregate over seeds of one figure of a run (n = 0 when no seed has it)."""
    return (res or {}).get("agg", {}).get(name, EMPTY)


def cell(agg: Mapping, better: Better, digits: int = 3) -> str:
    """One figure over seeds as a table cell (see `Better`); "–" when no seed has it."""
    if not has_seeds(agg):
        return "–"
    if better == "higher":
        return fmt(agg, digits)
    if better == "lower":  # fmt names agg["min"] the worst seed; here the worst is the largest value
        return fmt({**agg, "min": agg["max"]}, digits)
    lo, hi = agg["min"], agg["max"]
    if better == "count":
        return f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}"
    return f"{agg['mean']:.{digits}f} ± {agg['std']:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def column_cell(res: Mapping | None, column: Column) -> str:
    _, name, better, digits = column
    return cell(fig(res, name), better, digits)


def arrow(res: Mapping | None, before: str, after: str, digits: int = 3) -> str:
    """`before → after`, both higher-is-better figures over seeds."""
    return f"{cell(fig(res, before), 'higher', digits)} → {cell(fig(res, after), 'higher', digits)}"


def spread_flag(res: Mapping | None, before: str, after: str) -> str:
    """"yes" when the after figure's spread over seeds is larger than its mean gain over before."""
    b, a = fig(res, before), fig(res, after)
    return "–" if not (has_seeds(a) and has_seeds(b)) else ("yes" if spread_exceeds_gain(b, a) else "no")


def n_seeds(res: Mapping | None, seeds: Sequence[int]) -> str:
    return f"{len((res or {}).get('reports', {}))}/{len(seeds)}"


def not_run(commands: Mapping[str, str], key: str) -> str:
    return f"not run yet: `{commands[key]}`"


def prefs_table(results: Mapping[str, dict], commands: Mapping[str, str], seeds: Sequence[int]) -> str:
    res = results.get("prefs")
    if not (res and res["reports"]):
        return f"_{not_run(commands, 'prefs')}_"
    scorers = sorted({k for r in res["reports"].values() for k in r.get("agreement", {})})
    columns = (*PREFS_COLUMNS, *((f"agreement: {k}", f"agreement.{k}", "higher", 3) for k in scorers), SECONDS)
    lines = ["| seeds | " + " | ".join(c[0] for c in columns) + " |", "|---" * (len(columns) + 1) + "|",
             f"| {n_seeds(res, seeds)} | " + " | ".join(column_cell(res, c) for c in columns) + " |"]
    return "\n".join(lines)


def rm_target(res: Mapping) -> str:
    """Met when the mean held-out pair accuracy reaches RM_TARGET; says how many seeds reach it alone."""
    agg = fig(res, "held_out_accuracy")
    if not has_seeds(agg):
        return "–"
    hits = sum(r.get("held_out_accuracy", -1.0) >= RM_TARGET for r in res["reports"].values())
    return f"{'met' if agg['mean'] >= RM_TARGET else 'missed'} ({hits}/{agg['n']} seeds)"


def rm_table(results: Mapping[str, dict], commands: Mapping[str, str], seeds: Sequence[int]) -> str:
    lines = ["| reward model | seeds | pairs (train / held-out) | held-out pair accuracy (before → after) | "
             + " | ".join(c[0] for c in RM_COLUMNS) + f" | target {RM_TARGET:.2f} | spread > gain |",
             "|---" * (7 + len(RM_COLUMNS)) + "|"]
    for kind, key in RM_KINDS:
        res = results.get(key)
        if not (res and res["reports"]):
            lines.append(f"| {kind} | {n_seeds(res, seeds)} | {not_run(commands, key)} |" + " |" * (4 + len(RM_COLUMNS)))
            continue
        pairs = f"{cell(fig(res, 'pairs.train'), 'count')} / {cell(fig(res, 'pairs.held_out'), 'count')}"
        cells = [pairs, arrow(res, "held_out_accuracy_before", "held_out_accuracy"),
                 *(column_cell(res, c) for c in RM_COLUMNS), rm_target(res),
                 spread_flag(res, "held_out_accuracy_before", "held_out_accuracy")]
        lines.append(f"| {kind} | {n_seeds(res, seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def onpolicy_table(results: Mapping[str, dict], commands: Mapping[str, str], seeds: Sequence[int]) -> str:
    """rlvlm.eval.reward_model_check of each seed's reward model: its ranking of that seed's SFT replies."""
    lines = ["| reward model | seeds | mixed (right, wrong) pairs | " + " | ".join(c[0] for c in ONPOLICY_COLUMNS)
             + " |", "|---" * (3 + len(ONPOLICY_COLUMNS)) + "|"]
    for kind, rm_key in RM_KINDS:
        key = onpolicy_key(rm_key)
        res = results.get(key)
        if not (res and res["reports"]):
            lines.append(f"| {kind} | {n_seeds(res, seeds)} | {not_run(commands, key)} |" + " |" * len(ONPOLICY_COLUMNS))
            continue
        mixed = (f"{cell(fig(res, 'mixed_pairs'), 'count')} ({cell(fig(res, 'questions'), 'count')} questions x "
                 f"{cell(fig(res, 'k'), 'count')})")
        lines.append(f"| {kind} | {n_seeds(res, seeds)} | {mixed} | "
                     + " | ".join(column_cell(res, c) for c in ONPOLICY_COLUMNS) + " |")
    return "\n".join(lines)


def start(results: Mapping[str, dict]) -> tuple[Mapping | None, str]:
    """The SFT policy's evaluation, as (run, figure prefix): PPO's SFT evaluation (the largest), else DPO's
    `before`, else the warm-start run's own. One source for every seed, so seeds are not mixed across runs."""
    for key, prefix in (("ppo", "before"), ("dpo", "before"), ("rlhf-sft", "after")):
        if has_seeds(fig(results.get(key), f"{prefix}.accuracy")):
            return results[key], prefix
    return None, ""


def rl_table(results: Mapping[str, dict], commands: Mapping[str, str], seeds: Sequence[int]) -> str:
    """Every RL/DPO row: before -> after on the four axes (each over seeds) and the axes whose
    spread over seeds is larger than the row's mean gain."""
    lines = ["| policy | seeds | test questions | " + " | ".join(name for name, _ in AXES) + " | spread > gain on |",
             "|---" * (len(AXES) + 4) + "|"]
    res, prefix = start(results)
    if res is not None:
        cells = [cell(fig(res, f"{prefix}.episodes"), "count"),
                 *(cell(fig(res, f"{prefix}.{a}"), "higher") for _, a in AXES)]
        lines.append(f"| SFT warm-start (common start) | {n_seeds(res, seeds)} | " + " | ".join(cells) + " | |")
    else:
        lines.append(f"| SFT warm-start | 0/{len(seeds)} | {not_run(commands, 'rlhf-sft')} |" + " |" * (len(AXES) + 1))
    for label, key in RL_ROWS:
        r = results.get(key)
        if not has_seeds(fig(r, "after.accuracy")):
            lines.append(f"| {label} | {n_seeds(r, seeds)} | {not_run(commands, key)} |" + " |" * (len(AXES) + 1))
            continue
        flagged = [name for name, a in AXES if spread_flag(r, f"before.{a}", f"after.{a}") == "yes"]
        cells = [cell(fig(r, "after.episodes"), "count"), *(arrow(r, f"before.{a}", f"after.{a}") for _, a in AXES),
                 ", ".join(flagged) or "none"]
        lines.append(f"| {label} | {n_seeds(r, seeds)} | " + " | ".join(cells) + " |")
    notes = [f"{key}: {arrow(results[key], 'held_out_accuracy_before', 'held_out_accuracy')} on "
             f"{cell(fig(results[key], 'pairs.held_out'), 'count')} pairs, spread > gain: "
             f"{spread_flag(results[key], 'held_out_accuracy_before', 'held_out_accuracy')}"
             for key in ("dpo", "dpo-gentle") if has_seeds(fig(results.get(key), "held_out_accuracy"))]
    if notes:
        lines += ["", "DPO held-out pair accuracy (implicit reward): " + "; ".join(notes) + "."]
    return "\n".join(lines)


def commands_table(results: Mapping[str, dict], commands: Mapping[str, str], seeds: Sequence[int],
                   cache_prefix: str, measured_on: Mapping[str, str] | None = None) -> str:
    """Every run's command (seed S reads seed S's upstream outputs), how many seeds have run, the
    range over seeds of its whole process's wall time (the report's where the harness did not run it)
    and, with `measured_on` (run key -> "commit, CPU"), what measured it."""
    extra = measured_on is not None
    lines = ["| run | command | seeds | wall per run |" + (" measured at (commit, CPU) |" if extra else ""),
             "|---" * (4 + extra) + "|"]
    for key, command in commands.items():
        res = results.get(key)
        wall = wall_cell({name: fig(res, name) for name in ("process_seconds", "wall_seconds")})
        tail = f" {measured_on.get(key) or '–'} |" if extra else ""
        lines.append(f"| {key} | `{cache_prefix} {command}` | {n_seeds(res, seeds)} | {wall} |{tail}")
    return "\n".join(lines)


def render_blocks(results: Mapping[str, dict], commands: Mapping[str, str], seeds: Sequence[int],
                  cache_prefix: str, measured_on: Mapping[str, str] | None = None) -> dict[str, str]:
    """The bodies of the `<!-- rlhf:NAME -->` blocks of docs/results.md."""
    return {"prefs": prefs_table(results, commands, seeds), "reward-models": rm_table(results, commands, seeds),
            "rm-onpolicy": onpolicy_table(results, commands, seeds), "rl": rl_table(results, commands, seeds),
            "commands": commands_table(results, commands, seeds, cache_prefix, measured_on)}


# -------------------------------------------------------------------- plots
def axes(ev: Mapping | None) -> dict[str, float]:
    """The four axes of an evaluation: train runs say reward/<axis>, dpo says <axis>."""
    if not ev:
        return {}
    out = {a: ev.get(f"reward/{a}", ev.get(a)) for _, a in AXES}
    if out["accuracy"] is None:
        out["accuracy"] = ev.get("success_rate")
    return {a: v for a, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def ppo_curves(report: Mapping, metrics: Sequence[Mapping]) -> dict[str, tuple[list, list]]:
    """One seed: axis -> (updates, values); update 0 = the SFT evaluation, then the evaluations
    every eval.every updates, and last the final evaluation (more questions) at the last update."""
    pts: dict[str, list] = {a: [] for _, a in AXES}
    for a, v in axes(report.get("sft")).items():
        pts[a].append((0, v))
    for m in metrics:
        for _, a in AXES:
            v = m.get(f"eval/reward/{a}", m.get("eval/success_rate") if a == "accuracy" else None)
            if isinstance(v, (int, float)) and "update" in m:
                pts[a].append((m["update"], v))
    last = max([m["update"] for m in metrics if "update" in m], default=0)
    for a, v in axes(report.get("final")).items():
        pts[a].append((last, v))
    return {a: ([x for x, _ in p], [y for _, y in p]) for a, p in pts.items()}


def dpo_curves(report: Mapping) -> dict[str, tuple[list, list]]:
    """One seed: axis -> (epochs, values) of DPO's evaluations (epoch 0 = the SFT policy)."""
    out: dict[str, tuple[list, list]] = {}
    for _, a in AXES:
        pts = [(e["epoch"], v) for e in report.get("evals", []) if (v := axes(e).get(a)) is not None]
        out[a] = ([x for x, _ in pts], [y for _, y in pts])
    return out


def _draw(ax, curves: list[tuple[list, list]], color: str, label: str) -> None:
    """Each seed thin, the mean over seeds bold (the seeds of one command evaluate at the same steps;
    a seed cut short bounds the mean)."""
    curves = [c for c in curves if c[0]]
    for xs, ys in curves:
        ax.plot(xs, ys, lw=0.8, alpha=0.35, color=color)
    if curves:
        xs = min((c[0] for c in curves), key=len)
        ax.plot(xs, [sum(ys[j] for _, ys in curves) / len(curves) for j in range(len(xs))], "o-", ms=3, lw=1.6,
                color=color, label=f"{label}, mean of {len(curves)} seeds")


def plot_curves(results: Mapping[str, dict], out_png: str | Path) -> Path | None:
    """2 x 4 panels: PPO against updates (top) and DPO against epochs (bottom), one column per axis."""
    ppo, dpo = results.get("ppo", {}), results.get("dpo", {})
    if not (ppo.get("reports") or dpo.get("reports")):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig_ = Figure(figsize=(13.0, 6.0), dpi=100)
    FigureCanvasAgg(fig_)
    grid = fig_.subplots(2, len(AXES))
    ppo_seeds = [ppo_curves(r, ppo.get("metrics", {}).get(s, [])) for s, r in ppo.get("reports", {}).items()]
    dpo_seeds = [dpo_curves(r) for r in dpo.get("reports", {}).values()]
    for row, (name, xlabel, per_seed, label) in enumerate((
            ("PPO", "update", ppo_seeds, "0 = SFT, last = final evaluation"),
            ("DPO", "epoch", dpo_seeds, "epoch 0 = SFT"))):
        for col, (title, a) in enumerate(AXES):
            ax = grid[row][col]
            _draw(ax, [c[a] for c in per_seed], f"C{row}", label)
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.grid(alpha=0.3)
            if not per_seed:
                ax.text(0.5, 0.5, "not run yet", ha="center", va="center", transform=ax.transAxes, color="grey")
            elif col == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="best")
    fig_.suptitle("RLHF on held-out test questions (greedy), each seed thin, their mean bold: "
                  "reward hacking = RM score up while held-out axes fall", fontsize=10)
    fig_.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig_.savefig(out_png, format="png")
    return out_png
