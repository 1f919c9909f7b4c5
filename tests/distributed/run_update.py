"""One RL update of a fixed rollout, on however many processes started this script.

    python tests/distributed/run_update.py MODEL_DIR gae OUT.safetensors
    accelerate launch --multi_gpu --num_processes 2 --num_cpu_threads_per_process 1 \
        tests/distributed/run_update.py MODEL_DIR gae OUT.safetensors
    accelerate launch --config_file configs/accelerate/fsdp2.yaml ... (the same under FSDP2)

Every rank plays the same rollout (same seeds, one thread, deterministic CPU
kernels) and computes its advantages over the whole of it; rank r then keeps
its contiguous 1/W share and the update runs data-parallel (`ppo_update` with
the learner under DDP). Rank 0 writes the parameters after the update, and the
parameters before it, for test_two_processes.py to compare with the 1-process run.
"""

from __future__ import annotations

import json
import sys

import torch
from safetensors.torch import save_file

from rlvlm import algos
from rlvlm.envs.vector import make_env
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.seeding import seed_everything
from rlvlm.rollout.collector import Collector
from rlvlm.train.config import AlgoConfig
from rlvlm.train.distributed import Distributed
from rlvlm.train.ppo_step import ppo_update
from rlvlm.train.rl import param_groups

# PPO with a value head (lockstep steps, GAE) and GRPO (groups of whole episodes).
SETUPS = {
    "gae": dict(value_head=True, group_size=1, algo=dict(advantage="gae", value_lr=1e-3)),
    "grpo": dict(value_head=False, group_size=2, algo=dict(advantage="grpo", ratio_level="token")),
    # gradient accumulation: micro-batches of 2 on each rank, summed into each optimizer step
    "gae_micro": dict(value_head=True, group_size=1, algo=dict(advantage="gae", value_lr=1e-3, micro_batch_size=2)),
    "grpo_lora": dict(value_head=False, group_size=2, algo=dict(advantage="grpo", ratio_level="token"),
                      lora={"r": 8}),
}


def main(model_dir: str, name: str, out: str) -> None:
    dist = Distributed.from_environment()
    torch.set_num_threads(1)
    tensors: dict[str, torch.Tensor] = {}
    for opt_name in OPTIMIZERS:
        before, after, metrics, n = _one_update(dist, model_dir, name, opt_name)
        tensors.update({f"{opt_name}/after/{k}": v for k, v in after.items()})
        tensors.update({f"{opt_name}/before/{k}": v for k, v in before.items()})
        if dist.is_main:
            print(json.dumps({"optimizer": opt_name, "samples": n, "processes": dist.world, **metrics}))
    if dist.is_main:
        save_file(tensors, out)


# SGD shows any error in the gradient's scale (a rank's weight, a missing 1/W); AdamW, the
# trainer's optimizer, is nearly blind to scale but is what runs. Both must agree.
OPTIMIZERS = {
    "sgd": lambda groups: torch.optim.SGD([{**g, "lr": 0.5} for g in groups]),  # steps are clipped to norm 1
    "adamw": lambda groups: torch.optim.AdamW(groups, lr=groups[0]["lr"]),
}


def _one_update(dist: Distributed, model_dir: str, name: str, opt_name: str):
    setup = SETUPS[name]
    seed_everything(0)
    policy = load_policy(model_dir, value_head=setup["value_head"], lora=setup.get("lora"))
    dist.wrap_learner(policy)
    cfg = AlgoConfig(epochs=2, minibatch_size=8, lr=3e-4, entropy_coef=0.01, **setup["algo"])
    envs = [make_env("rlvlm/NumberLine-v0", image_size=84) for _ in range(4)]
    collector = Collector(envs, policy, SamplingConfig(max_new_tokens=24), seed=0,
                          group_size=setup["group_size"], need_values=setup["value_head"])
    seed_everything(1)
    with dist.full_weights():  # FSDP2: generation needs the whole weights (as in rlvlm train)
        rollout = collector.collect_steps(2) if cfg.advantage == "gae" else collector.collect_episodes()
    batch = rollout.batch
    # The untrained model's replies are all invalid, so the env's rewards are all equal and every
    # advantage would be 0; a reward that varies with the reply gives the policy loss a gradient.
    batch.rewards = (batch.completion_mask.sum(dim=1) % 3).float()
    batch.advantages, batch.returns = algos.advantage_estimator(cfg.advantage)(batch, cfg)
    mine = batch.select(list(dist.shard(len(batch))))
    before = _weights(dist, policy)
    optimizer = dist.prepare_optimizer(policy, OPTIMIZERS[opt_name](param_groups(policy, cfg.lr, cfg.value_lr)),
                                       cfg.max_grad_norm)
    metrics = ppo_update(policy, optimizer, mine, cfg, entropy_coef=cfg.entropy_coef, seed=0, dist=dist)
    after = _weights(dist, policy)
    return before, after, metrics, len(batch)


def _weights(dist: Distributed, policy) -> dict[str, torch.Tensor]:
    """The learner's whole weights (gathered to rank 0 under FSDP)."""
    state = dist.learner_state(policy)
    if state is None:
        state = policy.learner.state_dict()
    return {k: v.detach().float().clone().contiguous() for k, v in state.items()}


if __name__ == "__main__":
    main(*sys.argv[1:4])
