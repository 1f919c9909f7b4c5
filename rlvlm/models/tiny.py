"""Build small from-scratch VLMs of real Hugging Face architectures, offline.

`build_tiny_model(out_dir, arch, size, seed)` writes a directory that the
standard Auto classes load with no network: random weights from a small config
of the real architecture class, a byte-level BPE tokenizer trained locally, the
architecture's own processor class, and a chat template. It is how rlvlm
debugs the whole pipeline without a model hub, through exactly the code path a
user's `Qwen/Qwen2.5-VL-3B-Instruct` takes.

Image normalisation: the tasks render dark glyphs on a white background. With
CLIP's mean/std white maps to about +1.9, a large constant that a randomly
initialised vision tower must first learn to cancel; a prototype stalled at
chance that way. Tiny models therefore use mean 0.96 / std 0.5 per channel:
white -> +0.08, black -> -1.92, so the glyphs carry the signal. White is kept
slightly off exactly 0 on purpose: Idefics3 treats an all-zero pixel tensor as
a padding image and drops it, so a blank white page would crash it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rlvlm.errors import ConfigError, did_you_mean
from rlvlm.models.processors import image_only_processor_class, image_processor_class
from rlvlm.models.seeding import private_stream
from rlvlm.models.tokenizer import train_bpe_tokenizer

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


def _template(header: str, close: str, image: str, bos: str = "", roles: dict | None = None) -> str:
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


def _text_llama(s: dict, ids: dict):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
        max_position_embeddings=2048, bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"],
        pad_token_id=ids["pad_token"], tie_word_embeddings=False,
    )


def _image_kwargs(size: int) -> dict:
    return dict(image_mean=TINY_IMAGE_MEAN, image_std=TINY_IMAGE_STD, do_convert_rgb=True)


def _build_llava(s: dict, ids: dict, tok):
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaProcessor


    grid = s["image_size"] // s["patch"]
    vision = CLIPVisionConfig(
        hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
        num_attention_heads=s["v_heads"], image_size=s["image_size"], patch_size=s["patch"],
        projection_dim=s["v_hidden"],
    )
    config = LlavaConfig(
        vision_config=vision, text_config=_text_llama(s, ids), image_token_index=ids["image_token"],
        image_seq_length=grid * grid, vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    ip = image_processor_class("CLIPImageProcessor")(
        size={"shortest_edge": s["image_size"]}, crop_size={"height": s["image_size"], "width": s["image_size"]},
        **_image_kwargs(s["image_size"]),
    )
    proc = LlavaProcessor(
        image_processor=ip, tokenizer=tok, patch_size=s["patch"], vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=SPECS["llava"].chat_template,
    )
    return config, proc


def _qwen_rope(s: dict) -> dict:
    # mrope splits the rotary half-dimension over (temporal, height, width);
    # Qwen2-VL uses 16/24/24 of 64, kept here in proportion.
    half = s["hidden"] // s["heads"] // 2
    t = half // 4
    return {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [t, (half - t) // 2, half - t - (half - t) // 2]}


def _qwen_text(s: dict, ids: dict) -> dict:
    return dict(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"], num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], max_position_embeddings=4096,
        rope_parameters=_qwen_rope(s), bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"],
        pad_token_id=ids["pad_token"],
    )


def _qwen_processor(s: dict, tok, arch: str):
    from transformers import Qwen2VLProcessor


    pixels = s["image_size"] * s["image_size"]
    ip = image_processor_class("Qwen2VLImageProcessor")(
        size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=s["patch"], merge_size=2,
        temporal_patch_size=2, **_image_kwargs(s["image_size"]),
    )
    # No video processor: the Qwen2-VL video processor imports torchvision,
    # which has no CPU build here. rlvlm never sends videos, and
    # models.processors.load_processor rebuilds the processor without it when
    # torchvision is missing, so hub checkpoints load the same way.
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor as P
    else:
        P = Qwen2VLProcessor
    return image_only_processor_class(P)(image_processor=ip, tokenizer=tok, chat_template=SPECS[arch].chat_template)


def _build_qwen2_vl(s: dict, ids: dict, tok):
    from transformers import Qwen2VLConfig

    config = Qwen2VLConfig(
        text_config=_qwen_text(s, ids),
        vision_config=dict(
            depth=s["v_layers"], embed_dim=s["v_hidden"], hidden_size=s["hidden"], num_heads=s["v_heads"],
            mlp_ratio=s["v_ffn"] // s["v_hidden"], patch_size=s["patch"], spatial_merge_size=2, temporal_patch_size=2,
        ),
        image_token_id=ids["image_token"], video_token_id=ids["video_token"],
        vision_start_token_id=ids["vision_start_token"], vision_end_token_id=ids["vision_end_token"],
        tie_word_embeddings=False,
    )
    return config, _qwen_processor(s, tok, "qwen2_vl")


def _build_qwen2_5_vl(s: dict, ids: dict, tok):
    from transformers import Qwen2_5_VLConfig

    config = Qwen2_5_VLConfig(
        text_config=_qwen_text(s, ids),
        vision_config=dict(
            depth=s["v_layers"], hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_heads=s["v_heads"],
            out_hidden_size=s["hidden"], patch_size=s["patch"], spatial_merge_size=2, temporal_patch_size=2,
            window_size=s["patch"] * 2 * 4, fullatt_block_indexes=[s["v_layers"] - 1],
        ),
        image_token_id=ids["image_token"], video_token_id=ids["video_token"],
        vision_start_token_id=ids["vision_start_token"], vision_end_token_id=ids["vision_end_token"],
        tie_word_embeddings=False,
    )
    return config, _qwen_processor(s, tok, "qwen2_5_vl")


def _build_idefics3(s: dict, ids: dict, tok):
    from transformers import Idefics3Config, Idefics3Processor


    grid = s["image_size"] // s["patch"]
    scale = 2
    config = Idefics3Config(
        vision_config=dict(
            hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"], image_size=s["image_size"], patch_size=s["patch"],
        ),
        text_config=_text_llama(s, ids).to_dict(), image_token_id=ids["image_token"], scale_factor=scale,
        tie_word_embeddings=False, pad_token_id=ids["pad_token"],
    )
    ip = image_processor_class("Idefics3ImageProcessor")(
        do_image_splitting=False, size={"longest_edge": s["image_size"]},
        max_image_size={"longest_edge": s["image_size"]}, **_image_kwargs(s["image_size"]),
    )
    proc = Idefics3Processor(
        image_processor=ip, tokenizer=tok, image_seq_len=(grid // scale) ** 2,
        chat_template=SPECS["idefics3"].chat_template,
    )
    return config, proc


def _build_gemma3(s: dict, ids: dict, tok):
    from transformers import Gemma3Config, Gemma3Processor


    grid = s["image_size"] // s["patch"]
    tokens_per_side = grid // 2
    head_dim = s["hidden"] // s["heads"]
    config = Gemma3Config(
        text_config=dict(
            vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"],
            num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
            head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=512, max_position_embeddings=4096,
            bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"], pad_token_id=ids["pad_token"],
        ),
        vision_config=dict(
            hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"], image_size=s["image_size"], patch_size=s["patch"],
            vision_use_head=False,
        ),
        mm_tokens_per_image=tokens_per_side**2, boi_token_index=ids["boi_token"], eoi_token_index=ids["eoi_token"],
        image_token_index=ids["image_token"], tie_word_embeddings=True,
    )
    ip = image_processor_class("Gemma3ImageProcessor")(
        size={"height": s["image_size"], "width": s["image_size"]}, do_pan_and_scan=False,
        **_image_kwargs(s["image_size"]),
    )
    proc = Gemma3Processor(
        image_processor=ip, tokenizer=tok, image_seq_length=tokens_per_side**2,
        chat_template=SPECS["gemma3"].chat_template,
    )
    return config, proc


_QWEN_TOKENS = {
    "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
    "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>",
}
_QWEN_TEMPLATE = _template("<|im_start|>{{ role }}\n", "<|im_end|>\n", "<|vision_start|><|image_pad|><|vision_end|>")

SPECS: dict[str, ArchSpec] = {
    "llava": ArchSpec(
        named_tokens={"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                      "image_token": "<image>"},
        extra_tokens=(),
        chat_template=_template("{{ role | upper }}: ", "</s>\n", "<image>\n", bos="<s>"),
        stop_tokens=("</s>",),
        build=_build_llava,
    ),
    "qwen2_vl": ArchSpec(named_tokens=_QWEN_TOKENS, extra_tokens=("<|im_start|>",),
                         chat_template=_QWEN_TEMPLATE, stop_tokens=("<|im_end|>", "<|endoftext|>"),
                         build=_build_qwen2_vl),
    "qwen2_5_vl": ArchSpec(named_tokens=_QWEN_TOKENS, extra_tokens=("<|im_start|>",),
                           chat_template=_QWEN_TEMPLATE, stop_tokens=("<|im_end|>", "<|endoftext|>"),
                           build=_build_qwen2_5_vl),
    "idefics3": ArchSpec(
        named_tokens={"bos_token": "<|begin_of_text|>", "eos_token": "<end_of_utterance>",
                      "pad_token": "<|finetune_right_pad_id|>", "image_token": "<image>"},
        extra_tokens=("<fake_token_around_image>", "<global-img>")
        + tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
        chat_template=_template("{{ role | capitalize }}:", "<end_of_utterance>\n", "<image>", bos="<|begin_of_text|>"),
        stop_tokens=("<end_of_utterance>",),
        build=_build_idefics3,
    ),
    "gemma3": ArchSpec(
        named_tokens={"bos_token": "<bos>", "eos_token": "<end_of_turn>", "pad_token": "<pad>",
                      "unk_token": "<unk>", "image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                      "eoi_token": "<end_of_image>"},
        extra_tokens=("<start_of_turn>", "<eos>"),
        chat_template=_template("<start_of_turn>{{ role }}\n", "<end_of_turn>\n", "<start_of_image>", bos="<bos>",
                                roles={"assistant": "model"}),
        stop_tokens=("<end_of_turn>", "<eos>"),
        build=_build_gemma3,
    ),
}
ARCHS = tuple(SPECS)


def build_tokenizer(arch: str, size: str = "tiny", seed: int = 0):
    """The locally trained tokenizer for `arch`, as a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    spec = SPECS[arch]
    specials = list(dict.fromkeys(list(spec.named_tokens.values()) + list(spec.extra_tokens)))
    raw = train_bpe_tokenizer(specials, vocab_size=SIZES[size]["vocab"], seed=seed)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, **spec.named_tokens, extra_special_tokens=list(spec.extra_tokens),
        chat_template=spec.chat_template, padding_side="left", model_max_length=4096,
    )
    return tok


