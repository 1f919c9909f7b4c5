"""Upfront check that image placeholder tokens and vision features agree.

The most common VLM-RL failure users report is a mismatch between the number
of image tokens the processor writes into the prompt and the number of
features the vision tower produces for the configured image size. Found
mid-rollout it costs a run; found here, before any rollout, it is one line
naming the processor settings to change.
"""

from __future__ import annotations

import numpy as np
import torch

from rlvlm.errors import ImageTokenMismatchError, ModelSetupError

# Processor / image-processor settings that decide the image token count.
_PROCESSOR_KEYS = ("patch_size", "num_additional_image_tokens", "vision_feature_select_strategy",
                   "image_seq_length", "image_seq_len", "num_image_tokens")
_IMAGE_PROCESSOR_KEYS = ("size", "crop_size", "patch_size", "merge_size", "max_image_size", "min_pixels",
                         "max_pixels", "do_image_splitting", "max_image_tiles", "max_soft_tokens",
                         "pooling_kernel_size")


def _compact(value):
    """SizeDict and friends, without their unset fields."""
    items = value.items() if isinstance(value, dict) else getattr(value, "__dict__", {}).items()
    shown = {k: v for k, v in items if v is not None and not k.startswith("_")}
    return shown if shown or isinstance(value, dict) else value


def _settings(processor) -> str:
    parts = [f"processor.{k}={getattr(processor, k)!r}" for k in _PROCESSOR_KEYS
             if getattr(processor, k, None) is not None]
    ip = getattr(processor, "image_processor", None)
    parts += [f"image_processor.{k}={_compact(getattr(ip, k))!r}" for k in _IMAGE_PROCESSOR_KEYS
              if ip is not None and getattr(ip, k, None) is not None]
    return ", ".join(parts)


def _vision_summary(config) -> str:
    vc = getattr(config, "vision_config", None)
    if vc is None:
        return "its vision_config"
    keys = ("image_size", "patch_size", "spatial_merge_size", "max_num_tiles", "pooling_kernel_size")
    found = [f"{k}={getattr(vc, k)}" for k in keys if getattr(vc, k, None) is not None]
    for k in ("mm_tokens_per_image", "scale_factor", "image_seq_length"):
        if getattr(config, k, None) is not None:
            found.append(f"{k}={getattr(config, k)}")
    return "vision_config(" + ", ".join(found) + ")"


def check_image_tokens(policy, image_size: int | tuple[int, int]) -> dict:
    """Run one grey image of `image_size` through processor and model.

    Returns {"image_tokens": n} on success; raises ImageTokenMismatchError
    naming the processor settings when tokens and features disagree.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    image = np.full((h, w, 3), 128, dtype=np.uint8)  # mid-grey: no processor treats it as padding
    processor = policy.processor
    prompt = policy.build_prompt("Check.", True)
    where = f"for {h}x{w} images"
    try:
        enc = policy.encode([prompt], [image])
    except (ValueError, RuntimeError, TypeError) as err:
        raise ImageTokenMismatchError(
            f"the processor cannot build an image prompt {where} ({_first_line(err)}); check {_settings(processor)}"
        ) from err
    config = policy.hf.config
    token_id = getattr(config, "image_token_id", None)
    if token_id is None:
        token_id = getattr(config, "image_token_index", getattr(processor, "image_token_id", None))
    n_tokens = int((enc["input_ids"] == token_id).sum()) if token_id is not None else -1
    if n_tokens == 0:
        raise ImageTokenMismatchError(
            f"the chat template wrote no image placeholder token {where}; the model's chat template must emit "
            f"the processor's image token ({getattr(processor, 'image_token', '?')!r}) for an image part"
        )
    try:
        with torch.no_grad():
            policy.model(**enc, logits_to_keep=1, use_cache=False)
    except (ValueError, RuntimeError, IndexError) as err:
        _text_only_forward(policy, err)  # a failure without any image is not about image tokens
        raise ImageTokenMismatchError(
            f"image placeholder tokens ({n_tokens}) do not match the vision features {where} "
            f"({_first_line(err)}); make {_settings(processor)} agree with the model's "
            f"{_vision_summary(policy.hf.config)}"
        ) from err
    return {"image_tokens": n_tokens}


def _text_only_forward(policy, image_err: BaseException) -> None:
    """Raise ModelSetupError if the model fails on a text-only prompt too (then the image is not the cause)."""
    enc = policy.encode([policy.build_prompt("Check.", False)], [None])
    try:
        with torch.no_grad():
            policy.model(**enc, logits_to_keep=1, use_cache=False)
    except (ValueError, RuntimeError, IndexError) as err:
        raise ModelSetupError(
            f"the {policy.hf.config.model_type} model fails on a prompt even without an image "
            f"({_first_line(err)}); this is not an image-token setting, report it with the model name"
        ) from image_err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
