"""The tables of the reward experiments (docs/results.md `rewards:` blocks), over seeds.

`results` maps a run key to its seeds' reports: {key: {seed: report.json, plus "metrics", the
per-update records}}; a seed without a report is absent. Every measured figure is aggregated
over the seeds the table covers (experiments.seeds.aggregate: mean, sample std, min, max, n,
missing) and shown as `mean ± std (worst W)`. Which seed is worst is a property of the column,
declared in each column list below: the minimum where higher is better (accuracy, ask F1), the
maximum where lower is better (tokens or seconds per reply, false-ask rate). Coverage is neither
(asking on a degraded image lowers it, rightly), so its cells give the range instead.

A row with a before/after pair (the run's own evaluation of its starting policy, report["sft"],
then report["final"]) says whether the spread of the final figure over seeds (max - min) is
larger than the mean gain, or for a lower-is-better figure the mean saving: such a row cannot
tell the method from the luck of the seed. Every row has a `seeds` column (`n/N`: how many of
the N seeds have a report); a cell whose figure some of those reports lack adds its own n.
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping, Sequence

from experiments.seeds import aggregate, fmt, spread_exceeds_gain

Results = Mapping[str, Mapping[int, Mapping]]
Better = Literal["higher", "lower", "neither"]
Getter = Callable[[Mapping], "float | None"]


# ------------------------------------------------------------- figures
def at(*path: str) -> Getter:
    """A getter of one number inside a report, e.g. at("final", "help/ask_f1"); None where it is absent."""
    def get(report: Mapping) -> float | None:
        x: object = report
        for name in path:
            if not isinstance(x, Mapping) or name not in x:
                return None
            x = x[name]
        return float(x) if isinstance(x, (int, float)) else None
    return get


def relative(section_get: Getter, base_get: Getter) -> Getter:
    """Per seed `section / base - 1` (e.g. final tokens against the same seed's warm-start's)."""
    def get(report: Mapping) -> float | None:
        x, base = section_get(report), base_get(report)
        return None if x is None or not base else x / base - 1
    return get


def over_seeds(results: Results, key: str, seeds: Sequence[int], get: Getter) -> dict:
    """The aggregate of one figure of one run over `seeds` (a seed without a report counts as missing)."""
    reports = results.get(key, {})
    return aggregate([get(reports[s]) if s in reports else None for s in seeds])


def n_reports(results: Results, key: str, seeds: Sequence[int]) -> int:
    return sum(s in results.get(key, {}) for s in seeds)


# --------------------------------------------------------------- cells
def cell(agg: Mapping, better: Better, digits: int = 3, scale: float = 1.0, n: int | None = None) -> str:
    """`mean ± std (worst W)` with W the min (higher is better) or the max (lower is better);
    `mean ± std (range min–max)` for a figure that is neither; `–` without any seed. `scale`
    multiplies every figure (100 for percent); `n` is the row's seed count: a cell aggregated
    over fewer seeds says how many (`[n=2]`)."""
    if not agg.get("n"):
        return "–"
    a = {**agg, **{k: scale * agg[k] for k in ("mean", "std", "min", "max")}}
    if better == "higher":
        text = fmt(a, digits)
    elif better == "lower":
        text = fmt({**a, "min": a["max"]}, digits)  # fmt calls its "min" the worst seed
    else:
        text = f"{a['mean']:.{digits}f} ± {a['std']:.{digits}f} (range {a['min']:.{digits}f}–{a['max']:.{digits}f})"
    return text if n is None or agg["n"] == n else f"{text} [n={agg['n']}]"


def _negated(agg: Mapping) -> dict:
    return {**agg, "mean": -agg["mean"], "min": -agg["max"], "max": -agg["min"]}


def flag(before: Mapping, after: Mapping, better: Better) -> str:
    """"yes" when the final figure's spread over seeds exceeds its mean gain over `before`, else "no";
    "–" without both. For a lower-is-better figure the gain is the drop (both negated)."""
    if not (before.get("n") and after.get("n")):
        return "–"
    if better == "neither":
        raise ValueError("a figure that is neither better high nor low has no gain")
    if better == "lower":
        before, after = _negated(before), _negated(after)
    return "yes" if spread_exceeds_gain(before, after) else "no"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _head(*titles: str) -> list[str]:
    return [_row(*titles), "|---" * len(titles) + "|"]


# -------------------------------------------------------- help-seeking
HELP_COLUMNS: list[tuple[str, str, Better]] = [  # (title, help/ metric, which way is better)
    ("ask recall", "ask_recall", "higher"), ("ask precision", "ask_precision", "higher"),
    ("ask F1", "ask_f1", "higher"), ("false asks", "false_ask_rate", "lower"),
    ("accuracy (clear)", "accuracy_clear", "higher"), ("Φ₁", "phi_1", "higher"), ("Φ₁₀", "phi_10", "higher"),
    ("coverage", "coverage", "neither"),
]
HELP_FLAG = "ask_f1"  # the headline of help-seeking: its spread is weighed against its gain


def help_table(results: Results, rows: Sequence[tuple[str, str, str, str]], seeds: Sequence[int]) -> str:
    """Two lines per setting (key, label, name of the starting policy, name of the RL policy):
    the help metrics of the start and of the end, and on the end's line whether the ask F1's
    spread over seeds is larger than its gain."""
    lines = _head("setting", "policy", "seeds", *(t for t, _, _ in HELP_COLUMNS), "spread > gain (ask F1)")
    for key, label, start, end in rows:
        n = n_reports(results, key, seeds)
        aggs = {sec: {m: over_seeds(results, key, seeds, at(sec, f"help/{m}")) for _, m, _ in HELP_COLUMNS}
                for sec in ("sft", "final")}
        for sec, name in (("sft", start), ("final", end)):
            cells = [cell(aggs[sec][m], better, n=n) for _, m, better in HELP_COLUMNS]
            last = flag(aggs["sft"][HELP_FLAG], aggs["final"][HELP_FLAG], "higher") if sec == "final" else ""
            lines.append(_row(label, name, f"{n}/{len(seeds)}", *cells, last))
    return "\n".join(lines)


def help_modes_table(results: Results, keys: Sequence[str], seeds: Sequence[int]) -> str:
    """Ask rate within each degradation mode (the mode's ask recall; higher is better), before and
    after RL, and the mode's episodes summed over the seeds present."""
    modes = sorted({m for k in keys for rep in results.get(k, {}).values()
                    for m in rep.get("final", {}).get("help/per_mode", {})})
    lines = _head("setting", "mode", "seeds", "ask rate before RL", "ask rate after RL", "episodes (all seeds)",
                  "spread > gain")
    for key in keys:
        n = n_reports(results, key, seeds)
        for mode in modes or ["–"]:
            before, after = (over_seeds(results, key, seeds, at(sec, "help/per_mode", mode, "ask_recall"))
                             for sec in ("sft", "final"))
            episodes = [at("final", "help/per_mode", mode, "episodes")(results[key][s])
                        for s in seeds if s in results.get(key, {})]
            total = sum(e for e in episodes if e is not None)
            lines.append(_row(key, mode, f"{n}/{len(seeds)}", cell(before, "higher", 2, n=n),
                              cell(after, "higher", 2, n=n), f"{total:.0f}" if n else "–",
                              flag(before, after, "higher")))
    return "\n".join(lines)


# ------------------------------------------------------- fast-and-right
FAR_COLUMNS: list[tuple[str, Getter, Better, int, float]] = [  # (title, figure, better, digits, scale)
    ("accuracy", at("final", "success_rate"), "higher", 3, 1.0),
    ("tokens / reply", at("final", "mean_completion_tokens"), "lower", 1, 1.0),
    ("seconds / reply", at("final", "mean_reply_seconds"), "lower", 3, 1.0),
    # Against the run's own evaluation of its start (the same seed's warm-start on the same episodes).
    ("tokens vs SFT (%)", relative(at("final", "mean_completion_tokens"), at("sft", "mean_completion_tokens")),
     "lower", 0, 100.0),
]
# The two figures of "fast and right": accuracy (gain) and tokens per reply (saving).
FAR_FLAGS: list[tuple[str, str, Better]] = [("spread > gain: accuracy", "success_rate", "higher"),
                                            ("spread > saving: tokens", "mean_completion_tokens", "lower")]


def _far_flags(results: Results, key: str, seeds: Sequence[int]) -> list[str]:
    return [flag(over_seeds(results, key, seeds, at("sft", m)), over_seeds(results, key, seeds, at("final", m)), b)
            for _, m, b in FAR_FLAGS]


def far_table(results: Results, rows: Sequence[tuple[str, str]], seeds: Sequence[int], baseline: str) -> str:
    """Accuracy and cost per policy (key, label); the `baseline` row (the warm-start, no RL) has no
    before/after pair, so no change against itself and no flags."""
    lines = _head("policy", "seeds", *(c[0] for c in FAR_COLUMNS), *(f[0] for f in FAR_FLAGS))
    for key, label in rows:
        n = n_reports(results, key, seeds)
        cells = [cell(over_seeds(results, key, seeds, get), better, digits, scale, n=n)
                 for _, get, better, digits, scale in FAR_COLUMNS]
        if key == baseline:
            cells[-1:] = [""]
        flags = [""] * len(FAR_FLAGS) if key == baseline else _far_flags(results, key, seeds)
        lines.append(_row(label, f"{n}/{len(seeds)}", *cells, *flags))
    return "\n".join(lines)


def curve_spread(curves: Sequence[Sequence[float]]) -> float | None:
    """Mean over updates of the across-seed sample std of a per-update figure (how far the seeds'
    curves disagree), over the updates every curve has; None with fewer than two curves."""
    if len(curves) < 2 or not (n := min(len(c) for c in curves)):
        return None
    return sum(aggregate([c[t] for c in curves])["std"] for t in range(n)) / n


def rollout_curve(report: Mapping, metric: str) -> list[float]:
    return [m[metric] for m in report.get("metrics", ()) if isinstance(m.get(metric), (int, float))]


def stability_table(results: Results, rows: Sequence[tuple[str, str]], seeds: Sequence[int]) -> str:
    """Final accuracy and tokens over seeds, how far the seeds' rollout-accuracy curves disagree,
    and the spread flags, for each setting (key, label)."""
    lines = _head("setting", "seeds", "final accuracy", "final tokens / reply",
                  "curve spread (sd of rollout accuracy)", *(f[0] for f in FAR_FLAGS))
    for key, label in rows:
        n = n_reports(results, key, seeds)
        acc, tok = (over_seeds(results, key, seeds, at("final", m)) for m in ("success_rate", "mean_completion_tokens"))
        spread = curve_spread([rollout_curve(results[key][s], "rollout/success_rate")
                               for s in seeds if s in results.get(key, {})])
        lines.append(_row(label, f"{n}/{len(seeds)}", cell(acc, "higher", n=n), cell(tok, "lower", 1, n=n),
                          "–" if spread is None else f"{spread:.3f}", *_far_flags(results, key, seeds)))
    return "\n".join(lines)
