"""What a tiny-model family is: its shapes, tokens, chat template and builder, in one registry.

A family registers an `ArchSpec` under its transformers `model_type`
(`register_family`); `rlvlm tiny-model --arch NAME` and `cached_tiny_model`
read the registry, so adding a family is one module in this package.

Image normalisation: the tasks render dark glyphs on a white background. With
CLIP's mean/std white maps to about +1.9, a large constant that a randomly
initialised vision tower must first learn to cancel; a prototype stalled at
chance that way. Tiny models therefore use mean 0.96 / std 0.5 per channel:
white -> +0.08, black -> -1.92, so the glyphs carry the signal. White is kept
slightly off exactly 0 on purpose: Idefics3 treats an all-zero pixel tensor as
a padding image and drops it, so a blank white page would crash it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

TINY_IMAGE_MEAN = [0.96, 0.96, 0.96]
TINY_IMAGE_STD = [0.5, 0.5, 0.5]

# Shapes per size. "tiny" matches the ~1M-parameter reference model of the
# benchmark issue (text 128x2 layers, vision 64x2); "small" is ~10-20M.
SIZES: dict[str, dict] = {
    "tiny": dict(
        vocab=1024, hidden=128, layers=2, heads=4, kv_heads=2, ffn=256,
        v_hidden=64, v_layers=2, v_heads=2, v_ffn=128, image_size=84, patch=14,
    ),
    "small": dict(
        vocab=2048, hidden=256, layers=8, heads=4, kv_heads=2, ffn=1024,
        v_hidden=192, v_layers=4, v_heads=3, v_ffn=768, image_size=112, patch=14,
    ),
}


def template(header: str, close: str, image: str, bos: str = "", roles: dict | None = None) -> str:
    """A Jinja chat template of the common 'role header, content, end marker' shape.

    `header` is Jinja text using the variable `role`; `roles` renames roles
    (Gemma calls the assistant 'model'). Content may be a string or a list of
    {"type": "image"} / {"type": "text"} parts; `image` is what an image part
    expands to before the processor replaces it with the right number of
    placeholder tokens.
    """
    rename = "{% set names = " + repr(roles or {}) + " %}"
    return (
        bos + rename
        + "{% for m in messages %}{% set role = names.get(m['role'], m['role']) %}" + header
        + "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        + "{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image
        + "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        + close + "{% endfor %}"
        + "{% if add_generation_prompt %}{% set role = names.get('assistant', 'assistant') %}" + header + "{% endif %}"
    )


@dataclass(frozen=True)
class ArchSpec:
    """What differs between architectures: tokens, template, config and processor."""

    named_tokens: dict[str, str]  # tokenizer attribute -> token text (bos_token, image_token, ...)
    extra_tokens: tuple[str, ...]  # other special tokens the template/processor needs
    chat_template: str
    stop_tokens: tuple[str, ...]  # generation stops at any of these
    build: Callable[[dict, dict, object], tuple]  # (shape, token ids, tokenizer) -> (config, processor)
    # Called on the fresh model, under the build's seeded stream: a family whose real checkpoints
    # overwrite a zero-initialised gate opens it here, or the tiny model would ignore its image.
    post_init: Callable[[object], None] | None = None


FAMILIES: dict[str, ArchSpec] = {}


def register_family(name: str, spec: ArchSpec) -> ArchSpec:
    """Add a family under its transformers `model_type`; `rlvlm tiny-model --arch NAME` builds it."""
    if name in FAMILIES:
        raise ValueError(f"tiny-model family {name!r} is already registered")
    FAMILIES[name] = spec
    return spec


def text_llama(s: dict, ids: dict):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
        max_position_embeddings=2048, bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"],
        pad_token_id=ids["pad_token"], tie_word_embeddings=False,
    )


def image_kwargs() -> dict:
    """The tiny models' image normalisation (see the module docstring)."""
    return dict(image_mean=TINY_IMAGE_MEAN, image_std=TINY_IMAGE_STD, do_convert_rgb=True)
