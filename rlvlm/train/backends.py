"""What wraps the learner and steps the optimizer: one process, DDP, FSDP2 or DeepSpeed ZeRO.

The parallel backend is an open axis, so it is a registry (`PARALLEL_BACKENDS`).
`Distributed` picks one from the launcher's environment (accelerate's own config
files set it; `backend_name_from_environment`) and the trainers call only the
methods below, whatever runs underneath:

    wrap_learner(policy)                    once, before any optimizer exists
    prepare_optimizer(policy, opt, clip)    -> what the trainer steps (ZeRO: its engine)
    full_weights()                          whole weights for uneven forward counts
    no_sync(policy, last)                   gradient accumulation's skipped reductions
    backward(loss)
    step(optimizer, params, max_norm)       clip to the global norm, step if finite; -> the norm
    learner_state / load_learner_state      whole weights for checkpoints
    optimizer_view(policy, optimizer)       whole optimizer state for checkpoints

`Alone` (one process) is the plain PyTorch operation everywhere, so a run
without a launcher is exactly what it was before any of this existed.
FSDP2 lives in sharding.py, ZeRO in zero.py.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any, Callable, Sequence

import torch

from rlvlm.errors import register_into, registered

PARALLEL_BACKENDS: dict[str, type] = {}


def register_parallel_backend(name: str, *, replace: bool = False) -> Callable[[type], type]:
    """Class decorator: a backend class with `from_environment(dist)` and the methods above."""
    def add(cls: type) -> type:
        register_into(PARALLEL_BACKENDS, name, cls, "parallel backend", replace=replace)
        return cls
    return add


def env_flag(name: str, default: str = "false") -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes")


def backend_name_from_environment(world: int) -> str:
    """The backend accelerate's launcher asked for: `accelerate launch --config_file X` turns the
    config's `distributed_type` into these variables (accelerate/utils/launch.py)."""
    if world <= 1:
        return "none"
    if env_flag("ACCELERATE_USE_DEEPSPEED"):
        return "deepspeed"
    if env_flag("ACCELERATE_USE_FSDP"):
        return "fsdp"
    return "ddp"


def make_backend(name: str, dist: Any):
    return registered(PARALLEL_BACKENDS, name, field="distributed_type", what="parallel backend",
                      register="rlvlm.train.backends.register_parallel_backend").from_environment(dist)


@register_parallel_backend("none")
class Alone:
    """One process: every operation is the plain single-process one."""

    name = "none"

    def __init__(self, dist: Any):
        self.dist = dist

    @classmethod
    def from_environment(cls, dist: Any) -> "Alone":
        return cls(dist)

    def wrap_learner(self, policy) -> None:
        pass

    def prepare_optimizer(self, policy, optimizer: torch.optim.Optimizer, max_grad_norm: float):
        return optimizer

    def full_weights(self):
        return nullcontext()

    def no_sync(self, policy, last: bool):
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip(self, params: Sequence[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def step(self, optimizer, params: Sequence[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        """Clip to the global gradient norm and step when it is finite; returns the norm (a
        non-finite one means the step was skipped and the caller clears the gradients)."""
        norm = self.clip(params, max_norm)
        if torch.isfinite(norm):
            optimizer.step()
        return norm

    def learner_state(self, policy) -> dict | None:
        """The learner's whole state dict where the modules do not hold it whole (at rank 0;
        collective), else None: the policy's modules save themselves."""
        return None

    def load_learner_state(self, policy, state: dict) -> None:
        policy.learner.load_state_dict(state)

    def optimizer_view(self, policy, optimizer):
        """What checkpoints save and load as the optimizer: itself, or an object whose
        (collective) `state_dict` is the whole, parameter-indexed state."""
        return optimizer


@register_parallel_backend("ddp")
class DataParallel(Alone):
    """DDP through `accelerate.Accelerator.prepare_model`: gradients are averaged in backward."""

    name = "DDP"

    def __init__(self, dist: Any):
        super().__init__(dist)
        self.accelerator = dist.accelerator

    def wrap_learner(self, policy) -> None:
        policy.use_engine(self.accelerator.prepare_model(policy.learner))

    def no_sync(self, policy, last: bool):
        return nullcontext() if last else self.accelerator.no_sync(policy.engine)

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip(self, params, max_norm: float) -> torch.Tensor:
        return torch.as_tensor(self.accelerator.clip_grad_norm_(params, max_norm)).detach().float().cpu()
