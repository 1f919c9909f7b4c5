"""Is a reward model a good reward ON-POLICY? Rank the policy's own replies against ground truth.

    python -m rlvlm.eval.reward_model_check POLICY_DIR RM_DIR [--n 200 --k 8] [--out FILE.json]

Held-out pair accuracy grades a reward model on the pairs it was built from.
RL asks something else: among K replies the policy samples to one question,
does the reward model score the right ones above the wrong ones? This samples
K replies (temperature 1) to each of n held-out test questions and reports

    ranking   = P(r(correct reply) > r(wrong reply)) over every (correct, wrong) pair of one question
    spread    = std over questions of the mean score, and mean over questions of the within-question std

(a large between-question spread is what a critic or a group baseline must
remove before the within-question differences can act as advantages).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rlvlm.envs.parsing import parse_action
from rlvlm.envs.vector import make_env
from rlvlm.eval.episodes import EVAL_SEED_OFFSET
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.reward_model import load_reward_model
from rlvlm.tasks.answers import vqa_accuracy


def ranking_stats(correct: np.ndarray, scores: np.ndarray) -> dict:
    """correct, scores: (n_questions, K). Pairs are (correct, wrong) replies of one question; ties count ½."""
    correct, scores = np.asarray(correct, dtype=float), np.asarray(scores, dtype=float)
    if correct.shape != scores.shape or correct.ndim != 2:
        raise ValueError(f"correct {correct.shape} and scores {scores.shape} must both be (questions, K)")
    wins = ties = pairs = 0.0
    for c, s in zip(correct, scores):
        good, bad = s[c > 0.5], s[c <= 0.5]
        if len(good) and len(bad):
            diff = good[:, None] - bad[None, :]
            wins += float((diff > 0).sum())
            ties += float((diff == 0).sum())
            pairs += diff.size
    return {
        "mixed_pairs": int(pairs),
        "ranking": (wins + 0.5 * ties) / pairs if pairs else float("nan"),
        "reply_accuracy": float(correct.mean()),
        "score_correct": float(scores[correct > 0.5].mean()) if (correct > 0.5).any() else float("nan"),
        "score_wrong": float(scores[correct <= 0.5].mean()) if (correct <= 0.5).any() else float("nan"),
        "std_between_questions": float(scores.mean(1).std()),
        "std_within_question": float(scores.std(1).mean()),
    }


def check(policy_dir: str, rm_dir: str, *, n: int = 200, k: int = 8, task: str = "digits", image_size: int = 56,
          seed: int = 0, max_new_tokens: int = 48) -> dict:
    """Sample k replies to n test questions with the policy and rank them with the reward model."""
    import torch


    torch.manual_seed(seed)
    policy = load_policy(policy_dir, value_head=False, reference="none")
    rm = load_reward_model(rm_dir)
    env = make_env("rlvlm/VisualQA-v0", task=task, image_size=image_size, prompt_style="cot", split="test",
                   disable_env_checker=True)
    obs, answers = [], []
    for q in range(n):
        o, info = env.reset(seed=seed + EVAL_SEED_OFFSET + q)
        obs.append(o)
        answers.append(info["answers"])
    samples = policy.sample(obs, SamplingConfig(temperature=1.0, max_new_tokens=max_new_tokens, n=k))
    correct = np.array([vqa_accuracy(parse_action(s.text, None, key="answer").action or "", answers[i // k], "exact")
                        for i, s in enumerate(samples)]).reshape(n, k)
    with torch.no_grad():
        scores = rm.score([obs[i // k] for i in range(n * k)], [s.text for s in samples]).float().cpu().numpy()
    distinct = float(np.mean([len({s.text for s in samples[q * k:(q + 1) * k]}) for q in range(n)]))
    return {**ranking_stats(correct, scores.reshape(n, k)), "questions": n, "k": k, "distinct_replies": distinct,
            "policy": policy_dir, "reward_model": rm_dir}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policy")
    ap.add_argument("reward_model")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--task", default="digits")
    ap.add_argument("--image-size", type=int, default=56)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    if a.n < 1 or a.k < 2:
        ap.error("--n must be >= 1 and --k >= 2 (ranking needs two replies per question)")
    res = check(a.policy, a.reward_model, n=a.n, k=a.k, task=a.task, image_size=a.image_size)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
