"""The help-seeking setup through the training config: nested wrapper options,
demonstrations with random asks, long/short rationales, eval env overrides."""

import gymnasium as gym
import pytest

import rlvlm.envs  # noqa: F401
from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.train.config import TrainConfig
from rlvlm.config import load_config
from rlvlm.train.evaluate import RunEvalConfig, evaluate_run
from rlvlm.train.rl import make_env_factory, merge_kwargs
from rlvlm.train.sft import collect_demonstrations

HELP = ["env.id=rlvlm/VisualQA-v0", "env.image_size=48", "env.kwargs.task=digits",
        "env.kwargs.missing_info.p=0.5", "env.kwargs.ask_for_help.mode=single_turn"]


def test_dotted_override_builds_nested_wrapper_options():
    cfg = load_config(TrainConfig, "numberline", [*HELP, "env.kwargs.ask_for_help.ask_cost=0.2"])
    assert cfg.env.kwargs["missing_info"] == {"p": 0.5}
    assert cfg.env.kwargs["ask_for_help"] == {"mode": "single_turn", "ask_cost": 0.2}
    # typed dict fields keep one level: the whole dotted rest is the key
    cfg = load_config(TrainConfig, "numberline", ["reward.weights.help_ternary=1.0"])
    assert cfg.reward.weights == {"help_ternary": 1.0}


def test_env_factory_applies_the_wrappers_and_eval_overrides():
    cfg = load_config(TrainConfig, "numberline", HELP)
    obs, info = make_env_factory(cfg)().reset(seed=3)
    assert "ask for help" in obs["text"] and info["help_mode"] == "single_turn"
    env = make_env_factory(cfg, {"split": "test", "missing_info": {"p": 1.0}})()
    assert all(env.reset(seed=s)[1]["info_missing"] for s in range(5))
    assert env.unwrapped.records.split == "test"


def test_ask_rate_needs_the_ask_action():
    with pytest.raises(ConfigError, match=r"sft.ask_rate=0.1 needs the ask action; fix: set env.kwargs.ask_for_help"):
        load_config(TrainConfig, "numberline", ["sft.ask_rate=0.1"])
    with pytest.raises(ConfigError, match=r"sft.ask_rate=1.5 must be a fraction"):
        load_config(TrainConfig, "numberline", [*HELP, "sft.ask_rate=1.5"])


@pytest.mark.parametrize("mode", ["single_turn", "multi_turn"])
def test_demonstrations_never_ask_unless_told_and_then_at_random(mode):
    cfg = load_config(TrainConfig, "numberline", [*HELP[:-1], f"env.kwargs.ask_for_help.mode={mode}"])
    make = make_env_factory(cfg)
    demos = collect_demonstrations(make, 60, seed=500_000)
    assert len(demos) == 60 and not any('"ask"' in r for _, r in demos)  # the guessing oracle
    demos = collect_demonstrations(make, 200, seed=500_000, ask_rate=0.5)
    asks = [r for _, r in demos if '"answer": "ask"' in r]
    # random asks, whatever the image: about half of the 200 first steps
    assert 70 < len(asks) < 130
    if mode == "multi_turn":  # every ask is followed by an answer from the clean view
        assert len(demos) == 200 + len(asks)
        after = [demos[i + 1] for i, (_, r) in enumerate(demos) if '"answer": "ask"' in r]
        assert all("here is the clear image" in o["text"] and "ask" not in r.split('"answer"')[1] for o, r in after)
    else:
        assert len(demos) == 200


def test_long_and_mixed_rationales():
    short = gym.make("rlvlm/VisualQA-v0", task="counting", image_size=48)
    long = gym.make("rlvlm/VisualQA-v0", task="counting", image_size=48, rationale="long")
    _, i_s = short.reset(seed=7)
    _, i_l = long.reset(seed=7)
    assert i_s["answers"] == i_l["answers"]
    n = len(i_l["facts"]["objects"])
    assert i_l["rationale"].startswith(f"I see {n}: ") and i_l["rationale"].endswith("; so " + i_s["rationale"])
    assert i_l["rationale"].count(",") == n - 1
    # the oracle is right with either chain
    for env, info in ((short, i_s), (long, i_l)):
        _, r, *_ = env.step(env.unwrapped.oracle_reply(info))
        assert r == 1.0
    mixed = gym.make("rlvlm/VisualQA-v0", task="counting", image_size=48, rationale="mixed")
    kinds = [mixed.reset(seed=s)[1]["rationale"].startswith("I see") for s in range(40)]
    assert 10 < sum(kinds) < 30
    with pytest.raises(ConfigError, match="rationale='verbose' is not one of short, long, mixed"):
        gym.make("rlvlm/VisualQA-v0", rationale="verbose")


def test_eval_overrides_parse_env_keys():
    opts = load_config(RunEvalConfig, None, ["episodes=20", "env_kwargs.missing_info.p=1.0", "env_kwargs.split=test"])
    assert (opts.episodes, opts.seed, opts.temperature) == (20, None, None)
    env = opts.env_kwargs
    assert env == {"missing_info": {"p": 1.0}, "split": "test"}
    merged = merge_kwargs({"task": "digits", "missing_info": {"p": 0.3, "modes": ["blank"]}}, env)
    assert merged == {"task": "digits", "split": "test", "missing_info": {"p": 1.0, "modes": ["blank"]}}
    with pytest.raises(ConfigError, match="unknown config key 'episode'"):
        load_config(RunEvalConfig, None, ["episode=3"])
    with pytest.raises(ConfigError, match="fix: env_kwargs.missing_info.p=1.0"):  # the old spelling, before any work
        evaluate_run("does-not-exist", ["env.missing_info.p=1.0"])


def test_reveal_without_note_repeats_the_first_turn_prompt():
    from rlvlm.envs import make_env

    kw = dict(task="digits", image_size=48, missing_info={"p": 1.0, "modes": ["blank"]})
    env = make_env("rlvlm/VisualQA-v0", ask_for_help={"mode": "multi_turn", "reveal_note": ""}, **kw)
    first, _ = env.reset(seed=4)
    second, reward, terminated, _, info = env.step(env.get_wrapper_attr("ask_reply")())
    assert not terminated and info["revealed"] and reward == pytest.approx(-0.1)  # ask_missing 0 - ask_cost 0.1
    assert second["text"] == first["text"] and (second["image"] != first["image"]).any()  # clean image, same prompt
    clean = make_env("rlvlm/VisualQA-v0", ask_for_help="multi_turn", task="digits", image_size=48)
    assert clean.reset(seed=4)[0]["text"] == second["text"]
    with_note = make_env("rlvlm/VisualQA-v0", ask_for_help="multi_turn", **kw)
    with_note.reset(seed=4)
    assert with_note.step(with_note.get_wrapper_attr("ask_reply")())[0]["text"].startswith("You asked for help")
    with pytest.raises(ConfigError, match="reveal_note=3 must be a string"):
        make_env("rlvlm/VisualQA-v0", ask_for_help={"mode": "multi_turn", "reveal_note": 3}, **kw)
