"""The pieces of a data-parallel run that need no second process: global statistics, metric rows,
shares of work, config checks and sharded evaluation (tests/distributed runs the real 2-process
jobs)."""

from __future__ import annotations

import threading

import pytest
import torch

from rlvlm import algos
from rlvlm.envs import NumberLineEnv
from rlvlm.envs.policies import oracle
from rlvlm.errors import ConfigError
from rlvlm.eval.episodes import evaluate
from rlvlm.models.batching import Sample
from rlvlm.config import load_config
from rlvlm.train.config import TrainConfig
from rlvlm.train.distributed import Distributed, reduce_metrics
from rlvlm.train.rl import check_world


class ThreadGroup:
    """W threads as W ranks: `all_sum` blocks until every rank has contributed, like all_reduce."""

    def __init__(self, world: int):
        self.world, self.barrier, self.slots = world, threading.Barrier(world), [None] * world

    def all_sum(self, rank: int):
        def reduce(t: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = t.clone()
            self.barrier.wait()
            out = sum(self.slots)
            self.barrier.wait()  # nobody overwrites a slot before every rank has read them all
            return out
        return reduce


def _ranks(n: int, world: int, rank: int) -> Distributed:
    d = Distributed(None)
    d.rank, d.world = rank, world
    return d


def test_global_whiten_uses_every_ranks_statistics():
    # x = [1, 2 | 3, 4]: mean 2.5, unbiased var (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3,
    # so out = (x - 2.5) / sqrt(5/3) = [-1.1619, -0.3873 | 0.3873, 1.1619] on the two ranks.
    shards, out = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])], [None, None]
    group = ThreadGroup(2)

    def run(r):
        out[r] = algos.global_whiten(shards[r], None, group.all_sum(r))

    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = torch.tensor([-1.161895, -0.387298, 0.387298, 1.161895])
    assert torch.allclose(torch.cat(out), want, atol=1e-5)
    # Each shard whitened alone would be [-0.7071, 0.7071] twice: not the same advantages.
    assert torch.allclose(algos.masked_whiten(shards[0]), torch.tensor([-0.707107, 0.707107]), atol=1e-5)
    # One process: the same numbers as masked_whiten.
    x = torch.tensor([0.5, -1.0, 2.0, 7.0])
    assert torch.allclose(algos.global_whiten(x, None, lambda t: t), algos.masked_whiten(x))


class _Rows:
    """Two ranks' metric rows handed over as the all-gather would."""

    active, world = True, 2

    def __init__(self, other: dict):
        self.other = other

    def gather(self, mine):
        return [mine, self.other]


def test_reduce_metrics_sums_counts_weights_rates_and_keeps_shared_values():
    a = {"update": 3, "rollout/steps": 8, "rollout/episodes": 1, "rollout/success_rate": 1.0, "time/rollout": 1.0,
         "loss/total": 2.0, "policy/lr": 1e-3}
    b = {"update": 3, "rollout/steps": 8, "rollout/episodes": 3, "rollout/success_rate": 0.0, "time/rollout": 2.5,
         "loss/total": 4.0, "policy/lr": 1e-3}
    out = reduce_metrics(_Rows(b), a)
    assert out == {"update": 3, "rollout/steps": 16, "rollout/episodes": 4, "rollout/success_rate": 0.25,
                   "time/rollout": 2.5, "loss/total": 3.0, "policy/lr": 1e-3}
    assert isinstance(out["update"], int)
    assert reduce_metrics(Distributed(None), a) is a  # one process: the row itself


def test_shares_cover_every_item_once():
    assert [list(_ranks(10, 3, r).shard(10)) for r in range(3)] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [list(_ranks(1, 2, r).shard(1)) for r in range(2)] == [[0], []]


def test_a_config_that_cannot_split_over_the_processes_is_refused():
    grpo = ["algo.advantage=grpo", "model.value_head=false"]
    cfg = load_config(TrainConfig, "smoke", ["rollout.num_envs=6", "rollout.group_size=2", *grpo])
    with pytest.raises(ConfigError, match=r"rollout.num_envs=6 is split over 4 processes .* fix: set rollout.num_envs=4"):
        check_world(cfg, _ranks(0, 4, 0))
    # 6 envs on 2 processes is 3 each, which groups of 2 cannot tile without spanning processes.
    with pytest.raises(ConfigError, match=r"group_size=2 must divide the 3 envs each of 2 processes"):
        check_world(cfg, _ranks(0, 2, 0))
    check_world(load_config(TrainConfig, "smoke", ["rollout.num_envs=8", "rollout.group_size=2", *grpo]),
                _ranks(0, 2, 0))


