"""Advantages for a rollout, and the K-epoch minibatch update.

No loss math lives here: this module arranges rollout data into tensors and
calls `rlvlm.algos`. Old log-probs are the ones recorded at sampling time,
under each step's own prompt (the policy has not changed since), so no extra
forward pass is made for them.
"""

from __future__ import annotations

import math
import random
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from rlvlm import algos
from rlvlm.rollout.collector import Rollout
from rlvlm.train.config import AlgoConfig


@dataclass
class Batch:
    """Flat per-transition training data."""

    samples: list
    advantages: torch.Tensor  # (B,)
    returns: torch.Tensor  # (B,)
    old_values: torch.Tensor  # (B,)
    ref_logprobs: list[torch.Tensor] | None = None  # per sample (Tc_i,)


def rollout_rewards(rollout: Rollout) -> torch.Tensor:
    return torch.tensor([tr.reward for tr in rollout.transitions], dtype=torch.float32)


def compute_advantages(rollout: Rollout, cfg: AlgoConfig, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) per transition, in rollout order."""
    trs = rollout.transitions
    if cfg.advantage == "gae":
        T, N = rollout.num_steps, rollout.num_envs
        r = rewards.view(T, N)
        values = torch.tensor([tr.sample.value or 0.0 for tr in trs]).view(T, N)
        dones = torch.tensor([tr.done for tr in trs], dtype=torch.float32).view(T, N)
        truncated = torch.tensor([tr.truncated for tr in trs]).view(T, N)
        tv = torch.full((T, N), float("nan"))
        for (t, i), v in rollout.truncation_values.items():
            tv[t, i] = v
        tv = torch.where(truncated & tv.isnan(), torch.zeros_like(tv), tv)
        last = torch.tensor(rollout.last_values or [0.0] * N)
        adv, ret = algos.gae(r, values, dones, last, gamma=cfg.gamma, lam=cfg.lam,
                             truncated=truncated, truncation_values=tv)
        return adv.reshape(-1), ret.reshape(-1)
    # Group estimators: one advantage per episode from its return, shared by all its steps.
    returns_by_ep: dict[int, float] = {}
    group_by_ep: dict[int, int] = {}
    for tr, rew in zip(trs, rewards.tolist()):
        returns_by_ep[tr.episode_id] = returns_by_ep.get(tr.episode_id, 0.0) + rew
        group_by_ep[tr.episode_id] = tr.group_id
    eps = sorted(returns_by_ep)
    ep_ret = torch.tensor([returns_by_ep[e] for e in eps])
    ep_group = torch.tensor([group_by_ep[e] for e in eps])
    fn = algos.get_advantage_estimator(cfg.advantage)
    ep_adv = fn(ep_ret, ep_group)
    index = {e: k for k, e in enumerate(eps)}
    adv = torch.stack([ep_adv[index[tr.episode_id]] for tr in trs])
    ret = torch.stack([ep_ret[index[tr.episode_id]] for tr in trs])
    return adv, ret


def _old_token_matrix(samples, Tc: int) -> torch.Tensor:
    m = torch.zeros((len(samples), Tc))
    for i, s in enumerate(samples):
        m[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
    return m


def _minibatch_loss(policy, batch: Batch, idx: list[int], adv: torch.Tensor, cfg: AlgoConfig,
                    entropy_coef: float) -> tuple[torch.Tensor | None, dict]:
    """Forward pass and total loss of one minibatch; (None, {approx_kl}) when past 1.5 x target_kl."""
    mb = [batch.samples[i] for i in idx]
    out = policy.score(mb)
    old = _old_token_matrix(mb, out.logprobs.shape[1]).to(out.logprobs.device)
    a = adv[idx].to(out.logprobs.device)
    if cfg.ratio_level == "action":
        new_lp = algos.action_logprob(out.logprobs, out.thought_mask, out.action_mask, cfg.thought_coef)
        old_lp = algos.action_logprob(old, out.thought_mask, out.action_mask, cfg.thought_coef)
        pl, pm = algos.ppo_clip_loss(new_lp, old_lp, a, clip_low=cfg.clip_low, clip_high=cfg.clip_high)
    else:
        pl, pm = algos.ppo_clip_loss(out.logprobs, old, a[:, None].expand_as(old), out.mask,
                                     clip_low=cfg.clip_low, clip_high=cfg.clip_high, aggregation=cfg.aggregation)
    total = pl
    metrics = dict(pm)
    if cfg.target_kl is not None and metrics.get("policy/approx_kl", 0.0) > 1.5 * cfg.target_kl:
        return None, {"policy/approx_kl": metrics["policy/approx_kl"]}
    if out.values is not None and cfg.value_coef > 0:
        vl, vm = algos.value_loss(out.values, batch.old_values[idx].to(out.values.device),
                                  batch.returns[idx].to(out.values.device), clip=cfg.value_clip)
        total = total + cfg.value_coef * vl
        metrics.update(vm)
    el, em = algos.entropy_bonus(out.entropy, out.mask, coef=entropy_coef)
    total = total + el
    metrics.update(em)
    if cfg.kl_coef > 0 and batch.ref_logprobs is not None:
        ref = torch.zeros_like(out.logprobs)
        for j, i in enumerate(idx):
            ref[j, : len(batch.ref_logprobs[i])] = batch.ref_logprobs[i]
        kl, km = algos.kl_loss(out.logprobs, ref, out.mask, kind=cfg.kl_estimator)
        total = total + cfg.kl_coef * kl
        metrics.update(km)
    return total, metrics


def _no_timer(_name):
    return nullcontext()


def ppo_update(policy, optimizer, batch: Batch, cfg: AlgoConfig, *, entropy_coef: float, seed: int,
               scheduler=None, timer=None) -> dict:
    """K epochs of shuffled minibatches; returns averaged metrics. Non-finite losses skip the step.

    With `cfg.target_kl`, the update stops early (no more minibatch steps this
    rollout) once a minibatch's approx KL to the rollout policy exceeds
    1.5 x target_kl: the KL is measured in the forward pass, before that
    minibatch's step, so the policy never moves on from a point already too far.
    `timer` (a `PhaseTimer`) splits the seconds into forward, backward and optimizer.
    """
    timer = timer or _no_timer
    B = len(batch.samples)
    adv = batch.advantages
    if cfg.normalize_advantages and B > 1:
        adv = algos.masked_whiten(adv)
    rng = random.Random(seed)
    params = policy.trainable_parameters()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    skipped = 0
    steps = 0
    stopped_early = 0

    def add(metrics: dict) -> None:
        for k, v in metrics.items():
            if v is not None and math.isfinite(v):
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1

    policy.train()
    for _epoch in range(cfg.epochs):
        if stopped_early:
            break
        order = list(range(B))
        rng.shuffle(order)
        for start in range(0, B, cfg.minibatch_size):
            idx = order[start:start + cfg.minibatch_size]
            with timer("forward"):
                total, metrics = _minibatch_loss(policy, batch, idx, adv, cfg, entropy_coef)
            if total is None:  # approx KL already past 1.5 x target_kl: stop before this step
                stopped_early = 1
                add(metrics)
                break
            if not torch.isfinite(total):
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.zero_grad(set_to_none=True)
            with timer("backward"):
                total.backward()
            with timer("optimizer"):
                gn = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                if torch.isfinite(gn):
                    optimizer.step()
            if not torch.isfinite(gn):
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            steps += 1
            metrics["loss/total"] = total.item()
            metrics["policy/grad_norm"] = gn.item()
            add(metrics)
    if scheduler is not None:
        scheduler.step()
    out = {k: sums[k] / counts[k] for k in sums}
    out["update/skipped_steps"] = skipped
    out["update/optimizer_steps"] = steps
    out["update/stopped_early"] = stopped_early
    return out
