"""`rlvlm preferences`: simulated preference pairs sampled from a policy.

For each of `n_prompts` procedural records "task/split/seed/i" (i = 0..n-1)
the policy sees the observation `rlvlm/VisualQA-v0` shows for it and samples
K replies at temperature T (one prompt encoding per record, `SamplingConfig(n=K)`).
The replies are scored with the TRAINING heuristic weights w (`score_reply`:
total = Σ_s w_s·s / Σ_s w_s), ranked, and turned into (chosen, rejected)
pairs by `build_pairs` (strategy, min_margin). Pairs reference records by id,
so the reward model and DPO rebuild the identical observation.

Ground truth is only reported, never used, unless "correctness" is among the
weights. The summary says how the pairs relate to it and to the scorers that
did not make them:

    reply_accuracy      mean correctness over all K·n sampled replies
    chosen_correct      mean correctness of chosen replies (rejected_correct alike)
    agreement[s]        over pairs, P(s(chosen) > s(rejected)) with ties ½, per scorer s:
                        1 for a weighted scorer that alone decides, ~½ for an unrelated one

Outputs: the pairs JSONL (`out`) and `<out stem>.summary.json` next to it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rlvlm.config import FF, F
from rlvlm.errors import ConfigError
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.rewards.preferences import (
    SCORERS, STRATEGIES, build_pairs, check_weights, correctness, resolve_record, write_pairs_jsonl,
)
from rlvlm.tasks.procedural import GENERATORS, SPLITS
from rlvlm.train.reward_model import pair_observations
from rlvlm.train.rl import resolve_model
from rlvlm.train.run_dir import atomic_write_text, to_json_value
from rlvlm.train.distributed import single_process_only


@dataclass
class PreferenceConfig:
    COMMAND = "rlvlm preferences"  # not a field (no annotation): the command that reloads a saved config.yaml
    policy: str = F("tiny:idefics3", "policy that samples the replies: saved policy / model directory, hub id, "
                    "or tiny:ARCH[:SIZE[:SEED]] (use the warm-started policy RL will start from)")
    task: str = F("digits", "procedural task: " + ", ".join(GENERATORS))
    split: str = F("train", "split of the prompts (train | validation | test); keep test for evaluation")
    n_prompts: int = F(200, "records task/split/seed/0 .. n_prompts-1")
    k: int = F(4, "replies sampled per prompt")
    weights: dict[str, float] = FF(dict, "TRAINING heuristic: scorer weights, e.g. weights.mentions=1 "
                                   "weights.structure=1 (scorers: " + ", ".join(SCORERS) + "); keep one out "
                                   "to evaluate with")
    image_size: int = F(56, "image side in pixels (the reward model and RL must use the same)")
    seed: int = F(0, "record seed of the prompt ids, and the sampling seed")
    temperature: float = F(1.0, "sampling temperature (> 0: K greedy replies would be identical)")
    max_new_tokens: int = F(48, "reply length cap")
    strategy: str = F("all", "pairs per prompt: all | best_worst | adjacent (rlvlm.rewards.preferences.build_pairs)")
    min_margin: float = F(0.05, "drop pairs whose total scores differ by less")
    batch_size: int = F(16, "prompts per generation call (each with k replies)")
    device: str = F("cpu", "torch device, e.g. cpu or cuda")
    out: str = F("runs/prefs/pairs.jsonl", "pairs JSONL; the summary goes to <stem>.summary.json beside it")

    def validate(self) -> None:
        if not self.policy:
            raise ConfigError("policy is empty; fix: policy=DIR (a saved policy) or policy=tiny:idefics3")
        if self.task not in GENERATORS:
            raise ConfigError(f"task={self.task!r} is not one of {', '.join(GENERATORS)}; fix: e.g. task=digits")
        if self.split not in SPLITS:
            raise ConfigError(f"split={self.split!r} is not one of {', '.join(SPLITS)}; fix: split=train")
        if not self.weights:
            raise ConfigError("weights is empty; fix: name the training heuristic, e.g. weights.mentions=1 "
                              "weights.structure=1")
        check_weights(self.weights)
        for name, low in (("n_prompts", 1), ("k", 2), ("max_new_tokens", 1), ("batch_size", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= {low}; fix: {name}={max(low, 4)}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature} must be > 0 (greedy replies are all the same); "
                              "fix: temperature=1.0")
        if self.image_size < 32:
            raise ConfigError(f"image_size={self.image_size} is too small; fix: image_size >= 32 (e.g. 56)")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy={self.strategy!r} is not one of {', '.join(STRATEGIES)}; fix: strategy=all")
        if not self.min_margin >= 0:
            raise ConfigError(f"min_margin={self.min_margin} must be >= 0; fix: e.g. min_margin=0.05")
        if not self.out:
            raise ConfigError("out is empty; fix: out=runs/prefs/pairs.jsonl")


def record_ids(task: str, split: str, seed: int, n: int) -> list[str]:
    """The procedural ids "task/split/seed/i" for i in 0..n-1."""
    return [f"{task}/{split}/{seed}/{i}" for i in range(n)]


def _ties_half(a: float, b: float) -> float:
    return 1.0 if a > b else 0.5 if a == b else 0.0


def summarize_preferences(pairs: list[dict], groups: list[dict], weights: dict[str, float]) -> dict:
    """Counts and ground-truth relations of the pairs (formulas: module doc).

    `groups` are the build_pairs groups {record_id, record, replies}, with
    "correct" added: the correctness of each reply.
    """
    n = len(groups)
    replies = [c for g in groups for c in g["correct"]]
    prompts_with_pairs = len({p["record_id"] for p in pairs})
    out = {
        "prompts": n, "replies": len(replies),
        "distinct_replies_per_prompt": sum(len(set(g["replies"])) for g in groups) / n if n else 0.0,
        "pairs": len(pairs), "pairs_per_prompt": len(pairs) / n if n else 0.0,
        "prompts_with_pairs": prompts_with_pairs,
        "mean_margin": sum(p["margin"] for p in pairs) / len(pairs) if pairs else None,
        "reply_accuracy": sum(replies) / len(replies) if replies else None,
        "chosen_correct": None, "rejected_correct": None, "agreement": {},
        "weights": dict(weights),
    }
    if pairs:
        out["chosen_correct"] = sum(p["scores_chosen"]["correctness"] for p in pairs) / len(pairs)
        out["rejected_correct"] = sum(p["scores_rejected"]["correctness"] for p in pairs) / len(pairs)
        out["agreement"] = {s: sum(_ties_half(p["scores_chosen"][s], p["scores_rejected"][s]) for p in pairs)
                            / len(pairs) for s in SCORERS}
    return out


def collect_preferences(policy, *, task: str = "digits", split: str = "train", n_prompts: int = 200, k: int = 4,
                        weights: dict[str, float], image_size: int = 56, seed: int = 0, temperature: float = 1.0,
                        max_new_tokens: int = 48, strategy: str = "all", min_margin: float = 0.05,
                        batch_size: int = 16, progress: Callable[[str], None] | None = None
                        ) -> tuple[list[dict], dict]:
    """Sample k replies per prompt with `policy`, score them with `weights`, return (pairs, summary).

    `policy` needs only `sample(observations, SamplingConfig) -> list[Sample]`
    (observation-major, n replies each), so tests can script it. Pairs are
    build_pairs dicts {record_id, question, chosen, rejected, margin,
    scores_chosen, scores_rejected}; every margin is >= min_margin.
    """
    import torch


    weights = check_weights(weights)
    say = progress or (lambda _s: None)
    sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens, n=k)
    sampling.validate()
    ids = record_ids(task, split, seed, n_prompts)
    torch.manual_seed(seed)  # the replies are a function of (policy, seed)
    t0 = time.perf_counter()
    groups: list[dict] = []
    pairs: list[dict] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        obs = pair_observations(chunk, image_size)  # the exact VisualQA prompt of each record
        samples = policy.sample([obs[r] for r in chunk], sampling)
        for j, rid in enumerate(chunk):
            record = resolve_record(rid, image_size)
            texts = [s.text for s in samples[j * k:(j + 1) * k]]
            group = {"record_id": rid, "record": record, "replies": texts,
                     "correct": [correctness(t, record) for t in texts]}
            groups.append(group)
            pairs += build_pairs([group], weights, min_margin=min_margin, strategy=strategy)
        say(f"{len(groups)}/{len(ids)} prompts, {len(pairs)} pairs ({time.perf_counter() - t0:.1f}s)")
    summary = summarize_preferences(pairs, groups, weights)
    summary.update(task=task, split=split, seed=seed, k=k, temperature=temperature, strategy=strategy,
                   min_margin=min_margin, image_size=image_size, seconds=round(time.perf_counter() - t0, 2))
    return pairs, summary


def summary_path(out: str | Path) -> Path:
    """runs/prefs/pairs.jsonl -> runs/prefs/pairs.summary.json"""
    out = Path(out)
    return out.with_name(out.stem + ".summary.json")


def run_preferences(cfg: PreferenceConfig, progress: Callable[[str], None] | None = print) -> dict:
    """The `rlvlm preferences` command: load the policy, collect, write pairs + summary; returns the summary."""

    say = progress or (lambda _s: None)
    cfg.validate()
    single_process_only("rlvlm preferences")
    policy = load_policy(resolve_model(cfg.policy), value_head=False, reference="none", device=cfg.device)
    policy.eval()
    say(f"[prefs] {cfg.n_prompts} {cfg.task}/{cfg.split} prompts x {cfg.k} replies from {cfg.policy}, "
        f"scored with {cfg.weights}")
    pairs, summary = collect_preferences(
        policy, task=cfg.task, split=cfg.split, n_prompts=cfg.n_prompts, k=cfg.k, weights=cfg.weights,
        image_size=cfg.image_size, seed=cfg.seed, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
        strategy=cfg.strategy, min_margin=cfg.min_margin, batch_size=cfg.batch_size,
        progress=lambda s: say(f"[prefs] {s}"))
    summary["policy"] = cfg.policy
    write_pairs_jsonl(pairs, cfg.out)
    path = summary_path(cfg.out)
    atomic_write_text(path, json.dumps(to_json_value(summary, "summary"), indent=2, allow_nan=False) + "\n")
    cc = summary["chosen_correct"]
    say(f"[prefs] {summary['pairs']} pairs from {summary['prompts_with_pairs']}/{summary['prompts']} prompts, "
        f"reply accuracy {summary['reply_accuracy']:.3f}, chosen correct "
        f"{'n/a' if cc is None else f'{cc:.3f}'}; wrote {cfg.out} and {path}")
    return summary
