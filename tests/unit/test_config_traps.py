"""Configs that run but cannot learn fail at start with one line naming the fix (issue 15)."""

from __future__ import annotations

import pytest

from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.train.config import TrainConfig


def _validate(preset: str, *overrides: str) -> TrainConfig:
    cfg = load_config(TrainConfig, preset, list(overrides))
    cfg.validate()
    return cfg


@pytest.mark.parametrize("estimator", ["rloo", "grpo", "dr_grpo"])
def test_group_estimator_without_groups(estimator):
    # group_size=1: every episode is its own group, so return - group mean = 0 for all of them.
    with pytest.raises(ConfigError, match=rf"algo.advantage={estimator} with rollout.group_size=1 .*fix: set "
                                          r"rollout.group_size >= 2"):
        _validate("numberline", f"algo.advantage={estimator}")


def test_group_estimator_with_groups_and_reinforce_pp_without_are_fine():
    _validate("numberline", "algo.advantage=rloo", "rollout.group_size=4", "model.value_head=false")
    _validate("numberline", "algo.advantage=reinforce_pp", "model.value_head=false")


@pytest.mark.parametrize("overrides", [["algo.advantage=grpo", "rollout.group_size=4", "algo.reward_norm=false"],
                                       ["algo.advantage=rloo", "rollout.group_size=4",
                                        "algo.reward_norm=false"]])
def test_a_critic_nothing_reads_is_refused(overrides):
    # The rlhf preset has a value head for PPO; switched to a group estimator the head would still
    # be fitted to raw reward-model scores through the shared trunk (docs/results.md, RLHF section).
    with pytest.raises(ConfigError, match=r"model.value_head=true with algo.advantage=(grpo|rloo): group advantages "
                                          r"read no values.*fix: set model.value_head=false") as err:
        _validate("numberline", *overrides)
    assert "\n" not in str(err.value)
    _validate("numberline", *overrides, "model.value_head=false")
    _validate("numberline", *overrides, "algo.value_coef=0")  # a head that is never fitted harms nothing
    _validate("numberline", *overrides, "updates=0")  # a warm-start only: the head is saved for a later PPO run


@pytest.mark.parametrize("overrides, message", [
    (["rollout.temperature=0"], r"rollout.temperature=0.0: RL needs sampled actions.*fix: set it > 0"),
    (["rollout.top_p=0"], r"rollout.top_p=0.0 must be in \(0, 1\]"),
    (["algo.gamma=1.5"], r"algo.gamma=1.5 must be in \[0, 1\]"),
    (["algo.lam=-0.1"], r"algo.lam=-0.1 must be in \[0, 1\]"),
    (["algo.kl_coef=0.1", "model.reference=auto"], r"algo.kl_coef=0.1 needs a reference policy; fix: set model.reference=copy"),
    (["algo.kl_coef=0.1", "model.reference=none", "model.lora.r=8"], r"needs a reference policy"),
    (["algo.target_entropy=0.5", "algo.entropy_coef=0"], r"algo.target_entropy=0.5 .*fix: set algo.entropy_coef > 0"),
    (["sft.epochs=0"], r"sft.episodes=64 with sft.epochs=0 .*fix: set sft.epochs >= 1 or sft.episodes=0"),
    (["eval.episodes=0"], r"eval.episodes=0 must be >= 1"),
    (["abstention_alarm=1.5"], r"abstention_alarm=1.5 must be a fraction in \[0, 1\] \(0: off\)"),
    (["threads=-1"], r"threads=-1 must be >= 0; fix: threads=1 \(reproducible\) or 0"),
    (["algo.ref_reset_every=-1"], r"algo.ref_reset_every=-1 must be >= 0"),
    (["algo.ref_reset_every=10", "algo.kl_coef=0"], r"algo.ref_reset_every=10 resets the frozen KL reference copy; "
                                                    r"it needs algo.kl_coef > 0 and model.reference=copy"),
    (["algo.ref_reset_every=10", "model.reference=auto", "model.lora.r=8", "sft.episodes=0"], r"\(they are 0.05 and auto\)"),
    (["algo.lr_schedule=wsd"], r"algo.lr_schedule=wsd with algo.decay_updates=0 .*fix: set algo.decay_updates"),
    (["algo.lr_schedule=wsd", "updates=100", "algo.decay_updates=101"], r"the decay must cover 1 to updates - warmup_updates"),
    (["algo.lr_schedule=wsd", "updates=100", "algo.decay_updates=95", "algo.warmup_updates=10"], r"warmup_updates=10\)"),
    (["algo.lr_schedule=cosine", "algo.decay_updates=10"], r"algo.decay_updates=10 is only read by "
                                                             r"algo.lr_schedule=wsd .*fix: set algo.lr_schedule=wsd"),
])
def test_traps_fail_with_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        _validate("numberline", *overrides)
    assert "\n" not in str(err.value)


def test_reward_norm_is_for_gae_only():
    with pytest.raises(ConfigError, match=r"algo.reward_norm=true scales discounted returns for gae only.*"
                                          r"fix: set algo.reward_norm=false"):
        _validate("numberline-grpo", "algo.reward_norm=true")
    _validate("ezpoints-grpo")  # its base (ezpoints) sets reward_norm; the GRPO preset turns it off


def test_kl_with_a_reference_is_fine():
    _validate("numberline", "algo.kl_coef=0.1", "model.reference=copy")
    _validate("numberline", "algo.kl_coef=0.1", "model.lora.r=8", "model.reference=auto", "sft.episodes=0")


def test_kl_to_a_lora_reference_after_an_in_run_warm_start():
    # The disabled adapter is the model before SFT: KL would pull towards the untrained weights.
    with pytest.raises(ConfigError, match=r"fix: set model.reference=copy \(taken after the warm-start\)"):
        _validate("numberline", "algo.kl_coef=0.1", "model.lora.r=8", "model.reference=auto")


@pytest.mark.parametrize("value", ["0", "0.5"])
def test_help_reward_that_pays_guessing_on_a_degraded_image(value):
    # answer_missing >= ask_missing (0): guessing where the image lacks the answer would pay as much as asking.
    with pytest.raises(ConfigError, match=rf"answer_missing={float(value):g} must be < ask_missing=0: .*fix: e.g. "
                                          r"answer_missing=-1") as err:
        _validate("help-seeking", f"reward.options.help_ternary.answer_missing={value}")
    assert "\n" not in str(err.value)
    _validate("help-seeking", "reward.options.help_ternary.answer_missing=null")  # graded like any answer: fine
