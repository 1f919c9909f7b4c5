"""The training driver end to end on CPU with tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.tiny import ARCHS, build_tiny_model
from rlvlm.rollout.collector import Collector
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _cfg(model_dir, out, *extra):
    return load_config(TrainConfig, "smoke", [f"model.name_or_path={model_dir}", f"output_dir={out}", *extra])


def test_smoke_preset_writes_run_outputs(model_dir, tmp_path):
    report = train(_cfg(model_dir, tmp_path / "run"), progress=lambda s: None)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "report.json", "report.md", "curves.png"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all("time/rollout" in m and "rollout/env_steps" in m for m in lines)
    saved = json.loads((run / "report.json").read_text())
    assert saved["final"]["episodes"] == 8 and "sft" in saved
    assert 0.0 <= report["final"]["success_rate"] <= 1.0
    assert list((run / "checkpoints").iterdir())


@pytest.mark.parametrize("arch", ARCHS)
def test_smoke_every_architecture(arch, tmp_path):
    d = tmp_path / arch
    build_tiny_model(d, arch, "tiny", seed=0)
    cfg = _cfg(d, tmp_path / "run", "updates=1", "sft.episodes=1", "eval.episodes=2")
    report = train(cfg, progress=lambda s: None)
    assert report["final"]["episodes"] == 2


def test_resume_matches_uninterrupted_run(model_dir, tmp_path):
    common = ["updates=3", "checkpoint_every=1", "checkpoint_keep=0", "sft.episodes=0", "eval.episodes=2",
              "algo.lr=0.001"]
    train(_cfg(model_dir, tmp_path / "full", *common), progress=lambda s: None)
    # As if interrupted after update 1: a new process resumes from that checkpoint and runs to the end.
    train(_cfg(model_dir, tmp_path / "part2", *common, f"resume={tmp_path / 'full' / 'checkpoints' / 'step-1'}"),
          progress=lambda s: None)
    a = load_file(str(tmp_path / "full" / "checkpoints" / "step-3" / "policy" / "model.safetensors"))
    b = load_file(str(tmp_path / "part2" / "checkpoints" / "step-3" / "policy" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_keeps_the_report(model_dir, tmp_path):
    """The warm-start evaluation made before the checkpoint survives a resume (it used to print 'success nan')."""
    common = ["updates=2", "checkpoint_every=1", "checkpoint_keep=0", "sft.episodes=2", "eval.episodes=4"]
    full = train(_cfg(model_dir, tmp_path / "full", *common), progress=lambda s: None)
    lines: list[str] = []
    resumed = train(_cfg(model_dir, tmp_path / "part2", *common,
                         f"resume={tmp_path / 'full' / 'checkpoints' / 'step-1'}"), progress=lines.append)
    assert resumed["sft"] == full["sft"] and resumed["sft_training"] == full["sft_training"]
    saved = json.loads((tmp_path / "part2" / "report.json").read_text())
    assert saved["sft"]["success_rate"] == full["sft"]["success_rate"]
    assert "nan" not in lines[-1] and f"success {full['sft']['success_rate']:.3f} after warm-start" in lines[-1]


def _rescored_like_sampled(policy, samples):
    """The learner's scores of `samples`, checked equal to the log-probs they were sampled with."""
    scored = policy.score(samples)
    old = torch.zeros_like(scored.logprobs)
    for i, s in enumerate(samples):
        old[i, : s.num_tokens] = torch.tensor(s.logprobs)
    assert (old - scored.logprobs.detach()).abs().max() < 1e-4
    return scored


