"""DeepSpeed ZeRO (stages 1, 2 and 3) over the policy's `Learner`: a parallel backend (backends.py).

Chosen with accelerate's own config (`distributed_type: DEEPSPEED`;
configs/accelerate/zero2.yaml, zero3.yaml), which `accelerate launch` turns
into `ACCELERATE_USE_DEEPSPEED` / `ACCELERATE_DEEPSPEED_*` variables. As with
FSDP2, rlvlm calls the engine itself instead of `Accelerator.prepare`:
accelerate enters its DeepSpeed mode only on GPUs, and an RL run must also
generate with the partitioned model. DeepSpeed is optional
(`pip install 'rlvlm[deepspeed]'`) and imported only when a launch asks for it.

How the trainer's calls map onto the engine:

- `prepare_optimizer` hands rlvlm's own optimizer (AdamW with its parameter
  groups and lr schedule) to `deepspeed.initialize`, which partitions its
  state (and, at stage 3, the weights). One engine lives at a time: the RL
  optimizer's replaces the SFT warm-start's.
- Gradient accumulation uses DeepSpeed's unmanaged mode
  (`managed_gradient_accumulation: false`): every `backward` reduces into the
  partitions and every `step` is a boundary, so a minibatch may have any
  number of micro-batches, as in the other backends.
- `step` clips to `algo.max_grad_norm` inside the engine (the config's
  `gradient_clipping`); a non-finite norm skips the step and clears the
  gradients (DeepSpeed's own overflow rule), which the trainer counts as a
  skipped step. One difference from the other backends: a micro-batch whose
  loss is non-finite after earlier micro-batches were reduced ends the step
  early, and what was already reduced stays in the partitions for the next step.
- `full_weights` (stage 3): one all-gather of every parameter and DeepSpeed's
  per-module hooks removed (`unwrap_model_for_generation`), so ranks may
  decode different numbers of tokens without a collective per layer.
- Checkpoints hold whole weights and a whole, torch-format AdamW state
  (`safe_get_full_*` per parameter), so a saved policy is an ordinary policy
  directory; resuming scatters them back (`safe_set_full_*`).
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import torch

from rlvlm.errors import ConfigError
from rlvlm.train.backends import Alone, register_parallel_backend

# DeepSpeed's config keys that rlvlm sets from its own config (each option declared once).
_OWNED = {
    "optimizer": "the optimizer is algo.lr / algo.weight_decay (AdamW)",
    "scheduler": "the lr schedule is algo.lr_schedule / algo.warmup_updates",
    "gradient_clipping": "clipping is algo.max_grad_norm",
    "gradient_accumulation_steps": "accumulation is algo.micro_batch_size",
}


_ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")  # what checkpoints carry per parameter (the trainers use AdamW)


def _deepspeed():
    # Optional and slow to import (it probes the machine's accelerators): only a DeepSpeed launch loads it.
    try:
        import deepspeed
    except ImportError:
        raise ConfigError("the accelerate config asks for DeepSpeed (distributed_type: DEEPSPEED), which is not "
                          "installed; fix: pip install 'rlvlm[deepspeed]', or launch with "
                          "configs/accelerate/ddp.yaml or fsdp2.yaml") from None
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # its per-step INFO lines would bury rlvlm's
    return deepspeed


def deepspeed_settings(environ: dict | None = None) -> dict:
    """The DeepSpeed config an accelerate launch asks for, before rlvlm fills in what it owns.

    From `deepspeed_config_file` (ACCELERATE_DEEPSPEED_CONFIG_FILE) when given,
    else from the accelerate config's fields (zero_stage, offload devices).
    Raises ConfigError for what rlvlm sets itself or cannot run.
    """
    env = os.environ if environ is None else environ
    path = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "").strip()
    if path and path.lower() != "none":
        try:
            cfg = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"deepspeed_config_file={path}: cannot read it as JSON ({err}); fix: point it at a "
                              "DeepSpeed JSON config, or drop it and set zero_stage in the accelerate config") from None
        for key, why in _OWNED.items():
            if key in cfg and cfg[key] not in ("auto", None) and not (key == "gradient_accumulation_steps"
                                                                          and cfg[key] == 1):
                raise ConfigError(f"deepspeed_config_file={path} sets {key!r}, but {why} in rlvlm; fix: remove "
                                  f"{key!r} from it (or set it to \"auto\")")
        for key in ("fp16", "bf16"):
            if (cfg.get(key) or {}).get("enabled") not in (False, None, "auto"):
                raise ConfigError(f"deepspeed_config_file={path} enables {key}; rlvlm runs DeepSpeed with fp32 "
                                  f"weights: fix: remove {key!r} and set model.autocast=bf16 for mixed precision")
        # "auto" (accelerate's placeholder for values it fills in) is left to rlvlm: batch sizes are set per engine.
        cfg = {k: v for k, v in cfg.items() if k not in _OWNED and k not in ("fp16", "bf16") and v != "auto"}
        zero = dict(cfg.get("zero_optimization") or {})
    else:
        cfg, zero = {}, {"stage": int(env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"))}
        for part, var in (("offload_optimizer", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"),
                          ("offload_param", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE")):
            device = env.get(var, "none").lower()
            if device not in ("none", ""):
                zero[part] = {"device": device}
        steps = env.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "1")
        if steps not in ("1", "auto"):
            raise ConfigError(f"gradient_accumulation_steps={steps} in the accelerate config; "
                              f"{_OWNED['gradient_accumulation_steps']} in rlvlm: fix: set it to 1 and use "
                              "algo.micro_batch_size")
        if env.get("ACCELERATE_GRADIENT_CLIPPING", "none").lower() not in ("none", ""):
            raise ConfigError(f"gradient_clipping in the accelerate config: {_OWNED['gradient_clipping']} in rlvlm; "
                              "fix: remove gradient_clipping from it")
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if precision not in ("no", "fp32"):
        raise ConfigError(f"mixed_precision={precision} in the accelerate config; rlvlm runs DeepSpeed with fp32 "
                          "weights: fix: set mixed_precision: 'no' and model.autocast=bf16 for mixed precision")
    stage = zero.get("stage", 2)
    if stage not in (1, 2, 3):
        raise ConfigError(f"zero_stage={stage}: rlvlm runs DeepSpeed ZeRO stages 1, 2 and 3; fix: set zero_stage "
                          "to 2 or 3 (stage 0 is plain data parallelism: use configs/accelerate/ddp.yaml)")
    cfg["zero_optimization"] = {**zero, "stage": stage}
    return cfg


class EngineOptimizer:
    """What the trainer steps under ZeRO: the engine's step and zero_grad, the original optimizer
    (whose parameter groups' lr the schedule sets), its groups as made, and the clipping norm."""

    def __init__(self, engine: Any, optimizer: torch.optim.Optimizer, groups: list[list[torch.nn.Parameter]],
                 max_grad_norm: float):
        self.engine, self.optimizer, self.groups, self.max_grad_norm = engine, optimizer, groups, max_grad_norm

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.engine.zero_grad()

    def step(self) -> None:
        self.engine.step()


@register_parallel_backend("deepspeed")
class ZeROBackend(Alone):
    """The parallel backend for DeepSpeed ZeRO: see the module docstring."""

    def __init__(self, dist: Any, settings: dict):
        super().__init__(dist)
        self.settings = settings
        self.stage = settings["zero_optimization"]["stage"]
        self.current: EngineOptimizer | None = None  # the live engine's optimizer, once made

    @classmethod
    def from_environment(cls, dist: Any) -> "ZeROBackend":
        settings = deepspeed_settings()
        _deepspeed()  # a missing install fails here, at startup, not at the first optimizer
        return cls(dist, settings)

    @property
    def name(self) -> str:
        return f"DeepSpeed ZeRO-{self.stage}"

    def wrap_learner(self, policy) -> None:
        pass  # the engine needs the optimizer too: it is made in prepare_optimizer

    def prepare_optimizer(self, policy, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> EngineOptimizer:
        if self.current is not None:  # one engine at a time (the warm-start's, then the RL update's)
            self.current.engine.destroy()
        groups = [list(g["params"]) for g in optimizer.param_groups]  # before ZeRO flattens them
        config = {**self.settings, "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                  "gradient_clipping": float(max_grad_norm), "managed_gradient_accumulation": False,
                  "zero_allow_untested_optimizer": True, "steps_per_print": 2**31 - 1}
        engine, *_ = _deepspeed().initialize(model=policy.learner, optimizer=optimizer, config=config)
        policy.use_engine(engine)
        self.current = EngineOptimizer(engine, optimizer, groups, max_grad_norm)
        return self.current

    def full_weights(self):
        if self.stage < 3 or self.current is None:  # whole already (ZeRO-3 partitions at the first engine)
            return nullcontext()
        from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation
        return unwrap_model_for_generation(self.current.engine)

    def backward(self, loss: torch.Tensor) -> None:
        self._live().engine.backward(loss)

    def step(self, optimizer, params: Sequence[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        if optimizer is not self.current or max_norm != optimizer.max_grad_norm:
            raise ValueError(f"step: under DeepSpeed the optimizer must be the one prepare_optimizer returned, "
                             f"with the same max_norm ({max_norm} given)")
        optimizer.step()  # clips inside; a non-finite norm skips and clears (DeepSpeed's overflow rule)
        norm = optimizer.engine.get_global_grad_norm()
        return torch.tensor(float("nan") if norm is None else float(norm))

    def _live(self) -> EngineOptimizer:
        if self.current is None:
            raise RuntimeError("DeepSpeed: no engine yet; call Distributed.prepare_optimizer first")
        return self.current

    # ------------------------------------------------------------ checkpoints
    def learner_state(self, policy) -> dict | None:
        if self.stage < 3:
            return None  # every rank's modules hold the whole weights
        from deepspeed import zero as dz
        with dz.GatheredParameters(list(policy.learner.parameters())):
            state = {k: v.detach().cpu().clone() for k, v in policy.learner.state_dict().items()}
        return state if self.dist.is_main else {}

    def load_learner_state(self, policy, state: dict) -> None:
        """Every rank reads the whole `state`: the module's weights (gathered, then re-partitioned at
        stage 3) and the optimizer's fp32 master copies of the trained ones."""
        from deepspeed import zero as dz
        learner = policy.learner
        params = list(learner.parameters())
        context = dz.GatheredParameters(params, modifier_rank=0) if self.stage == 3 else nullcontext()
        with context, torch.no_grad():  # stage 3: rank 0's values are partitioned on leaving the block
            for k, v in learner.state_dict(keep_vars=True).items():
                v.data.copy_(state[k].to(v.dtype))
        if self.current is not None:  # the fp32 master copies, from the module's (fp32) weights
            self.current.engine.optimizer.refresh_fp32_params()

    def optimizer_view(self, policy, optimizer):
        return ZeROOptimizerView(self._live()) if optimizer is self.current else optimizer


class ZeROOptimizerView:
    """The ZeRO-partitioned optimizer state as a whole torch-format state dict (what a plain
    optimizer over the same parameter groups would save); both methods are collective."""

    def __init__(self, live: EngineOptimizer):
        self.live = live

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for g in self.live.groups for p in g]

    def _base_states(self) -> list[dict]:
        return list(self.live.optimizer.state.values())

    def state_dict(self) -> dict:
        from deepspeed.utils import safe_get_full_optimizer_state
        self._link()
        state: dict[int, dict] = {}
        steps = [s["step"] for s in self._base_states() if "step" in s]
        for i, p in enumerate(self._params()):
            moments = {key: safe_get_full_optimizer_state(p, key) for key in _ADAM_MOMENTS}
            if all(v is not None for v in moments.values()):
                state[i] = {**({"step": steps[0].clone()} if steps else {}),
                            **{k: v.detach().cpu().clone() for k, v in moments.items()}}
        groups, start = [], 0
        for g, params in zip(self.live.optimizer.param_groups, self.live.groups):
            groups.append({**{k: v for k, v in g.items() if k != "params"},
                           "params": list(range(start, start + len(params)))})
            start += len(params)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict) -> None:
        from deepspeed.utils import safe_set_full_optimizer_state
        self._make_states()
        self._link()
        params = self._params()
        n_saved = sum(len(g["params"]) for g in saved["param_groups"])
        if n_saved != len(params) or len(saved["param_groups"]) != len(self.live.groups):
            raise ValueError(f"the saved optimizer has {n_saved} parameters in {len(saved['param_groups'])} groups; "
                             f"this one {len(params)} in {len(self.live.groups)}")
        for g, s in zip(self.live.optimizer.param_groups, saved["param_groups"]):
            g.update({k: v for k, v in s.items() if k != "params"})
        state = {int(k): v for k, v in saved["state"].items()}
        zo = self.live.engine.optimizer
        for i, p in enumerate(params):
            for key in _ADAM_MOMENTS:
                if i in state and key in state[i]:
                    value = state[i][key].to(torch.float32)
                    if hasattr(p, "ds_id"):
                        _set_stage3_state(zo, p, value, key)
                    else:
                        safe_set_full_optimizer_state(p, value, key)
        steps = [s["step"] for s in state.values() if "step" in s]
        if steps:
            for s in self._base_states():
                if "step" in s:
                    s["step"] = torch.as_tensor(steps[0]).clone().to(s["step"].dtype)

    def _flat_partitions(self) -> list[torch.Tensor]:
        """This rank's flat fp32 partition of each parameter group: what the base optimizer steps."""
        zo = self.live.engine.optimizer
        return list(getattr(zo, "single_partition_of_fp32_groups", None) or zo.fp32_partitioned_groups_flat)

    def _make_states(self) -> None:
        """AdamW makes its state at its first step: a resume, before any step, makes the same
        zero state now (step 0, zero moments) so there is a state to load into."""
        base = self.live.optimizer
        if not isinstance(base, (torch.optim.Adam, torch.optim.AdamW)) or base.defaults.get("amsgrad"):
            raise ValueError(f"resuming under DeepSpeed restores Adam/AdamW (no amsgrad) state; "
                             f"got {type(base).__name__}")
        for flat in self._flat_partitions():
            if not base.state.get(flat):
                base.state[flat] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(flat),
                                    "exp_avg_sq": torch.zeros_like(flat)}

    def _link(self) -> None:
        """ZeRO-1/2 point each parameter at its slice of the optimizer state once, after the first
        group's first step, when a second group (the value head's) has no state yet (DeepSpeed
        0.19): link every group again, so `safe_get/set_full_optimizer_state` see all of them."""
        zo = self.live.engine.optimizer
        if hasattr(zo, "bit16_groups") and self.live.optimizer.state:
            from deepspeed.utils import lazy_init_hp_params_optimizer_state
            for params, flat in zip(zo.bit16_groups, self._flat_partitions()):
                if self.live.optimizer.state.get(flat):
                    lazy_init_hp_params_optimizer_state(params, flat, self.live.optimizer.state)



def _set_stage3_state(zo: Any, param: torch.nn.Parameter, value: torch.Tensor, key: str) -> None:
    """This rank's slice of a whole ZeRO-3 optimizer state tensor. DeepSpeed 0.19's own
    `safe_set_full_optimizer_state` reads past the end of a parameter smaller than the
    process count (its partitions are padded), so the padding is handled here."""
    part, _ = zo._get_fp32_opt_state_partition(param, release_swap_buffers=False, optim_state_key=key)
    n, rank = part.numel(), zo._get_param_partition_rank(param)
    piece = value.flatten()[n * rank:n * (rank + 1)]
    part.zero_()
    part[:piece.numel()].copy_(piece)
