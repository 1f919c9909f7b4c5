"""The process group a run belongs to: one process, or N under `accelerate launch` / `torchrun`.

rlvlm has no distributed engine of its own. Under a launcher, `Distributed`
holds an `accelerate.Accelerator` (the process group) and a parallel backend
(backends.py: DDP, FSDP2 or DeepSpeed ZeRO, as the accelerate config file
says) that wraps the policy's `Learner` and steps the optimizer. Everything a
data-parallel RL run must agree on goes through the few operations here:

- `sum` / `gather` of tensors and Python objects (global advantage
  statistics, minibatch token counts, metrics, evaluation episodes, the
  ranks' checkpoint states);
- the backend's `wrap_learner` / `prepare_optimizer` (the policy's `score`
  then runs through the wrapper, so gradients are reduced), `backward`,
  `step` and the whole-state views that checkpoints use.

Without a launcher (`WORLD_SIZE` unset or 1) no Accelerator is made and each
method is the plain single-process operation, so a one-process run is
exactly what it was before any of this existed (same floats, same draws).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
import torch.distributed as tdist
from accelerate import Accelerator

from rlvlm.errors import ConfigError
from rlvlm.train import sharding, zero  # noqa: F401  (they register the FSDP2 and DeepSpeed backends)
from rlvlm.train.backends import backend_name_from_environment, make_backend


class Distributed:
    """Rank, world size and the collectives of one run (see the module docstring)."""

    def __init__(self, accelerator: Accelerator | None = None):
        self.accelerator = accelerator
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.world = accelerator.num_processes if accelerator is not None else 1
        # What wraps the learner (backends.py): the launcher's accelerate config decides.
        self.engine = make_backend(backend_name_from_environment(self.world), self)

    @classmethod
    def from_environment(cls) -> "Distributed":
        """N processes when started by a launcher (WORLD_SIZE > 1), else one."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls(None)
        # Without a GPU, Accelerator() quietly makes a 1-process state; cpu=True joins the
        # launcher's process group over gloo (how the CI tests run 2 processes).
        acc = Accelerator(cpu=not torch.cuda.is_available())
        if acc.num_processes != int(os.environ["WORLD_SIZE"]):
            raise RuntimeError(f"the launcher started {os.environ['WORLD_SIZE']} processes but accelerate joined "
                               f"{acc.num_processes}; launch with `accelerate launch --num_processes N` or torchrun")
        return cls(acc)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def backend(self) -> str:
        """What wraps the learner: none | DDP | FSDP2 | DeepSpeed ZeRO-<stage>."""
        return self.engine.name

    # ------------------------------------------------------------ collectives
    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of `t` over ranks (a new tensor; `t` itself when alone)."""
        if not self.active:
            return t
        out = t.detach().clone().to(self._comm_device)
        tdist.all_reduce(out)
        return out.to(t.device)

    def max(self, value: float) -> float:
        if not self.active:
            return value
        out = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device)
        tdist.all_reduce(out, op=tdist.ReduceOp.MAX)
        return float(out.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any: decisions that change the number of
        collective calls (skip a step, stop early) must be the same everywhere."""
        return self.max(1.0 if flag else 0.0) > 0

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (pickled; for small Python objects)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            self.accelerator.wait_for_everyone()

    @property
    def _comm_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo takes CPU ones.
        return self.accelerator.device if self.accelerator.device.type == "cuda" else torch.device("cpu")

    # --------------------------------------------------------------- training
    # The parallel backend's operations (backends.py): one process, DDP, FSDP2 or DeepSpeed ZeRO.
    def wrap_learner(self, policy) -> None:
        """Wrap the policy's learner for the launcher's backend; `policy.score` calls the wrapper
        from then on. Alone: nothing happens. Call it before any optimizer over its parameters
        is made."""
        self.engine.wrap_learner(policy)

    def prepare_optimizer(self, policy, optimizer: torch.optim.Optimizer, max_grad_norm: float):
        """What the trainer steps: `optimizer` itself, or under DeepSpeed the engine that owns it
        (made here, because ZeRO partitions the optimizer's state). Every trainer calls it right
        after making an optimizer; `max_grad_norm` is the norm `step` will clip to."""
        return self.engine.prepare_optimizer(policy, optimizer, max_grad_norm)

    def full_weights(self):
        """Whole weights on every rank for the block (FSDP2 / ZeRO-3: one all-gather): around
        generation, evaluation and no-grad scoring, whose forward counts differ between ranks.
        Where the weights are whole already this does nothing."""
        return self.engine.full_weights()

    def no_sync(self, policy, last: bool):
        """Around a micro-batch's backward: skip the cross-rank gradient reduction unless it is the
        step's `last` one (gradient accumulation reduces once per optimizer step)."""
        return self.engine.no_sync(policy, last)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self, optimizer, params: Sequence[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        """Clip to the global gradient norm (over every shard) and step if it is finite; returns
        the norm. A non-finite norm means no step was taken."""
        return self.engine.step(optimizer, params, max_norm)

    def average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks: DDP's reduction, by hand, for a module
        whose training calls methods other than `forward` (DDP reduces in forward's backward hooks)."""
        if not self.active:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            flat = self.sum(torch.cat([g.reshape(-1) for g in grads])) / self.world
            for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                g.copy_(part.view_as(g))

    # ------------------------------------------------------------- checkpoints
    def learner_state(self, policy) -> dict | None:
        """The learner's whole state dict where it is sharded (at rank 0; collective), else None:
        the policy's own modules hold whole weights and save themselves."""
        return self.engine.learner_state(policy)

    def load_learner_state(self, policy, state: dict) -> None:
        """Put a whole learner state dict (model + value head) into the possibly sharded learner."""
        self.engine.load_learner_state(policy, state)

    def optimizer_view(self, policy, optimizer):
        """What checkpoints save and load as the optimizer: itself, or under FSDP2 / ZeRO its
        whole (parameter-indexed) state, gathered and scattered."""
        return self.engine.optimizer_view(policy, optimizer)

    # ---------------------------------------------------------------- sharding
    def shard(self, n: int) -> range:
        """This rank's contiguous share of `n` items (the first n % world ranks take one more)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))

    def check_divides(self, field: str, value: int) -> None:
        """Refuse a per-run count that cannot be split evenly over the ranks."""
        if value % self.world:
            raise ConfigError(f"{field}={value} is split over {self.world} processes and must be a multiple of "
                              f"{self.world}; fix: set {field}={max(self.world, value // self.world * self.world)}")


def single_process_only(command: str) -> None:
    """Refuse to run `command` under a multi-process launcher, where every rank would run the whole
    job and write the same output directory."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise ConfigError(f"{command} runs in one process, but a launcher started {world}; run it without "
                          "`accelerate launch` / torchrun (train with its SFT warm-start, dpo and reward-model "
                          "are data-parallel)")


def reduce_metrics(dist: Distributed, metrics: dict) -> dict:
    """One row of metrics for the whole run from every rank's row (the same on every rank).

    Counts (`COUNT_KEYS`) are summed, `time/*` take the slowest rank, per-episode
    rates (`EPISODE_KEYS`) are weighted by each rank's finished episodes, and the
    rest are plain means over the ranks that report them.
    """
    if not dist.active:
        return metrics
    rows = dist.gather(metrics)
    out: dict = {}
    for key in dict.fromkeys(k for row in rows for k in row):
        vals = [(row[key], row.get("rollout/episodes", 0)) for row in rows if key in row]
        if key in COUNT_KEYS:
            out[key] = sum(v for v, _ in vals)
        elif all(v == vals[0][0] for v, _ in vals):  # the same everywhere (update, lr): kept as it is
            out[key] = vals[0][0]
        elif key.startswith("time/"):
            out[key] = max(v for v, _ in vals)
        elif key in EPISODE_KEYS and sum(w for _, w in vals) > 0:
            out[key] = sum(v * w for v, w in vals) / sum(w for _, w in vals)
        else:
            out[key] = sum(v for v, _ in vals) / len(vals)
    return out


COUNT_KEYS = frozenset({"rollout/steps", "rollout/episodes", "rollout/env_errors", "rollout/forced_asks"})
EPISODE_KEYS = frozenset({"rollout/success_rate", "rollout/return", "rollout/episode_length"})

SINGLE = Distributed(None)
