"""The process group a run belongs to: one process, or N under `accelerate launch` / `torchrun`.

rlvlm has no distributed engine of its own. Under a launcher, `Distributed`
holds an `accelerate.Accelerator`, which reads the launcher's environment
(DDP, FSDP or DeepSpeed from the accelerate config) and wraps the policy's
`Learner` and the optimizer. Everything a data-parallel RL run must agree on
goes through the few collectives here:

- `sum` / `gather` of tensors and Python objects (global advantage
  statistics, minibatch token counts, metrics, evaluation episodes, the
  ranks' checkpoint states);
- `prepare` (wrap the learner; the policy's `score` then runs through the
  wrapper, so gradients are reduced) and `backward` / `clip_grad_norm`.

Without a launcher (`WORLD_SIZE` unset or 1) no Accelerator is made and each
method is the plain single-process operation, so a one-process run is
exactly what it was before any of this existed (same floats, same draws).
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as tdist
from accelerate import Accelerator

from rlvlm.errors import ConfigError
from rlvlm.train import sharding


class Distributed:
    """Rank, world size and the collectives of one run (see the module docstring)."""

    def __init__(self, accelerator: Accelerator | None = None):
        self.accelerator = accelerator
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.world = accelerator.num_processes if accelerator is not None else 1
        # FSDP2 when accelerate's config asks for it (sharding.py), else DDP through accelerate.
        self.fsdp = sharding.FSDP2.from_environment() if self.world > 1 else None
        self._units: list = []  # the FSDP units, once the learner is wrapped

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
        """What wraps the learner: none | FSDP2 | accelerate's type (MULTI_GPU / MULTI_CPU: DDP, DEEPSPEED)."""
        if self.accelerator is None:
            return "none"
        return "FSDP2" if self.fsdp is not None else str(self.accelerator.distributed_type).split(".")[-1]

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
    def wrap_learner(self, policy) -> None:
        """Wrap the policy's learner for the launcher's backend (DDP: gradients are averaged over
        ranks in backward); `policy.score` calls the wrapper from then on. Alone: nothing happens.

        Call it before any optimizer over the policy's parameters is made.
        """
        if self.fsdp is not None:
            self._units = self.fsdp.wrap(policy.learner, set(getattr(policy.hf, "_no_split_modules", None) or []))
            policy.use_engine(policy.learner)  # fully_shard wraps in place
        elif self.active:
            policy.use_engine(self.accelerator.prepare_model(policy.learner))

    def full_weights(self, policy=None):
        """Whole weights on every rank for the block (FSDP: one all-gather, see sharding.full_weights):
        around generation, evaluation and no-grad scoring, whose forward counts differ between ranks.
        Without FSDP the weights are whole already and this does nothing."""
        return sharding.full_weights(self._units) if self._units else nullcontext()

    def no_sync(self, policy, last: bool):
        """Around a micro-batch's backward: skip the cross-rank gradient reduction unless it is the
        step's `last` one (gradient accumulation reduces once per optimizer step)."""
        if last or not self.active:
            return nullcontext()
        if self.fsdp is not None:
            return _fsdp_no_sync(policy.learner)
        return self.accelerator.no_sync(policy.engine)

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

    def backward(self, loss: torch.Tensor) -> None:
        if self.active and self.fsdp is None:
            self.accelerator.backward(loss)
        else:
            loss.backward()  # FSDP2's hooks reduce-scatter the gradients

    def clip_grad_norm(self, params: Sequence[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        """Clip to the global gradient norm (over every shard, with FSDP / ZeRO); returns it."""
        if self.fsdp is not None:
            return sharding.global_grad_norm(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if self.active:
            return torch.as_tensor(self.accelerator.clip_grad_norm_(params, max_norm)).detach().float().cpu()
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    # ------------------------------------------------------------- checkpoints
    def learner_state(self, policy) -> dict | None:
        """FSDP: the learner's whole state dict (at rank 0; collective). Otherwise None: the
        policy's own modules hold whole weights and save themselves."""
        return sharding.full_model_state(policy.learner) if self.fsdp is not None else None

    def load_learner_state(self, policy, state: dict) -> None:
        """Put a whole learner state dict (model + value head) into the possibly sharded learner."""
        if self.fsdp is not None:
            sharding.load_full_model_state(policy.learner, state)
        else:
            policy.learner.load_state_dict(state)

    def optimizer_view(self, policy, optimizer):
        """What checkpoints save and load as the optimizer: itself, or under FSDP its whole
        (parameter-name keyed) state, gathered and scattered (sharding.OptimizerView)."""
        return sharding.OptimizerView(policy.learner, optimizer) if self.fsdp is not None else optimizer

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


@contextmanager
def _fsdp_no_sync(learner) -> Iterator[None]:
    learner.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        learner.set_requires_gradient_sync(True)


def single_process_only(command: str) -> None:
    """Refuse to run `command` under a multi-process launcher, where every rank would run the whole
    job and write the same output directory."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise ConfigError(f"{command} runs in one process, but a launcher started {world}; run it without "
                          f"`accelerate launch` / torchrun (only `rlvlm train` is data-parallel so far)")


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
