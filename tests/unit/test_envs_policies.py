"""Oracle and random policies, demonstrations, and the evaluation runner."""

import json
import os

import gymnasium as gym
import pytest

import rlvlm  # noqa: F401
from rlvlm.envs import (
    action_char_span,
    collect_demos,
    evaluate_policy,
    make_env,
    make_policy,
    oracle,
    parse_action,
    random_policy,
)
from rlvlm.errors import ConfigError

SMALL = {"image_size": 32}


@pytest.mark.parametrize("env_id", ["rlvlm/NumberLine-v0", "rlvlm/EZPoints-v0", "rlvlm/Points24-v0"])
def test_oracle_solves_every_episode(env_id):
    summary = evaluate_policy(env_id, "oracle", episodes=1000, seed=0, **SMALL)
    assert summary["success_rate"] >= 0.99
    assert summary["success_rate"] == 1.0  # optimal play on solvable deals
    assert summary["invalid_action_rate"] == 0.0


def test_blackjack_basic_strategy_win_rate():
    summary = evaluate_policy("rlvlm/Blackjack-v0", "oracle", episodes=2000, seed=0, **SMALL)
    assert abs(summary["success_rate"] - 0.42) <= 0.03
    rand = evaluate_policy("rlvlm/Blackjack-v0", "random", episodes=2000, seed=0, **SMALL)
    assert rand["success_rate"] < summary["success_rate"] - 0.05


@pytest.mark.parametrize(
    "env_id, ceiling",
    [("rlvlm/NumberLine-v0", 0.6), ("rlvlm/EZPoints-v0", 0.1), ("rlvlm/Points24-v0", 0.02), ("rlvlm/VisualQA-v0", 0.5)],
)
def test_random_policy_is_a_weak_but_valid_baseline(env_id, ceiling):
    summary = evaluate_policy(env_id, "random", episodes=200, seed=0, **SMALL)
    assert summary["success_rate"] < ceiling
    assert summary["invalid_action_rate"] == 0.0  # it writes well-formed replies


def test_oracle_writes_compact_deterministic_cot():
    env = gym.make("rlvlm/NumberLine-v0", **SMALL)
    obs, info = env.reset(seed=0, options={"target": 3, "current": 1})
    assert oracle(env).act(obs, info) == '{"thoughts": "target 3, current 1, move +", "action": "+"}'
    env = gym.make("rlvlm/Points24-v0", **SMALL)
    obs, info = env.reset(seed=0, options={"cards": ["A", "3", "4", "6"]})
    reply = oracle(env).act(obs, info)
    assert json.loads(reply) == {"cards": [1, 3, 4, 6], "formula": "", "thoughts": "6/(1-3/4)=24", "action": "6"}
    env = gym.make("rlvlm/Blackjack-v0", **SMALL)
    obs, info = env.reset(seed=0, options={"player": ["A", "7"], "dealer": ["9", "5"]})
    assert json.loads(oracle(env).act(obs, info)) == {"thoughts": "dealer 9, player soft 18, hit", "action": "hit"}


@pytest.mark.parametrize("env_id", ["rlvlm/NumberLine-v0", "rlvlm/EZPoints-v0", "rlvlm/Points24-v0", "rlvlm/Blackjack-v0", "rlvlm/VisualQA-v0"])
@pytest.mark.parametrize("style", ["cot", "action_only"])
def test_oracle_replies_parse_and_split_at_the_action_key(env_id, style):
    env = gym.make(env_id, prompt_style=style, **SMALL)
    obs, info = env.reset(seed=1)
    reply = oracle(env).act(obs, info)
    assert env.unwrapped.parse(reply).valid
    start, _ = action_char_span(reply)
    key = env.unwrapped.action_key
    assert reply[start:].startswith(f'"{key}":')
    if style == "action_only":
        assert start == 1 and set(json.loads(reply)) == {key}


