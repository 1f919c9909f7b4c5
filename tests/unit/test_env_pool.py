"""Env pools (rlvlm/envs/pool.py): worker backends give the in-process rollout exactly, and a
crashing, dying or hanging env ends only its own episode."""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import signal

import pytest

from rlvlm.config import load_config
from rlvlm.envs import ENV_BACKENDS, EnvFactory, InProcessPool, make_env_pool
from rlvlm.errors import ConfigError
from rlvlm.rollout.collector import Collector
from rlvlm.train.config import TrainConfig
from tests.unit.env_pool_support import (
    ClassFactory, FaultyNumberLine, SleepyNumberLine, numberline_factory, rollout_summary, scripted_act_fn,
)

HAS_RAY = importlib.util.find_spec("ray") is not None


def _collector(envs, seed=0, group_size=1, act_seed=0):
    return Collector(envs, None, None, seed=seed, group_size=group_size, need_values=False,
                     act_fn=scripted_act_fn(act_seed))


def _batch_fields(rollout):
    b = rollout.batch
    return [x.tolist() for x in (b.rewards, b.terminated, b.truncated, b.episode_ids, b.group_ids, b.step_ids,
                                 b.env_ids)]


def _same_rollouts(make_env, backend, n=4, group_size=1, steps=(12, 7), episodes=2):
    """In-process envs and `backend` envs, same seeds and act_fn: every rollout equal, in episode
    mode (`episodes` rounds) and in step mode (one round per entry of `steps`), one collector each."""
    with make_env_pool(backend, make_env, n) as pool:
        for mode, rounds in (("episodes", [None] * episodes), ("steps", steps)):
            local = _collector([make_env() for _ in range(n)], group_size=group_size)
            remote = _collector(pool, group_size=group_size)
            for t in rounds:
                a, b = (local.collect_episodes(), remote.collect_episodes()) if t is None else \
                    (local.collect_steps(t), remote.collect_steps(t))
                assert rollout_summary(a) == rollout_summary(b) and _batch_fields(a) == _batch_fields(b)
                assert len(a.episodes) == n or t is not None
            assert local.state_dict() == remote.state_dict()
    return a


@pytest.mark.parametrize("group_size", [1, 2])
def test_processes_give_the_in_process_rollouts(group_size):
    last = _same_rollouts(numberline_factory(), "processes", group_size=group_size)
    # The rollouts are not trivial: steps that cross episode ends, both rewards, truncations.
    assert any(tr.done for tr in last.transitions) and {tr.reward for tr in last.transitions} >= {-1.0, 0.0}
    assert not any("error" in tr.info for tr in last.transitions)


def test_a_list_of_envs_is_an_in_process_pool():
    envs = [numberline_factory()() for _ in range(2)]
    col = _collector(envs)
    assert isinstance(col.pool, InProcessPool) and col.envs == envs


def test_an_exception_in_a_worker_step_ends_that_episode_like_in_process(caplog):
    # env 1 resets with seed 1 first; its second step raises. Everything else plays on.
    make = ClassFactory(FaultyNumberLine, {"raise_at": [(1, 2)], "image_size": 32})
    with caplog.at_level(logging.WARNING, logger="rlvlm.envs.pool"):
        _same_rollouts(make, "processes", steps=(6, 6), episodes=0)  # the crash is in the first rollout
    assert caplog.text.count("env 1 crashed in step (RuntimeError: simulator fault at seed 1 step 2)") == 2
    with make_env_pool("processes", make, 4) as pool:
        rollout = _collector(pool).collect_steps(6)
    crashed = [tr for tr in rollout.transitions if "error" in tr.info]
    assert len(crashed) == 1 and crashed[0].env_index == 1 and crashed[0].t == 1
    assert crashed[0].reward == 0.0 and crashed[0].terminated
    assert crashed[0].info["error"] == "RuntimeError: simulator fault at seed 1 step 2"
    assert "simulator fault" in crashed[0].info["traceback"]
    assert [e["error"] for e in rollout.episodes].count(True) == 1
    assert sum(tr.env_index == 1 for tr in rollout.transitions) == 6  # env 1 played on after the crash


def test_a_worker_that_dies_mid_step_is_restarted_and_the_rollout_goes_on(caplog):
    make = ClassFactory(FaultyNumberLine, {"die_at": [(2, 3)], "image_size": 32})
    with make_env_pool("processes", make, 4) as pool, caplog.at_level(logging.WARNING, logger="rlvlm.envs.pool"):
        col = _collector(pool)
        rollout = col.collect_steps(8)
        died = [tr for tr in rollout.transitions if "error" in tr.info]
        assert [(tr.env_index, tr.t, tr.reward, tr.done) for tr in died] == [(2, 2, 0.0, True)]
        assert died[0].info["error"].startswith("EnvWorkerDied: exited (exit code 3)")
        assert pool.restarts == 1 and "restarting it" in caplog.text
        assert sum(tr.env_index == 2 for tr in rollout.transitions) == 8  # the new worker's env played on

        # A worker killed from outside between steps: found at the next step, same ending.
        pid = pool.pids[0]
        os.kill(pid, signal.SIGKILL)
        rollout = col.collect_steps(3)
        first = [tr for tr in rollout.transitions if tr.env_index == 0][0]
        assert first.info["error"].startswith("EnvWorkerDied") and first.done
        assert pool.restarts == 2 and pool.pids[0] != pid
        assert all("error" not in tr.info for tr in rollout.transitions if tr is not first)


