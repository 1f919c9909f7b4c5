"""Idefics3 and SmolVLM: a SigLIP vision tower, a pixel-shuffle connector and a Llama text model."""

from __future__ import annotations

from rlvlm.models.processors import image_only_processor_class, image_processor_class
from rlvlm.models.tiny.spec import ArchSpec, FAMILIES, image_kwargs, register_family, template, text_llama


def _build(arch: str, config_cls, processor_cls, image_processor: str, s: dict, ids: dict, tok, **config_extra):
    """Both families: SigLIP vision, a 2x2 pixel shuffle, (side / patch / 2)^2 tokens per image, no splitting."""
    grid = s["image_size"] // s["patch"]
    scale = 2
    config = config_cls(
        vision_config=dict(
            hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"], image_size=s["image_size"], patch_size=s["patch"],
        ),
        text_config=text_llama(s, ids).to_dict(), image_token_id=ids["image_token"], scale_factor=scale,
        tie_word_embeddings=False, **config_extra,
    )
    ip = image_processor_class(image_processor)(
        do_image_splitting=False, size={"longest_edge": s["image_size"]},
        max_image_size={"longest_edge": s["image_size"]}, **image_kwargs(),
    )
    # SmolVLM's processor owns a video processor (torchvision); Idefics3's class comes back unchanged.
    proc = image_only_processor_class(processor_cls)(
        image_processor=ip, tokenizer=tok, image_seq_len=(grid // scale) ** 2,
        chat_template=FAMILIES[arch].chat_template,
    )
    return config, proc


def _build_idefics3(s: dict, ids: dict, tok):
    from transformers import Idefics3Config, Idefics3Processor

    return _build("idefics3", Idefics3Config, Idefics3Processor, "Idefics3ImageProcessor", s, ids, tok,
                  pad_token_id=ids["pad_token"])


def _build_smolvlm(s: dict, ids: dict, tok):
    from transformers import SmolVLMConfig, SmolVLMProcessor

    return _build("smolvlm", SmolVLMConfig, SmolVLMProcessor, "SmolVLMImageProcessor", s, ids, tok)


# Image-splitting markers both processors know, though the tiny builds never split.
_EXTRA_TOKENS = ("<fake_token_around_image>", "<global-img>") + tuple(
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))

register_family("idefics3", ArchSpec(
    named_tokens={"bos_token": "<|begin_of_text|>", "eos_token": "<end_of_utterance>",
                  "pad_token": "<|finetune_right_pad_id|>", "image_token": "<image>"},
    extra_tokens=_EXTRA_TOKENS,
    chat_template=template("{{ role | capitalize }}:", "<end_of_utterance>\n", "<image>", bos="<|begin_of_text|>"),
    stop_tokens=("<end_of_utterance>",),
    build=_build_idefics3,
))
register_family("smolvlm", ArchSpec(
    named_tokens={"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>", "pad_token": "<|im_end|>",
                  "image_token": "<image>"},
    extra_tokens=_EXTRA_TOKENS,
    chat_template=template("{{ role | capitalize }}:", "<end_of_utterance>\n", "<image>", bos="<|im_start|>"),
    stop_tokens=("<end_of_utterance>",),
    build=_build_smolvlm,
))