def _act():
    """A fixed reply per observation: the oracle's on some prompts, nonsense on others."""
    pi = oracle(NumberLineEnv(image_size=32))

    def act(observations, infos):
        return [Sample(prompt_text=o["text"], image=o["image"], prompt_ids=[1], completion_ids=[2],
                       text=pi.act(o, info) if (int(o["image"].sum()) + info.get("step", 0)) % 4 else "no idea", logprobs=[0.0],
                       thought_mask=[False], action_mask=[True], temperature=1.0)
                for o, info in zip(observations, infos)]
    return act


def test_sharded_evaluation_is_the_single_process_evaluation():
    make = lambda: NumberLineEnv(image_size=32)  # noqa: E731
    kw = dict(episodes=11, seed=1_000_000, num_envs=4, act_fn=_act())
    alone = evaluate(None, make, **kw)
    group, merged = ThreadGroup(2), [None, None]

    def gather(rank):
        def all_gather(mine):
            group.slots[rank] = mine
            group.barrier.wait()
            out = list(group.slots)
            group.barrier.wait()
            return out
        return all_gather

    def run(rank):
        merged[rank] = evaluate(None, make, **kw, shard=(rank, 2), gather=gather(rank))

    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    strip = lambda d: {k: v for k, v in d.items() if k not in ("seconds", "mean_reply_seconds")}  # noqa: E731
    assert strip(merged[0]) == strip(merged[1]) == strip(alone)
    assert 0 < alone["success_rate"] < 1 and alone["episodes"] == 11
    with pytest.raises(ValueError, match="needs gather"):
        evaluate(None, make, **kw, shard=(0, 2))


def test_commands_that_are_not_data_parallel_refuse_a_launcher(monkeypatch):
    from rlvlm.train.distributed import single_process_only

    single_process_only("rlvlm dpo")  # alone: fine
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"rlvlm dpo runs in one process, but a launcher started 2"):
        single_process_only("rlvlm dpo")


def test_the_launchers_backend_is_chosen_from_accelerates_variables(monkeypatch):
    from rlvlm.train.backends import PARALLEL_BACKENDS, backend_name_from_environment

    for var in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(var, raising=False)
    assert backend_name_from_environment(1) == "none"
    assert backend_name_from_environment(2) == "ddp"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert backend_name_from_environment(2) == "fsdp"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert backend_name_from_environment(2) == "deepspeed"
    assert backend_name_from_environment(1) == "none"  # one process: never wrapped
    assert {"none", "ddp", "fsdp", "deepspeed"} <= set(PARALLEL_BACKENDS)
    assert Distributed(None).backend == "none"


def test_deepspeed_settings_come_from_the_accelerate_config():
    from rlvlm.train.zero import deepspeed_settings

    env = {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu",
           "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "none", "ACCELERATE_MIXED_PRECISION": "no"}
    assert deepspeed_settings(env) == {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}
    assert deepspeed_settings({})["zero_optimization"] == {"stage": 2}


@pytest.mark.parametrize("env,match", [
    ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "0"}, r"zero_stage=0: .* fix: set zero_stage to 2 or 3"),
    ({"ACCELERATE_MIXED_PRECISION": "bf16"}, r"mixed_precision=bf16 .* model.autocast=bf16"),
    ({"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "4"}, r"gradient_accumulation_steps=4 .* algo.micro_batch_size"),
    ({"ACCELERATE_GRADIENT_CLIPPING": "1.0"}, r"gradient_clipping .* algo.max_grad_norm"),
])
def test_deepspeed_settings_that_rlvlm_owns_or_cannot_run_are_refused(env, match):
    from rlvlm.train.zero import deepspeed_settings

    with pytest.raises(ConfigError, match=match):
        deepspeed_settings(env)


def test_a_deepspeed_config_file_is_read_and_checked(tmp_path):
    import json

    from rlvlm.train.zero import deepspeed_settings

    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3, "stage3_prefetch_bucket_size": 1000},
                                "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
                                "gradient_clipping": "auto"}))
    env = {"ACCELERATE_DEEPSPEED_CONFIG_FILE": str(path)}
    assert deepspeed_settings(env) == {"zero_optimization": {"stage": 3, "stage3_prefetch_bucket_size": 1000}}
    path.write_text(json.dumps({"optimizer": {"type": "Adam"}, "zero_optimization": {"stage": 2}}))
    with pytest.raises(ConfigError, match=r"sets 'optimizer', but the optimizer is algo.lr .* fix: remove"):
        deepspeed_settings(env)
    path.write_text(json.dumps({"bf16": {"enabled": True}}))
    with pytest.raises(ConfigError, match=r"enables bf16; .* model.autocast=bf16"):
        deepspeed_settings(env)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"deepspeed_config_file=.*cannot read it as JSON"):
        deepspeed_settings(env)


def test_a_deepspeed_launch_without_deepspeed_says_how_to_install_it(monkeypatch):
    import sys

    from rlvlm.train.zero import ZeROBackend

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # importing it now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'rlvlm\[deepspeed\]'"):
        ZeROBackend.from_environment(Distributed(None))
