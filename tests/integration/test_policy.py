"""Every supported architecture, as a tiny from-scratch model, through the policy API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvlm.errors import ConfigError, DataError, ImageTokenMismatchError, ModelSetupError
from rlvlm.models.checks import check_image_tokens
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.tiny import ARCHS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _observations(n: int, seed: int = 0, size: int = 96):
    rng = np.random.default_rng(seed)
    # Prompts of different lengths so the batch really is padded.
    return [{"image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
             "text": "Target: 3. Current: 1." + " Move closer." * i} for i in range(n)]


def _sampled_matrix(samples, like):
    out = torch.zeros_like(like)
    for i, s in enumerate(samples):
        out[i, : s.num_tokens] = torch.tensor(s.logprobs)
    return out


def _randomise_value_head(policy):
    # The head's last layer starts at zero; give it weights so values are informative.
    torch.manual_seed(1)
    torch.nn.init.normal_(policy.value_head.net[2].weight, std=0.5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}], ids=["full", "lora"])
def test_sample_score_agree(tiny_dirs, arch, lora):
    torch.manual_seed(0)
    policy = load_policy(tiny_dirs[arch], lora=lora)
    _randomise_value_head(policy)
    obs = _observations(3)
    samples = policy.sample(obs, SamplingConfig(temperature=0.8, max_new_tokens=10, n=2))
    assert len(samples) == 6
    assert not any(t in policy.blocked_token_ids for s in samples for t in s.completion_ids)
    assert all(s.prompt_text == samples[2 * (i // 2)].prompt_text for i, s in enumerate(samples))
    scored = policy.score(samples)
    B, Tc = scored.logprobs.shape
    assert (B, Tc) == (6, max(s.num_tokens for s in samples))
    diff = (_sampled_matrix(samples, scored.logprobs) - scored.logprobs.detach()).abs().max().item()
    assert diff <= 1e-4, f"{arch}: sampled vs re-scored log-probs differ by {diff}"
    # Values: finite, one per sample, equal between the sampling pass and the scoring pass.
    assert scored.values.shape == (6,) and torch.isfinite(scored.values).all()
    assert np.allclose([s.value for s in samples], scored.values.tolist(), atol=1e-4)
    assert len({round(v, 6) for v in scored.values.tolist()}) > 1, "values should depend on the prompt"
    assert torch.isfinite(scored.entropy[scored.mask]).all() and (scored.entropy[scored.mask] >= 0).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_policy_gradient_step_changes_parameters(tiny_dirs, arch):
    torch.manual_seed(0)
    policy = load_policy(tiny_dirs[arch])
    samples = policy.sample(_observations(2), SamplingConfig(max_new_tokens=6))
    params = [p for p in policy.trainable_parameters()]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-3)
    out = policy.score(samples)
    advantages = torch.tensor([1.0, -1.0])
    loss = -(advantages[:, None] * out.logprobs * out.mask).sum() / out.mask.sum()
    loss = loss + ((out.values - 1.0) ** 2).mean()
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(a, b.detach()) for a, b in zip(before, params))
    assert changed > 0.5 * len(params), f"only {changed}/{len(params)} tensors changed"
    assert not torch.equal(before[-1], params[-1].detach()) or changed


@pytest.mark.parametrize("arch", ARCHS)
def test_text_only_and_mixed_batches(tiny_dirs, arch):
    torch.manual_seed(0)
    policy = load_policy(tiny_dirs[arch])
    obs = [{"image": None, "text": "What is two plus two?"}, _observations(1)[0], {"text": "Say hi."}]
    samples = policy.sample(obs, SamplingConfig(max_new_tokens=6))
    assert [s.image is None for s in samples] == [True, False, True]
    scored = policy.score(samples)
    diff = (_sampled_matrix(samples, scored.logprobs) - scored.logprobs.detach()).abs().max().item()
    assert diff <= 1e-4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("lora", [None, {"r": 4}], ids=["full", "lora"])
def test_save_load_identical_logprobs(tiny_dirs, arch, lora, tmp_path):
    torch.manual_seed(0)
    policy = load_policy(tiny_dirs[arch], lora=lora)
    _randomise_value_head(policy)
    # Move the weights away from the base so the save has something to keep.
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    samples = policy.sample(_observations(2), SamplingConfig(max_new_tokens=6))
    with torch.no_grad():
        ref = policy.score(samples)
    policy.save(tmp_path / "pol")
    loaded = load_policy(tmp_path / "pol")
    assert (loaded.options.lora is not None) == (lora is not None)
    with torch.no_grad():
        got = loaded.score(samples)
    assert torch.equal(ref.logprobs, got.logprobs)
    assert torch.equal(ref.values, got.values)


@pytest.mark.parametrize("arch", ARCHS)
def test_image_token_check_passes(tiny_dirs, arch):
    policy = load_policy(tiny_dirs[arch], value_head=False)
    assert check_image_tokens(policy, 224)["image_tokens"] > 0


@pytest.mark.parametrize(
    "arch,breaker,setting",
    [
        ("llava", lambda p: setattr(p.processor, "patch_size", 7), "processor.patch_size=7"),
        ("qwen2_vl", lambda p: setattr(p.processor.image_processor, "merge_size", 1), "merge_size=1"),
        ("idefics3", lambda p: setattr(p.processor, "image_seq_len", 16), "processor.image_seq_len=16"),
        ("gemma3", lambda p: setattr(p.processor.image_processor, "size", {"height": 112, "width": 112}),
         "image_processor.size"),
        ("qwen3_vl", lambda p: setattr(p.processor.image_processor, "merge_size", 1), "merge_size=1"),
        ("qwen3_5", lambda p: setattr(p.processor.image_processor, "merge_size", 1), "merge_size=1"),
        ("smolvlm", lambda p: setattr(p.processor, "image_seq_len", 16), "processor.image_seq_len=16"),
        ("llava_onevision", lambda p: setattr(p.processor, "num_image_tokens", 16), "vision_feature_select_strategy"),
        ("internvl", lambda p: setattr(p.processor, "image_seq_length", 16), "processor.image_seq_length=16"),
        ("paligemma", lambda p: setattr(p.processor, "image_seq_length", 16), "processor.image_seq_length=16"),
        ("gemma4", lambda p: setattr(p.processor.image_processor, "patch_size", 16), "image_processor.patch_size=16"),
        ("mllama", lambda p: setattr(p.processor.image_processor, "max_image_tiles", 4),
         "image_processor.max_image_tiles=4"),
    ],
)
def test_image_token_mismatch_is_one_clear_error(tiny_dirs, arch, breaker, setting):
    policy = load_policy(tiny_dirs[arch], value_head=False)
    breaker(policy)
    with pytest.raises(ImageTokenMismatchError) as info:
        check_image_tokens(policy, 224)
    msg = str(info.value)
    assert "\n" not in msg and setting in msg and "vision_config" in msg


def test_reference_policy_lora_disabled_and_copy(tiny_dirs):
    torch.manual_seed(0)
    arch = "qwen2_vl"
    policy = load_policy(tiny_dirs[arch], lora={"r": 4})
    samples = policy.sample(_observations(2), SamplingConfig(max_new_tokens=6))
    # LoRA B starts at zero, so the adapted model equals the reference until trained.
    ref0 = policy.reference_logprobs(samples)
    assert torch.allclose(ref0, policy.score(samples).logprobs.detach(), atol=1e-5)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    assert not torch.allclose(policy.reference_logprobs(samples), policy.score(samples).logprobs.detach())
    assert torch.equal(policy.reference_logprobs(samples), ref0)

    full = load_policy(tiny_dirs[arch], reference="copy")
    with torch.no_grad():
        for p in full.model.parameters():
            p.add_(0.01)
    ref = full.reference_logprobs(samples)
    base = load_policy(tiny_dirs[arch], value_head=False).score(samples).logprobs.detach()
    assert torch.allclose(ref, base, atol=1e-6)

    with pytest.raises(ConfigError, match="model.reference"):
        load_policy(tiny_dirs[arch]).reference_logprobs(samples)


def test_lora_leaves_vision_tower_frozen_unless_asked(tiny_dirs):
    out = load_policy(tiny_dirs["qwen2_vl"], lora={"r": 2}, value_head=False)
    names = [n for n, p in out.named_parameters() if p.requires_grad]
    assert names and not any(".visual." in n for n in names)
    vis = load_policy(tiny_dirs["qwen2_vl"], lora={"r": 2, "vision": True}, value_head=False)
    assert any(".visual." in n for n, p in vis.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_checkpointing_same_logprobs(tiny_dirs, arch):
    torch.manual_seed(0)
    a = load_policy(tiny_dirs[arch])
    samples = a.sample(_observations(2), SamplingConfig(max_new_tokens=6))
    b = load_policy(tiny_dirs[arch], gradient_checkpointing=True)
    la, lb = a.score(samples).logprobs, b.score(samples).logprobs
    assert torch.allclose(la, lb, atol=1e-5), f"{arch}: checkpointed scoring differs"
    lb.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in b.trainable_parameters())


def test_bad_inputs_fail_clearly(tiny_dirs, tmp_path):
    with pytest.raises(ModelSetupError, match="model.name_or_path"):
        load_policy(tmp_path / "nope")
    with pytest.raises(ConfigError, match="did you mean: value_head"):
        load_policy(tiny_dirs["llava"], value_heads=False)
    with pytest.raises(ConfigError, match="dtype='fp8' is not one of: float32, bfloat16, float16"):
        load_policy(tiny_dirs["llava"], dtype="fp8")
    with pytest.raises(ConfigError, match=r"lora.r='four' is not an int"):
        load_policy(tiny_dirs["llava"], lora={"r": "four"})
    policy = load_policy(tiny_dirs["llava"], value_head=False)
    with pytest.raises(DataError, match=r"observations\[0\].image"):
        policy.sample([{"image": np.zeros((5,), np.uint8), "text": "x"}])
    with pytest.raises(DataError, match=r"observations\[1\] has no 'text'"):
        policy.sample([{"text": "x"}, {"image": None}])
    with pytest.raises(ConfigError, match="sampling.temperature"):
        policy.sample([{"text": "x"}], SamplingConfig(temperature=-1))
