"""Image-conditioned reward models: calibration table by hand, both kinds' scoring
(shapes, determinism, batching, save/load), the frozen trunk of the mlp kind, a
separable toy preference set learnt from chance, and config errors.

Toy set (digits records, seed 0): chosen = {"thoughts": "I see the digit D", "answer": D},
rejected = {"thoughts": "no idea", "answer": W} with a wrong digit W. Every chosen
reply has the words "I see the digit", no rejected one has them, so the answer
features separate the two sides and a few epochs of an MLP must find it.
"""

import json
import math

import pytest
import torch

from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.models.reward_model import build_reward_model, load_reward_model
from rlvlm.rewards.preferences import resolve_record, split_pairs
from rlvlm.train.reward_model import (
    RewardModelConfig, calibration_bins, expected_calibration_error, pair_calibration, pair_observations,
    train_reward_model,
)

IMAGE_SIZE = 56


@pytest.fixture(scope="module")
def observations():
    obs = pair_observations(["digits/train/0/0", "digits/train/0/1"], IMAGE_SIZE)
    return list(obs.values())


def toy_pairs(n: int) -> list[dict]:
    pairs = []
    for i in range(n):
        rid = f"digits/train/0/{i}"
        digit = int(resolve_record(rid, IMAGE_SIZE)["answers"][0])
        wrong = (digit + 1 + i % 9) % 10
        pairs.append({"record_id": rid, "question": "What digit is shown?",
                      "chosen": json.dumps({"thoughts": f"I see the digit {digit}", "answer": str(digit)}),
                      "rejected": json.dumps({"thoughts": "no idea", "answer": str(wrong)}), "margin": 1.0})
    return pairs