def test_old_logprobs_use_each_steps_own_prompt(model_dir):
    """NumberLine's image changes every step; every transition must score under its own prompt/image."""
    import gymnasium as gym

    import rlvlm.envs  # noqa: F401

    policy = load_policy(model_dir)
    envs = [gym.make("rlvlm/NumberLine-v0", image_size=84) for _ in range(2)]
    col = Collector(envs, policy, SamplingConfig(max_new_tokens=8), seed=0)
    rollout = col.collect_steps(3)
    images = [tr.sample.image for tr in rollout.transitions if tr.env_index == 0]
    assert len(images) == 3
    # Invalid actions leave the state as it was, so force distinct states via the recorded infos instead:
    # the image recorded for a step equals the observation the env showed *at that step*.
    env = gym.make("rlvlm/NumberLine-v0", image_size=84)
    obs, _ = env.reset(seed=rollout.transitions[0].group_id)
    assert np.array_equal(obs["image"], rollout.transitions[0].sample.image)
    for tr in [t for t in rollout.transitions if t.env_index == 0][:-1]:
        obs, *_ = env.step(tr.sample.text)
        if tr.done:
            break
    samples = [tr.sample for tr in rollout.transitions]
    scored = _rescored_like_sampled(policy, samples)
    # Scoring everything under the *first* prompt (RL4VLM's bug) would give different numbers.
    first = samples[0]
    wrong = [type(s)(**{**s.__dict__, "prompt_text": first.prompt_text, "image": first.image}) for s in samples]
    changed = [not np.array_equal(s.image, first.image) for s in samples]
    if any(changed):
        ws = policy.score(wrong)
        diffs = (ws.logprobs - scored.logprobs).abs().amax(dim=1)
        assert any(d > 1e-4 for d, c in zip(diffs.tolist(), changed) if c)


def test_config_errors_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="did you mean: algo.clip_low"):
        load_config(TrainConfig, "smoke", ["algo.clip_lo=0.2"])
    with pytest.raises(ConfigError, match="algo.epochs"):
        load_config(TrainConfig, "smoke", ["algo.epochs=four"])
    with pytest.raises(ConfigError, match="group_size"):
        load_config(TrainConfig, "smoke", ["algo.advantage=grpo", "rollout.group_size=1"])
    with pytest.raises(ConfigError, match="env.id"):
        train(load_config(TrainConfig, "smoke", ["env.id=rlvlm/NumberLin-v0", f"output_dir={tmp_path}"]),
              progress=lambda s: None)


