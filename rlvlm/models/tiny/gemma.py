"""Gemma 3: a SigLIP vision tower pooled to a fixed token count, bidirectional attention over image tokens."""

from __future__ import annotations

from rlvlm.models.processors import image_only_processor_class, image_processor_class
from rlvlm.models.tiny.spec import ArchSpec, FAMILIES, image_kwargs, register_family, template


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
        **image_kwargs(),
    )
    proc = Gemma3Processor(
        image_processor=ip, tokenizer=tok, image_seq_length=tokens_per_side**2,
        chat_template=FAMILIES["gemma3"].chat_template,
    )
    return config, proc


register_family("gemma3", ArchSpec(
        named_tokens={"bos_token": "<bos>", "eos_token": "<end_of_turn>", "pad_token": "<pad>",
                      "unk_token": "<unk>", "image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                      "eoi_token": "<end_of_image>"},
        extra_tokens=("<start_of_turn>", "<eos>"),
        chat_template=template("<start_of_turn>{{ role }}\n", "<end_of_turn>\n", "<start_of_image>", bos="<bos>",
                                roles={"assistant": "model"}),
        stop_tokens=("<end_of_turn>", "<eos>"),
        build=_build_gemma3,
    ))


def _build_paligemma(s: dict, ids: dict, tok):
    from transformers import PaliGemmaConfig, PaliGemmaProcessor

    side, patch = s["image_size"], s["patch"]
    tokens = (side // patch) ** 2
    head_dim = s["hidden"] // s["heads"]
    config = PaliGemmaConfig(
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"],
            num_hidden_layers=s["v_layers"], num_attention_heads=s["v_heads"], image_size=side, patch_size=patch,
            projection_dim=s["hidden"], num_image_tokens=tokens, vision_use_head=False,
        ),
        text_config=dict(
            model_type="gemma", vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"],
            num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
            head_dim=head_dim, max_position_embeddings=4096, bos_token_id=ids["bos_token"],
            eos_token_id=ids["eos_token"], pad_token_id=ids["pad_token"],
        ),
        image_token_index=ids["image_token"], vocab_size=s["vocab"], projection_dim=s["hidden"],
        hidden_size=s["hidden"], tie_word_embeddings=True,
    )
    ip = image_processor_class("SiglipImageProcessor")(size={"height": side, "width": side}, **image_kwargs())
    ip.image_seq_length = tokens  # PaliGemma's processor reads the image token count from its image processor
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=FAMILIES["paligemma"].chat_template)
    return config, proc


# PaliGemma is a prefix model: image tokens, BOS, the prompt and "\n" (the processor adds BOS and "\n")
# attend to each other both ways; the answer after it is causal. Its checkpoints have no chat roles.
register_family("paligemma", ArchSpec(
    named_tokens={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                  "image_token": "<image>"},
    extra_tokens=(),
    chat_template="{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
                  "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}"
                  "{{ c['text'] }}{% endif %}{% endfor %}{% endif %}{% endfor %}",
    stop_tokens=("<eos>",),
    build=_build_paligemma,
))


def _build_gemma4(s: dict, ids: dict, tok):
    from transformers import Gemma4AudioFeatureExtractor, Gemma4Config, Gemma4Processor

    head_dim = s["hidden"] // s["heads"]
    # The image processor resizes each image to at most max_soft_tokens x kernel^2 patches
    # (70 is the smallest count it accepts) and pools kernel x kernel patches into one token.
    kernel, soft_tokens = 2, 70
    config = Gemma4Config(
        text_config=dict(
            vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"],
            num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
            head_dim=head_dim, max_position_embeddings=4096, sliding_window=512,
            layer_types=["sliding_attention", "full_attention"] * (s["layers"] // 2),
            vocab_size_per_layer_input=s["vocab"], hidden_size_per_layer_input=16,
            bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"], pad_token_id=ids["pad_token"],
        ),
        vision_config=dict(
            hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"], num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"], num_key_value_heads=s["v_heads"], head_dim=s["v_hidden"] // s["v_heads"],
            patch_size=s["patch"], pooling_kernel_size=kernel, position_embedding_size=1024,
        ),
        audio_config=None, boi_token_id=ids["boi_token"], eoi_token_id=ids["eoi_token"],
        image_token_id=ids["image_token"], video_token_id=ids["video_token"], boa_token_id=ids["boa_token"],
        eoa_token_index=ids["eoa_token"], audio_token_id=ids["audio_token"], tie_word_embeddings=True,
    )
    ip = image_processor_class("Gemma4ImageProcessor")(
        patch_size=s["patch"], max_soft_tokens=soft_tokens, pooling_kernel_size=kernel, **image_kwargs(),
    )
    proc = image_only_processor_class(Gemma4Processor)(
        feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=ip, tokenizer=tok,
        image_seq_length=soft_tokens, chat_template=FAMILIES["gemma4"].chat_template,
    )
    return config, proc


register_family("gemma4", ArchSpec(
    named_tokens={"bos_token": "<bos>", "eos_token": "<turn|>", "pad_token": "<pad>", "unk_token": "<unk>",
                  "image_token": "<|image|>", "boi_token": "<|image>", "eoi_token": "<image|>",
                  "video_token": "<|video|>", "audio_token": "<|audio|>", "boa_token": "<|audio>",
                  "eoa_token": "<audio|>"},
    extra_tokens=("<|turn>", "<eos>"),
    chat_template=template("<|turn>{{ role }}\n", "<turn|>\n", "<|image|>", bos="<bos>", roles={"assistant": "model"}),
    stop_tokens=("<turn|>", "<eos>"),
    build=_build_gemma4,
))
