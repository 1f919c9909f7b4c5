"""Turning observations into model inputs, and samples into scoring batches.

Both sampling and scoring use one layout: prompts left-padded, completions
appended on the right and right-padded. It is the layout `generate` produces,
so positions (computed from the attention mask by the model's own
`_prepare_position_ids_for_generation`, which also builds Qwen2-VL's 3-D
M-RoPE positions) are identical in both passes, and re-scored log-probs match
the sampled ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from rlvlm.errors import DataError
from rlvlm.models.input_rules import DEFAULT, InputRules, completion_side_input, model_inputs, per_token_keys


@dataclass
class Sample:
    """One model call: a prompt (text + optional image) and a sampled completion.

    Token-level lists have the completion's length. `logprobs` are under the
    sampling distribution, log_softmax(logits / temperature).
    """

    prompt_text: str  # the chat-templated prompt, exactly as fed to the processor
    image: np.ndarray | None  # uint8 HxWx3, or None for a text-only observation
    prompt_ids: list[int]  # processor output (image placeholders expanded), unpadded
    completion_ids: list[int]  # sampled tokens, including the stop token if one was emitted
    text: str  # completion decoded without special tokens
    logprobs: list[float]
    thought_mask: list[bool]
    action_mask: list[bool]
    temperature: float
    value: float | None = None
    gen_seconds: float = 0.0  # wall-clock from the batch's start until this sample stopped
    truncated: bool = False  # hit max_new_tokens without a stop token
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.completion_ids)


def as_image(obs_image: Any, where: str) -> np.ndarray | None:
    """Validate an observation image: None, a PIL image, or uint8 HxWx3 / HxW array."""
    if obs_image is None:
        return None
    if isinstance(obs_image, Image.Image):
        return np.asarray(obs_image.convert("RGB"))
    arr = np.asarray(obs_image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{where}.image has shape {arr.shape}; expected HxWx3 uint8 (or a PIL image, or None)")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and 0.0 <= arr.min() and arr.max() <= 1.0:
            arr = (arr * 255.0).round().astype(np.uint8)
        else:
            raise DataError(f"{where}.image has dtype {arr.dtype}; expected uint8 in 0..255 or floats in 0..1")
    return arr[..., :3]


def observation_parts(obs: Mapping | Any, index: int) -> tuple[np.ndarray | None, str]:
    """(image, text) of an observation given as a mapping or an object with .image/.text."""
    where = f"observations[{index}]"
    if isinstance(obs, Mapping):
        if "text" not in obs:
            raise DataError(f"{where} has no 'text'; an observation is {{'image': array|None, 'text': str}}")
        image, text = obs.get("image"), obs["text"]
    elif hasattr(obs, "text"):
        image, text = getattr(obs, "image", None), obs.text
    else:
        raise DataError(f"{where} is a {type(obs).__name__}; expected a dict with 'image' and 'text'")
    if not isinstance(text, str):
        raise DataError(f"{where}.text is a {type(text).__name__}; expected str")
    return as_image(image, where), text


def chat_prompt(processor, text: str, has_image: bool, system: str | None = None) -> str:
    """The prompt string built with the model's own chat template."""
    content: list[dict] = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": text}]
    messages: list[dict] = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    messages.append({"role": "user", "content": content})
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_prompts(processor, prompts: Sequence[str], images: Sequence[np.ndarray | None],
                   rules: InputRules = DEFAULT) -> dict:
    """Processor call on a homogeneous batch (all with images, or none), left-padded."""
    tok = processor.tokenizer
    tok.padding_side = "left"
    kwargs: dict = dict(text=list(prompts), return_tensors="pt", padding=True)
    if images[0] is not None:
        pil = [Image.fromarray(im) for im in images]
        # One list of images per prompt: every supported processor accepts this
        # form, and per-prompt ones (Gemma 3, Idefics3) require it.
        kwargs["images"] = [[p] for p in pil]
    elif rules.text_only_format is not None:  # the processor would refuse a prompt without an image
        texts = [rules.text_only_format.format(bos=tok.bos_token or "", text=p) for p in prompts]
        return dict(tok(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                        return_token_type_ids=True))
    return model_inputs(processor(**kwargs))  # without training targets (PaliGemma's labels)


def append_completions(enc: dict, completions: Sequence[Sequence[int]], pad_id: int,
                       rules: InputRules = DEFAULT) -> tuple[dict, torch.Tensor]:
    """Append right-padded completions to a left-padded prompt batch.

    Returns the new inputs and `completion_mask (B, Tc)`; per-token side
    inputs are extended by the family's rules (input_rules.py): zeros ("text")
    unless the family says otherwise.
    """
    B = enc["input_ids"].shape[0]
    Tc = max((len(c) for c in completions), default=0)
    # On the prompts' device: they may already be on the GPU (Policy.encode moves them).
    dev = enc["input_ids"].device
    comp = torch.full((B, Tc), pad_id, dtype=enc["input_ids"].dtype, device=dev)
    cmask = torch.zeros((B, Tc), dtype=enc["attention_mask"].dtype, device=dev)
    for i, c in enumerate(completions):
        comp[i, : len(c)] = torch.as_tensor(list(c), dtype=comp.dtype)
        cmask[i, : len(c)] = 1
    out = dict(enc)
    out["input_ids"] = torch.cat([enc["input_ids"], comp], dim=1)
    out["attention_mask"] = torch.cat([enc["attention_mask"], cmask], dim=1)
    for k in per_token_keys(enc):
        out[k] = torch.cat([enc[k], completion_side_input(rules, k, enc[k], Tc)], dim=1)
    return out, cmask.bool()
