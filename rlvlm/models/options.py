"""`PolicyOptions`: everything that shapes a loaded policy besides the model name.

Declared once, here. `load_policy(name, **options)` takes these fields as
keywords; `rlvlm train`'s `model` section is this class plus `name_or_path`
(train/config.py), so every option of a policy is also a `model.KEY=VALUE`
override. A saved policy stores its options (policy.json) and loads with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from rlvlm.config import F, FF, config_from_dict, config_to_dict
from rlvlm.errors import ConfigError
from rlvlm.models.generators import generator_backend
from rlvlm.models.lora import LoraSettings

DTYPE_NAMES = ("float32", "bfloat16", "float16")
AUTOCAST_NAMES = ("none", "bfloat16", "float16")


@dataclass
class PolicyOptions:
    dtype: Literal["float32", "bfloat16", "float16"] = F("float32", "float32 | bfloat16 | float16")
    device: str = F("cpu", "torch device, e.g. cpu or cuda")
    lora: LoraSettings | None = F(None, "LoRA adapters (a section: model.lora.r=16 turns them on); null trains "
                                  "every weight")
    value_head: bool = F(True, "MLP value head on the last prompt token (needed by PPO/GAE)")
    gradient_checkpointing: bool = F(False, "trade compute for activation memory")
    reference: Literal["auto", "copy", "none"] = F("auto", "KL reference: auto (LoRA-disabled model if LoRA), "
                                                   "copy (frozen copy), none")
    attn_implementation: str | None = F("sdpa", "attention kernel: sdpa | eager | flash_attention_2 "
                                        "(null: the model's default)")
    trust_remote_code: bool = F(False, "run a hub model's own Python code; off unless you trust its source")
    system_prompt: str | None = F(None, "system message put before every prompt (null: none)")
    # Speed levers (issue 8): each leaves log-probs unchanged (tests); benchmarks/grpo_vs_trl.py measures them.
    decoder: str = F("rlvlm", "generator backend (rlvlm.models.generators.GENERATORS): rlvlm (own loop, KV cache, "
                     "prompts prefilled once) | hf (transformers generate)")
    share_prompts: bool = F(True, "one vision + prompt pass per distinct (prompt, image), its KV cache shared by "
                            "the group's samples, in sampling and scoring")
    # Off by default: on CPU it measured no faster (small model, 64 x 64 and 64 x 128 tokens:
    # within noise, 9 % slower on the tiny one).
    static_cache: bool = F(False, "decoder=rlvlm: decode into a preallocated KV cache instead of growing it")
    logprob_chunk: int = F(4, "rows per chunk of the fused log-prob/entropy pass over the vocabulary (0: all rows)")
    # Memory and scale knobs (issue 18; docs/scaling_knobs.md).
    autocast: Literal["none", "bfloat16", "float16"] = F(
        "none", "mixed precision: every forward pass (scoring with and without grad, sampling, the reference) runs "
        "under torch.autocast in this dtype while the weights stay in model.dtype (keep float32: fp32 master "
        "weights); float16 has no loss scaling, prefer bfloat16")
    freeze_vision: bool = F(False, "freeze the vision encoder (transformers' get_encoder('image'), without the "
                            "projector, even where it sits inside, as Qwen-VL's visual.merger); with LoRA the encoder "
                            "has no adapters unless model.lora.vision, which contradicts this")
    freeze_projector: bool = F(False, "freeze the multimodal projector (multi_modal_projector, connector, "
                               "Qwen-VL's visual.merger, ...); with LoRA it gets no adapters")
    reference_device: str | None = F(None, "device of the frozen reference copy (model.reference=copy), e.g. cpu "
                                     "to keep it out of GPU memory; inputs go there and log-probs come back "
                                     "(null: model.device)")

    def validate(self) -> None:
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(f"model.dtype={self.dtype!r} is not one of {', '.join(DTYPE_NAMES)}")
        generator_backend(self.decoder)  # a ConfigError naming model.decoder and the registered backends
        if self.logprob_chunk < 0:
            raise ConfigError(f"model.logprob_chunk={self.logprob_chunk} must be >= 0 (0: no chunking)")
        if self.reference not in ("auto", "copy", "none"):
            raise ConfigError(f"model.reference={self.reference!r} must be auto, copy or none")
        if self.autocast not in AUTOCAST_NAMES:
            raise ConfigError(f"model.autocast={self.autocast!r} is not one of {', '.join(AUTOCAST_NAMES)}")
        if self.freeze_vision and self.lora is not None and self.lora.vision:
            raise ConfigError("model.freeze_vision=true contradicts model.lora.vision=true (adapters that train the "
                              "vision encoder); fix: set one of them false")
        if self.reference_device is not None:
            _check_reference_device(self.reference_device, self.reference)
        if self.autocast != "none" and self.dtype != "float32":
            raise ConfigError(f"model.autocast={self.autocast} keeps float32 master weights, but model.dtype="
                              f"{self.dtype}; fix: model.dtype=float32, or model.autocast=none")


def _check_reference_device(device: str, reference: str) -> None:
    if reference != "copy":
        raise ConfigError(f"model.reference_device={device!r} places a frozen copy, but model.reference={reference} "
                          f"has none ({'the LoRA-disabled policy itself' if reference == 'auto' else 'no reference'}); "
                          "fix: model.reference=copy, or model.reference_device=null")
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"model.reference_device={device!r} is not a torch device ({err}); "
                          "fix: e.g. cpu, cuda or cuda:1") from None


def options_from_dict(data: dict, where: str = "") -> PolicyOptions:
    """Typed options from a plain mapping (a saved policy.json, or keyword overrides), validated.

    The config system parses it, so a wrong name or type is the same one-line
    error as on the command line. `extra`, a field of options saved before
    0.2 that nothing read, is dropped when empty.
    """
    data = dict(data)
    if data.get("extra") == {}:
        del data["extra"]
    return config_from_dict(PolicyOptions, data, where=where)


def options_to_dict(options: PolicyOptions) -> dict:
    """Only the `PolicyOptions` fields, also when `options` is a subclass (train's ModelConfig)."""
    return {k: v for k, v in config_to_dict(options).items() if k in PolicyOptions.__dataclass_fields__}
