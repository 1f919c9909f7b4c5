"""InternVL (3 / 3.5): an InternViT vision tower, pixel-shuffle downsampling and a Qwen2 text model."""

from __future__ import annotations

from rlvlm.models.processors import image_only_processor_class, image_processor_class
from rlvlm.models.tiny.llava import qwen2_text
from rlvlm.models.tiny.spec import ArchSpec, FAMILIES, image_kwargs, register_family, template


def _build_internvl(s: dict, ids: dict, tok):
    from transformers import InternVLConfig, InternVLProcessor

    side, patch = s["image_size"], s["patch"]
    # downsample_ratio 0.5: a 2x2 pixel shuffle, (side / patch / 2)^2 tokens per image
    tokens = (side // patch // 2) ** 2
    config = InternVLConfig(
        vision_config=dict(
            hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"], image_size=[side, side], patch_size=[patch, patch],
        ),
        text_config=qwen2_text(s, ids), image_token_id=ids["context_image_token"], image_seq_length=tokens,
        downsample_ratio=0.5, tie_word_embeddings=False,
    )
    # One tile per image (crop_to_patches off): the tile grid is the processor's, tested upstream.
    ip = image_processor_class("GotOcr2ImageProcessor")(
        size={"height": side, "width": side}, crop_to_patches=False, **image_kwargs(),
    )
    proc = image_only_processor_class(InternVLProcessor)(
        image_processor=ip, tokenizer=tok, image_seq_length=tokens, chat_template=FAMILIES["internvl"].chat_template,
    )
    return config, proc


register_family("internvl", ArchSpec(
    named_tokens={"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                  "start_image_token": "<img>", "end_image_token": "</img>",
                  "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
    extra_tokens=("<|im_start|>",),
    chat_template=template("<|im_start|>{{ role }}\n", "<|im_end|>\n", "<IMG_CONTEXT>\n"),
    stop_tokens=("<|im_end|>", "<|endoftext|>"),
    build=_build_internvl,
))
