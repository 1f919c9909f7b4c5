"""FSDP2 (`torch.distributed.fsdp.fully_shard`) over the policy's `Learner`.

Chosen with accelerate's own config (`distributed_type: FSDP`, `fsdp_version: 2`;
configs/accelerate/fsdp2.yaml), which `accelerate launch` turns into
`ACCELERATE_USE_FSDP` / `FSDP_*` variables. rlvlm applies `fully_shard` itself
instead of through `Accelerator.prepare`, for two reasons:

- accelerate only enters its FSDP mode on GPUs (on CPU it quietly falls back to
  DDP), so the one code path that runs here on 2 gloo processes in CI is the
  one that runs on GPUs;
- an RL run also *generates* with the sharded model, and each rank generates a
  different number of tokens: per-layer all-gathers during decoding would
  deadlock. `full_weights` all-gathers every layer once (all ranks together)
  and keeps the weights whole until generation ends, as a ZeRO-3 run with HF
  generate does; training steps run sharded.

Units: every module whose class the model lists in `_no_split_modules`
(decoder layers, vision blocks), then the learner itself (embeddings, heads,
value head). LoRA works: FSDP2 shards each parameter, frozen or not.

Checkpoints gather full state dicts (`get_model_state_dict` /
`get_optimizer_state_dict`, full and on CPU, at rank 0) so a saved policy is an
ordinary policy directory, and resuming scatters them back.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard

from rlvlm.errors import ConfigError
from rlvlm.train.backends import Alone, env_flag as _flag, register_parallel_backend


@dataclass
class FSDP2:
    """How to shard (from accelerate's FSDP config), and the sharded modules once wrapped."""

    reshard_after_forward: bool = True
    offload_params: bool = False

    @classmethod
    def from_environment(cls) -> "FSDP2 | None":
        """The FSDP settings `accelerate launch` passed down, or None when FSDP is not asked for."""
        if not _flag("ACCELERATE_USE_FSDP"):
            return None
        version = os.environ.get("FSDP_VERSION", "1")
        if version != "2":
            raise ConfigError(f"the accelerate config asks for fsdp_version {version}; rlvlm shards with FSDP2: "
                              "set fsdp_version: 2 (configs/accelerate/fsdp2.yaml)")
        return cls(reshard_after_forward=_flag("FSDP_RESHARD_AFTER_FORWARD", "true"),
                   offload_params=_flag("FSDP_OFFLOAD_PARAMS"))

    def wrap(self, learner: nn.Module, block_classes: set[str]) -> list[FSDPModule]:
        """Shard each block, then the learner; returns every FSDP unit (outermost last)."""
        kw: dict = {"reshard_after_forward": self.reshard_after_forward}
        if self.offload_params:
            kw["offload_policy"] = CPUOffloadPolicy()
        blocks = [m for m in learner.modules() if type(m).__name__ in block_classes]
        if not blocks:
            raise ConfigError(f"FSDP found no blocks to shard in {type(learner.hf).__name__} (its _no_split_modules "
                              f"are {sorted(block_classes)}); use DDP (accelerate launch --multi_gpu) for this model")
        for m in blocks:
            fully_shard(m, **kw)
        fully_shard(learner, **kw)
        # The learner is the root: initialise it now, or the first forward through a block
        # (generation calls the model, not the learner) would make that block a root of its own.
        learner._get_fsdp_state()._lazy_init()
        return [m for m in learner.modules() if isinstance(m, FSDPModule)]


@contextmanager
def full_weights(units: list[FSDPModule]) -> Iterator[None]:
    """All-gather every unit once and keep it whole until the block ends (collective: every rank
    enters together). Inside, forward passes need no communication, so ranks may run different
    numbers of them (generation, evaluation, no-grad scoring of their own shards)."""
    for u in units:
        u.unshard()
        u.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for u in units:
            u.reshard()
            u.set_reshard_after_forward(True)


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(learner: nn.Module) -> dict[str, torch.Tensor]:
    """The learner's whole state dict on rank 0's CPU (empty elsewhere); collective."""
    return get_model_state_dict(learner, options=_FULL)


def load_full_model_state(learner: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Scatter a whole state dict (read by every rank) into the sharded learner."""
    set_model_state_dict(learner, state, options=StateDictOptions(full_state_dict=True))


class OptimizerView:
    """An optimizer's state as a whole (parameter-name keyed) dict, for checkpoints.

    `state_dict()` is collective (call it on every rank); `load_state_dict`
    takes the whole dict on every rank and keeps each rank's shard.
    """

    def __init__(self, learner: nn.Module, optimizer: torch.optim.Optimizer):
        self.learner, self.optimizer = learner, optimizer

    def state_dict(self) -> dict:
        return get_optimizer_state_dict(self.learner, self.optimizer, options=_FULL)

    def load_state_dict(self, state: dict) -> None:
        set_optimizer_state_dict(self.learner, self.optimizer, state, options=StateDictOptions(full_state_dict=True))


def global_grad_norm(norm: torch.Tensor) -> torch.Tensor:
    """`clip_grad_norm_` over DTensor gradients returns a DTensor; the number itself, on CPU."""
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return norm.detach().float().cpu()


@register_parallel_backend("fsdp")
class FullyShardedBackend(Alone):
    """The parallel backend (backends.py) for FSDP2: see the module docstring."""

    name = "FSDP2"

    def __init__(self, dist: Any, settings: FSDP2):
        super().__init__(dist)
        self.settings = settings
        self.units: list[FSDPModule] = []  # once the learner is wrapped

    @classmethod
    def from_environment(cls, dist: Any) -> "FullyShardedBackend":
        return cls(dist, FSDP2.from_environment() or FSDP2())

    def wrap_learner(self, policy) -> None:
        self.units = self.settings.wrap(policy.learner, set(getattr(policy.hf, "_no_split_modules", None) or []))
        policy.use_engine(policy.learner)  # fully_shard wraps in place

    def full_weights(self):
        return full_weights(self.units) if self.units else nullcontext()

    def no_sync(self, policy, last: bool):
        return nullcontext() if last else _no_gradient_sync(policy.learner)

    def clip(self, params, max_norm: float) -> torch.Tensor:
        return global_grad_norm(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def learner_state(self, policy) -> dict:
        return full_model_state(policy.learner)

    def load_learner_state(self, policy, state: dict) -> None:
        load_full_model_state(policy.learner, state)

    def optimizer_view(self, policy, optimizer):
        return OptimizerView(policy.learner, optimizer)


@contextmanager
def _no_gradient_sync(learner) -> Iterator[None]:
    learner.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        learner.set_requires_gradient_sync(True)