def test_a_step_past_the_timeout_ends_its_episode_and_replaces_the_worker():
    make = ClassFactory(FaultyNumberLine, {"hang_at": [(0, 1)], "image_size": 32})
    with make_env_pool("processes", make, 2, step_timeout=1.0) as pool:
        rollout = _collector(pool).collect_steps(2)
        hung = [tr for tr in rollout.transitions if "error" in tr.info]
        assert [(tr.env_index, tr.t) for tr in hung] == [(0, 0)]
        assert "did not answer within env.step_timeout=1.0s" in hung[0].info["error"]
        assert pool.restarts == 1 and len(rollout.transitions) == 4


def test_slow_steps_overlap_in_workers():
    import time

    make = ClassFactory(SleepyNumberLine, {"step_seconds": 0.3, "image_size": 32})
    with make_env_pool("processes", make, 4) as pool:
        col = _collector(pool)
        col.collect_steps(1)  # resets and the first step out of the way
        t0 = time.perf_counter()
        col.collect_steps(2)
        # In-process this is 4 envs x 2 steps x 0.3 s = 2.4 s; overlapped about 0.6 s.
        assert time.perf_counter() - t0 < 1.6


def test_state_dict_replay_through_workers():
    make = numberline_factory()
    with make_env_pool("processes", make, 4) as pool, make_env_pool("processes", make, 4) as fresh:
        col = _collector(pool)
        col.collect_steps(5)
        state = col.state_dict()
        assert any(e["actions"] for e in state["envs"])
        col.act_fn = scripted_act_fn(1)
        expected = col.collect_steps(6)
        restored = _collector(fresh, seed=123, act_seed=1)
        restored.load_state_dict(state)  # replays each env's episode so far in its worker
        assert rollout_summary(restored.collect_steps(6)) == rollout_summary(expected)


def test_the_env_factory_of_a_train_config_pickles():
    from rlvlm.train.rl import make_env_factory

    cfg = load_config(TrainConfig, "smoke", ["env.kwargs.max_position=7"])
    make = pickle.loads(pickle.dumps(make_env_factory(cfg)))
    assert isinstance(make, EnvFactory) and make().unwrapped.max_position == 7


def test_unknown_backend_names_the_field_and_close_matches():
    with pytest.raises(ConfigError, match=r"env.backend='proceses' is not a registered env backend \(did you mean: "
                                          r"processes, inprocess\?\); choose one of inprocess, processes, ray") as err:
        make_env_pool("proceses", numberline_factory(), 2)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"env.backend='proceses'"):
        load_config(TrainConfig, "smoke", ["env.backend=proceses"]).validate()
    assert list(ENV_BACKENDS)[:3] == ["inprocess", "processes", "ray"]


@pytest.mark.parametrize("overrides, message", [
    (["env.step_timeout=5"], r"env.step_timeout=5.0 needs a worker backend.*fix: set env.backend=processes"),
    (["env.backend=processes", "env.step_timeout=0"], r"env.step_timeout=0.0 must be > 0 seconds"),
    (["env.backend=processes", "algo.advantage=grpo", "rollout.group_size=4", "model.value_head=false",
      "env.kwargs.ask_for_help=single_turn", "rollout.explore_ask=1"],
     r"rollout.explore_ask=1 .*env.backend=processes.*fix: set env.backend=inprocess"),
])
def test_backend_config_traps(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(TrainConfig, "smoke", overrides).validate()
    assert "\n" not in str(err.value)
    load_config(TrainConfig, "smoke", ["env.backend=processes", "env.step_timeout=30"]).validate()


def test_explore_ask_needs_in_process_envs():
    with make_env_pool("processes", numberline_factory(), 2) as pool:
        with pytest.raises(ConfigError, match=r"rollout.explore_ask=1 .* fix: set env.backend=inprocess"):
            Collector(pool, None, None, group_size=2, explore_ask=1)


def test_an_env_that_fails_to_build_fails_the_pool_with_its_own_error():
    with pytest.raises(ConfigError, match="max_position"):
        make_env_pool("processes", numberline_factory(max_position=0), 2)


@pytest.mark.skipif(HAS_RAY, reason="ray is installed: its backend is tested below")
def test_ray_backend_without_ray_says_how_to_install_it():
    with pytest.raises(ConfigError, match=r"env.backend=ray needs the ray package.*pip install 'rlvlm\[ray\]'") as err:
        make_env_pool("ray", numberline_factory(), 2)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"pip install 'rlvlm\[ray\]'"):
        load_config(TrainConfig, "smoke", ["env.backend=ray"]).validate()


@pytest.fixture
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'rlvlm[ray]')")
def test_ray_gives_the_in_process_rollouts_and_survives_a_dead_actor(ray_cluster):
    _same_rollouts(ClassFactory(FaultyNumberLine, {"raise_at": [(1, 2)], "image_size": 32}), "ray",
                   steps=(8,), episodes=1)
    with make_env_pool("ray", ClassFactory(FaultyNumberLine, {"die_at": [(2, 3)], "image_size": 32}), 4) as pool:
        rollout = _collector(pool).collect_steps(8)
        died = [tr for tr in rollout.transitions if "error" in tr.info]
        assert [(tr.env_index, tr.t) for tr in died] == [(2, 2)] and died[0].info["error"].startswith("EnvWorkerDied")
        assert pool.restarts == 1 and sum(tr.env_index == 2 for tr in rollout.transitions) == 8
