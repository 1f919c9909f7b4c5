"""The K-epoch minibatch update over a `RolloutBatch`.

No loss math lives here: this module slices minibatches out of the batch's
tensors and calls what `rlvlm.algos` registers (the configured policy loss) and
provides (value, entropy and KL terms). Old log-probs are the ones recorded at
sampling time, under each step's own prompt (the policy has not changed
since), so no extra forward pass is made for them.
"""

from __future__ import annotations

import math
import random
from contextlib import nullcontext

import torch

from rlvlm import algos
from rlvlm.algos.batch import RolloutBatch
from rlvlm.models.generators import eval_mode
from rlvlm.train.config import AlgoConfig
from rlvlm.train.distributed import SINGLE, Distributed


def _minibatch_loss(policy, mb: RolloutBatch, adv: torch.Tensor, cfg: AlgoConfig, entropy_coef: float,
                    loss: algos.PolicyLossSpec, weights: tuple[float, float] | None = None,
                    dist: Distributed = SINGLE) -> tuple[torch.Tensor | None, dict]:
    """Forward pass and total loss of one minibatch; (None, {approx_kl}) when past 1.5 x target_kl.

    `weights` = (per-sample, per-token) factors of this piece's mean-type terms
    in a data-parallel or accumulated step (`_chunks`); None: the plain mean.
    """
    w_sample, w_token = weights or (None, None)
    out = policy.score(mb.prompts)
    dev = out.logprobs.device
    old = mb.old_logprobs.to(dev)
    if old.shape != out.logprobs.shape:
        raise RuntimeError(f"re-scored completions have shape {list(out.logprobs.shape)}, the rollout's "
                           f"{list(old.shape)}: the learner must score exactly the sampled tokens")
    a = adv.to(dev)
    if cfg.ratio_level == "action":
        new_lp = algos.action_logprob(out.logprobs, out.thought_mask, out.action_mask, cfg.thought_coef)
        old_lp = algos.action_logprob(old, out.thought_mask, out.action_mask, cfg.thought_coef)
        pl, pm = loss.fn(new_lp, old_lp, a, None, cfg)
        pl = _weighted(pl, w_sample)
    else:
        pl, pm = loss.fn(out.logprobs, old, a[:, None].expand_as(old), out.mask, cfg)
        pl = _weighted(pl, w_token if cfg.aggregation == "token_mean" else w_sample)
    total = pl
    metrics = dict(pm)
    if cfg.target_kl is not None:
        # Every rank must stop at the same minibatch (a collective per step follows): the mean KL decides.
        kl_now = dist.sum(torch.tensor([metrics.get("policy/approx_kl", 0.0)]))[0].item() / dist.world
        if kl_now > 1.5 * cfg.target_kl:
            return None, {"policy/approx_kl": metrics["policy/approx_kl"]}
    if out.values is not None and cfg.value_coef > 0:
        vl, vm = algos.value_loss(out.values, mb.values.to(dev), mb.returns.to(dev), clip=cfg.value_clip)
        total = total + cfg.value_coef * _weighted(vl, w_sample)
        metrics.update(vm)
    elif out.values is not None and weights:
        total = total + 0.0 * out.values.sum()  # DDP reduces every parameter's grad: keep the head in the graph
    el, em = algos.entropy_bonus(out.entropy, out.mask, coef=entropy_coef)
    total = total + _weighted(el, w_token)
    metrics.update(em)
    if cfg.kl_coef > 0 and mb.ref_logprobs is not None:
        kl, km = algos.kl_loss(out.logprobs, mb.ref_logprobs.to(dev), out.mask, kind=cfg.kl_estimator)
        total = total + cfg.kl_coef * _weighted(kl, w_token)
        metrics.update(km)
    return total, metrics


def _weighted(term: torch.Tensor, weight: float | None) -> torch.Tensor:
    return term if weight is None else term * weight


def _chunks(dist: Distributed, batch: RolloutBatch, idx: list[int], micro: int) -> list[tuple[list[int], tuple]]:
    """This rank's part of one minibatch as micro-batches, each with its loss weights (None: plain step).

    DDP averages the ranks' gradients, (1/W) Σ_r ∇L_r, and gradient accumulation
    sums the micro-batches' gradients. With each piece's loss a mean over its n_c
    samples (or tokens), scaling it by W·n_c / n, where n counts the whole global
    minibatch, makes the result ∇(Σ_c S_c / n): the gradient of the minibatch's
    mean, however the samples fall over ranks and micro-batches. Weights are
    (samples, tokens) factors.

    Every rank runs the same number of micro-batches (collectives follow each);
    a rank with nothing left scores one sample at weight 0, so it still joins
    the gradient reduction.
    """
    if not dist.active and (micro <= 0 or len(idx) <= micro):
        return [(idx, None)]  # one process, one piece: the plain mean, nothing to weigh
    size = micro if micro > 0 else max(len(idx), 1)
    pieces = [idx[i:i + size] for i in range(0, len(idx), size)]
    count = int(dist.max(len(pieces)))
    pieces += [[] for _ in range(count - len(pieces))]
    samples = [float(len(c)) for c in pieces]
    tokens = [float(batch.completion_mask[c].sum()) if c else 0.0 for c in pieces]
    tot = dist.sum(torch.tensor([sum(samples), sum(tokens)], dtype=torch.float64))
    return [(c or [0], (dist.world * b / max(float(tot[0]), 1.0), dist.world * t / max(float(tot[1]), 1.0)))
            for c, b, t in zip(pieces, samples, tokens)]


