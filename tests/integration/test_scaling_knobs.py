"""Memory and scale knobs (issue 18; docs/scaling_knobs.md), checked on CPU with tiny models.

Each knob is a `PolicyOptions` field; these tests set it through `load_policy` keywords,
which go through the same parser as `rlvlm train ... model.KEY=VALUE`.
"""

from __future__ import annotations

import pytest
import torch

from rlvlm.errors import ConfigError
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.tiny import ARCHS
from tests.integration.test_policy import _sampled_matrix as _sampled
from tests.integration.test_speed_levers import _group_observations

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


# ------------------------------------------------------------------ autocast
def _autocast_spy(policy):
    """Records, at each forward pass of the language model, the autocast dtype in force (None: off)."""
    seen = []

    def hook(_m, _args):
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else None)

    return seen, policy.hf.get_decoder().register_forward_pre_hook(hook)


@pytest.mark.parametrize("arch", ["qwen2_vl", "gemma3"])
def test_bf16_autocast_close_to_fp32_with_fp32_weights(tiny_dirs, arch):
    torch.manual_seed(0)
    fp32 = load_policy(tiny_dirs[arch], reference="copy")
    mixed = load_policy(tiny_dirs[arch], reference="copy", autocast="bfloat16")
    mixed.load_state_dict(fp32.state_dict())
    seen, handle = _autocast_spy(mixed)
    samples = mixed.sample(_group_observations(2, 1), SamplingConfig(max_new_tokens=8, n=2))
    assert seen and set(seen) == {torch.bfloat16}, "sampling ran outside autocast"
    seen.clear()
    out = mixed.score(samples)
    ref = mixed.reference_logprobs(samples)
    assert seen and set(seen) == {torch.bfloat16}, "scoring or the reference ran outside autocast"
    handle.remove()
    base = fp32.score(samples)
    # Measured max |log-prob difference| to fp32 (tiny models, 8 tokens): qwen2_vl 3.8e-3, gemma3 4.8e-3,
    # idefics3 2.4e-3, llava 2.5e-3. Tolerance a few times that.
    assert (out.logprobs - base.logprobs).abs().max().item() < 2e-2
    assert (out.logprobs - base.logprobs).abs().max().item() > 0, "autocast changed nothing: not applied?"
    # Sampling and scoring both run under autocast: the recorded log-probs stay the scored ones (measured 5e-7),
    # and the reference copy, scored the same way, equals the untrained policy (KL 0 at the start).
    assert (_sampled(samples, out.logprobs) - out.logprobs).abs().max().item() < 1e-3
    assert torch.allclose(ref, out.logprobs.detach(), atol=1e-6)
    (out.logprobs.sum() + out.values.sum()).backward()
    grads = [p.grad for p in mixed.trainable_parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert all(p.dtype == torch.float32 for p in mixed.parameters()), "weights must stay fp32 (master weights)"


def test_fp16_autocast_runs_on_cpu(tiny_dirs):
    """torch 2.13 supports float16 autocast on CPU; measured max |diff| to fp32 here 4.4e-4 (qwen2_vl)."""
    fp32 = load_policy(tiny_dirs["qwen2_vl"])
    half = load_policy(tiny_dirs["qwen2_vl"], autocast="float16")
    samples = fp32.sample(_group_observations(2, 1), SamplingConfig(max_new_tokens=6))
    out = half.score(samples)
    assert (out.logprobs - fp32.score(samples).logprobs).abs().max().item() < 5e-3
    out.logprobs.sum().backward()
    assert all(p.dtype == torch.float32 for p in half.parameters())


def test_bad_autocast_settings_fail_clearly(tiny_dirs):
    with pytest.raises(ConfigError, match="autocast=.fp8. is not one of: none, bfloat16, float16"):
        load_policy(tiny_dirs["qwen2_vl"], autocast="fp8")
    with pytest.raises(ConfigError, match="model.autocast=bfloat16 keeps float32 master weights.*fix: model.dtype"):
        load_policy(tiny_dirs["qwen2_vl"], autocast="bfloat16", dtype="bfloat16")


# ------------------------------------------------------- reference placement
def test_reference_copy_on_its_own_device(tiny_dirs, tmp_path):
    """model.reference_device: the copy lives there, inputs go there and log-probs come back unchanged.

    CPU only here, so the device is cpu for both; a cuda policy with a cpu reference was not run.
    """
    from rlvlm.train.checkpoint import load_state, save_checkpoint
    from rlvlm.train.state import REFERENCE_STATE, load_weights

    torch.manual_seed(0)
    plain = load_policy(tiny_dirs["qwen2_vl"], reference="copy")
    placed = load_policy(tiny_dirs["qwen2_vl"], reference="copy", device="cpu", reference_device="cpu")
    placed.load_state_dict(plain.state_dict())
    assert {p.device for p in placed.reference.parameters()} == {torch.device("cpu")}
    assert placed.options.reference_device == "cpu"
    samples = plain.sample(_group_observations(2, 2), SamplingConfig(max_new_tokens=6))
    ref = placed.reference_logprobs(samples)
    assert ref.device == placed.device and torch.equal(ref, plain.reference_logprobs(samples))

    # A checkpoint keeps the reference's own weights, and restores them into a placed copy.
    with torch.no_grad():
        for p in placed.reference.parameters():
            p.add_(0.01)
    moved = placed.reference_logprobs(samples)
    ckpt = save_checkpoint(tmp_path, 1, policy_save_fn=placed.save,
                           states={REFERENCE_STATE: placed.reference.state_dict()})
    assert load_state(ckpt, REFERENCE_STATE).keys() == placed.reference.state_dict().keys()
    fresh = load_policy(tiny_dirs["qwen2_vl"], reference="copy", reference_device="cpu")
    load_weights(fresh, ckpt)  # loads the saved policy with reference=none: placement is not saved with it
    assert {p.device for p in fresh.reference.parameters()} == {torch.device("cpu")}
    assert torch.equal(fresh.reference_logprobs(samples), moved)


@pytest.mark.parametrize("kw, match", [
    (dict(reference="auto", reference_device="cpu"),
     r"model.reference_device='cpu' places a frozen copy, but model.reference=auto has none .*fix: model.reference=copy"),
    (dict(reference="none", reference_device="cpu"), r"model.reference=none has none \(no reference\)"),
    (dict(reference="copy", reference_device="gpu0"), r"model.reference_device='gpu0' is not a torch device"),
])
def test_bad_reference_device_fails_clearly(tiny_dirs, kw, match):
    with pytest.raises(ConfigError, match=match):
        load_policy(tiny_dirs["qwen2_vl"], **kw)


# ----------------------------------------------------------- vision freezing
# (encoder module, projector modules) per family, spelled out here rather than found by the code under test.
VISION_PARTS = {
    "qwen2_vl": ("model.visual", ["model.visual.merger"]),
    "idefics3": ("model.vision_model", ["model.connector"]),
    "gemma3": ("model.vision_tower", ["model.multi_modal_projector"]),
    "llava": ("model.vision_tower", ["model.multi_modal_projector"]),
}


def _part(name: str, arch: str) -> str:
    encoder, projectors = VISION_PARTS[arch]
    if any(name.startswith(p + ".") for p in projectors):
        return "projector"
    return "encoder" if name.startswith(encoder + ".") else "language"


def _numel(policy, arch, part):
    return sum(p.numel() for n, p in policy.hf.named_parameters() if _part(n, arch) == part)


@pytest.mark.parametrize("arch", list(VISION_PARTS))
def test_freeze_vision_freezes_exactly_the_encoder(tiny_dirs, arch):
    """Frozen per family (tiny models, encoder / projector): qwen2_vl 142,208 / 98,816 (its merger sits
    inside visual), idefics3 107,072 / 32,768, gemma3 107,072 / 8,256, llava 107,264 / 24,832."""
    torch.manual_seed(0)
    full = load_policy(tiny_dirs[arch])
    frozen = load_policy(tiny_dirs[arch], freeze_vision=True)
    both = load_policy(tiny_dirs[arch], freeze_vision=True, freeze_projector=True)
    frozen.load_state_dict(full.state_dict())
    n = full.num_parameters(trainable_only=True)
    assert n - frozen.num_parameters(trainable_only=True) == _numel(full, arch, "encoder") > 0
    assert frozen.num_parameters(trainable_only=True) - both.num_parameters(trainable_only=True) == \
        _numel(full, arch, "projector") > 0
    assert all(_part(k, arch) == "language" for k, p in both.hf.named_parameters() if p.requires_grad)

    samples = frozen.sample(_group_observations(2, 1), SamplingConfig(max_new_tokens=6))
    before = {k: v.clone() for k, v in frozen.hf.state_dict().items()}
    opt = torch.optim.SGD(frozen.trainable_parameters(), lr=0.5)
    out = frozen.score(samples)
    (out.logprobs.sum() + out.values.sum()).backward()
    opt.step()
    after = frozen.hf.state_dict()
    changed = {part: any(not torch.equal(before[k], after[k]) for k in before if _part(k, arch) == part)
               for part in ("encoder", "projector", "language")}
    assert changed == {"encoder": False, "projector": True, "language": True}, changed
    assert all(p.grad is None for k, p in frozen.hf.named_parameters() if _part(k, arch) == "encoder")


@pytest.mark.parametrize("arch", ["qwen2_vl", "llava"])
def test_freeze_vision_with_lora(tiny_dirs, arch):
    """With LoRA the encoder has no adapters (lora.vision=false); freeze_projector drops the projector's."""
    lora = {"r": 2}
    plain = load_policy(tiny_dirs[arch], lora=lora, value_head=False, freeze_vision=True)
    both = load_policy(tiny_dirs[arch], lora=lora, value_head=False, freeze_vision=True, freeze_projector=True)
    parts = [{_part(k, arch) for k, p in pol.hf.named_parameters() if p.requires_grad} for pol in (plain, both)]
    # LLaVA's projector is linear layers outside the tower: adapted unless frozen. Qwen's merger sits
    # inside `visual`, which LoRA leaves alone unless lora.vision (as before these options).
    assert parts[0] == ({"language", "projector"} if arch == "llava" else {"language"})
    assert parts[1] == {"language"}
    assert not any("lora_" in k for k, _ in both.hf.named_parameters() if _part(k, arch) != "language")
    with pytest.raises(ConfigError, match="model.freeze_vision=true contradicts model.lora.vision=true"):
        load_policy(tiny_dirs[arch], lora={"r": 2, "vision": True}, freeze_vision=True)


def test_freeze_vision_bad_inputs(tiny_dirs):
    from torch import nn

    from rlvlm.errors import ModelSetupError
    from rlvlm.models.vision_parts import freeze_vision_parts

    with pytest.raises(ConfigError, match="freeze_vision='maybe'"):
        load_policy(tiny_dirs["qwen2_vl"], freeze_vision="maybe")
    text_only = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ModelSetupError, match="no vision encoder .*fix: model.freeze_vision=false"):
        freeze_vision_parts(text_only, encoder=True, projector=False)
    with pytest.raises(ModelSetupError, match="no multimodal projector .*fix: model.freeze_projector=false"):
        freeze_vision_parts(text_only, encoder=False, projector=True)


