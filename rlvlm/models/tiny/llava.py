"""LLaVA: a CLIP vision tower, a projector and a Llama text model."""

from __future__ import annotations

from rlvlm.models.processors import image_only_processor_class, image_processor_class
from rlvlm.models.tiny.spec import ArchSpec, FAMILIES, image_kwargs, register_family, template, text_llama


def _build_llava(s: dict, ids: dict, tok):
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaProcessor


    grid = s["image_size"] // s["patch"]
    vision = CLIPVisionConfig(
        hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
        num_attention_heads=s["v_heads"], image_size=s["image_size"], patch_size=s["patch"],
        projection_dim=s["v_hidden"],
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text_llama(s, ids), image_token_index=ids["image_token"],
        image_seq_length=grid * grid, vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    ip = image_processor_class("CLIPImageProcessor")(
        size={"shortest_edge": s["image_size"]}, crop_size={"height": s["image_size"], "width": s["image_size"]},
        **image_kwargs(),
    )
    proc = LlavaProcessor(
        image_processor=ip, tokenizer=tok, patch_size=s["patch"], vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=FAMILIES["llava"].chat_template,
    )
    return config, proc


register_family("llava", ArchSpec(
        named_tokens={"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                      "image_token": "<image>"},
        extra_tokens=(),
        chat_template=template("{{ role | upper }}: ", "</s>\n", "<image>\n", bos="<s>"),
        stop_tokens=("</s>",),
        build=_build_llava,
    ))


def qwen2_text(s: dict, ids: dict) -> dict:
    return dict(
        model_type="qwen2", vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
        max_position_embeddings=4096, bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"],
        pad_token_id=ids["pad_token"], tie_word_embeddings=False,
    )


def _siglip_vision(s: dict) -> dict:
    return dict(
        model_type="siglip_vision_model", hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"],
        num_hidden_layers=s["v_layers"], num_attention_heads=s["v_heads"], image_size=s["image_size"],
        patch_size=s["patch"], vision_use_head=False,
    )


def _build_llava_onevision(s: dict, ids: dict, tok):
    from transformers import LlavaOnevisionConfig, LlavaOnevisionProcessor

    side = s["image_size"]
    # AnyRes with one grid, the image's own size: the processor adds one crop beside the
    # resized whole image, so both the base-image and crop token paths run.
    pinpoints = [[side, side]]
    config = LlavaOnevisionConfig(
        vision_config=_siglip_vision(s), text_config=qwen2_text(s, ids), image_token_index=ids["image_token"],
        video_token_index=ids["video_token"], vision_feature_select_strategy="full", vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints, vision_aspect_ratio="anyres_max_1", tie_word_embeddings=False,
    )
    ip = image_processor_class("LlavaOnevisionImageProcessor")(
        size={"height": side, "width": side}, image_grid_pinpoints=pinpoints, **image_kwargs(),
    )
    grid = side // s["patch"]
    proc = image_only_processor_class(LlavaOnevisionProcessor)(
        image_processor=ip, tokenizer=tok, num_image_tokens=grid * grid, vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_1", chat_template=FAMILIES["llava_onevision"].chat_template,
    )
    return config, proc


register_family("llava_onevision", ArchSpec(
    named_tokens={"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                  "image_token": "<image>", "video_token": "<video>"},
    extra_tokens=("<|im_start|>",),
    chat_template=template("<|im_start|>{{ role }}\n", "<|im_end|>\n", "<image>\n"),
    stop_tokens=("<|im_end|>", "<|endoftext|>"),
    build=_build_llava_onevision,
))
