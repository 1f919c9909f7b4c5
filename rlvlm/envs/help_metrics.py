"""Help-seeking metrics: does the model ask exactly when the image lacks the answer?

Computed from finished episodes of an env wrapped in `AskForHelp` (each
episode dict carries the final step's `info_missing`, `degradation`,
`asked`, `abstained`, `answered`, `correct` and `accuracy`; see
rlvlm/envs/wrappers.py). With M = episodes whose image was missing the
information and A = episodes in which the model asked:

    ask recall     = |A ∩ M| / |M|            (asks when it should)
    ask precision  = |A ∩ M| / |A|            (asks only when it should)
    ask F1         = 2 P R / (P + R)
    false ask rate = |A \\ M| / |not M|
    accuracy_clear = mean over clear episodes of the final answer's accuracy
                     (an abstention or invalid reply scores 0)
    coverage       = fraction of episodes answered without asking
    Φ_c            = mean over episodes of: accuracy if the final answer is
                     correct, -c if it is wrong or invalid, 0 if abstained
                     (effective reliability, Whitehead et al. 2022)

In multi-turn mode an ask reveals the clean image and the episode ends on an
answer, so Φ_c scores that answer: asking costs nothing in Φ_c there, which
is why coverage and the false-ask rate are reported beside it. An invalid
reply is not an abstention: Φ_c counts it as wrong.

`help_metrics` needs no torch; the per-mode table splits recall and accuracy
by degradation mode (occlude, blur, crop, blank, drop).
"""

from __future__ import annotations

from typing import Iterable, Sequence

# The final-step info keys an episode record keeps under the help wrappers.
EPISODE_KEYS = ("info_missing", "degradation", "asked", "abstained", "answered", "correct", "accuracy", "help_mode")
PHI_COSTS = (1.0, 10.0)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def episode_score(ep: dict, c: float) -> float:
    """One episode's Φ_c score (see the module docstring)."""
    if ep.get("abstained"):
        return 0.0
    if ep.get("answered") and ep.get("correct"):
        acc = ep.get("accuracy")
        return 1.0 if acc is None else float(acc)
    return -c


def _accuracy(ep: dict) -> float:
    if not ep.get("answered") or not ep.get("correct"):
        return 0.0
    acc = ep.get("accuracy")
    return 1.0 if acc is None else float(acc)


def help_metrics(episodes: Sequence[dict], costs: Iterable[float] = PHI_COSTS) -> dict:
    """The help-seeking summary of episodes that carry the help keys ({} if none do)."""
    eps = [e for e in episodes if "info_missing" in e and "asked" in e]
    if not eps:
        return {}
    missing = [e for e in eps if e["info_missing"]]
    clear = [e for e in eps if not e["info_missing"]]
    asked = [e for e in eps if e["asked"]]
    hit = sum(1 for e in asked if e["info_missing"])
    precision, recall = _ratio(hit, len(asked)), _ratio(hit, len(missing))
    out = {
        "help/episodes": len(eps),
        "help/missing_episodes": len(missing),
        "help/ask_rate": _ratio(len(asked), len(eps)),
        "help/ask_recall": recall,
        "help/ask_precision": precision,
        "help/ask_f1": _ratio(2 * precision * recall, precision + recall),
        "help/false_ask_rate": _ratio(sum(1 for e in clear if e["asked"]), len(clear)),
        "help/accuracy_clear": _ratio(sum(_accuracy(e) for e in clear), len(clear)),
        "help/accuracy_missing": _ratio(sum(_accuracy(e) for e in missing), len(missing)),
        "help/coverage": _ratio(sum(1 for e in eps if e.get("answered") and not e["asked"]), len(eps)),
    }
    for c in costs:
        out[f"help/phi_{c:g}"] = sum(episode_score(e, c) for e in eps) / len(eps)
    modes = sorted({e["degradation"] for e in missing if e.get("degradation")})
    out["help/per_mode"] = {
        m: {"episodes": len(sel), "ask_recall": _ratio(sum(1 for e in sel if e["asked"]), len(sel)),
            "accuracy": _ratio(sum(_accuracy(e) for e in sel), len(sel))}
        for m in modes for sel in [[e for e in missing if e.get("degradation") == m]]
    }
    return out


def help_episode_fields(info: dict) -> dict:
    """The help keys of a final step's info, for an episode record ({} without the wrappers)."""
    if "help_mode" not in info:
        return {}
    return {k: info.get(k) for k in EPISODE_KEYS}
