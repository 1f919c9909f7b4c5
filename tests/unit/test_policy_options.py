"""`PolicyOptions` is declared once: `rlvlm train`'s model section is it plus the model name."""

from __future__ import annotations

import dataclasses

import pytest

from rlvlm.config import all_keys, load_config
from rlvlm.errors import ConfigError
from rlvlm.models.lora import LoraSettings
from rlvlm.models.options import PolicyOptions, options_from_dict, options_to_dict
from rlvlm.train.config import TrainConfig


def test_every_policy_option_is_a_train_key():
    keys = set(all_keys(TrainConfig))
    for f in dataclasses.fields(PolicyOptions):
        assert f"model.{f.name}" in keys
    for f in dataclasses.fields(LoraSettings):
        assert f"model.lora.{f.name}" in keys
    # and nothing else: one declaration, plus the model's name
    model_keys = {k.split(".")[1] for k in keys if k.startswith("model.")}
    assert model_keys == {f.name for f in dataclasses.fields(PolicyOptions)} | {"name_or_path"}


def test_model_section_gives_the_policy_options_it_spells():
    cfg = load_config(TrainConfig, "numberline", [
        "model.lora.r=8", "model.lora.target_modules=[q_proj, v_proj]", "model.system_prompt=Answer briefly.",
        "model.trust_remote_code=true", "model.static_cache=true", "model.reference=copy"])
    opts = cfg.model.policy_options()
    assert type(opts) is PolicyOptions
    assert opts.lora == LoraSettings(r=8, target_modules=["q_proj", "v_proj"])
    assert (opts.system_prompt, opts.trust_remote_code, opts.static_cache) == ("Answer briefly.", True, True)
    assert load_config(TrainConfig, "numberline").model.lora is None  # no section: every weight trains
    # a saved policy's options (policy.json) come back equal
    assert options_from_dict(options_to_dict(opts)) == opts


def test_saved_options_from_before_the_single_declaration_load():
    old = {"dtype": "float32", "device": "cpu", "lora": {"r": 4, "alpha": 8.0, "dropout": 0.0,
           "target_modules": "all-linear", "vision": False, "extra": {}}, "value_head": False, "extra": {}}
    assert options_from_dict(old).lora.r == 4


@pytest.mark.parametrize("override, match", [
    ("model.lora_r=8", r"'model.lora_r' was removed; fix: use model.lora.r"),
    ("model.lora.rank=8", r"did you mean: model.lora.r\?"),
    ("model.lora.r=0", r"model.lora.r=0 must be >= 1"),
    ("model.decoder=vllm", r"model.decoder"),
    ("model.dtype=fp8", r"model.dtype='fp8' is not one of"),
    ("model.autocast=fp8", r"model.autocast='fp8' is not one of: none, bfloat16, float16"),
    ("model.dtype=bfloat16 model.autocast=bfloat16", r"model.autocast=bfloat16 keeps float32 master weights"),
    ("model.reference=auto model.reference_device=cpu",
     r"model.reference_device='cpu' places a frozen copy, but model.reference=auto"),
    ("model.reference=copy model.reference_device=cuda:x", r"model.reference_device='cuda:x' is not a torch device"),
    ("model.gradient_checkpointing=maybe", r"model.gradient_checkpointing='maybe' is not a bool"),
    ("model.freeze_projector=maybe", r"model.freeze_projector='maybe' is not a bool"),
    ("model.lora.r=4 model.lora.vision=true model.freeze_vision=true", r"model.freeze_vision=true contradicts"),
])
def test_bad_model_keys_fail_with_the_fix(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(TrainConfig, "numberline", override.split())


def test_a_key_below_a_value_set_earlier_is_refused_not_dropped():
    with pytest.raises(ConfigError, match=r"env.kwargs.missing_info=0.3 is a value"):
        load_config(TrainConfig, "numberline", ["env.kwargs.missing_info=0.3", "env.kwargs.missing_info.modes=[blur]"])
    cfg = load_config(TrainConfig, "numberline", ["env.kwargs.missing_info.p=0.3", "env.kwargs.missing_info.modes=[blur]"])
    assert cfg.env.kwargs["missing_info"] == {"p": 0.3, "modes": ["blur"]}