def test_grpo_runs(model_dir, tmp_path):
    cfg = _cfg(model_dir, tmp_path / "g", "algo.advantage=grpo", "rollout.group_size=2", "model.value_head=false",
               "updates=1", "sft.episodes=0", "eval.episodes=2")
    report = train(cfg, progress=lambda s: None)
    lines = (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["rollout/episodes"] >= 2
    assert report["final"]["episodes"] == 2


def test_target_kl_stops_the_update_early(model_dir, tmp_path):
    """A KL budget far below what one epoch moves cuts the update short; without it all epochs run."""
    common = ["updates=1", "sft.episodes=0", "eval.episodes=2", "algo.lr=0.01", "algo.epochs=4", "algo.minibatch_size=4"]
    train(_cfg(model_dir, tmp_path / "free", *common), progress=lambda s: None)
    train(_cfg(model_dir, tmp_path / "kl", *common, "algo.target_kl=1e-6"), progress=lambda s: None)
    free = json.loads((tmp_path / "free" / "metrics.jsonl").read_text().splitlines()[0])
    capped = json.loads((tmp_path / "kl" / "metrics.jsonl").read_text().splitlines()[0])
    assert free["update/stopped_early"] == 0 and free["update/optimizer_steps"] == 4 * 2  # 8 samples / mb 4, 4 epochs
    assert capped["update/stopped_early"] == 1
    assert 1 <= capped["update/optimizer_steps"] < free["update/optimizer_steps"]
    with pytest.raises(ConfigError, match="algo.target_kl"):
        load_config(TrainConfig, "smoke", ["algo.target_kl=0"]).validate()


def test_value_lr_gives_the_value_head_its_own_step(model_dir, tmp_path):
    """algo.value_lr puts the value head (and only it) in its own AdamW group; training runs with it."""
    from rlvlm.train.rl import build_policy, param_groups

    cfg = _cfg(model_dir, tmp_path / "v", "algo.lr=1e-5", "algo.value_lr=1e-3")
    policy = build_policy(cfg)
    groups = param_groups(policy, cfg.algo.lr, cfg.algo.value_lr)
    head = {id(p) for p in policy.value_head.parameters()}
    assert [g["lr"] for g in groups] == [1e-5, 1e-3]
    assert {id(p) for p in groups[1]["params"]} == head and not head & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len(policy.trainable_parameters())
    assert len(param_groups(policy, 1e-5, None)) == 1
    with pytest.raises(ConfigError, match="algo.value_lr"):
        load_config(TrainConfig, "smoke", ["algo.value_lr=-1"]).validate()

    report = train(_cfg(model_dir, tmp_path / "run", "updates=1", "sft.episodes=0", "eval.episodes=2",
                        "algo.lr=1e-5", "algo.value_lr=1e-3"), progress=lambda s: None)
    assert report["final"]["episodes"] == 2


@pytest.mark.parametrize("preset", ["numberline", "ezpoints", "points24", "blackjack", "smoke",
                                    "numberline-grpo", "ezpoints-grpo", "blackjack-grpo"])
def test_every_preset_loads_and_validates(preset):
    cfg = load_config(TrainConfig, preset)
    cfg.validate()
    assert cfg.env.id.startswith("rlvlm/") and cfg.updates >= 2


def test_help_wrappers_and_reward_components_reach_the_report(model_dir, tmp_path):
    """VisualQA under MissingVisualInfo + AskForHelp, a composite reward: the run
    logs each component under reward/<name> and evaluates the help metrics."""
    cfg = _cfg(model_dir, tmp_path / "help", "env.id=rlvlm/VisualQA-v0", "env.kwargs.task=digits",
               "env.kwargs.missing_info.p=0.5", "env.kwargs.ask_for_help.mode=single_turn",
               "sft.ask_rate=0.5", "sft.env_kwargs.missing_info.p=0.0", "reward.weights.help_ternary=1.0", "reward.weights.tokens=-0.01",
               "eval.env_kwargs.split=test", "eval.episodes=16")
    report = train(cfg, progress=lambda s: None)
    for phase in ("sft", "final"):
        ev = report[phase]
        assert ev["help/episodes"] == 16 and 0.0 <= ev["help/ask_f1"] <= 1.0
        assert ev["help/phi_10"] <= ev["help/phi_1"]  # a wrong answer costs more under c=10
    metrics = [json.loads(x) for x in (tmp_path / "help" / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        assert {"reward/help_ternary", "reward/tokens", "reward/total", "rollout/ask_recall"} <= set(m)
        # total = 1.0 * ternary - 0.01 * tokens, averaged over the same transitions
        assert m["reward/total"] == pytest.approx(m["reward/help_ternary"] - 0.01 * m["reward/tokens"], abs=1e-5)
        assert m["rollout/reward_mean"] == pytest.approx(m["reward/total"], abs=1e-5)
    # The over-abstention monitor's summary agrees with the rollout metrics it watched.
    rates = [m["rollout/false_ask_rate"] for m in metrics if "rollout/false_ask_rate" in m]
    summary = report["over_abstention"]
    assert summary["updates_flagged"] == sum(r >= 0.5 for r in rates)
    assert summary["max_false_ask_rate"] == pytest.approx(max(rates))


def test_unknown_reward_component_fails_at_config_time(model_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"reward.weights.acuracy is not a reward component \(did you mean: accuracy"):
        _cfg(model_dir, tmp_path / "bad", "reward.weights.acuracy=1.0")
    with pytest.raises(ConfigError, match=r"reward.options.overlong.cache=0 must be > 0"):
        _cfg(model_dir, tmp_path / "bad", "reward.weights.overlong=1.0", "reward.options.overlong.max_tokens=8",
             "reward.options.overlong.cache=0")


def test_kl_reference_is_the_warm_start_not_the_untrained_model(model_dir, tmp_path):
    """model.reference=copy is re-taken after the in-run SFT: the first minibatch (before any RL step)
    has policy == reference, so its KL is 0; a reference left at the untrained weights gives KL >> 0."""
    report_dir = tmp_path / "run"
    train(_cfg(model_dir, report_dir, "model.reference=copy", "algo.kl_coef=0.1", "sft.episodes=2", "sft.epochs=3",
               "sft.lr=0.005", "updates=1", "algo.epochs=1", "algo.minibatch_size=64", "eval.episodes=2"),
          progress=lambda s: None)
    first = json.loads((report_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["update/optimizer_steps"] == 1
    assert first["policy/kl"] < 1e-4


@pytest.mark.parametrize("reset_every", [0, 1])
def test_ref_reset_makes_the_reference_the_policy_of_that_update(model_dir, tmp_path, reset_every):
    """algo.ref_reset_every=1: the reference taken after update 1 is the policy update 2 starts from, so
    update 2's single minibatch (scored before its optimizer step) has KL 0; without resets it is > 0."""
    report_dir = tmp_path / "run"
    train(_cfg(model_dir, report_dir, "model.reference=copy", "algo.kl_coef=0.1", "algo.lr=0.01", "updates=2",
               "algo.epochs=1", "algo.minibatch_size=64", "eval.episodes=2", f"algo.ref_reset_every={reset_every}"),
          progress=lambda s: None)
    rows = [json.loads(x) for x in (report_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update/optimizer_steps"] for r in rows] == [1, 1]
    assert rows[0]["policy/kl"] < 1e-6  # update 1 starts from the reference either way
    if reset_every:
        assert rows[1]["policy/kl"] < 1e-6 and rows[1]["policy/ref_reset"] == 1
    else:
        assert rows[1]["policy/kl"] > 1e-4 and "policy/ref_reset" not in rows[1]


def test_every_policy_option_reaches_the_policy_from_the_train_config(model_dir, tmp_path):
    """model.KEY=VALUE sets any PolicyOptions field; the policy is built with it and saves it."""
    from rlvlm.models.policy import load_policy
    from rlvlm.train.rl import build_policy

    cfg = _cfg(model_dir, tmp_path / "o", "model.lora.r=2", "model.lora.alpha=4", "model.system_prompt=Answer briefly.",
               "model.static_cache=true", "model.value_head=false", "algo.advantage=grpo", "rollout.group_size=2")
    policy = build_policy(cfg)
    assert policy.options.lora.r == 2 and policy.options.static_cache
    assert "Answer briefly." in policy.build_prompt("hi", has_image=False)
    n_lora = sum(p.numel() for n, p in policy.model.named_parameters() if "lora_" in n and p.requires_grad)
    assert n_lora > 0 and n_lora == sum(p.numel() for p in policy.trainable_parameters())
    policy.save(tmp_path / "pol")
    again = load_policy(tmp_path / "pol")
    assert again.options.system_prompt == "Answer briefly." and again.options.lora.alpha == 4.0


def test_history_prompts_are_rescored_exactly_as_sampled(model_dir):
    """A gymnasium env through the adapter with the last 3 turns in the prompt (issue 19): each step's
    sample holds the prompt the env showed at that step, history included, and the learner re-scores
    every completion under it to the sampling log-probs."""
    from rlvlm.envs import from_gymnasium

    def make():
        return from_gymnasium("FrozenLake-v1", env_kwargs={"map_name": "4x4", "is_slippery": False}, history=3,
                              image_size=84, max_steps=6)

    policy = load_policy(model_dir)
    col = Collector([make(), make()], policy, SamplingConfig(max_new_tokens=12), seed=0)
    rollout = col.collect_steps(4)
    mine = [tr for tr in rollout.transitions if tr.env_index == 0]
    # Replay env 0 with the recorded replies: the prompt each sample was drawn under is the env's own.
    env = make()
    obs, _ = env.reset(seed=mine[0].group_id)
    for k, tr in enumerate(mine):
        assert obs["text"] in tr.sample.prompt_text and np.array_equal(obs["image"], tr.sample.image)
        assert ("Earlier turns" in obs["text"]) == (k > 0)
        obs, *_, info = env.step(tr.sample.text)
        if tr.done:
            break
    samples = [tr.sample for tr in rollout.transitions]
    _rescored_like_sampled(policy, samples)
    # The same completions under the prompts without their history score differently.
    later = [s for s in samples if "Earlier turns" in s.prompt_text]
    assert later
    cut = [type(s)(**{**s.__dict__, "prompt_text": s.prompt_text.split("Earlier turns")[0] + "Reply in JSON"
                      + s.prompt_text.split("Reply in JSON", 1)[1]}) for s in later]
    diffs = (policy.score(cut).logprobs - policy.score(later).logprobs).abs().amax(dim=1)
    assert bool((diffs > 1e-4).all())
