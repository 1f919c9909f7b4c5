"""The gymnasium contract: registration, spaces, check_env, determinism, vector envs."""

import json
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlvlm  # noqa: F401
from rlvlm.envs import ENV_IDS, make, make_env, oracle, unbatch_info, unbatch_obs

SMALL = {"image_size": 48}


def test_import_rlvlm_registers_every_env():
    out = subprocess.run(
        [sys.executable, "-c", "import gymnasium, rlvlm; print(sorted(k for k in gymnasium.registry if k.startswith('rlvlm/')))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == str(sorted(ENV_IDS))
    assert set(ENV_IDS) == {
        "rlvlm/NumberLine-v0", "rlvlm/EZPoints-v0", "rlvlm/Points24-v0", "rlvlm/Blackjack-v0", "rlvlm/VisualQA-v0",
    }  # fmt: skip


def test_envs_and_tasks_do_not_import_torch():
    code = "import sys, rlvlm, rlvlm.envs, rlvlm.tasks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_constructible_with_defaults_and_spaces(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (224, 224, 3) and obs["image"].dtype == np.uint8
    assert isinstance(obs["text"], str) and "JSON" in obs["text"]
    assert env.observation_space.contains(obs)
    assert isinstance(env.action_space, gym.spaces.Text) and env.action_space.max_length >= 1024
    assert env.action_space.contains('{"thoughts": "\u00e9\u00e8 unicode too", "action": "+"}')
    assert isinstance(info, dict) and info["step"] == 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_passes(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # check_env warns that wrapped envs are not the base env
        check_env(gym.make(env_id, render_mode="rgb_array", **SMALL).unwrapped)
        check_env(make_env(env_id, missing_info=0.5, render_mode="rgb_array", **SMALL))
        for mode in ("single_turn", "multi_turn"):
            check_env(make_env(env_id, missing_info=0.5, ask_for_help=mode, render_mode="rgb_array", **SMALL))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_is_reproducible_to_the_byte(env_id):
    def trajectory(seed):
        env = make_env(env_id, missing_info=0.5, **SMALL)
        pi = oracle(env)
        obs, info = env.reset(seed=seed)
        frames, infos = [obs["image"].tobytes() + obs["text"].encode()], [json.dumps(info, sort_keys=True, default=str)]
        for _ in range(4):
            obs, _, term, trunc, info = env.step(pi.act(obs, info))
            frames.append(obs["image"].tobytes() + obs["text"].encode())
            infos.append(json.dumps(info, sort_keys=True, default=str))
            if term or trunc:
                break
        return frames, infos

    a, b = trajectory(7), trajectory(7)
    assert a == b
    others = [trajectory(s)[0][0] for s in range(8, 14)]
    assert any(o != a[0][0] for o in others)  # different seeds, different deals


def test_reset_without_seed_continues_the_stream():
    env = gym.make("rlvlm/Points24-v0", **SMALL)
    env.reset(seed=3)
    first = [env.reset()[1]["values"] for _ in range(5)]
    env.reset(seed=3)
    assert [env.reset()[1]["values"] for _ in range(5)] == first


@pytest.mark.parametrize("size", [32, 56, 84, 112, 224])
def test_image_size_is_configurable(size):
    for env_id in ENV_IDS:
        obs, _ = gym.make(env_id, image_size=size).reset(seed=0)
        assert obs["image"].shape == (size, size, 3)
        # White background, black glyphs: high contrast at every size.
        img = obs["image"]
        assert (img == 255).all(axis=-1).mean() > 0.3 and (img < 60).all(axis=-1).any()


def test_render_returns_the_observation_image():
    env = gym.make("rlvlm/Blackjack-v0", render_mode="rgb_array", **SMALL)
    obs, _ = env.reset(seed=1)
    assert np.array_equal(env.render(), obs["image"])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_prompt_styles(env_id):
    key = "answer" if "VisualQA" in env_id else "action"
    cot = gym.make(env_id, prompt_style="cot", **SMALL)
    only = gym.make(env_id, prompt_style="action_only", **SMALL)
    t_cot, t_only = cot.reset(seed=0)[0]["text"], only.reset(seed=0)[0]["text"]
    assert '"thoughts"' in t_cot and f'"{key}"' in t_cot
    assert '"thoughts"' not in t_only and f'"{key}"' in t_only
    assert len(t_cot) < 600  # short prompts: tiny models read them every step


def test_state_in_prompt_option():
    env = gym.make("rlvlm/NumberLine-v0", state_in_prompt=True, **SMALL)
    obs, info = env.reset(seed=0)
    assert f"Target: {info['target']}. Current: {info['current']}." in obs["text"]


def test_info_carries_task_state():
    _, info = gym.make("rlvlm/Points24-v0", **SMALL).reset(seed=0)
    assert {"cards", "values", "formula", "formula_tokens", "target", "remaining"} <= set(info)
    _, info = gym.make("rlvlm/Blackjack-v0", **SMALL).reset(seed=0)
    assert {"dealer", "player", "player_sum", "usable_ace", "dealer_up"} <= set(info)
    env = gym.make("rlvlm/NumberLine-v0", **SMALL)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step('{"action": "+"}')
    assert {"target", "current", "action_valid", "action", "parse_error"} <= set(info)


def test_vector_env_batches_images_and_prompts():
    envs = make("rlvlm/EZPoints-v0", num_envs=3, **SMALL)
    obs, infos = envs.reset(seed=0)
    assert obs["image"].shape == (3, 48, 48, 3) and len(obs["text"]) == 3
    per_env = unbatch_info(infos, 3)
    single = [gym.make("rlvlm/EZPoints-v0", **SMALL).reset(seed=i)[1]["values"] for i in range(3)]
    assert [i["values"] for i in per_env] == single  # sub-env i is seeded seed + i
    pi = oracle(envs)
    actions = tuple(pi.act(o, i) for o, i in zip(unbatch_obs(obs), per_env))
    obs, rewards, term, trunc, infos = envs.step(actions)
    assert rewards.shape == (3,) and all(unbatch_info(infos, 3)[k]["action_valid"] for k in range(3))
    envs.close()


def test_make_accepts_wrapper_shortcuts():
    envs = make("rlvlm/VisualQA-v0", num_envs=2, missing_info={"p": 1.0, "modes": ["blank"]}, ask_for_help="multi_turn", **SMALL)
    obs, infos = envs.reset(seed=0)
    assert (obs["image"] == 255).all()
    assert all(i["info_missing"] and i["help_mode"] == "multi_turn" for i in unbatch_info(infos, 2))
    envs.close()