def _reinit_zero_matrices(model, std: float) -> None:
    """Give all-zero weight matrices random values.

    Some architectures zero-initialise a layer because their real checkpoints
    always overwrite it (Gemma 3's image projection). From scratch, a zero
    projection blocks every gradient into the vision tower, so the image would
    be ignored until the projection drifts off zero.
    """
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2 and not p.any():
                p.normal_(0.0, std)


def _check_choice(field: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(
            f"{field}={value!r} is not supported{did_you_mean(value, choices)}; choose one of {', '.join(choices)}"
        )


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2_vl", size: str = "tiny", seed: int = 0) -> dict:
    """Build and save a from-scratch VLM; return a summary (params, seconds, image tokens).

    Deterministic: the same (arch, size, seed) gives byte-identical weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    _check_choice("arch", arch, ARCHS)
    _check_choice("size", size, tuple(SIZES))
    t0 = time.perf_counter()
    shape = SIZES[size]
    spec = SPECS[arch]
    tok = build_tokenizer(arch, size, seed)
    ids = {name: tok.convert_tokens_to_ids(text) for name, text in spec.named_tokens.items()}
    config, processor = spec.build(shape, ids, tok)
    # The weights come from a private copy of the global stream: building a model
    # in-process must not shift the caller's random numbers, or a training run would
    # depend on whether its model came from the cache (issue 15).
    with private_stream(seed):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
        _reinit_zero_matrices(model, std=getattr(config, "initializer_range", None) or 0.02)
    stop_ids = [tok.convert_tokens_to_ids(t) for t in spec.stop_tokens]
    model.generation_config = GenerationConfig(
        eos_token_id=stop_ids, pad_token_id=ids["pad_token"], bos_token_id=ids["bos_token"],
        do_sample=True, max_new_tokens=64,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    summary = {
        "arch": arch, "size": size, "seed": seed, "params": n_params,
        "image_size": shape["image_size"], "build_seconds": round(time.perf_counter() - t0, 2),
        "image_mean": TINY_IMAGE_MEAN, "image_std": TINY_IMAGE_STD,
    }
    (out / "rlvlm_tiny.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# Bump when a change to this file changes what gets built, so caches refresh.
BUILDER_VERSION = 1


def cache_dir() -> Path:
    """Where built tiny models are cached: $RLVLM_CACHE, else $XDG_CACHE_HOME/rlvlm, else ~/.cache/rlvlm.

    Always an absolute path, so a relative $RLVLM_CACHE names the same cache from any directory.
    """
    import os

    if os.environ.get("RLVLM_CACHE"):
        root = Path(os.environ["RLVLM_CACHE"])
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "rlvlm"
    else:
        root = Path.home() / ".cache" / "rlvlm"
    return root.expanduser().resolve()


def cached_tiny_model(arch: str = "qwen2_vl", size: str = "tiny", seed: int = 0) -> Path:
    """Path of a tiny model, building it once into the cache.

    The build goes to a temporary sibling directory that is renamed into
    place, so an interrupted build never leaves a half-written model behind
    and concurrent builders do not see each other's partial files.
    """
    import shutil
    import tempfile

    _check_choice("arch", arch, ARCHS)
    _check_choice("size", size, tuple(SIZES))
    final = cache_dir() / "tiny" / f"{arch}-{size}-seed{seed}-v{BUILDER_VERSION}"
    if (final / "rlvlm_tiny.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    try:
        build_tiny_model(tmp, arch, size, seed)
        try:
            tmp.rename(final)
        except OSError:  # another process finished first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
