"""`rlvlm train`: PPO / GRPO on a VLM policy in a visual environment.

`train(cfg)` reads top to bottom as named, timed phases:

    setup       model (built into the cache if tiny:...), policy, image-token check, envs
    sft         oracle demonstrations -> supervised warm-start, then held-out eval
    per update: rollout -> reward -> score -> advantage -> update -> log (-> eval -> checkpoint)
    final       held-out eval, report.json / report.md / curves.png

Every phase's seconds are logged under `time/<phase>`.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import rlvlm.envs  # noqa: F401  (registers rlvlm/... ids)
from rlvlm import algos
from rlvlm.envs.gym_adapter import GYM_PREFIX, gymnasium_id
from rlvlm.envs.help_metrics import help_metrics
from rlvlm.envs.pool import make_env_pool
from rlvlm.envs.vector import EnvFactory
from rlvlm.errors import ConfigError, did_you_mean
from rlvlm.eval.episodes import EVAL_SEED_OFFSET, evaluate
from rlvlm.models.checks import check_image_tokens
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.seeding import cpu_threads, seed_everything
from rlvlm.models.tiny import cached_tiny_model
from rlvlm.rewards import CompositeReward
from rlvlm.rollout.collector import Collector
from rlvlm.train.config import TrainConfig
from rlvlm.train.distributed import Distributed, reduce_metrics
from rlvlm.train.monitor import AbstentionMonitor
from rlvlm.train.outputs import RunOutputs
from rlvlm.train.ppo_step import ppo_update, rescore_rollout
from rlvlm.train.sft import collect_demonstrations, sft_train
from rlvlm.train.state import TrainState


class PhaseTimer:
    """Accumulates wall-clock seconds per named phase."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def pop(self) -> dict[str, float]:
        out = {f"time/{k}": v for k, v in self.seconds.items()}
        self.seconds = {}
        return out


def resolve_model(name_or_path: str) -> str:
    """`tiny:ARCH[:SIZE[:SEED]]` builds (once) a cached from-scratch model; anything else passes through."""
    if not name_or_path.startswith("tiny:"):
        return name_or_path

    parts = name_or_path.split(":")[1:]
    arch = parts[0] if parts and parts[0] else "qwen2_vl"
    size = parts[1] if len(parts) > 1 else "tiny"
    try:
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise ConfigError(f"model.name_or_path={name_or_path!r}: the seed in tiny:ARCH:SIZE:SEED must be an integer")
    return str(cached_tiny_model(arch, size, seed))


