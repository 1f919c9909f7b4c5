"""The open axes the trainer calls: advantage estimators and policy losses.

An advantage estimator is `fn(batch, cfg) -> (advantages, returns)`: it reads
a `RolloutBatch` (rewards already shaped) and the algorithm config (`gamma`,
`lam`, ... read as attributes), and returns two `(B,)` tensors, one per
transition: the advantages the policy loss weighs, and the returns a critic
would regress on. It declares what it needs, and the trainer obeys:

- `needs_critic`: values for every step (a value head, rollouts collected with
  values); a critic is trained only for such an estimator;
- `needs_groups`: groups of >= 2 episodes from one reset seed
  (`rollout.group_size`);
- `whole_episodes`: the rollout plays every episode to its end
  (`collect_episodes`) instead of T lockstep steps (`collect_steps`).

A policy loss is `fn(logp, old_logp, advantages, mask, cfg) -> (loss, metrics)`:
`(B,)` action log-probs with mask None, or `(B, Tc)` token log-probs with the
`(B, Tc)` completion mask; `cfg` gives the clip range and the aggregation.

Register with the decorators; the names are what `algo.advantage` and
`algo.policy_loss` accept. The built-in entries are in `estimators.py`.

    @register_advantage("my_estimator", whole_episodes=True)
    def my_estimator(batch, cfg):
        ret, _, row = batch.episode_sums(batch.rewards)
        return (ret - ret.mean())[row], ret[row]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from rlvlm.algos.batch import RolloutBatch
from rlvlm.errors import register_into, registered

AdvantageFn = Callable[[RolloutBatch, Any], tuple[torch.Tensor, torch.Tensor]]
PolicyLossFn = Callable[..., tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class AdvantageEstimatorSpec:
    """A registered estimator and what it needs from the rollout."""

    name: str
    fn: AdvantageFn
    needs_critic: bool
    needs_groups: bool
    whole_episodes: bool
    summary: str

    def __call__(self, batch: RolloutBatch, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Advantages and returns, checked: one finite-shaped `(B,)` pair per transition."""
        if self.needs_critic:
            batch.require_values(f"algo.advantage={self.name}")
        adv, ret = self.fn(batch, cfg)
        for what, x in (("advantages", adv), ("returns", ret)):
            if not torch.is_tensor(x) or tuple(x.shape) != (len(batch),):
                shape = list(x.shape) if torch.is_tensor(x) else type(x).__name__
                raise ValueError(f"advantage estimator {self.name!r} returned {what} of shape {shape}; "
                                 f"expected [{len(batch)}] (one per transition)")
        return adv, ret


@dataclass(frozen=True)
class PolicyLossSpec:
    name: str
    fn: PolicyLossFn
    summary: str


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimatorSpec] = {}
POLICY_LOSSES: dict[str, PolicyLossSpec] = {}


def _first_line(fn: Callable, summary: str | None) -> str:
    if summary:
        return summary
    doc = (fn.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else fn.__name__


def register_advantage(name: str, *, needs_critic: bool = False, needs_groups: bool = False,
                       whole_episodes: bool | None = None, summary: str | None = None,
                       replace: bool = False) -> Callable[[AdvantageFn], AdvantageFn]:
    """Decorator: register `fn(batch, cfg) -> (advantages, returns)` under `name`.

    `whole_episodes` defaults to `not needs_critic`: a critic bootstraps across
    the rollout boundary, an estimator without one needs complete returns.
    A second registration of a name fails unless `replace=True`.
    """
    def deco(fn: AdvantageFn) -> AdvantageFn:
        register_into(ADVANTAGE_ESTIMATORS, name, AdvantageEstimatorSpec(
            name, fn, needs_critic, needs_groups, (not needs_critic) if whole_episodes is None else whole_episodes,
            _first_line(fn, summary)), "advantage estimator", replace=replace)
        return fn
    return deco


def register_policy_loss(name: str, *, summary: str | None = None,
                         replace: bool = False) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Decorator: register `fn(logp, old_logp, advantages, mask, cfg) -> (loss, metrics)` under `name`."""
    def deco(fn: PolicyLossFn) -> PolicyLossFn:
        register_into(POLICY_LOSSES, name, PolicyLossSpec(name, fn, _first_line(fn, summary)), "policy loss",
                     replace=replace)
        return fn
    return deco


def advantage_estimator(name: str) -> AdvantageEstimatorSpec:
    """The registered estimator `name`; a ConfigError naming `algo.advantage` and the choices if unknown."""
    return registered(ADVANTAGE_ESTIMATORS, name, field="algo.advantage", what="advantage estimator",
                           register="rlvlm.algos.register_advantage")


def policy_loss(name: str) -> PolicyLossSpec:
    """The registered policy loss `name`; a ConfigError naming `algo.policy_loss` if unknown."""
    return registered(POLICY_LOSSES, name, field="algo.policy_loss", what="policy loss",
                           register="rlvlm.algos.register_policy_loss")
