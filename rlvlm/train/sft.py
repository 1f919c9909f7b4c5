"""Supervised warm-start on oracle demonstrations (chain-of-thought JSON replies).

As in RL4VLM, SFT gives the model the reply format and RL gives it the skill:
the loss is the negative log-likelihood of the completion tokens only (the
prompt and image are conditioning), including the end-of-turn token so the
model learns to stop.
"""

from __future__ import annotations

import random
import time
from typing import Callable

import torch

from rlvlm.envs.base import TextImageEnv
from rlvlm.envs.policies import oracle
from rlvlm.errors import ConfigError
from rlvlm.models.policy import Policy
from rlvlm.train.distributed import SINGLE, Distributed


def collect_demonstrations(make_env: Callable[[], object], episodes: int, seed: int,
                           ask_rate: float = 0.0, random_action_rate: float = 0.0) -> list[tuple[dict, str]]:
    """(observation, oracle reply) pairs from `episodes` oracle-played episodes, seeds seed, seed+1, ...

    The oracle never asks for help (the guessing baseline of the help
    experiments). With `ask_rate` > 0 (envs under AskForHelp), that fraction
    of steps asks instead, drawn at random whatever the image shows: the model
    learns the ask reply exists, and RL has to learn when it pays.

    With `random_action_rate` > 0, that fraction of steps takes a uniformly
    random legal action, written as the oracle would have written it had it
    chosen that action (`env.demo_reply`: the same reading of the image, that
    decision). At 1.0 the demonstrations teach the reply format and the
    reading, and carry no information about which action is right, so the
    warm-start's greedy success does not depend on how much of the decision
    SFT happened to pick up: RL has to learn it.
    """

    env = make_env()
    pi = oracle(env, ask=False)
    if ask_rate > 0 and pi.helper is None:
        raise ConfigError(f"sft.ask_rate={ask_rate} needs an env with the ask action; fix: set env.kwargs.ask_for_help")
    base, legal = pi.base, tuple(pi.base.legal_actions or ())
    if random_action_rate > 0:
        if not legal or type(base).demo_reply is TextImageEnv.demo_reply:
            raise ConfigError(f"sft.random_action_rate={random_action_rate}: {type(base).__name__} cannot write a "
                              "demonstration for a chosen action; fix: set sft.random_action_rate=0")
    rng = random.Random(seed)
    pairs: list[tuple[dict, str]] = []
    for k in range(episodes):
        obs, info = env.reset(seed=seed + k)
        done = False
        while not done:
            ask = ask_rate > 0 and not info.get("revealed") and rng.random() < ask_rate
            if ask:
                reply = pi.helper.ask_reply()
            elif random_action_rate > 0 and rng.random() < random_action_rate:
                reply = base.demo_reply(info, rng.choice(legal))
            else:
                reply = pi.act(obs, info)
            pairs.append((obs, reply))
            obs, _, terminated, truncated, info = env.step(reply)
            done = terminated or truncated
    return pairs


def sft_train(policy: Policy, demos: list[tuple[dict, str]], *, epochs: int, lr: float, batch_size: int,
              seed: int, progress: Callable[[str], None] | None = None, dist: Distributed = SINGLE) -> dict:
    """Fit the policy to the demonstrations; returns loss and timing metrics.

    Data-parallel (`dist`, the learner already wrapped): every rank holds all the
    demonstrations and draws the same order; each `batch_size` batch is split over
    the ranks, and each rank's token-mean NLL is weighted by W·T_r/T (its share of
    the batch's tokens), so the averaged gradient is that of the whole batch's mean.
    """
    if not demos:
        return {"sft/examples": 0}
    samples = policy.samples_from_text([o for o, _ in demos], [r for _, r in demos])
    params = [p for n, p in policy.named_parameters() if p.requires_grad and not n.startswith("value_head")]
    opt = dist.prepare_optimizer(policy, torch.optim.AdamW(params, lr=lr, weight_decay=0.0), 1.0)
    rng = random.Random(seed)
    order = list(range(len(samples)))
    t0 = time.perf_counter()
    losses: list[float] = []
    policy.train()
    for epoch in range(epochs):
        rng.shuffle(order)
        epoch_losses = []
        for start in range(0, len(order), batch_size):
            batch = [samples[i] for i in order[start:start + batch_size]]
            if dist.active:
                loss, nll = _shard_nll(policy, batch, dist)
            else:
                out = policy.score(batch)
                loss = nll = -(out.logprobs * out.mask).sum() / out.mask.sum()
            opt.zero_grad(set_to_none=True)
            dist.backward(loss)
            dist.step(opt, params, 1.0)
            epoch_losses.append(nll.item())
        losses.append(sum(epoch_losses) / len(epoch_losses))
        if progress:
            progress(f"sft epoch {epoch + 1}/{epochs}: nll {losses[-1]:.4f}")
    return {"sft/examples": len(samples), "sft/final_nll": losses[-1], "sft/first_nll": losses[0],
            "time/sft": time.perf_counter() - t0}


def _shard_nll(policy: Policy, batch: list, dist: Distributed) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's weighted loss and the whole batch's token-mean NLL (see `sft_train`)."""
    mine = [batch[i] for i in dist.shard(len(batch))]
    out = policy.score(mine or batch[:1])  # a rank with no share scores one sample at weight 0
    nll_sum = -(out.logprobs * out.mask).sum()
    tokens = out.mask.sum().to(nll_sum.dtype)
    if not mine:
        nll_sum, tokens = nll_sum * 0.0, tokens * 0.0
    total = dist.sum(torch.stack([nll_sum.detach(), tokens]))
    loss = dist.world * nll_sum / total[1].clamp(min=1)
    if out.values is not None:  # DDP reduces every parameter's gradient: keep the value head in the graph
        loss = loss + 0.0 * out.values.sum()
    return loss, total[0] / total[1].clamp(min=1)
