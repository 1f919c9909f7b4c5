"""LoRA through peft, with the vision tower in or out.

peft's "all-linear" targets every linear layer except the output head,
vision tower included. RL on a frozen pretrained vision encoder is the common
choice (cheaper, and the encoder is already good), so rlvlm resolves the
target list itself: it enumerates linear layers by module path and drops
those under the vision tower unless `vision=True`. The vision tower is found
by the attribute names transformers VLMs use for it, not by model name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from torch import nn

from rlvlm.config import F, FF
from rlvlm.errors import ConfigError

# Attribute names under which transformers VLMs keep their vision encoder.
VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model", "vision_encoder", "image_encoder")
_HEADS = ("lm_head", "embed_out", "output_layer")


@dataclass
class LoraSettings:
    """The `model.lora` section: present (e.g. `model.lora.r=16`) means LoRA, null means full training."""

    r: int = F(16, "LoRA rank")
    alpha: float = F(32.0, "LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = F(0.0, "dropout on the LoRA input")
    target_modules: list[str] | str = F("all-linear", "all-linear (every linear layer but the output head, vision "
                                        "tower per `vision`) or leaf names like [q_proj, v_proj]")
    vision: bool = F(False, "also adapt the vision tower's linear layers")
    extra: dict = FF(dict, "further peft.LoraConfig arguments, passed through unchanged")

    def validate(self) -> None:
        if self.r < 1:
            raise ConfigError(f"model.lora.r={self.r} must be >= 1")
        if self.alpha <= 0:
            raise ConfigError(f"model.lora.alpha={self.alpha} must be > 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.lora.dropout={self.dropout} must be in [0, 1)")


def _in_vision_tower(name: str) -> bool:
    return any(part in VISION_TOWER_NAMES for part in name.split("."))


def resolve_targets(model: nn.Module, settings: LoraSettings, exclude: Sequence[str] = ()) -> list[str]:
    """Full module paths of the linear layers LoRA should adapt (none under the module paths `exclude`)."""
    wanted = settings.target_modules
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or name.split(".")[-1] in _HEADS:
            continue
        if any(name.startswith(p + ".") for p in exclude):  # e.g. a frozen projector (model.freeze_projector)
            continue
        if not settings.vision and _in_vision_tower(name):
            continue
        if wanted != "all-linear" and name.split(".")[-1] not in wanted:
            continue
        names.append(name)
    if not names:
        raise ConfigError(
            f"model.lora.target_modules={wanted!r} matched no linear layer"
            f"{' outside the vision tower' if not settings.vision else ''}; use 'all-linear' or leaf names "
            f"such as q_proj, v_proj"
        )
    return names


def apply_lora(model: nn.Module, settings: LoraSettings, adapter_dir: str | None = None,
               exclude: Sequence[str] = ()):
    """Wrap `model` in a peft LoRA model (or load a saved adapter onto it); no adapters under `exclude`."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    settings.validate()
    targets = resolve_targets(model, settings, exclude)
    # An anchored alternation of full paths: peft matches a str target_modules
    # as a full-match regex, so nothing outside this list is touched.
    pattern = "^(" + "|".join(re.escape(n) for n in targets) + ")$"
    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=pattern,
        bias="none", **settings.extra,
    )
    return get_peft_model(model, config)
