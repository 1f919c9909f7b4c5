"""Qwen2-VL and Qwen2.5-VL: native-resolution vision with 2x2 patch merging, 3-D M-RoPE positions."""

from __future__ import annotations

from rlvlm.models.processors import image_only_processor_class, image_processor_class
from rlvlm.models.tiny.spec import ArchSpec, FAMILIES, image_kwargs, register_family, template


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
        temporal_patch_size=2, **image_kwargs(),
    )
    # No video processor: the Qwen2-VL video processor imports torchvision,
    # which has no CPU build here. rlvlm never sends videos, and
    # models.processors.load_processor rebuilds the processor without it when
    # torchvision is missing, so hub checkpoints load the same way.
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor as P
    else:
        P = Qwen2VLProcessor
    return image_only_processor_class(P)(image_processor=ip, tokenizer=tok, chat_template=FAMILIES[arch].chat_template)


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


_QWEN_TOKENS = {
    "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
    "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>",
}
_QWEN_TEMPLATE = template("<|im_start|>{{ role }}\n", "<|im_end|>\n", "<|vision_start|><|image_pad|><|vision_end|>")

register_family("qwen2_vl", ArchSpec(named_tokens=_QWEN_TOKENS, extra_tokens=("<|im_start|>",),
                         chat_template=_QWEN_TEMPLATE, stop_tokens=("<|im_end|>", "<|endoftext|>"),
                         build=_build_qwen2_vl))
register_family("qwen2_5_vl", ArchSpec(named_tokens=_QWEN_TOKENS, extra_tokens=("<|im_start|>",),
                           chat_template=_QWEN_TEMPLATE, stop_tokens=("<|im_end|>", "<|endoftext|>"),
                           build=_build_qwen2_5_vl))


def _qwen3_vision(s: dict) -> dict:
    grid = s["image_size"] // s["patch"]
    return dict(
        depth=s["v_layers"], hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_heads=s["v_heads"],
        out_hidden_size=s["hidden"], patch_size=s["patch"], spatial_merge_size=2, temporal_patch_size=2,
        # learned position table, interpolated to each image's grid; DeepStack feeds the features of
        # these vision layers into the first text layers
        num_position_embeddings=grid * grid, deepstack_visual_indexes=[0],
    )


def _qwen3_processor(s: dict, tok, arch: str):
    from transformers import Qwen3VLProcessor

    pixels = s["image_size"] * s["image_size"]
    ip = image_processor_class("Qwen2VLImageProcessor")(
        size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=s["patch"], merge_size=2,
        temporal_patch_size=2, **image_kwargs(),
    )
    return image_only_processor_class(Qwen3VLProcessor)(image_processor=ip, tokenizer=tok,
                                                        chat_template=FAMILIES[arch].chat_template)


def _qwen3_config(config_cls, s: dict, ids: dict, text: dict):
    return config_cls(
        text_config=text, vision_config=_qwen3_vision(s),
        image_token_id=ids["image_token"], video_token_id=ids["video_token"],
        vision_start_token_id=ids["vision_start_token"], vision_end_token_id=ids["vision_end_token"],
        tie_word_embeddings=False,
    )


def _build_qwen3_vl(s: dict, ids: dict, tok):
    from transformers import Qwen3VLConfig

    text = _qwen_text(s, ids)
    text.update(head_dim=s["hidden"] // s["heads"])
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True}
    return _qwen3_config(Qwen3VLConfig, s, ids, text), _qwen3_processor(s, tok, "qwen3_vl")


register_family("qwen3_vl", ArchSpec(named_tokens=_QWEN_TOKENS, extra_tokens=("<|im_start|>",),
                                     chat_template=_QWEN_TEMPLATE, stop_tokens=("<|im_end|>", "<|endoftext|>"),
                                     build=_build_qwen3_vl))


def _build_qwen3_5(s: dict, ids: dict, tok):
    from transformers import Qwen3_5Config

    text = _qwen_text(s, ids)
    head = s["hidden"] // s["heads"]
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True, "partial_rotary_factor": 1.0}
    # Qwen3.5 interleaves Gated DeltaNet (linear attention, a recurrent state instead of a KV cache)
    # with full attention; the tiny model keeps one of each, so both cache kinds are exercised.
    text.update(head_dim=head, layer_types=["linear_attention", "full_attention"] * (s["layers"] // 2),
                linear_key_head_dim=head, linear_value_head_dim=head, linear_num_key_heads=s["kv_heads"],
                linear_num_value_heads=s["heads"])
    return _qwen3_config(Qwen3_5Config, s, ids, text), _qwen3_processor(s, tok, "qwen3_5")


register_family("qwen3_5", ArchSpec(named_tokens=_QWEN_TOKENS, extra_tokens=("<|im_start|>",),
                                    chat_template=_QWEN_TEMPLATE, stop_tokens=("<|im_end|>", "<|endoftext|>"),
                                    build=_build_qwen3_5))
