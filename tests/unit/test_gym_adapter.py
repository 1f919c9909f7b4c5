"""Any gymnasium env as an rlvlm env (issue 19): the adapter's rules, on envs rlvlm did not write."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.toy_text.frozen_lake import generate_random_map
from gymnasium.utils.env_checker import check_env

from rlvlm.envs import from_gymnasium, make_env, oracle, random_policy
from rlvlm.errors import ConfigError

FL = {"image_size": 48}


class Corridor(gym.Env):
    """A user's own env: walk right along 5 cells. No action names of its own."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, render_mode=None):
        self.render_mode, self.action_space = render_mode, spaces.Discrete(3)  # 0 stay, 1 left, 2 right
        self.observation_space = spaces.Discrete(5)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(0, 3))
        return self.pos, {}

    def step(self, a):
        self.pos = min(4, max(0, self.pos + (0, -1, 1)[a]))
        return self.pos, float(self.pos == 4), self.pos == 4, False, {}

    def render(self):
        img = np.zeros((10, 50, 3), np.uint8)
        img[:, self.pos * 10:(self.pos + 1) * 10] = 255
        return img


class Named(Corridor):
    def get_action_meanings(self):
        return ["NOOP", "LEFT", "RIGHT"]


def _quiet_check(env):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env)


@pytest.mark.parametrize("kwargs", [
    {"env_kwargs": {"size": 4, "is_slippery": False}},
    {"env_kwargs": {"size": 8, "is_slippery": True}, "history": 3, "state_in_prompt": True},
    {"env_kwargs": {"map_name": "4x4", "is_slippery": False}},
])
def test_check_env_passes_on_adapted_frozenlake(kwargs):
    _quiet_check(from_gymnasium("FrozenLake-v1", **FL, **kwargs))


def test_check_env_passes_on_a_users_env_and_on_minigrid():
    _quiet_check(from_gymnasium(Corridor(render_mode="rgb_array"), actions=["stay", "left", "right"], **FL))
    pytest.importorskip("minigrid")
    import minigrid  # noqa: F401  (registers MiniGrid-*)
    _quiet_check(from_gymnasium("MiniGrid-Empty-5x5-v0", **FL))


def test_legal_actions_come_from_the_user_the_env_or_its_profile():
    assert from_gymnasium("FrozenLake-v1", **FL).legal_actions == ("left", "down", "right", "up")  # profile
    assert from_gymnasium(Named(render_mode="rgb_array"), **FL).legal_actions == ("noop", "left", "right")
    by_name = from_gymnasium(Corridor(render_mode="rgb_array"), actions={"right": 2, "wait": 0, "back": 1}, **FL)
    assert by_name.legal_actions == ("wait", "back", "right")
    obs, _ = by_name.reset(seed=0)
    assert "Actions: wait, back, right." in obs["text"]
    pytest.importorskip("minigrid")
    import minigrid  # noqa: F401
    assert from_gymnasium("MiniGrid-Empty-5x5-v0", **FL).legal_actions[:3] == ("left", "right", "forward")


