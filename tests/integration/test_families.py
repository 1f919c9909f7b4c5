"""The checks users file bugs about, on every tiny family (rlvlm.models.tiny.ARCHS).

- the image reaches the logits (a family whose gates start at zero would hide every image bug);
- log-probs that transformers' own `generate` sampled are what rlvlm's scorer recomputes, so the
  family's side inputs and positions for completion tokens are right (input_rules.py);
- prompts with two images: positions (Qwen's M-RoPE included) in a left-padded batch give the
  logits each row gets alone from the model's own forward;
- a sample's log-probs do not depend on its batch: order, minibatch and mixed image/text batches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rlvlm.models.batching import model_inputs
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.shared_prefix import completion_positions
from rlvlm.models.tiny import ARCHS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (84, 84, 3), dtype=np.uint8)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_image_changes_the_logits(tiny_dirs, arch):
    policy = load_policy(tiny_dirs[arch], value_head=False)
    obs = [{"image": _image(1), "text": "Move?"}, {"image": np.full((84, 84, 3), 255, np.uint8), "text": "Move?"}]
    lp = policy.score(policy.samples_from_text(obs, ['{"action": "+"}'] * 2)).logprobs.detach()
    assert (lp[0] - lp[1]).abs().max() > 1e-3, f"{arch}: the tiny model ignores its image"


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_sampled_logprobs_are_what_the_scorer_recomputes(tiny_dirs, arch):
    torch.manual_seed(0)
    policy = load_policy(tiny_dirs[arch], decoder="hf", share_prompts=False, value_head=False)
    obs = [{"image": _image(0), "text": "Target: 3. Current: 1."}, {"image": _image(2), "text": "Go"}]
    samples = policy.sample(obs, SamplingConfig(temperature=1.0, max_new_tokens=8, n=2))
    scored = policy.score(samples).logprobs.detach()
    worst = max(float(np.abs(np.array(s.logprobs) - scored[i, :s.num_tokens].numpy()).max())
                for i, s in enumerate(samples))
    assert worst <= 1e-4, f"{arch}: generate() and the scorer disagree by {worst}"


@pytest.mark.parametrize("arch", ARCHS)
def test_two_image_prompts_in_a_padded_batch_match_each_row_alone(tiny_dirs, arch):
    policy = load_policy(tiny_dirs[arch], value_head=False)
    proc = policy.processor
    prompts, images = [], []
    for i, text in enumerate(["first", "a much longer second question about both pictures"]):
        content = [{"type": "image"}, {"type": "text", "text": text}, {"type": "image"}, {"type": "text", "text": "?"}]
        prompts.append(proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                tokenize=False))
        images.append([Image.fromarray(_image(10 + 2 * i)), Image.fromarray(_image(11 + 2 * i))])
    proc.tokenizer.padding_side = "left"
    completions = [[5, 6, 7], [8, 9]]
    batch = model_inputs(proc(text=prompts, images=images, return_tensors="pt", padding=True))
    pos, full = completion_positions(policy.hf, batch, completions, policy.tokenizer.pad_token_id)
    with torch.no_grad():
        batched = policy.model(**full, position_ids=pos).logits
        for i in range(2):
            alone = model_inputs(proc(text=[prompts[i]], images=[images[i]], return_tensors="pt"))
            _, row = completion_positions(policy.hf, alone, [completions[i]], policy.tokenizer.pad_token_id)
            ref = policy.model(**row).logits  # positions from the model's own forward, no padding
            n = len(completions[i])
            got = batched[i, full["input_ids"].shape[1] - max(map(len, completions)) - 1:][: n + 1]
            want = ref[0, -n - 1:]
            assert (got - want).abs().max() < 1e-4, f"{arch}: row {i} differs in a padded two-image batch"


@pytest.mark.parametrize("arch", ARCHS)
def test_logprobs_do_not_depend_on_the_batch(tiny_dirs, arch):
    torch.manual_seed(0)
    policy = load_policy(tiny_dirs[arch], value_head=False)
    obs = [{"image": _image(i), "text": "Target: 3." + " More." * i} for i in range(3)] + [{"image": None, "text": "hi"}]
    samples = policy.sample(obs, SamplingConfig(temperature=1.0, max_new_tokens=6))
    whole = policy.score(samples).logprobs.detach()
    order = [3, 1, 0, 2]
    shuffled = policy.score([samples[i] for i in order]).logprobs.detach()
    for row, i in enumerate(order):  # shuffled, and with image and text-only samples mixed
        n = samples[i].num_tokens
        assert torch.allclose(shuffled[row, :n], whole[i, :n], atol=1e-5), f"{arch}: sample {i} moved"
    for i, s in enumerate(samples):  # minibatches of one (gradient accumulation)
        alone = policy.score([s]).logprobs.detach()[0, :s.num_tokens]
        assert torch.allclose(alone, whole[i, :s.num_tokens], atol=1e-5), f"{arch}: sample {i} alone differs"


@pytest.mark.parametrize("arch", ARCHS)
def test_a_step_with_lora_moves_the_adapters_and_leaves_the_vision_tower_bit_identical(tiny_dirs, arch):
    from rlvlm.models.lora import VISION_TOWER_NAMES

    torch.manual_seed(0)
    policy = load_policy(tiny_dirs[arch], lora={"r": 4}, value_head=False)
    named = dict(policy.model.named_parameters())
    vision = {n: p.detach().clone() for n, p in named.items() if any(v in n.split(".") for v in VISION_TOWER_NAMES)}
    assert vision, f"{arch}: no vision tower found under {VISION_TOWER_NAMES}"
    adapters = {n: p.detach().clone() for n, p in named.items() if p.requires_grad}
    samples = policy.sample([{"image": _image(0), "text": "Go"}], SamplingConfig(max_new_tokens=6, n=2))
    opt = torch.optim.Adam([p for p in named.values() if p.requires_grad], lr=1e-2)
    out = policy.score(samples)
    (-(torch.tensor([1.0, -1.0])[:, None] * out.logprobs * out.mask).sum()).backward()
    opt.step()
    assert all(torch.equal(named[n], v) for n, v in vision.items()), f"{arch}: the frozen vision tower moved"
    moved = sum(not torch.equal(named[n], v) for n, v in adapters.items())
    assert moved >= len(adapters) // 2, f"{arch}: only {moved}/{len(adapters)} adapter tensors moved"


def test_omni_models_load_through_the_multimodal_lm_auto_class(tmp_path):
    """Phi-4-multimodal is registered only under AutoModelForMultimodalLM; a text-only LM is refused clearly."""
    import transformers

    from rlvlm.errors import ModelSetupError
    from rlvlm.models.policy import load_hf_model

    cfg = transformers.Phi4MultimodalConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=56, crop_size=56, image_token_id=250),
        audio_config=dict(hidden_size=32, intermediate_size=64, num_blocks=1, num_attention_heads=2,
                          ext_pw_out_channel=32, depthwise_separable_out_channel=32, nemo_conv_channels=32,
                          audio_token_id=251))
    transformers.Phi4MultimodalForCausalLM(cfg).save_pretrained(tmp_path / "phi4")
    assert type(load_hf_model(str(tmp_path / "phi4"))).__name__ == "Phi4MultimodalForCausalLM"
    llama = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1)
    transformers.LlamaForCausalLM(llama).save_pretrained(tmp_path / "llama")
    with pytest.raises(ModelSetupError, match=r"is a 'llama' model, which none of AutoModelForImageTextToText, "
                                              r"AutoModelForMultimodalLM can load"):
        load_hf_model(str(tmp_path / "llama"))


def test_a_processor_that_needs_torchvision_is_one_clear_error(tmp_path):
    """Mistral 3's PixtralProcessor itself requires torchvision: one line naming the family and the fix."""
    import json

    import transformers

    from rlvlm.errors import ModelSetupError
    from rlvlm.models.processors import has_torchvision, load_processor
    from rlvlm.models.tiny import build_tokenizer

    if has_torchvision():
        pytest.skip("torchvision is installed here, so the processor loads")
    build_tokenizer("llava").save_pretrained(tmp_path)
    transformers.PixtralImageProcessorPil().save_pretrained(tmp_path)
    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "PixtralProcessor"}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mistral3"}))
    with pytest.raises(ModelSetupError) as info:
        load_processor(str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg and "(mistral3)" in msg and "PixtralProcessor requires torchvision" in msg
    assert "pip install torchvision" in msg