def merge_kwargs(base: dict, over: dict) -> dict:
    """Nested merge: {"missing_info": {"p": 0}} over env.kwargs changes p and keeps the other wrapper options."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_kwargs(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def make_env_factory(cfg: TrainConfig, overrides: dict | None = None) -> EnvFactory:
    """A no-argument env constructor from cfg.env (+ `overrides` of env.kwargs, e.g. eval.env_kwargs).
    It pickles, so a worker backend (env.backend) builds its envs from it in the workers."""
    kwargs = merge_kwargs(cfg.env.kwargs, overrides or {})
    kwargs.setdefault("image_size", cfg.env.image_size)
    kwargs.setdefault("prompt_style", cfg.env.prompt_style)
    gym_id = gymnasium_id(cfg.env.id)
    try:
        gym.spec(gym_id or cfg.env.id)
    except gym.error.Error as err:
        if gym_id:
            raise ConfigError(f"env.id={cfg.env.id!r}: gymnasium has no env {gym_id!r} ({err}); fix: check the id, "
                              "and install and import the package that registers it") from None
        ids = [k for k in gym.registry if k.startswith("rlvlm/")]
        raise ConfigError(f"env.id={cfg.env.id!r} is not registered{did_you_mean(cfg.env.id, ids)}; any "
                          f"gymnasium env: env.id={GYM_PREFIX}<ID>") from err

    # env.kwargs.missing_info / ask_for_help add the help-seeking wrappers.
    make = EnvFactory(cfg.env.id, {"disable_env_checker": True, **kwargs})
    make().close()  # fail on bad env kwargs now, before any work
    return make


def build_policy(cfg: TrainConfig):
    return load_policy(resolve_model(cfg.model.name_or_path), cfg.model.policy_options())


def param_groups(policy, lr: float, value_lr: float | None) -> list[dict]:
    """One AdamW group for the policy, and a second for the value head when it has its own lr."""
    params = policy.trainable_parameters()
    if value_lr is None or policy.value_head is None:
        return [{"params": params, "lr": lr}]
    head = {id(p) for p in policy.value_head.parameters()}
    return [{"params": [p for p in params if id(p) not in head], "lr": lr},
            {"params": [p for p in params if id(p) in head], "lr": value_lr}]


def lr_schedule(optimizer, total: int, warmup: int, kind: str, decay: int = 0):
    """Per-update lr factor: linear warm-up, then constant, cosine to 0, or wsd.

    wsd (warm-up, stable, decay) holds the lr until the last `decay` updates
    and then falls linearly, reaching 1/decay of the lr on the final update.
    """
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        if kind == "wsd":
            return min(1.0, (total - step) / decay)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rollout_metrics(rollout, rewards: torch.Tensor) -> dict:
    trs = rollout.transitions
    eps = rollout.episodes
    m = {
        "rollout/steps": len(trs),
        "rollout/reward_mean": float(rewards.mean()) if len(rewards) else 0.0,
        "rollout/invalid_action_rate": float(np.mean([not tr.info.get("action_valid", True) for tr in trs])),
        "rollout/completion_tokens": float(np.mean([tr.sample.num_tokens for tr in trs])),
        "rollout/truncated_completions": float(np.mean([tr.sample.truncated for tr in trs])),
        "rollout/episodes": len(eps),
        "rollout/env_errors": sum(e["error"] for e in eps),
    }
    if any("forced" in tr.sample.meta for tr in trs):
        m["rollout/forced_asks"] = sum(1 for tr in trs if tr.sample.meta.get("forced"))
    if eps:

        # Teacher-forced asks (rollout.explore_ask) are not the policy's choices: the
        # over-abstention monitor and the rates describe the sampled replies only.
        help_m = help_metrics([e for e in eps if not e.get("forced")])  # {} without the help wrappers
        for key in ("ask_recall", "false_ask_rate", "accuracy_clear"):
            if f"help/{key}" in help_m:
                m[f"rollout/{key}"] = help_m[f"help/{key}"]
        m["rollout/success_rate"] = float(np.mean([e["success"] for e in eps]))
        m["rollout/return"] = float(np.mean([e["return"] for e in eps]))
        m["rollout/episode_length"] = float(np.mean([e["length"] for e in eps]))
    return m


# Rank r's training streams are seeded with seed + RANK_SEED_STEP * r (rank 0: the seed itself).
RANK_SEED_STEP = 7919


def check_world(cfg: TrainConfig, dist: Distributed) -> None:
    """What a data-parallel run needs of the config: the envs split evenly, groups within a rank."""
    if not dist.active:
        return
    dist.check_divides("rollout.num_envs", cfg.rollout.num_envs)
    per_rank, g = cfg.rollout.num_envs // dist.world, cfg.rollout.group_size
    if per_rank % g:
        fix = g * dist.world * max(1, per_rank // g)
        raise ConfigError(f"rollout.group_size={g} must divide the {per_rank} envs each of {dist.world} processes "
                          f"steps (rollout.num_envs={cfg.rollout.num_envs}): a group never spans processes; "
                          f"fix: rollout.num_envs={fix}")


def train(cfg: TrainConfig, progress=print, dist: Distributed | None = None) -> dict:
    """Run SFT warm-start + RL as configured; returns the report dict (also written to output_dir).

    The run uses `cfg.threads` torch CPU threads (restored afterwards): the thread
    count changes float rounding, so pinning it is part of "same config and seed,
    same run" across machines with different core counts.

    Under `accelerate launch` (or torchrun) every process runs this function:
    `rollout.num_envs`, `algo.minibatch_size` and the evaluation episodes are
    per run and split over the processes; rank 0 alone writes the run directory.
    """
    cfg.validate()
    dist = dist or Distributed.from_environment()
    check_world(cfg, dist)
    with cpu_threads(cfg.threads):
        return _train(cfg, progress if dist.is_main else _quiet, dist)


def _quiet(_message: str) -> None:
    pass


def _train(cfg: TrainConfig, progress, dist: Distributed) -> dict:
    timer = PhaseTimer()
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    out = RunOutputs(cfg, dist)

    # ---------------------------------------------------------------- setup
    with timer("setup"):
        make_env = make_env_factory(cfg)
        make_eval_env = make_env_factory(cfg, cfg.eval.env_kwargs) if cfg.eval.env_kwargs else make_env
        policy = build_policy(cfg)

        image_check = check_image_tokens(policy, cfg.env.image_size)
        shaping = None
        # Built now so a bad component name fails before any work. A warm-start-only
        # run (updates=0) never rewards anything, so it may precede what the reward
        # needs (rlhf: the reward model is trained on this warm-start's samples).
        if cfg.reward.weights and cfg.updates > 0:

            shaping = CompositeReward(cfg.reward.weights, cfg.reward.options)
        # Evaluations also report each reward component on the held-out replies
        # (reward model, heuristics, accuracy): reward hacking shows as a gap there.
        eval_kwargs = dict(episodes=cfg.eval.episodes, seed=cfg.seed + EVAL_SEED_OFFSET,
                           sampling=SamplingConfig(temperature=cfg.eval.temperature,
                                                   max_new_tokens=cfg.rollout.max_new_tokens),
                           num_envs=cfg.eval.num_envs, reward=shaping,
                           shard=(dist.rank, dist.world), gather=dist.gather)
        dist.wrap_learner(policy)  # before any optimizer is made over its parameters

    def run_eval(**kwargs) -> dict:  # each rank plays its share of the held-out episodes
        with dist.full_weights():
            return evaluate(policy, make_eval_env, **kwargs)

    ref = policy.reference_parameters()
    progress(f"[setup] {policy.num_parameters():,} parameters ({policy.num_parameters(True):,} trainable"
             f"{f', plus a frozen {ref:,}-parameter KL reference' if ref else ''}), "
             f"{image_check['image_tokens']} image tokens, env {cfg.env.id}"
             f"{f', {dist.world} processes ({dist.backend})' if dist.active else ''}")

    # Training starts here: whatever setup drew (a model built in-process or read from
    # the cache, the image-token check) leaves the streams exactly where a fresh process
    # with this seed has them. The value head's init was seeded at the top of train().
    # Each data-parallel rank samples from its own streams.
    seed_everything(cfg.seed + RANK_SEED_STEP * dist.rank)

    # ------------------------------------------------------------------ sft
    report: dict = {}
    if not cfg.resume:  # a resumed run continues its saved report (SFT figures included)
        if cfg.sft.episodes > 0:
            with timer("sft"):

                make_demo_env = make_env_factory(cfg, cfg.sft.env_kwargs) if cfg.sft.env_kwargs else make_env
                demos = collect_demonstrations(make_demo_env, cfg.sft.episodes, cfg.sft.seed + cfg.seed,
                                               ask_rate=cfg.sft.ask_rate,
                                               random_action_rate=cfg.sft.random_action_rate)
                sft_metrics = sft_train(policy, demos, epochs=cfg.sft.epochs, lr=cfg.sft.lr,
                                        batch_size=cfg.sft.batch_size, seed=cfg.seed,
                                        progress=lambda s: progress(f"[sft] {s}"), dist=dist)
            report["sft_training"] = sft_metrics
            if policy.reference is not None:  # KL to the warm-start, not to the untrained weights
                policy.snapshot_reference()
        with timer("eval"):
            report["sft"] = run_eval(**eval_kwargs)
        progress(f"[eval] after warm-start: success {report['sft']['success_rate']:.3f} on "
                 f"{report['sft']['episodes']} held-out episodes")

    # ------------------------------------------------------------------- rl
    a = cfg.algo
    estimator = algos.advantage_estimator(a.advantage)  # what it needs decides how rollouts are collected
    base_optimizer = torch.optim.AdamW(param_groups(policy, a.lr, a.value_lr), lr=a.lr, weight_decay=a.weight_decay)
    scheduler = lr_schedule(base_optimizer, cfg.updates, a.warmup_updates, a.lr_schedule, a.decay_updates)
    optimizer = dist.prepare_optimizer(policy, base_optimizer, a.max_grad_norm)  # DeepSpeed: its engine
    entropy_ctl = algos.EntropyCoefficient(coef=a.entropy_coef, target=a.target_entropy)
    abstention = AbstentionMonitor(cfg.abstention_alarm)  # saved and restored with the run
    num_envs = cfg.rollout.num_envs // dist.world  # this rank's share (check_world)
    scaler = algos.RewardScaler(num_envs, gamma=a.gamma) if a.reward_norm else None  # critic only
    sampling = SamplingConfig(temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                              max_new_tokens=cfg.rollout.max_new_tokens)
    # The training envs run where env.backend says; the collector's code is the same for each.
    envs = make_env_pool(cfg.env.backend, make_env, num_envs, step_timeout=cfg.env.step_timeout)
    # Rank r resets with seeds seed + r, seed + r + W, ...: disjoint, and together a single process's seeds.
    collector = Collector(envs, policy, sampling, seed=cfg.seed + dist.rank, seed_stride=dist.world,
                          group_size=cfg.rollout.group_size, need_values=estimator.needs_critic,
                          explore_ask=cfg.rollout.explore_ask)
    state = TrainState(policy, optimizer, scheduler, entropy_ctl, collector, scaler,
                       monitors={"abstention": abstention}, report=report, phase_totals=out.phase_seconds)
    if cfg.resume:
        state.restore(cfg.resume, dist)  # weights, reference, optimizer, streams, envs, report: all of it
        progress(f"[resume] from {cfg.resume} at update {state.update}")
    report = state.report
    bar = out.progress_bar(cfg.updates, state.update)
    for update in range(state.update, cfg.updates):
        with timer("rollout"), dist.full_weights():  # FSDP: whole weights while ranks generate unevenly
            rollout = (collector.collect_episodes() if estimator.whole_episodes
                       else collector.collect_steps(cfg.rollout.num_steps))
        batch = rollout.batch
        if not policy.generator.exact_logprobs:
            with timer("score"), dist.full_weights():
                rescore_rollout(policy, batch, a.minibatch_size)
        with timer("reward"):
            reward_parts: dict = {}
            if shaping is not None:  # the configured weighted sum replaces the env's reward; success stays the env's
                totals, reward_parts = shaping.score(rollout.transitions)
                batch.rewards = torch.tensor(totals, dtype=torch.float32)
            raw_rewards = batch.rewards.clone()
            if scaler is not None:
                rv, dones = batch.grid(batch.rewards), batch.grid(batch.dones).float()
                batch.rewards = torch.stack([scaler.scale(rv[t], dones[t]) for t in range(len(rv))]).reshape(-1)
            bad_reward = not torch.isfinite(batch.rewards).all()
        with timer("score"), dist.full_weights():
            if a.kl_coef > 0:  # reference log-probs once per rollout, not per epoch
                batch.ref_logprobs = torch.zeros_like(batch.old_logprobs)
                for i in range(0, len(batch), a.minibatch_size):
                    mat = policy.reference_logprobs(batch.prompts[i:i + a.minibatch_size])
                    batch.ref_logprobs[i:i + mat.shape[0], : mat.shape[1]] = mat.detach().to("cpu")
        with timer("advantage"):
            batch.advantages, batch.returns = estimator(batch, a)
        metrics = {"update": update + 1}
        if dist.any(bad_reward or not torch.isfinite(batch.advantages).all()):  # every rank skips, or none
            metrics["update/skipped_nonfinite"] = 1  # a NaN/inf reward: skip this update, keep training
        else:
            with timer("update"):
                metrics.update(ppo_update(policy, optimizer, batch, a, entropy_coef=entropy_ctl.coef,
                                          seed=cfg.seed * 100_003 + update, scheduler=scheduler,
                                          timer=lambda name: timer(f"update/{name}"), dist=dist))
        with timer("log"):
            metrics.update(rollout_metrics(rollout, raw_rewards))
            metrics.update(reward_parts)  # reward/<component>: mean raw value of each component
            metrics["value/explained_var"] = (algos.explained_variance(batch.values, batch.returns)
                                              if estimator.needs_critic else 0.0)
            metrics["policy/lr"] = scheduler.get_last_lr()[0]
            metrics["time/generate"] = rollout.seconds.get("generate", 0.0)
            metrics["time/env"] = rollout.seconds.get("env", 0.0)
            metrics["time/bootstrap"] = rollout.seconds.get("bootstrap", 0.0)
            metrics = reduce_metrics(dist, metrics)  # the run's row, the same on every rank
            state.env_steps += metrics["rollout/steps"]
            metrics["rollout/env_steps"] = state.env_steps
        if entropy_ctl.adaptive and "policy/entropy" in metrics:
            entropy_ctl.update(metrics["policy/entropy"])  # from the run's entropy: one coefficient everywhere
        if a.ref_reset_every and (update + 1) % a.ref_reset_every == 0:
            policy.snapshot_reference()  # the next rollouts' KL is to the policy as it is now
            metrics["policy/ref_reset"] = 1
        if cfg.eval.every and (update + 1) % cfg.eval.every == 0 and update + 1 < cfg.updates:
            with timer("eval"):
                ev = run_eval(**{**eval_kwargs, "episodes": cfg.eval.during_episodes})
            metrics["eval/success_rate"] = ev["success_rate"]
            metrics.update({f"eval/{k}": v for k, v in ev.items() if k.startswith("reward/")})
        metrics.update(timer.pop())
        warning = abstention.check(update + 1, metrics)
        if warning:
            bar.write(warning)
        out.log(metrics, bar)
        state.update = update + 1
        if cfg.checkpoint_every and state.update % cfg.checkpoint_every == 0:
            out.checkpoint(state)
    bar.close()
    envs.close()  # ends worker processes / actors (a pool dropped on an exception ends them when collected)

    # ---------------------------------------------------------------- final
    if cfg.updates == 0 and "sft" in report:
        report["final"] = report["sft"]  # warm-start only: the policy was just evaluated
    else:
        with timer("eval"):
            report["final"] = run_eval(**eval_kwargs)
    report.update(abstention.summary())
    report["env_steps"] = state.env_steps
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    report["phase_seconds"] = out.phase_totals()
    state.update = cfg.updates
    out.checkpoint(state)
    out.finish(report)
    sft_sr = report.get("sft", {}).get("success_rate", float("nan"))
    progress(f"[done] success {sft_sr:.3f} after warm-start -> {report['final']['success_rate']:.3f} after RL "
             f"({report['wall_seconds']:.0f}s); report: {Path(cfg.output_dir) / 'report.json'}")
    return report