@torch.no_grad()
def rescore_rollout(policy, batch: RolloutBatch, chunk: int) -> None:
    """Old log-probs (and values) of `batch` from the learner, in place, `chunk` samples per pass.

    For a generator that does not declare its log-probs exact (another engine,
    other kernels): PPO's ratio must start at 1 under the weights that sampled,
    so the learner's own forward pass supplies them, in eval mode as sampling ran.
    """
    with eval_mode(policy.model):
        for i in range(0, len(batch), chunk):
            out = policy.score(batch.prompts[i:i + chunk])
            n, width = out.logprobs.shape
            batch.old_logprobs[i:i + n] = 0.0
            batch.old_logprobs[i:i + n, :width] = out.logprobs.to(batch.old_logprobs.device)
            if out.values is not None:
                batch.values[i:i + n] = out.values.to(batch.values.device)


def _no_timer(_name):
    return nullcontext()


def ppo_update(policy, optimizer, batch: RolloutBatch, cfg: AlgoConfig, *, entropy_coef: float, seed: int,
               scheduler=None, timer=None, dist: Distributed = SINGLE) -> dict:
    """K epochs of shuffled minibatches of `batch` (with advantages and returns set); returns
    averaged metrics. The loss is the registered `cfg.policy_loss`. Non-finite losses skip the step.

    With `cfg.target_kl`, the update stops early (no more minibatch steps this
    rollout) once a minibatch's approx KL to the rollout policy exceeds
    1.5 x target_kl: the KL is measured in the forward pass, before that
    minibatch's step, so the policy never moves on from a point already too far.
    `timer` (a `PhaseTimer`) splits the seconds into forward, backward and optimizer.

    Data-parallel (`dist` with several ranks, each holding its shard of the
    rollout): the ranks' batches, in rank order, are one global batch of
    Σ B_r samples. Every rank draws the same shuffle of it, so minibatch k is the
    same global set of `cfg.minibatch_size` samples a single process would take,
    and each rank scores the part it holds. Advantages are whitened with global
    statistics and each rank's loss is weighted so the reduced gradient is that
    of the whole minibatch (`_chunks`). An update on W ranks x B/W samples
    therefore equals the update on 1 x B (tests/distributed).
    """
    timer = timer or _no_timer
    if batch.advantages is None or batch.returns is None:
        raise ValueError("ppo_update needs batch.advantages and batch.returns (run the advantage estimator first)")
    loss = algos.policy_loss(cfg.policy_loss)
    B = len(batch)
    adv = batch.advantages
    if dist.active:
        if cfg.normalize_advantages and dist.sum(torch.tensor([float(B)]))[0] > 1:
            adv = algos.global_whiten(adv, None, dist.sum)
    elif cfg.normalize_advantages and B > 1:
        adv = algos.masked_whiten(adv)
    sizes = dist.gather(B)
    offset, total_b = sum(sizes[:dist.rank]), sum(sizes)
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
        order = list(range(total_b))
        rng.shuffle(order)
        for start in range(0, total_b, cfg.minibatch_size):
            # This rank's samples among the global minibatch (alone: the whole of it).
            idx = [g - offset for g in order[start:start + cfg.minibatch_size] if offset <= g < offset + B]
            pieces = _chunks(dist, batch, idx, cfg.micro_batch_size)
            optimizer.zero_grad(set_to_none=True)
            bad = False
            for j, (piece, weights) in enumerate(pieces):
                with timer("forward"):
                    total, metrics = _minibatch_loss(policy, batch.select(piece), adv[piece], cfg, entropy_coef,
                                                     loss, weights, dist)
                if total is None:  # approx KL already past 1.5 x target_kl: stop before this step
                    stopped_early = 1
                    add(metrics)
                    break
                if dist.any(not torch.isfinite(total)):
                    bad = True
                    break
                # Gradients are reduced across ranks once per step, after the last micro-batch.
                with timer("backward"), dist.no_sync(policy, last=j == len(pieces) - 1):
                    dist.backward(total)
                if weights is None or weights[0] > 0:  # a weight-0 stand-in's figures say nothing
                    metrics["loss/total"] = total.item()
                    add(metrics)
            if stopped_early:
                optimizer.zero_grad(set_to_none=True)
                break
            if bad:
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            with timer("optimizer"):
                gn = dist.step(optimizer, params, cfg.max_grad_norm)  # clipped; no step when non-finite
            if not torch.isfinite(gn):
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            steps += 1
            add({"policy/grad_norm": gn.item()})
    if scheduler is not None:
        scheduler.step()
    out = {k: sums[k] / counts[k] for k in sums}
    out["update/skipped_steps"] = skipped
    out["update/optimizer_steps"] = steps
    out["update/stopped_early"] = stopped_early
    return out
