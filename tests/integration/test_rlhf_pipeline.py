"""RLHF end to end on a tiny idefics3: DPO on preference pairs (first loss log 2,
held-out pair accuracy and the test-question axes reported), and the slow
pipeline preferences -> reward model -> one PPO update with the rlhf preset.

DPO pairs (digits/train/0/i): chosen {"thoughts": "I see the digit d", "answer": d},
rejected "blah" (a reply with no JSON), so the preference is a matter of format
that even a random model can pick up.
"""

import json
import math

import pytest

from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.models.policy import load_policy
from rlvlm.train.preferences import collect_preferences
from rlvlm.rewards.preferences import resolve_record
from rlvlm.train.config import TrainConfig
from rlvlm.train.dpo import DPOConfig, train_dpo
from rlvlm.train.reward_model import RewardModelConfig, train_reward_model
from rlvlm.train.rl import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
IMAGE_SIZE = 56


def format_pairs(n: int) -> list[dict]:
    pairs = []
    for i in range(n):
        rid = f"digits/train/0/{i}"
        d = resolve_record(rid, IMAGE_SIZE)["answers"][0]
        pairs.append({"record_id": rid, "question": "What digit is shown?", "margin": 0.9,
                      "chosen": json.dumps({"thoughts": f"I see the digit {d}", "answer": d}), "rejected": "blah"})
    return pairs


def test_dpo_one_epoch_starts_at_log2_and_reports_every_axis(idefics3_dir, tmp_path):
    cfg = DPOConfig(policy=idefics3_dir, epochs=2, lr=1e-3, batch_size=8, held_out_fraction=0.25, image_size=IMAGE_SIZE,
                    eval_episodes=4, eval_every=1, max_new_tokens=12, output_dir=str(tmp_path / "dpo"))
    lines = []
    report = train_dpo(cfg, format_pairs(16), progress=lines.append)
    # π = π_ref at the first step: z = 0 and the loss is −log σ(0) = log 2.
    assert report["first_step_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert report["pairs"] == {"train": 12, "held_out": 4, "train_records": 12, "held_out_records": 4}
    assert report["held_out_accuracy_before"] == 0.5  # every implicit reward is 0: ties count ½
    # The format preference carries over to held-out records (measured: accuracy 1.0, loss 0.03 after 2 epochs).
    assert report["held_out_accuracy"] >= 0.75 and report["epochs"][-1]["held_out_loss"] < math.log(2)
    assert report["epochs"][-1]["train_loss"] < math.log(2)
    assert [e["epoch"] for e in report["evals"]] == [0, 1, 2]
    for key in ("accuracy", "heuristic_train", "heuristic_heldout"):
        assert 0.0 <= report["before"][key] <= 1.0 and 0.0 <= report["after"][key] <= 1.0
    assert sum(line.startswith("[dpo] epoch ") for line in lines) == 3
    run = tmp_path / "dpo"
    for name in ("config.yaml", "report.json", "curves.png", "policy/rlvlm_policy.json"):
        assert (run / name).is_file(), name
    assert load_policy(run / "policy", value_head=False, reference="none").num_parameters() > 0


def test_dpo_command(idefics3_dir, tmp_path, capsys):
    from rlvlm.cli import main
    from rlvlm.rewards.preferences import write_pairs_jsonl

    pairs = [{**p, "scores_chosen": {}, "scores_rejected": {}} for p in format_pairs(6)]
    path = write_pairs_jsonl(pairs, tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    assert main(["dpo", f"policy={idefics3_dir}", f"pairs={path}", "epochs=1", "eval_episodes=2", "eval_every=0",
                 "max_new_tokens=8", f"output_dir={out}"]) == 0
    assert json.loads((out / "report.json").read_text())["pairs"]["train"] + 1 == 6  # one record held out
    assert "[dpo] epoch 1/1" in capsys.readouterr().out
    assert main(["dpo", f"policy={idefics3_dir}", "beta=-1"]) == 2
    assert "rlvlm: error: beta=-1" in capsys.readouterr().err


@pytest.mark.parametrize("override,field", [
    ("beta=0", "beta"), ("heldout_scorers={mentions: 1}", "heldout_scorers"), ("pairs=/no/pairs.jsonl", "pairs"),
    ("train_scorers={bogus: 1}", "train_scorers"), ("reward_model=/no/rm", "reward_model"),
])
def test_dpo_config_errors_name_the_field(override, field):
    with pytest.raises(ConfigError, match=rf"^{field}"):
        load_config(DPOConfig, None, [override])


@pytest.mark.slow
def test_preferences_reward_model_and_one_ppo_update(idefics3_dir, tmp_path):
    """The whole loop at toy scale; asserts plumbing (every curve is logged), not learning."""
    policy = load_policy(idefics3_dir, value_head=False, reference="none")
    # A random model's replies rarely differ in mentions/structure; contradiction tells them apart.
    pairs, summary = collect_preferences(policy, task="digits", n_prompts=16, k=2, weights={"contradiction": 1.0},
                                         image_size=IMAGE_SIZE, max_new_tokens=16)
    assert summary["pairs"] == len(pairs) >= 2 and summary["prompts_with_pairs"] >= 2
    rm = train_reward_model(RewardModelConfig(kind="mlp", name_or_path=idefics3_dir, image_size=IMAGE_SIZE, epochs=3,
                                              batch_size=8, output_dir=str(tmp_path / "rm")), pairs, progress=None)
    cfg = load_config(TrainConfig, "rlhf", [
        f"model.name_or_path={idefics3_dir}", "sft.episodes=0", "updates=1", "rollout.num_envs=4", "rollout.num_steps=1",
        "rollout.max_new_tokens=16", "algo.minibatch_size=4", "algo.epochs=1", "eval.episodes=4", "eval.num_envs=4",
        f"reward.options.reward_model.path={rm['model_dir']}", f"output_dir={tmp_path / 'rl'}",
        "reward.options.heuristic_train.scorers={contradiction: 1}",
        "reward.options.heuristic_heldout.scorers={mentions: 1, structure: 1}"])
    report = train(cfg, progress=lambda s: None)
    metrics = [json.loads(x) for x in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1
    m = metrics[0]
    for name in ("reward_model", "heuristic_train", "heuristic_heldout", "accuracy"):
        assert math.isfinite(m[f"reward/{name}"])
        for phase in ("sft", "final"):  # the same axes on held-out test questions, before and after
            assert math.isfinite(report[phase][f"reward/{name}"])
    assert m["reward/total"] == pytest.approx(m["reward/reward_model"], abs=1e-6)  # the other weights are 0
    assert (tmp_path / "rl" / "report.json").is_file() and (tmp_path / "rl" / "curves.png").is_file()
