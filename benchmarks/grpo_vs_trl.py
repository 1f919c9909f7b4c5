#!/usr/bin/env python
"""Side by side: GRPO steps in rlvlm and in TRL's GRPOTrainer, same model, data and settings (issue 8).

    python benchmarks/grpo_vs_trl.py                       # both shapes, both frameworks, alternating
    python benchmarks/grpo_vs_trl.py --shapes tiny --steps 3 --frameworks rlvlm
    python benchmarks/grpo_vs_trl.py --levers              # rlvlm with each speed lever off in turn

Same means: one model directory (`rlvlm tiny-model`'s qwen2_vl tiny / small,
built once into the cache), one list of digit questions (VisualQA digits at
112x112, the env's own prompt text), P prompts x G generations x T max new
tokens, temperature 1, full fine-tuning in fp32, AdamW at one learning rate,
no KL term (TRL's default beta=0), one optimisation pass per generation
(num_iterations=1), gradient checkpointing off on both sides, and one reward:
exact-match accuracy of the reply's JSON answer.

Every run is its own process (so peak RSS is its own) and the frameworks
alternate round by round. Each run does `--warmup` untimed steps, then
`--steps` timed ones, and reports completions/s, generated tokens/s, peak RSS
and seconds per phase. Results go to OUT/results.json and OUT/results.md.
TRL is the optional `[bench]` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    "tiny": {"size": "tiny", "prompts": 4, "generations": 4, "max_new_tokens": 16},
    "small": {"size": "small", "prompts": 8, "generations": 8, "max_new_tokens": 64},
}
IMAGE_SIZE = 112
LR = 1e-5
CLIP = 0.2
# rlvlm speed levers (PolicyOptions fields): the options that toggle each one away from its default,
# and whether the default has it (static_cache measured no faster on CPU, so it is opt-in).
LEVERS = {
    "share_prompts": ({"share_prompts": False}, True),  # vision + prompt once per group, KV cache shared
    "own_decoder": ({"decoder": "hf"}, True),  # own sampling loop vs transformers generate() (prompts copied G times)
    "logprob_chunk": ({"logprob_chunk": 0}, True),  # fused log-prob/entropy, 4 rows at a time vs all rows
    "sdpa": ({"attn_implementation": "eager"}, True),
    "static_cache": ({"static_cache": True}, False),  # preallocated KV cache written in place
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux


def model_dir(size: str) -> str:
    from rlvlm.models.tiny import cached_tiny_model

    return str(cached_tiny_model("qwen2_vl", size, 0))


def questions(n: int, seed: int = 0) -> list[dict]:
    """n digit questions as the VisualQA env shows them: image, prompt text, reference answers."""
    from rlvlm.envs.vector import make_env

    env = make_env("rlvlm/VisualQA-v0", task="digits", image_size=IMAGE_SIZE, prompt_style="cot",
                   disable_env_checker=True)
    out = []
    for k in range(n):
        obs, info = env.reset(seed=seed + k)
        out.append({"image": obs["image"], "text": obs["text"], "answers": list(info["answers"])})
    env.close()
    return out


def accuracy(reply: str, answers: list[str]) -> float:
    from rlvlm.envs.parsing import parse_action
    from rlvlm.tasks.answers import vqa_accuracy

    answer = parse_action(reply, None, key="answer").action
    return 0.0 if answer is None else float(vqa_accuracy(answer, answers, "exact"))


# ------------------------------------------------------------------ rlvlm
def run_rlvlm(shape: dict, steps: int, warmup: int, options: dict) -> dict:
    import torch

    from rlvlm import algos
    from rlvlm.models.policy import SamplingConfig, load_policy
    from rlvlm.train.config import AlgoConfig
    from rlvlm.rollout.batch import batch_from_samples
    from rlvlm.train.ppo_step import ppo_update
    from rlvlm.train.rl import PhaseTimer

    torch.manual_seed(0)
    P, G, T = shape["prompts"], shape["generations"], shape["max_new_tokens"]
    opts = {"value_head": False, "reference": "none", **options}
    policy = load_policy(model_dir(shape["size"]), **opts)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=LR, weight_decay=0.0)
    algo = AlgoConfig(advantage="grpo", ratio_level="token", aggregation="token_mean", epochs=1,
                      minibatch_size=P * G, clip_low=CLIP, lr=LR, kl_coef=0.0, value_coef=0.0,
                      normalize_advantages=False)
    data = questions(P * (steps + warmup))
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=T, n=G)
    rss_setup = peak_rss_mib()
    step_seconds, phases, tokens = [], {}, 0
    for k in range(warmup + steps):
        timer = PhaseTimer()
        batch_q = data[k * P:(k + 1) * P]
        t0 = time.perf_counter()
        with timer("generate"):
            samples = policy.sample([{"image": q["image"], "text": q["text"]} for q in batch_q], sampling)
        with timer("reward"):
            rewards = torch.tensor([accuracy(s.text, batch_q[i // G]["answers"]) for i, s in enumerate(samples)])
        with timer("advantage"):
            batch = batch_from_samples(samples, rewards, group_ids=torch.arange(P).repeat_interleave(G))
            batch.advantages, batch.returns = algos.advantage_estimator("grpo")(batch, algo)
        with timer("update"):
            ppo_update(policy, optimizer, batch, algo, entropy_coef=0.0, seed=k, timer=timer)
        dt = time.perf_counter() - t0
        if k >= warmup:
            step_seconds.append(dt)
            tokens += sum(s.num_tokens for s in samples)
            for name, v in timer.seconds.items():
                phases[name] = phases.get(name, 0.0) + v
    phases = {k: v / steps for k, v in phases.items()}
    # Named like TRL's split: generation (+reward), loss forward, backward, optimizer step.
    return _result("rlvlm", shape, step_seconds, tokens, rss_setup, {
        "generate": phases.get("generate", 0.0), "reward": phases.get("reward", 0.0),
        "other_prep": phases.get("advantage", 0.0),
        "forward": phases.get("forward", 0.0), "backward": phases.get("backward", 0.0),
        "optimizer": phases.get("optimizer", 0.0),
    }, policy.num_parameters(), options)


# -------------------------------------------------------------------- trl
def run_trl(shape: dict, steps: int, warmup: int, options: dict) -> dict:
    import tempfile

    import torch
    from datasets import Dataset
    from PIL import Image
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlvlm.models.processors import load_processor

    torch.manual_seed(0)
    P, G, T = shape["prompts"], shape["generations"], shape["max_new_tokens"]
    path = model_dir(shape["size"])
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    processor = load_processor(path)
    data = questions(P * (steps + warmup))
    ds = Dataset.from_list([{
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q["text"]}]}],
        "image": Image.fromarray(q["image"]), "answers": q["answers"]} for q in data])
    generated = {"tokens": 0}

    def reward_accuracy(completions, answers, completion_ids=None, **_):
        if completion_ids is not None:
            generated["tokens"] += sum(len(c) for c in completion_ids)
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        texts = [t if isinstance(t, str) else " ".join(p.get("text", "") for p in t) for t in texts]
        return [accuracy(t, a) for t, a in zip(texts, answers)]

    out_dir = tempfile.mkdtemp(prefix="trl-bench-")
    args = GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=P * G, num_generations=G, max_completion_length=T,
        temperature=1.0, top_p=1.0, top_k=0, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, beta=0.0, num_iterations=1, epsilon=CLIP,
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True, max_steps=warmup + steps,
        logging_steps=1, report_to="none", save_strategy="no", shuffle_dataset=False, seed=0,
        dataloader_num_workers=0, log_completions=False, disable_dropout=True, **options)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_accuracy, args=args, train_dataset=ds,
                          processing_class=processor)
    timings = {"generate": 0.0, "reward": 0.0, "prep": 0.0, "forward": 0.0, "train_step": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                timings[name] += time.perf_counter() - t0
        return wrapper

    trainer._generate_single_turn = timed("generate", trainer._generate_single_turn)
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    trainer._generate_and_score_completions = timed("prep", trainer._generate_and_score_completions)
    trainer.compute_loss = timed("forward", trainer.compute_loss)
    trainer.training_step = timed("train_step", trainer.training_step)
    record = {"steps": [], "phases": [], "tokens": []}

    class Clock(TrainerCallback):
        def on_step_begin(self, *_a, **_k):
            self.t0 = time.perf_counter()
            self.before = dict(timings)
            self.tokens0 = generated["tokens"]

        def on_step_end(self, *_a, **_k):
            record["steps"].append(time.perf_counter() - self.t0)
            record["phases"].append({k: timings[k] - self.before[k] for k in timings})
            record["tokens"].append(generated["tokens"] - self.tokens0)

    trainer.add_callback(Clock())
    rss_setup = peak_rss_mib()
    trainer.train()
    steps_s = record["steps"][warmup:]
    ph = record["phases"][warmup:]
    mean = {k: sum(p[k] for p in ph) / len(ph) for k in timings}
    step_mean = sum(steps_s) / len(steps_s)
    split = {
        "generate": mean["generate"], "reward": mean["reward"],
        "other_prep": mean["prep"] - mean["generate"] - mean["reward"],
        "forward": mean["forward"], "backward": mean["train_step"] - mean["prep"] - mean["forward"],
        "optimizer": step_mean - mean["train_step"],
    }
    return _result("trl", shape, steps_s, sum(record["tokens"][warmup:]), rss_setup, split,
                   sum(p.numel() for p in model.parameters()), options)


def _result(framework, shape, step_seconds, tokens, rss_setup, phases, n_params, options) -> dict:
    n = len(step_seconds)
    total = sum(step_seconds)
    completions = shape["prompts"] * shape["generations"] * n
    return {
        "framework": framework, "shape": shape, "options": options, "parameters": n_params,
        "steps": n, "step_seconds": [round(s, 4) for s in step_seconds],
        "seconds_per_step": total / n, "completions_per_s": completions / total, "tokens_per_s": tokens / total,
        "mean_completion_tokens": tokens / completions, "peak_rss_mib": peak_rss_mib(),
        "rss_after_setup_mib": rss_setup, "phase_seconds": {k: round(v, 4) for k, v in phases.items()},
        "phase_seconds_generate": phases["generate"],
        "phase_seconds_train": phases["forward"] + phases["backward"] + phases["optimizer"],
        "threads": __import__("torch").get_num_threads(),
    }


# ---------------------------------------------------------------- parent
def child_run(framework: str, shape: dict, steps: int, warmup: int, options: dict, out: Path) -> dict:
    """One timed run in a fresh process (its own peak RSS); returns its result dict."""
    cmd = [sys.executable, __file__, "--child", framework, "--shape", json.dumps(shape), "--steps", str(steps),
           "--warmup", str(warmup), "--options", json.dumps(options), "--result", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise RuntimeError(f"{framework} {shape} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return json.loads(out.read_text())


def table(results: list[dict]) -> str:
    lines = ["| shape | framework | variant | completions/s | tokens/s | s/step | peak RSS (MiB) | "
             "generate | reward | other prep | forward | backward | optimizer |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, p = r["shape"], r["phase_seconds"]
        variant = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "default"
        lines.append(
            f"| {s['size']} {s['prompts']}x{s['generations']}x{s['max_new_tokens']} | {r['framework']} | {variant} | "
            f"{r['completions_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['seconds_per_step']:.3f} | "
            f"{r['peak_rss_mib']:.0f} | " + " | ".join(f"{p.get(k, 0.0):.3f}" for k in
                                                          ("generate", "reward", "other_prep", "forward",
                                                           "backward", "optimizer")) + " |")
    return "\n".join(lines)


def ratios(results: list[dict]) -> list[dict]:
    out = []
    for size in sorted({r["shape"]["size"] for r in results}):
        mine = [r for r in results if r["shape"]["size"] == size and r["framework"] == "rlvlm" and not r["options"]]
        trl = [r for r in results if r["shape"]["size"] == size and r["framework"] == "trl" and not r["options"]]
        if mine and trl:
            cps = sum(r["completions_per_s"] for r in mine) / len(mine)
            cps_t = sum(r["completions_per_s"] for r in trl) / len(trl)
            rss = max(r["peak_rss_mib"] for r in mine)
            rss_t = max(r["peak_rss_mib"] for r in trl)
            out.append({"shape": size, "completions_per_s_ratio": cps / cps_t, "peak_rss_ratio": rss / rss_t,
                        "rlvlm_completions_per_s": cps, "trl_completions_per_s": cps_t,
                        "rlvlm_peak_rss_mib": rss, "trl_peak_rss_mib": rss_t})
    return out


def lever_effects(results: list[dict]) -> list[dict]:
    """Each lever's own effect: the default rlvlm run against the run with only that lever toggled.

    `speedup` is completions/s with the lever over without it; "on"/"off" say with/without it.
    """
    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    out = []
    for size in sorted({r["shape"]["size"] for r in results}):
        rl = [r for r in results if r["shape"]["size"] == size and r["framework"] == "rlvlm"]
        default = [r for r in rl if not r["options"]]
        for lever, (opts, default_has_it) in LEVERS.items():
            toggled = [r for r in rl if r["options"] == opts]
            if not (default and toggled):
                continue
            on, off = (default, toggled) if default_has_it else (toggled, default)
            out.append({"shape": size, "lever": lever, "toggle": opts, "default": default_has_it,
                        "speedup": mean(on, "completions_per_s") / mean(off, "completions_per_s"),
                        "generate_s_on": mean(on, "phase_seconds_generate"),
                        "generate_s_off": mean(off, "phase_seconds_generate"),
                        "train_s_on": mean(on, "phase_seconds_train"), "train_s_off": mean(off, "phase_seconds_train"),
                        "peak_rss_on": mean(on, "peak_rss_mib"), "peak_rss_off": mean(off, "peak_rss_mib")})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["tiny", "small"], choices=sorted(SHAPES))
    ap.add_argument("--frameworks", nargs="+", default=["rlvlm", "trl"], choices=["rlvlm", "trl"])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (rlvlm, trl, rlvlm, trl, ...)")
    ap.add_argument("--levers", action="store_true", help="also run rlvlm with each speed lever off")
    ap.add_argument("--out", default="runs/bench", help="output directory")
    ap.add_argument("--child", choices=["rlvlm", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)  # JSON shape dict
    ap.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.steps < 1 or a.warmup < 0 or a.rounds < 1:
        ap.error("--steps and --rounds must be >= 1, --warmup >= 0")
    if a.child:
        fn = run_rlvlm if a.child == "rlvlm" else run_trl
        res = fn(json.loads(a.shape), a.steps, a.warmup, json.loads(a.options))
        Path(a.result).write_text(json.dumps(res, indent=2) + "\n")
        return 0
    if "trl" in a.frameworks:
        try:
            import trl  # noqa: F401
        except ImportError:
            ap.error("TRL is not installed: pip install -e '.[bench]' (or --frameworks rlvlm)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = [{}] + ([opts for opts, _ in LEVERS.values()] if a.levers else [])
    results = []
    for shape in a.shapes:
        model_dir(SHAPES[shape]["size"])  # build once, outside the timed children
        for rnd in range(a.rounds):
            for fw in a.frameworks:
                for opts in (variants if fw == "rlvlm" else [{}]):
                    tag = f"{shape}-{fw}-{rnd}-" + ("-".join(f"{k}{v}" for k, v in opts.items()) or "default")
                    r = child_run(fw, SHAPES[shape], a.steps, a.warmup, opts, out / f"{tag}.json")
                    results.append(r)
                    print(f"[bench] {tag}: {r['completions_per_s']:.1f} completions/s, {r['tokens_per_s']:.0f} "
                          f"tokens/s, {r['seconds_per_step']:.3f} s/step, peak RSS {r['peak_rss_mib']:.0f} MiB",
                          flush=True)
    summary = {"results": results, "ratios": ratios(results), "levers": lever_effects(results),
               "steps": a.steps, "warmup": a.warmup,
               "rounds": a.rounds, "command": "python benchmarks/grpo_vs_trl.py " + " ".join(sys.argv[1:])}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = table(results) + "\n\n" + "\n".join(
        f"- {r['shape']}: rlvlm / TRL completions/s = {r['completions_per_s_ratio']:.2f}x, "
        f"peak RSS = {r['peak_rss_ratio']:.2f}x" for r in summary["ratios"])
    if summary["levers"]:
        md += "\n\n| shape | lever (default) | speed-up with it | generate s (on / off) | train s (on / off) | peak RSS MiB (on / off) |\n"
        md += "|---|---|---|---|---|---|\n" + "\n".join(
            f"| {e['shape']} | {e['lever']} ({'on' if e['default'] else 'off'}) | {e['speedup']:.2f}x | {e['generate_s_on']:.3f} / {e['generate_s_off']:.3f} | "
            f"{e['train_s_on']:.3f} / {e['train_s_off']:.3f} | {e['peak_rss_on']:.0f} / {e['peak_rss_off']:.0f} |"
            for e in summary["levers"])
    (out / "results.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
