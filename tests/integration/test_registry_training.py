"""The trainer calls the registries: an estimator and a policy loss registered here, in a test
file, train through the real `rlvlm train` loop without any library file knowing them."""

from __future__ import annotations

import json

import pytest
import torch

from rlvlm import algos
from rlvlm.algos import ADVANTAGE_ESTIMATORS, POLICY_LOSSES, register_advantage, register_policy_loss
from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture
def toy_entries():
    """A mean-baseline estimator over episode returns and a plain REINFORCE-style loss, removed afterwards."""
    seen: dict[str, list] = {"batches": [], "loss_calls": 0}

    @register_advantage("test_mean_baseline")
    def mean_baseline(batch, cfg):
        """Episode return minus the batch's mean episode return, plus 1 (so an untrained model whose
        episodes all score alike still gets a gradient: every sampled reply is made likelier)."""
        ret, _, row = batch.episode_sums(batch.rewards)
        seen["batches"].append((len(batch), int(torch.isnan(batch.values).sum()), batch.num_steps))
        return (ret - ret.mean() + 1.0)[row], ret[row]

    @register_policy_loss("test_pg")
    def pg(logp, old_logp, advantages, mask, cfg):
        seen["loss_calls"] += 1
        return -(logp * advantages).mean(), {"policy/test_pg": 1.0}

    yield seen
    ADVANTAGE_ESTIMATORS.pop("test_mean_baseline")
    POLICY_LOSSES.pop("test_pg")


def test_a_registered_estimator_and_loss_train_through_the_trainer(toy_entries, model_dir, tmp_path):
    model = model_dir
    out = tmp_path / "run"
    cfg = load_config(TrainConfig, "smoke", [
        f"model.name_or_path={model}", f"output_dir={out}", "algo.advantage=test_mean_baseline",
        "algo.policy_loss=test_pg", "model.value_head=false", "updates=2", "sft.episodes=0", "eval.episodes=2",
        "algo.lr=0.01", "algo.normalize_advantages=false"])
    report = train(cfg, progress=lambda s: None)
    batches = toy_entries["batches"]
    # Called once per update with whole episodes (the spec's default without a critic): no lockstep
    # grid, and no values, since nothing asked for a critic.
    assert len(batches) == 2
    for n, missing_values, num_steps in batches:
        assert n >= cfg.rollout.num_envs and missing_values == n and num_steps == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    assert all(r["policy/test_pg"] == 1.0 and r["update/optimizer_steps"] > 0 and r["policy/grad_norm"] > 0
               for r in rows)
    assert toy_entries["loss_calls"] == sum(r["update/optimizer_steps"] for r in rows)
    assert report["final"]["episodes"] == 2


def test_what_an_estimator_declares_is_enforced_at_config_time(toy_entries):
    register_advantage("test_needs_groups", needs_groups=True)(lambda b, c: (b.rewards, b.rewards))
    try:
        with pytest.raises(ConfigError, match=r"algo.advantage=test_needs_groups with rollout.group_size=1"):
            load_config(TrainConfig, "smoke", ["algo.advantage=test_needs_groups", "model.value_head=false"]).validate()
        load_config(TrainConfig, "smoke", ["algo.advantage=test_needs_groups", "model.value_head=false",
                                           "rollout.group_size=2"]).validate()
    finally:
        ADVANTAGE_ESTIMATORS.pop("test_needs_groups")
    with pytest.raises(ConfigError, match=r"algo.advantage='test_nope' is not a registered advantage estimator"):
        load_config(TrainConfig, "smoke", ["algo.advantage=test_nope"]).validate()
    assert "test_mean_baseline" in algos.ADVANTAGE_ESTIMATORS


def test_a_generator_without_exact_logprobs_is_rescored_by_the_learner(model_dir, tmp_path):
    """A backend whose log-probs are off (another engine's kernels, here: every token's shifted by
    -1) and that gives no values must not feed PPO's ratio: the learner re-scores the rollout."""
    from rlvlm.models.generators import GENERATORS, OwnLoopGenerator, register_generator

    def make(exact: bool):
        class Shifted(OwnLoopGenerator):
            exact_logprobs = exact

            def generate(self, prompts, images, sampling):
                samples = super().generate(prompts, images, sampling)
                for s in samples:
                    s.logprobs = [lp - 1.0 for lp in s.logprobs]
                    s.value = None
                return samples
        return Shifted

    model = model_dir
    rows = {}
    for exact in (False, True):
        register_generator("test_shifted", replace=True)(make(exact))
        out = tmp_path / f"run-{exact}"
        cfg = load_config(TrainConfig, "smoke", [
            f"model.name_or_path={model}", f"output_dir={out}", "model.decoder=test_shifted", "updates=1",
            "sft.episodes=0", "eval.episodes=2", "algo.epochs=1", "algo.minibatch_size=8"])  # one step
        try:
            train(cfg, progress=lambda s: None)
            rows[exact] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        except ValueError as err:  # declared exact: GAE finds no values, and says so
            rows[exact] = str(err)
    GENERATORS.pop("test_shifted")
    # Re-scored: the single minibatch step starts at ratio 1 (nothing clipped), and GAE found values.
    assert rows[False]["policy/clip_frac"] == 0.0 and abs(rows[False]["policy/approx_kl"]) < 1e-4
    # Trusted as exact, the same backend's rollout has no values for the critic: refused, not zero-filled.
    assert "algo.advantage=gae needs a value for every step" in rows[True]
