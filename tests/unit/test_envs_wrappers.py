"""MissingVisualInfo and AskForHelp: degradation, info keys, help rewards."""

import json

import gymnasium as gym
import numpy as np
import pytest

import rlvlm  # noqa: F401
from rlvlm.envs import AskForHelp, MissingVisualInfo, make_env, oracle, random_policy
from rlvlm.envs import degrade
from rlvlm.envs.wrappers import DROP_NOTE
from rlvlm.errors import ConfigError, RlvlmError
from rlvlm.tasks import make_task

SIZE = 64


def qa(task="spatial", p=1.0, modes=degrade.MODES, help_mode=None, **kw):
    env = gym.make("rlvlm/VisualQA-v0", task=task, image_size=SIZE, **kw)
    env = MissingVisualInfo(env, p=p, modes=modes)
    return AskForHelp(env, mode=help_mode) if help_mode else env


def answer(text: str) -> str:
    return json.dumps({"thoughts": "t", "answer": text})


def test_p_zero_never_degrades_and_p_one_always_does():
    env = qa(p=0.0)
    for s in range(30):
        obs, info = env.reset(seed=s)
        assert not info["info_missing"] and not info["degraded"] and info["degradation"] is None
        assert np.array_equal(obs["image"], env.unwrapped.current_observation()["image"])
    env = qa(p=1.0)
    for s in range(30):
        _, info = env.reset(seed=s)
        assert info["info_missing"] and info["degraded"] and info["degradation"] in degrade.MODES


def test_degradation_rate_is_about_p_and_modes_vary():
    env = qa(p=0.3, task="mixed")
    infos = [env.reset(seed=s)[1] for s in range(400)]
    rate = np.mean([i["info_missing"] for i in infos])
    assert 0.22 < rate < 0.38
    assert len({i["degradation"] for i in infos if i["degradation"]}) == len(degrade.MODES)


def test_degradation_is_reproducible_per_seed():
    a, b = qa(p=0.5), qa(p=0.5)
    for s in range(20):
        oa, ia = a.reset(seed=s)
        ob, ib = b.reset(seed=s)
        assert ia["degradation"] == ib["degradation"] and oa["image"].tobytes() == ob["image"].tobytes()


@pytest.mark.parametrize("mode", degrade.MODES)
def test_each_mode_hides_the_relevant_region(mode):
    task = "digits" if mode == "blur" else "spatial"
    env = qa(task=task, modes=(mode,))
    done = 0
    for s in range(40):
        obs, info = env.reset(seed=s)
        if info["degradation"] != mode:
            continue  # crop is skipped where no clear window exists
        clean = env.unwrapped.current_observation()["image"]
        img = obs["image"]
        assert not np.array_equal(img, clean)
        for x0, y0, x1, y1 in info["facts"]["boxes"]:
            cx, cy = int((x0 + x1) / 2 * SIZE), int((y0 + y1) / 2 * SIZE)
            if mode == "occlude":
                assert tuple(img[cy, cx]) == (128, 128, 128)
            if mode == "blank":
                assert (img == 255).all()
            if mode == "drop":
                assert (img == 0).all() and obs["text"].endswith(DROP_NOTE)
            if mode == "blur":  # no crisp black strokes left
                assert img.min() > 40
        done += 1
    assert done > 5


def test_crop_window_excludes_every_relevant_box():
    for record in make_task("colours", image_size=SIZE)[:30]:
        windows = degrade.crop_windows(record["facts"]["boxes"])
        for x0, y0, side in windows:
            for b in record["facts"]["boxes"]:
                assert not (x0 < b[2] and b[0] < x0 + side and y0 < b[3] and b[1] < y0 + side)


def test_blur_is_not_used_where_it_keeps_the_answer():
    record = make_task("colours", image_size=SIZE)[0]
    assert "blur" not in degrade.applicable_modes(degrade.MODES, record["image"], record["facts"])
    record = make_task("digits", image_size=SIZE)[0]
    assert "blur" in degrade.applicable_modes(degrade.MODES, record["image"], record["facts"])


def test_forced_degradation_via_reset_options():
    env = qa(p=0.0)
    _, info = env.reset(seed=0, options={"degradation": "blank"})
    assert info["degradation"] == "blank" and info["info_missing"]
    env = qa(p=1.0)
    _, info = env.reset(seed=0, options={"degradation": None})
    assert not info["info_missing"]


def test_missing_info_works_on_multi_step_games():
    env = make_env("rlvlm/Points24-v0", image_size=SIZE, missing_info={"p": 1.0, "modes": ["occlude"]})
    obs, info = env.reset(seed=0)
    pi = oracle(env)
    for _ in range(3):
        obs, _, _, _, info = env.step(pi.act(obs, info))
        assert info["degraded"] and (obs["image"] == 128).all(axis=-1).any()


