"""`TrainState`: everything a run needs to continue exactly, saved and restored whole.

A checkpoint holds the policy (weights, LoRA adapter, value head), the frozen
KL reference when the run has its own copy, the optimizer and lr schedule, the
global random streams, the collector's env replay state, the reward
normaliser, the entropy controller, the monitors, the report so far and the
phase timings. Resuming restores every one of them, so a resumed run is the
uninterrupted run from that update on (tests/integration/test_resume.py).

Why the reference is saved: with `model.reference=copy` the reference is the
policy as it was when RL started (after the warm-start), which is neither the
model the run was started from nor the checkpoint's trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rlvlm.models.policy import load_policy
from rlvlm.train.checkpoint import (
    CheckpointError, capture_rng_state, load_checkpoint, load_state, policy_dir, resolve_checkpoint,
    restore_rng_state, save_checkpoint,
)
from rlvlm.train.distributed import SINGLE, Distributed

REFERENCE_STATE = "reference"


@dataclass
class TrainState:
    """The live objects of one RL run, plus its counters and report."""

    policy: Any
    optimizer: Any
    scheduler: Any
    entropy_ctl: Any
    collector: Any
    scaler: Any = None  # reward normaliser (algo.reward_norm), or None
    monitors: dict[str, Any] = field(default_factory=dict)  # name -> object with state_dict/load_state_dict
    update: int = 0
    env_steps: int = 0
    report: dict = field(default_factory=dict)
    phase_totals: dict[str, float] = field(default_factory=dict)

    def _rank_state(self) -> dict:
        """What differs between data-parallel ranks: random streams, envs, the per-env reward normaliser."""
        return {"rng": capture_rng_state(), "collector": self.collector.state_dict(),
                "reward_scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def save(self, run_dir: str | Path, *, config_dict: dict | None = None, keep_last: int | None = None,
             dist: Distributed = SINGLE) -> Path | None:
        """Write `run_dir/checkpoints/step-{update}/` (atomically; see `save_checkpoint`).

        Data-parallel: a collective. Every rank sends rank 0 its own streams, env
        replay state and reward normaliser (`rank{r}` states); rank 0 alone writes
        the checkpoint (the weights and optimizer are the same on every rank under
        DDP) and returns its path, the others None.
        """
        ranks = dist.gather(self._rank_state()) if dist.active else None
        # Under FSDP2 / ZeRO the weights or the optimizer state are sharded: every rank takes part
        # in gathering them whole (to rank 0) before rank 0 writes an ordinary checkpoint.
        learner_state = dist.learner_state(self.policy)
        optimizer = dist.optimizer_view(self.policy, self.optimizer)
        if optimizer is not self.optimizer:
            optimizer = _SavedState(optimizer.state_dict())
        if not dist.is_main:
            dist.barrier()
            return None
        extra = {
            "update": self.update, "env_steps": self.env_steps, "collector": self.collector.state_dict(),
            "entropy_ctl": self.entropy_ctl.state_dict(),
            "reward_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "report": self.report, "phase_totals": self.phase_totals,
            "monitors": {k: m.state_dict() for k, m in self.monitors.items()},
            "world_size": dist.world,
        }
        reference = self.policy.reference
        states = {REFERENCE_STATE: reference.state_dict()} if reference is not None else {}
        states.update({f"rank{r}": ranks[r] for r in range(1, dist.world)} if ranks else {})
        save_policy = self.policy.save if learner_state is None else partial(self.policy.save,
                                                                              learner_state=learner_state)
        path = save_checkpoint(run_dir, self.update, policy_save_fn=save_policy, optimizer=optimizer,
                               scheduler=self.scheduler, extra_state=extra, config_dict=config_dict,
                               keep_last=keep_last, states=states)
        dist.barrier()
        return path

    def restore(self, checkpoint: str | Path, dist: Distributed = SINGLE) -> None:
        """Continue from `checkpoint` (a checkpoint folder or a run directory): every part, in place.

        Data-parallel, each rank takes its own streams and envs (`rank{r}`); the
        checkpoint must have been written by as many processes as resume it.
        """
        ckpt = resolve_checkpoint(checkpoint)
        load_weights(self.policy, ckpt, dist)
        # and the random streams
        extra = load_checkpoint(ckpt, dist.optimizer_view(self.policy, self.optimizer), self.scheduler)
        saved_world = int(extra.get("world_size", 1))
        if saved_world != dist.world:
            raise CheckpointError(f"{ckpt} was saved by {saved_world} process(es) and this run has {dist.world}; "
                                  f"resume with {saved_world} (accelerate launch --num_processes {saved_world})")
        if dist.rank > 0:
            mine = load_state(ckpt, f"rank{dist.rank}")
            restore_rng_state(mine["rng"])
            extra = {**extra, "collector": mine["collector"], "reward_scaler": mine["reward_scaler"]}
        self.entropy_ctl.load_state_dict(extra["entropy_ctl"])
        if self.scaler is not None and extra.get("reward_scaler"):
            self.scaler.load_state_dict(extra["reward_scaler"])
        self.collector.load_state_dict(extra["collector"])
        for name, monitor in self.monitors.items():
            monitor.load_state_dict(extra.get("monitors", {}).get(name, {}))
        self.update, self.env_steps = int(extra["update"]), int(extra["env_steps"])
        self.report = dict(extra.get("report") or {})
        self.phase_totals.clear()  # in place: the run's logger may hold this dict
        self.phase_totals.update(extra.get("phase_totals", {}))


class _SavedState:
    """A state dict gathered beforehand, in the shape `save_checkpoint` saves an optimizer."""

    def __init__(self, state: dict):
        self._state = state

    def state_dict(self) -> dict:
        return self._state


def load_weights(policy, checkpoint: str | Path, dist: Distributed = SINGLE) -> None:
    """Put the checkpoint's policy (and its saved KL reference) into `policy`, in place."""
    ckpt = resolve_checkpoint(checkpoint)
    saved = load_policy(policy_dir(ckpt), reference="none")  # its own reference copy would only be overwritten
    if dist.active:  # through the backend: it may shard the weights (FSDP2, ZeRO-3) or hold a master copy (ZeRO)
        missing, unexpected = _load_into_backend(policy, saved, dist)
    else:
        missing, unexpected = policy.load_state_dict(saved.state_dict(), strict=False)
    bad = [k for k in missing if not k.startswith("reference.")] + list(unexpected)
    if bad:
        raise CheckpointError(f"the policy in {ckpt} does not fit this run's model ({len(bad)} mismatched tensors, "
                              f"e.g. {bad[0]}); resume with the same model and LoRA settings as the saved run")
    if policy.reference is not None:
        try:
            policy.reference.load_state_dict(load_state(ckpt, REFERENCE_STATE))
        except CheckpointError:
            # A checkpoint from before the reference was saved: the best left is the starting
            # weights the reference was built from, not the trained ones.
            pass


def _load_into_backend(policy, saved, dist: Distributed) -> tuple[list[str], list[str]]:
    """Load `saved`'s learner into `policy.learner` through the parallel backend; (missing,
    unexpected) keys. The key sets are compared by name only: a sharded learner's own tensors
    hold just this rank's part."""
    state = saved.learner.state_dict()
    want = set(policy.learner.state_dict())
    missing, unexpected = sorted(want - set(state)), sorted(set(state) - want)
    if not missing and not unexpected:
        dist.load_learner_state(policy, state)
    return missing, unexpected