# ------------------------------------------- gradient checkpointing + shared prompts
@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_checkpointing_keeps_prompt_sharing(tiny_dirs, arch, monkeypatch):
    """Checkpointed and shared: log-probs, values and every gradient equal the uncheckpointed shared pass
    (measured: bitwise equal in every family), the shared path is taken and backward does replay layers."""
    from torch import nn

    from rlvlm.models import shared_prefix

    torch.manual_seed(0)
    plain = load_policy(tiny_dirs[arch])
    ckpt = load_policy(tiny_dirs[arch], gradient_checkpointing=True)
    torch.nn.init.normal_(plain.value_head.net[2].weight, std=0.5)
    ckpt.load_state_dict(plain.state_dict())
    samples = plain.sample(_group_observations(2, 3), SamplingConfig(max_new_tokens=8))  # 2 prompts x 3 samples
    shared_calls = []
    real = shared_prefix.score_logits
    monkeypatch.setattr(shared_prefix, "score_logits", lambda *a, **k: shared_calls.append(1) or real(*a, **k))
    # A pre-hook on a module inside a checkpointed decoder layer also fires when backward replays it
    # (transformers checkpoints `forward`, so the layer's own hooks would not).
    mlp = next(m for n, m in ckpt.hf.get_decoder().named_modules() if n.endswith("mlp") and isinstance(m, nn.Module))
    runs = []
    mlp.register_forward_pre_hook(lambda *_: runs.append(1))
    outs = []
    for policy in (plain, ckpt):
        policy.train()
        out = policy.score(samples)
        forward_runs = len(runs)
        (out.logprobs.sum() + 0.1 * out.entropy.sum() + out.values.sum()).backward()
        grads = {n: p.grad for n, p in policy.named_parameters() if p.grad is not None}
        outs.append((out, grads))
    (a, ga), (b, gb) = outs
    recurrent = shared_prefix.has_recurrent_layers(ckpt.hf)  # scoring never shares there (has_recurrent_layers)
    assert len(shared_calls) == (0 if recurrent else 2)
    assert len(runs) > forward_runs > 0, "backward replayed no layer: checkpointing is not on"
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-6) and torch.allclose(a.values, b.values, atol=1e-6)
    assert ga.keys() == gb.keys() and len(ga) > 0
    bad = [k for k in ga if (ga[k] - gb[k]).abs().max() > 1e-6 * max(1.0, ga[k].abs().max().item())]
    assert not bad, f"{arch}: gradients differ in {bad[:3]}"


