"""The vision encoder and the multimodal projector of a VLM, found generically, and freezing them.

`model.freeze_vision` freezes the encoder (the ViT), `model.freeze_projector`
the projector that maps its features into the language model. The encoder is
transformers' own lookup, `get_encoder(modality="image")` (5.x: the first of
vision_tower / visual / vision_model / vision_encoder / image_tower), with
LoRA's attribute names as a fallback for remote-code models. Projectors have
no such accessor; they are the modules named in `PROJECTOR_NAMES`, wherever
they sit: beside the encoder (LLaVA's multi_modal_projector, Idefics3's
connector, Gemma 4's embed_vision) or inside it (Qwen-VL's visual.merger and
Qwen3-VL's deepstack mergers). A projector inside the encoder is not part of
"the encoder" here, so `freeze_vision` means the same in every family: the
ViT frozen, the projector still trained (Qwen2.5-VL's recipe: tune_mm_mlp
without tune_mm_vision) unless `freeze_projector`.

A frozen encoder also saves activation memory for free: autograd records no
graph through ops whose inputs need no grad, so the ViT's activations are not
kept for backward.
"""

from __future__ import annotations

from torch import nn

from rlvlm.errors import ModelSetupError
from rlvlm.models.lora import VISION_TOWER_NAMES

PROJECTOR_NAMES = ("multi_modal_projector", "connector", "embed_vision", "merger", "deepstack_merger_list",
                   "mm_projector")


def encoder_path(hf: nn.Module) -> str:
    """Module path (as in `hf.named_modules()`) of the vision encoder."""
    tower = hf.get_encoder(modality="image") if hasattr(hf, "get_encoder") else None
    if tower is hf or tower is getattr(hf, "base_model", None):
        tower = None  # get_encoder's fallback when it finds nothing
    for name, mod in hf.named_modules():
        if name and (mod is tower if tower is not None else name.split(".")[-1] in VISION_TOWER_NAMES):
            return name
    raise ModelSetupError(f"{type(hf).__name__} has no vision encoder that rlvlm can find (get_encoder('image'), "
                          f"or a module named {', '.join(VISION_TOWER_NAMES)}); fix: model.freeze_vision=false")


def projector_paths(hf: nn.Module) -> list[str]:
    """Module paths of the multimodal projector(s): the outermost modules named in PROJECTOR_NAMES."""
    found: list[str] = []
    for name, _ in hf.named_modules():
        if name.split(".")[-1] in PROJECTOR_NAMES and not any(name.startswith(p + ".") for p in found):
            found.append(name)
    return found


def _under(name: str, paths) -> bool:
    return any(name == p or name.startswith(p + ".") for p in paths)


def freeze_vision_parts(hf: nn.Module, encoder: bool, projector: bool) -> dict[str, int]:
    """Set requires_grad False on the encoder's and/or the projector's parameters; the counts frozen.

    Run after LoRA is applied (peft has then frozen every base weight already,
    and the adapter parameters are under the same module paths).
    """
    if not (encoder or projector):
        return {}
    proj = projector_paths(hf)
    if projector and not proj:
        raise ModelSetupError(f"{type(hf).__name__} has no multimodal projector that rlvlm can find (a module "
                              f"named {', '.join(PROJECTOR_NAMES)}); fix: model.freeze_projector=false")
    enc = [encoder_path(hf)] if encoder else []
    counts = {"encoder": 0, "projector": 0}
    for name, p in hf.named_parameters():
        part = "projector" if _under(name, proj) else "encoder" if _under(name, enc) else None
        if part is not None and (part == "encoder" or projector) and p.requires_grad:
            p.requires_grad_(False)
            counts[part] += p.numel()
    return counts
