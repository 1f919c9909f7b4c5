"""Tiny-model builder, tokenizer, processors and thought/action spans."""

from __future__ import annotations

import json

import pytest

from rlvlm.errors import ConfigError, ModelSetupError
from rlvlm.models.spans import find_action_key, thought_action_masks
from rlvlm.models.tiny import ARCHS, TINY_IMAGE_MEAN, TINY_IMAGE_STD, build_tiny_model, build_tokenizer


@pytest.mark.parametrize("arch", ARCHS)
def test_build_is_deterministic_and_loads_with_auto_classes(arch, tmp_path):
    from transformers import AutoModelForImageTextToText

    from rlvlm.models.processors import load_processor

    a = build_tiny_model(tmp_path / "a", arch, "tiny", seed=3)
    build_tiny_model(tmp_path / "b", arch, "tiny", seed=3)
    c = build_tiny_model(tmp_path / "c", arch, "tiny", seed=4)
    wa = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert wa == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert wa != (tmp_path / "c" / "model.safetensors").read_bytes()
    assert 0.4e6 < a["params"] < 1.5e6, a["params"]
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "a")
    assert model.config.model_type == arch
    proc = load_processor(str(tmp_path / "a"))
    # White (1.0 after rescale) must land near 0, black far below.
    assert abs((1.0 - TINY_IMAGE_MEAN[0]) / TINY_IMAGE_STD[0]) < 0.2
    assert list(proc.image_processor.image_mean) == TINY_IMAGE_MEAN
    summary = json.loads((tmp_path / "a" / "rlvlm_tiny.json").read_text())
    assert summary["arch"] == arch and summary["seed"] == 3


def test_small_size_is_10_to_20m(tmp_path):
    s = build_tiny_model(tmp_path / "s", "qwen2_vl", "small", seed=0)
    assert 10e6 <= s["params"] <= 20e6, s["params"]


def test_qwen_processor_loads_without_torchvision(tmp_path):
    from rlvlm.models.processors import has_torchvision, load_processor

    build_tiny_model(tmp_path / "q", "qwen2_5_vl", "tiny", seed=0)
    proc = load_processor(str(tmp_path / "q"))
    assert type(proc).__name__ == "Qwen2_5_VLProcessor"
    assert json.loads((tmp_path / "q" / "processor_config.json").read_text())["processor_class"] == \
        "Qwen2_5_VLProcessor"
    if not has_torchvision():  # a stand-in that answers frame settings and refuses any video
        with pytest.raises(ModelSetupError, match="without its video processor"):
            proc.video_processor([])


def test_tokenizer_covers_project_vocabulary():
    tok = build_tokenizer("qwen2_vl")
    text = '{"thoughts": "target 3, current 1, move +", "action": "+"}'
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 2, "the corpus should give merges for the CoT format"
    assert tok.convert_tokens_to_ids("<|image_pad|>") < 16  # special tokens come first


def test_bad_arch_and_size():
    with pytest.raises(ConfigError, match="did you mean: qwen2_vl"):
        build_tiny_model("/tmp/never", "qwen2vl")
    with pytest.raises(ConfigError, match="size='huge'"):
        build_tiny_model("/tmp/never", "llava", "huge")


def test_action_spans_from_character_offsets():
    tok = build_tokenizer("llava")
    text = '{"thoughts": "go up", "action": "+"}'
    ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    thought, action = thought_action_masks(tok, ids)
    start = find_action_key(text)
    assert text[start:].startswith('"action"')
    # Every thought token decodes to text before the key; the rest cover it and what follows.
    n_thought = sum(thought)
    assert tok.decode(ids[:n_thought]) == text[: len(tok.decode(ids[:n_thought]))]
    assert len(tok.decode(ids[:n_thought])) <= start < len(tok.decode(ids[: n_thought + 1]))
    assert action[-1] and all(a != t for a, t in zip(action, thought))
    # No key: the whole completion counts as the action.
    t2, a2 = thought_action_masks(tok, tok.encode("just +", add_special_tokens=False))
    assert not any(t2) and all(a2)
    assert find_action_key("{'Action' : 'hit'}") == 1