def test_oracle_is_stateless_and_continues_from_any_state():
    # Off-policy prefix: someone else typed "10"; the oracle still finishes.
    env = gym.make("rlvlm/Points24-v0", **SMALL)
    obs, info = env.reset(seed=0, options={"cards": ["2", "3", "4", "10"]})
    obs, _, _, _, info = env.step('{"action": "10"}')
    pi = oracle(env)
    total, done = 0.0, False
    while not done:
        obs, r, term, trunc, info = env.step(pi.act(obs, info))
        total, done = total + r, term or trunc
    assert total == 10
    # A dead end (no solution extends the formula): submit at once.
    obs, info = env.reset(seed=0, options={"cards": ["A", "3", "4", "6"]})
    obs, _, _, _, info = env.step('{"action": "1"}')
    assert json.loads(pi.act(obs, info)) == {"cards": [1, 3, 4, 6], "formula": "1", "thoughts": "no solution", "action": "="}


def test_policies_accept_ids_and_reject_unknown_names():
    assert oracle("rlvlm/NumberLine-v0", prompt_style="action_only").act(
        {}, {"target": 1, "current": 4}
    ) == '{"action": "-"}'
    assert random_policy("rlvlm/Blackjack-v0", seed=0).act({}, {}) in ('{"thoughts": "random", "action": "hit"}', '{"thoughts": "random", "action": "stand"}')
    with pytest.raises(ConfigError, match="did you mean"):
        make_policy("oracel", "rlvlm/NumberLine-v0")


def test_collect_demos_records_exact_prompts_and_completions():
    demos = collect_demos("rlvlm/EZPoints-v0", episodes=5, seed=100, **SMALL)
    assert len(demos) == 20  # 4 tokens per EZPoints solution
    first = demos[0]
    assert set(first) >= {"image", "prompt", "completion", "reward", "episode", "step", "success"}
    assert first["image"].shape == (32, 32, 3) and "EZPoints" in first["prompt"]
    assert all(parse_action(d["completion"], ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "+", "*", "=")).valid for d in demos)
    assert demos[3]["reward"] == 10 and all(d["success"] for d in demos)


def test_evaluate_writes_report_and_pngs(tmp_path):
    out = tmp_path / "run"
    summary = evaluate_policy("rlvlm/EZPoints-v0", "oracle", episodes=20, seed=0, output_dir=str(out), save_images=5, **SMALL)
    report = json.loads((out / "report.json").read_text())
    assert report["success_rate"] == summary["success_rate"] == 1.0
    assert report["episodes"] == 20 and "mean_return" in report and len(report["per_episode"]) == 20
    pngs = sorted(os.listdir(out / "observations"))
    assert len([p for p in pngs if p.endswith(".png")]) == 5 and "index.jsonl" in pngs
    shot = json.loads((out / "observations" / "index.jsonl").read_text().splitlines()[0])
    assert shot["image"] == "ep000_step00.png" and shot["prompt"] and shot["reply"]


def test_evaluate_reports_help_fields_under_the_wrappers():
    summary = evaluate_policy(
        "rlvlm/VisualQA-v0", "oracle", episodes=40, seed=0, missing_info=0.5, ask_for_help="single_turn", task="digits", **SMALL
    )
    assert summary["ask_for_help"] == "single_turn"
    env = make_env("rlvlm/VisualQA-v0", missing_info=0.5, ask_for_help="single_turn", task="digits", **SMALL)
    assert isinstance(oracle(env).act({}, {"info_missing": True, "revealed": False}), str)


def test_gallery_writes_one_png_per_env_and_mode(tmp_path):
    from experiments.gallery import save_gallery

    paths = save_gallery(str(tmp_path), image_size=64)
    names = {os.path.basename(p) for p in paths}
    assert {"numberline.png", "ezpoints.png", "points24.png", "blackjack.png", "visualqa_spatial.png", "missing_crop.png"} <= names