def test_old_transformers_fall_back_to_unshared_checkpointed_scoring(tiny_dirs, monkeypatch, caplog):
    """Where checkpointed layers cannot keep a cache (transformers before the opt-in), grad scoring runs
    unshared, says so once, and gives the shared pass's values and gradients."""
    from rlvlm.models import learner, shared_prefix

    torch.manual_seed(0)
    plain = load_policy(tiny_dirs["qwen2_vl"])
    ckpt = load_policy(tiny_dirs["qwen2_vl"], gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    samples = plain.sample(_group_observations(2, 3), SamplingConfig(max_new_tokens=8))
    monkeypatch.setattr(shared_prefix, "checkpointing_keeps_cache", lambda: False)
    monkeypatch.setattr(learner, "_FALLBACK_LOGGED", [])
    shared_calls = []
    real = shared_prefix.score_logits
    monkeypatch.setattr(shared_prefix, "score_logits", lambda *a, **k: shared_calls.append(1) or real(*a, **k))
    outs = []
    with caplog.at_level("WARNING", logger="rlvlm.models.learner"):
        for policy in (plain, ckpt, ckpt):
            policy.train()
            policy.zero_grad(set_to_none=True)
            out = policy.score(samples)
            out.logprobs.sum().backward()
            outs.append((out.logprobs, {n: p.grad for n, p in policy.named_parameters() if p.grad is not None}))
    assert len(shared_calls) == 1  # the uncheckpointed policy only
    assert sum("runs unshared" in r.getMessage() for r in caplog.records) == 1
    (a, ga), (b, gb) = outs[:2]
    assert torch.allclose(a, b, atol=1e-5)
    bad = [k for k in ga if (ga[k] - gb[k]).abs().max() > 1e-3 * ga[k].abs().max() + 1e-7]
    assert ga.keys() == gb.keys() and not bad
