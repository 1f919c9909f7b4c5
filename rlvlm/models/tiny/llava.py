"""LLaVA: a CLIP vision tower, a projector and a Llama text model."""

from __future__ import annotations

from rlvlm.models.processors import image_processor_class
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
