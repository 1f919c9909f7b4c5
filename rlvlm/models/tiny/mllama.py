"""Mllama (Llama 3.2 Vision): image tiles through a gated vision encoder, read by cross-attention layers.

Text tokens never hold image features: cross-attention layers read them, and
the 4-D `cross_attention_mask` (batch, tokens, images, tiles) says which tiles
each token sees (input_rules.py extends it over completion tokens).
"""

from __future__ import annotations

from rlvlm.models.processors import image_processor_class
from rlvlm.models.tiny.spec import ArchSpec, FAMILIES, image_kwargs, register_family, template

_TILES = 2  # up to 2 tiles per image: a square image uses 1, so the mask has a padded tile to ignore


def _build_mllama(s: dict, ids: dict, tok):
    from transformers import MllamaConfig, MllamaProcessor

    side = s["image_size"]
    layers = s["layers"] + 1  # the self-attention layers plus one cross-attention layer
    config = MllamaConfig(
        vision_config=dict(
            hidden_size=s["v_hidden"], num_hidden_layers=s["v_layers"], num_global_layers=1,
            attention_heads=s["v_heads"], intermediate_size=s["v_ffn"], image_size=side, patch_size=s["patch"],
            max_num_tiles=_TILES, intermediate_layers_indices=[0], vision_output_dim=2 * s["v_hidden"],
            supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
        ),
        text_config=dict(
            vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"], num_hidden_layers=layers,
            num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], cross_attention_layers=[1],
            max_position_embeddings=4096, bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"],
            pad_token_id=ids["pad_token"], rope_parameters={"rope_type": "default", "rope_theta": 500_000.0},
        ),
        image_token_index=ids["image_token"],
    )
    ip = image_processor_class("MllamaImageProcessor")(
        size={"height": side, "width": side}, max_image_tiles=_TILES, **image_kwargs(),
    )
    proc = MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=FAMILIES["mllama"].chat_template)
    return config, proc


def _open_gates(model) -> None:
    """Real checkpoints overwrite the zero-initialised gates (tile position embeddings, cross-attention
    and its MLP); from scratch, tanh(0) = 0 would cut the image off the text entirely."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gate" in name.rsplit(".", 1)[-1] and p.numel() == 1 and not p.any():
                p.fill_(0.5)


register_family("mllama", ArchSpec(
    named_tokens={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|finetune_right_pad_id|>",
                  "image_token": "<|image|>"},
    extra_tokens=("<|start_header_id|>", "<|end_header_id|>", "<|python_tag|>"),
    chat_template=template("<|start_header_id|>{{ role }}<|end_header_id|>\n\n", "<|eot_id|>", "<|image|>",
                           bos="<|begin_of_text|>"),
    stop_tokens=("<|eot_id|>",),
    build=_build_mllama,
    post_init=_open_gates,
))
