"""Idefics3 and SmolVLM: a SigLIP vision tower, a pixel-shuffle connector and a Llama text model."""

from __future__ import annotations

from rlvlm.models.processors import image_only_processor_class, image_processor_class
from rlvlm.models.tiny.spec import ArchSpec, FAMILIES, image_kwargs, register_family, template, text_llama


def _build_idefics3(s: dict, ids: dict, tok):
    from transformers import Idefics3Config, Idefics3Processor


    grid = s["image_size"] // s["patch"]
    scale = 2
    config = Idefics3Config(
        vision_config=dict(
            hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"], image_size=s["image_size"], patch_size=s["patch"],
        ),
        text_config=text_llama(s, ids).to_dict(), image_token_id=ids["image_token"], scale_factor=scale,
        tie_word_embeddings=False, pad_token_id=ids["pad_token"],
    )
    ip = image_processor_class("Idefics3ImageProcessor")(
        do_image_splitting=False, size={"longest_edge": s["image_size"]},
        max_image_size={"longest_edge": s["image_size"]}, **image_kwargs(),
    )
    proc = Idefics3Processor(
        image_processor=ip, tokenizer=tok, image_seq_len=(grid // scale) ** 2,
        chat_template=FAMILIES["idefics3"].chat_template,
    )
    return config, proc


register_family("idefics3", ArchSpec(
        named_tokens={"bos_token": "<|begin_of_text|>", "eos_token": "<end_of_utterance>",
                      "pad_token": "<|finetune_right_pad_id|>", "image_token": "<image>"},
        extra_tokens=("<fake_token_around_image>", "<global-img>")
        + tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
        chat_template=template("{{ role | capitalize }}:", "<end_of_utterance>\n", "<image>", bos="<|begin_of_text|>"),
        stop_tokens=("<end_of_utterance>",),
        build=_build_idefics3,
    ))


def _build_smolvlm(s: dict, ids: dict, tok):
    from transformers import SmolVLMConfig, SmolVLMProcessor

    grid = s["image_size"] // s["patch"]
    scale = 2
    config = SmolVLMConfig(
        vision_config=dict(
            hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"], image_size=s["image_size"], patch_size=s["patch"],
        ),
        text_config=text_llama(s, ids).to_dict(), image_token_id=ids["image_token"], scale_factor=scale,
        tie_word_embeddings=False,
    )
    ip = image_processor_class("SmolVLMImageProcessor")(
        do_image_splitting=False, size={"longest_edge": s["image_size"]},
        max_image_size={"longest_edge": s["image_size"]}, **image_kwargs(),
    )
    # SmolVLM's processor owns a video processor (torchvision); image-only without it.
    proc = image_only_processor_class(SmolVLMProcessor)(
        image_processor=ip, tokenizer=tok, image_seq_len=(grid // scale) ** 2,
        chat_template=FAMILIES["smolvlm"].chat_template,
    )
    return config, proc


register_family("smolvlm", ArchSpec(
    named_tokens={"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>", "pad_token": "<|im_end|>",
                  "image_token": "<image>"},
    extra_tokens=("<fake_token_around_image>", "<global-img>")
    + tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
    chat_template=template("{{ role | capitalize }}:", "<end_of_utterance>\n", "<image>", bos="<|im_start|>"),
    stop_tokens=("<end_of_utterance>",),
    build=_build_smolvlm,
))