def _perturb(model, seed=1):
    """Random trainable weights (heads start with a zero last layer, LoRA with zero B), so
    scores differ between answers and a save that dropped a tensor would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


# ------------------------------------------------------------ calibration ---
def test_calibration_bins_by_hand():
    prob = [0.05, 0.15, 0.12, 0.95, 1.0, 0.5]
    correct = [0, 1, 0, 1, 1, 0.5]
    table = calibration_bins(prob, correct, bins=10)
    assert [b["count"] for b in table] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]  # 1.0 lands in the last bin
    assert table[0]["lo"] == 0.0 and table[9]["hi"] == pytest.approx(1.0)
    assert (table[0]["mean_prob"], table[0]["accuracy"]) == (pytest.approx(0.05), 0.0)
    assert (table[1]["mean_prob"], table[1]["accuracy"]) == (pytest.approx(0.135), 0.5)
    assert (table[5]["mean_prob"], table[5]["accuracy"]) == (0.5, 0.5)
    assert (table[9]["mean_prob"], table[9]["accuracy"]) == (pytest.approx(0.975), 1.0)
    assert table[2]["mean_prob"] is None and table[2]["accuracy"] is None
    # ECE = (1·0.05 + 2·0.365 + 1·0 + 2·0.025) / 6 = 0.83 / 6
    assert expected_calibration_error(table) == pytest.approx(0.83 / 6)
    assert expected_calibration_error(calibration_bins([], [], bins=3)) is None
    half = calibration_bins([0.5, 0.55, 0.99], [1, 0, 1], bins=5, low=0.5)
    assert [b["count"] for b in half] == [2, 0, 0, 0, 1] and half[0]["accuracy"] == 0.5
    with pytest.raises(ValueError, match="2 probabilities but 1"):
        calibration_bins([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="outside"):
        calibration_bins([1.2], [1])


def test_pair_calibration_uses_the_confidence_in_the_higher_ranked_answer():
    # diff 2: p = σ(2) = 0.881, right; diff -1: confidence 1 - σ(-1) = 0.731, wrong; tie: 0.5, counts ½.
    cal = pair_calibration(torch.tensor([2.0, -1.0, 0.0]), bins=5)
    counts = [b["count"] for b in cal["bins"]]
    assert counts == [1, 0, 1, 1, 0]
    assert cal["bins"][0]["accuracy"] == 0.5 and cal["bins"][2]["accuracy"] == 0.0 and cal["bins"][3]["accuracy"] == 1.0
    s2, s1 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1))
    assert cal["ece"] == pytest.approx((0.0 + s1 + (1 - s2)) / 3)


# ------------------------------------------------------------ models ---
@pytest.mark.parametrize("kind", ["mlp", "vlm"])
def test_scores_shape_determinism_and_batching(idefics3_dir, observations, kind):
    model = build_reward_model(kind, idefics3_dir, seed=0)
    _perturb(model)
    model.eval()
    text_only = {"image": None, "text": "What digit is shown?"}  # mixed batch: scored in two groups
    obs = [observations[0], observations[1], text_only, observations[0]]
    answers = ['{"answer": "3"}', "a much longer reply about the digit", "7", '{"answer": "3"}']
    with torch.no_grad():
        r = model.score(obs, answers)
        again = model.score(obs, answers)
        alone = torch.stack([model.score([o], [a])[0] for o, a in zip(obs, answers)])
    assert r.shape == (4,) and r.dtype == torch.float32 and torch.isfinite(r).all()
    assert torch.equal(r, again)
    assert torch.allclose(r, alone, atol=1e-5)  # padding and grouping do not change a score
    assert r[0] == r[3] and len(set(r[:3].tolist())) == 3
    twin = build_reward_model(kind, idefics3_dir, seed=0)
    _perturb(twin)
    twin.eval()
    with torch.no_grad():
        assert torch.equal(twin.score(obs, answers), r)  # same seed, same model
    if kind == "vlm":  # grad-enabled outside no_grad
        assert model.score(obs[:1], answers[:1]).requires_grad


@pytest.mark.parametrize("kind,lora_r", [("mlp", 0), ("vlm", 0), ("vlm", 4)])
def test_save_load_round_trip(idefics3_dir, observations, tmp_path, kind, lora_r):
    model = build_reward_model(kind, idefics3_dir, lora_r=lora_r, seed=0)
    if kind == "mlp":
        model.fit_normalizer(model.features(observations, ["one", "two"]))
    _perturb(model)
    model.eval()
    answers = ["the digit is 4", '{"answer": "9"}']
    with torch.no_grad():
        before = model.score(observations, answers)
    model.save(tmp_path / "rm")
    assert not list((tmp_path / "rm").rglob("*.bin")) and not list((tmp_path / "rm").rglob("*.pt"))
    loaded = load_reward_model(tmp_path / "rm")
    loaded.eval()
    assert loaded.kind == kind
    with torch.no_grad():
        assert torch.allclose(loaded.score(observations, answers), before, atol=1e-6)


def test_mlp_kind_trains_only_its_head(idefics3_dir, observations):
    model = build_reward_model("mlp", idefics3_dir, seed=0)
    trunk = {k: v.clone() for k, v in model.policy.state_dict().items()}
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.head.parameters()}
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        r = model.score(observations + observations, ["good", "good", "bad", "bad"])
        loss = -torch.nn.functional.logsigmoid(r[:2] - r[2:]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(v, model.policy.state_dict()[k]) for k, v in trunk.items())
    assert not model.policy.training  # the frozen trunk stays in eval mode
    assert any(not torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())


def test_separable_toy_set_is_learnt_from_chance(idefics3_dir, tmp_path):
    pairs = toy_pairs(40)
    cfg = RewardModelConfig(kind="mlp", name_or_path=idefics3_dir, image_size=IMAGE_SIZE, held_out_fraction=0.25,
                            epochs=10, lr=1e-3, batch_size=8, seed=0, output_dir=str(tmp_path / "run"))
    lines = []
    report = train_reward_model(cfg, pairs, progress=lines.append)
    assert report["pairs"] == {"train": 30, "held_out": 10, "train_records": 30, "held_out_records": 10}
    assert report["held_out_accuracy_before"] == 0.5  # an untrained head scores every answer 0: chance
    assert report["held_out_accuracy"] >= 0.9
    assert report["loss_curve"][0] == pytest.approx(math.log(2)) and report["loss_curve"][-1] < 0.6
    assert len(report["epochs"]) == cfg.epochs + 1 and sum(b["count"] for b in report["calibration"]["bins"]) == 10
    assert sum(line.startswith("epoch ") for line in lines) == cfg.epochs + 1
    run = tmp_path / "run"
    for name in ("config.yaml", "report.json", "curves.png", "calibration.png"):
        assert (run / name).stat().st_size > 0
    assert json.loads((run / "report.json").read_text())["held_out_accuracy"] == report["held_out_accuracy"]
    # The saved model reproduces the reported held-out accuracy.
    loaded = load_reward_model(run / "model")
    _, held = split_pairs(pairs, cfg.held_out_fraction, cfg.seed)
    obs = pair_observations([p["record_id"] for p in held], IMAGE_SIZE)
    with torch.no_grad():
        o = [obs[p["record_id"]] for p in held]
        diff = loaded.score(o, [p["chosen"] for p in held]) - loaded.score(o, [p["rejected"] for p in held])
    assert (diff > 0).float().mean().item() == pytest.approx(report["held_out_accuracy"])


# ------------------------------------------------------------ config ---
@pytest.mark.parametrize("override,field", [
    ("kind=bad", "kind"), ("epochs=0", "epochs"), ("pairs=/no/such/pairs.jsonl", "pairs"),
    ("held_out_fraction=1.0", "held_out_fraction"), ("lr=0", "lr"), ("lora_r=4", "lora_r"),
])
def test_config_errors_name_the_field(override, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        load_config(RewardModelConfig, None, [override])


def test_config_validate_and_defaults(tmp_path):
    with pytest.raises(ConfigError, match="^kind='rm'"):
        RewardModelConfig(kind="rm").validate()
    cfg = load_config(RewardModelConfig, None, [f"output_dir={tmp_path}"])
    assert cfg.kind == "mlp" and cfg.pairs == ""
    with pytest.raises(ConfigError, match="^pairs is empty"):
        train_reward_model(cfg, progress=None)


def test_saved_config_names_its_own_command():
    from rlvlm.config.loading import config_yaml
    from rlvlm.train.config import TrainConfig

    assert config_yaml(RewardModelConfig()).startswith("# resolved RewardModelConfig; reload with: rlvlm reward-model PATH")
    assert config_yaml(TrainConfig()).startswith("# resolved TrainConfig; reload with: rlvlm train PATH")