# -------------------------------------------------------------- AskForHelp ---
def test_single_turn_rewards_table():
    # (degraded?, reply, reward, abstained, answered)
    env = qa(task="digits", p=1.0, help_mode="single_turn")
    _, info = env.reset(seed=0)
    _, r, term, _, info = env.step(answer("ask"))
    assert (r, term, info["abstained"], info["asked"], info["info_missing"]) == (0.0, True, True, True, True)
    assert info["help_action"] == "ask" and info["correct"] is None and info["is_success"] is False

    env = qa(task="digits", p=0.0, help_mode="single_turn")
    _, info = env.reset(seed=0)
    _, r, term, _, info = env.step(answer("ask"))
    assert (r, term, info["abstained"], info["info_missing"]) == (-0.2, True, True, False)

    _, info = env.reset(seed=0)
    _, r, term, _, info = env.step(answer(info["answers"][0]))
    assert (r, term, info["answered"], info["correct"], info["asked"]) == (1.0, True, True, True, False)

    _, info = env.reset(seed=0)
    wrong = "1" if info["answers"][0] != "1" else "2"
    _, r, _, _, info = env.step(answer(wrong))
    assert (r, info["correct"], info["help_action"]) == (-1.0, False, "answer")

    _, info = env.reset(seed=0)
    _, r, _, _, info = env.step("{garbage")
    assert (r, info["help_action"], info["answered"]) == (-1.0, "invalid", False)


def test_multi_turn_ask_reveals_the_clean_view_at_a_cost():
    env = qa(task="digits", p=1.0, modes=("blank",), help_mode="multi_turn")
    obs, info = env.reset(seed=0)
    assert (obs["image"] == 255).all() and "ask" in obs["text"]
    obs, r, term, _, info = env.step(answer("ask"))
    assert r == pytest.approx(-0.1) and not term  # 0 for a needed ask, minus ask_cost
    assert info["revealed"] and not info["degraded"] and info["info_missing"]
    assert not (obs["image"] == 255).all()  # the digit is visible again
    assert np.array_equal(obs["image"], env.unwrapped.current_observation()["image"])
    assert obs["text"].startswith("You asked for help")
    obs, r, term, _, info = env.step(answer(info["answers"][0]))
    assert (r, term, info["correct"], info["asked"]) == (1.0, True, True, True)
    assert info["episode_return"] == pytest.approx(0.9) and info["is_success"]


def test_multi_turn_second_ask_abstains():
    env = qa(task="digits", p=0.0, help_mode="multi_turn")
    env.reset(seed=0)
    _, r1, _, _, _ = env.step(answer("ask"))
    _, r2, term, _, info = env.step(answer("ask"))
    assert r1 == pytest.approx(-0.3) and r2 == pytest.approx(-0.2) and term and info["abstained"]
    with pytest.raises(RlvlmError):
        env.step(answer("3"))


def test_soft_accuracy_interpolates_the_help_reward():
    records = [{"image": np.zeros((8, 8, 3), np.uint8), "question": "q?", "answers": ["a", "a", "b", "c", "c", "c"]}]
    env = AskForHelp(gym.make("rlvlm/VisualQA-v0", records=records, scoring="soft", image_size=32))
    env.reset(seed=0)
    _, r, _, _, info = env.step(answer("a"))  # accuracy 2/3
    assert info["accuracy"] == pytest.approx(2 / 3) and r == pytest.approx(-1 + 2 * 2 / 3)


def test_oracle_asks_exactly_when_information_is_missing():
    env = qa(task="mixed", p=0.5, help_mode="single_turn")
    pi = oracle(env)
    for s in range(40):
        obs, info = env.reset(seed=s)
        _, r, _, _, info = env.step(pi.act(obs, info))
        assert info["asked"] == info["info_missing"]
        assert r == (0.0 if info["info_missing"] else 1.0)
    guesser = oracle(env, ask=False)
    obs, info = env.reset(seed=1, options={"degradation": "blank"})
    assert "ask" not in json.loads(guesser.act(obs, info))["answer"]


def test_random_policy_sometimes_asks():
    env = qa(task="spatial", p=0.5, help_mode="single_turn")
    pi = random_policy(env, seed=0)
    asks = 0
    for s in range(100):
        obs, info = env.reset(seed=s)
        asks += env.step(pi.act(obs, info))[4]["asked"]
    assert 3 < asks < 60


def test_ask_for_help_on_a_card_game():
    env = make_env("rlvlm/NumberLine-v0", image_size=SIZE, missing_info=1.0, ask_for_help="multi_turn")
    obs, info = env.reset(seed=0)
    assert '"action": "ask"' in obs["text"]
    obs, r, term, _, info = env.step('{"action": "ask"}')
    assert not term and info["revealed"]
    obs, r, term, _, info = env.step(oracle(env, ask=False).act(obs, info))
    assert info["action_valid"]


@pytest.mark.parametrize(
    "kwargs",
    [{"p": 1.5}, {"modes": ("smudge",)}, {"modes": ()}, {"p": "high"}],
)
def test_missing_info_bad_config(kwargs):
    with pytest.raises(ConfigError):
        MissingVisualInfo(gym.make("rlvlm/VisualQA-v0", image_size=32), **kwargs)


@pytest.mark.parametrize("kwargs", [{"mode": "two_turn"}, {"ask_token": ""}, {"ask_token": "Ask"}, {"wrong": float("nan")}])
def test_ask_for_help_bad_config(kwargs):
    with pytest.raises(ConfigError):
        AskForHelp(gym.make("rlvlm/VisualQA-v0", image_size=32), **kwargs)
    with pytest.raises(ConfigError, match="already an action"):
        AskForHelp(gym.make("rlvlm/Blackjack-v0", image_size=32), ask_token="hit")