@pytest.mark.parametrize("make,match", [
    (lambda: from_gymnasium(Corridor(render_mode="rgb_array"), **FL), r"does not name its 3 actions; fix: pass actions="),
    (lambda: from_gymnasium(Corridor(render_mode="rgb_array"), actions=["a", "b"], **FL), r"2 names for 3 actions"),
    (lambda: from_gymnasium(Corridor(render_mode="rgb_array"), actions=["a", "a", "b"], **FL), r"must be distinct"),
    (lambda: from_gymnasium(Corridor(render_mode="rgb_array"), actions={"a": 0, "b": 5, "c": 1}, **FL),
     r"must name every action index 0..2"),
    (lambda: from_gymnasium(Corridor(), actions=["a", "b", "c"], **FL), r"render_mode is None; .*render_mode=\"rgb_array\""),
    (lambda: from_gymnasium("CarRacing-v3", **FL), r"CarRacing-v3: gymnasium cannot make it|Box action space"),
    (lambda: from_gymnasium("NoSuchEnv-v0", **FL), r"env.id=gymnasium:NoSuchEnv-v0: gymnasium cannot make it"),
])
def test_envs_the_adapter_cannot_take_are_refused_with_the_fix(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_an_invalid_reply_is_a_penalised_no_op_and_valid_ones_pass_rewards_through():
    env = from_gymnasium("FrozenLake-v1", env_kwargs={"size": 4, "is_slippery": False}, invalid_penalty=-0.25, **FL)
    obs, info = env.reset(seed=5)
    before = env.env.unwrapped.s
    obs2, r, term, trunc, info2 = env.step("I think I will go somewhere")
    assert (r, term, trunc, info2["action_valid"]) == (-0.25, False, False, False)
    assert env.env.unwrapped.s == before and np.array_equal(obs2["image"], obs["image"])  # not stepped

    # The same map (gymnasium's generator, same seed) stepped directly: identical rewards and ends.
    direct = gym.make("FrozenLake-v1", desc=generate_random_map(size=4, seed=5), is_slippery=False)
    direct.reset(seed=5)
    pi = oracle(env)
    info = info2
    while True:
        reply = pi.act(obs2, info)
        a = ("left", "down", "right", "up").index(env.parse(reply).action)
        obs2, r, term, trunc, info = env.step(reply)
        _, r_d, term_d, trunc_d, _ = direct.step(a)
        assert (r, term, trunc) == (r_d, term_d, trunc_d)
        assert info["action_valid"] and info["env_action"] == a
        if term or trunc:
            break
    assert info["is_success"] and info["env_return"] == 1.0


def test_the_wrapped_envs_time_limit_passes_through():
    env = from_gymnasium("FrozenLake-v1", env_kwargs={"map_name": "4x4", "is_slippery": False}, max_steps=1000, **FL)
    env.reset(seed=0)
    for t in range(1, 101):  # left into the wall from the start: never a hole, never the goal
        _, r, term, trunc, info = env.step('{"action": "left"}')
        if trunc:
            break
    assert (t, term, trunc, info["is_success"]) == (100, False, True, False)  # FrozenLake-v1's own 100 steps


def test_a_seed_fixes_the_episode_to_the_byte_and_seeds_give_new_maps():
    env = from_gymnasium("FrozenLake-v1", env_kwargs={"size": 4, "is_slippery": False}, state_in_prompt=True, **FL)
    a, ia = env.reset(seed=11)
    b, ib = env.reset(seed=11)
    assert np.array_equal(a["image"], b["image"]) and a["text"] == b["text"] and ia == ib
    maps = {tuple(env.reset(seed=s)[1]["map"]) for s in range(20)}
    assert len(maps) >= 15  # held-out seeds are held-out maps


def test_history_lists_the_last_turns_within_its_character_budget():
    env = from_gymnasium("FrozenLake-v1", env_kwargs={"map_name": "4x4", "is_slippery": False}, history=2,
                         history_chars=1000, **FL)
    obs, _ = env.reset(seed=0)
    assert "Earlier turns" not in obs["text"]
    for reply in ('{"action": "left"}', "nonsense", '{"action": "up"}'):
        obs, *_ = env.step(reply)
    text = obs["text"]
    assert "Earlier turns (1 older not shown):\nturn 2: (invalid reply) (reward -0.1)\nturn 3: up (reward 0)" in text
    tight = from_gymnasium("FrozenLake-v1", env_kwargs={"map_name": "4x4", "is_slippery": False}, history=5,
                           history_chars=30, **FL)
    tight.reset(seed=0)
    for _ in range(4):
        obs, *_ = tight.step('{"action": "left"}')
    assert "Earlier turns (3 older not shown):\nturn 4: left (reward 0)" in obs["text"]  # 1 line fits in 30


def _success_rate(env, pi, seeds: int) -> float:
    wins = 0
    for seed in range(seeds):
        obs, info = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(pi.act(obs, info))
            done = term or trunc
        wins += info["is_success"]
    return wins / seeds


@pytest.mark.parametrize("size,maps", [(4, 200), (8, 100)])  # gymnasium renders an 8x8 frame in 5 ms
def test_the_frozenlake_oracle_always_succeeds_without_slip(size, maps):
    env = from_gymnasium("FrozenLake-v1", env_kwargs={"size": size, "is_slippery": False}, max_steps=200, **FL)
    assert _success_rate(env, oracle(env), maps) == 1.0


def test_on_slippery_ice_the_oracle_beats_random_play():
    env = from_gymnasium("FrozenLake-v1", env_kwargs={"size": 4, "is_slippery": True}, **FL)
    assert _success_rate(env, oracle(env), 100) > _success_rate(env, random_policy(env, seed=0), 100) + 0.3


def test_config_ids_with_the_gymnasium_prefix_build_the_adapter():
    env = make_env("gymnasium:FrozenLake-v1", env_kwargs={"size": 4, "is_slippery": False}, disable_env_checker=True,
                   **FL)
    assert env.unwrapped.legal_actions == ("left", "down", "right", "up")


@pytest.mark.parametrize("env_id,seeds", [("MiniGrid-Empty-Random-5x5-v0", 200), ("MiniGrid-DoorKey-5x5-v0", 200),
                                          ("MiniGrid-DoorKey-8x8-v0", 50)])
def test_the_minigrid_oracle_plans_to_the_goal_under_minigrids_own_rules(env_id, seeds):
    env = from_gymnasium(env_id, max_steps=300, **FL)
    assert _success_rate(env, oracle(env), seeds) == 1.0


def test_minigrid_prompts_carry_the_mission_and_a_caption():
    env = from_gymnasium("MiniGrid-DoorKey-5x5-v0", state_in_prompt=True, **FL)
    _quiet_check(env)
    obs, info = env.reset(seed=0)
    assert "Mission: use the key to open the door and then get to the goal." in obs["text"]
    assert "State: you are at (1,3) facing left; goal at (3,3); key at (1,2); locked door at (2,1)" in obs["text"]
    # The oracle's first moves: turn to face the key above, pick it up.
    pi = oracle(env)
    first = [env.parse(pi.act(obs, info)).action]
    obs, _, _, _, info = env.step(pi.act(obs, info))
    first.append(env.parse(pi.act(obs, info)).action)
    assert first == ["right", "pickup"]
