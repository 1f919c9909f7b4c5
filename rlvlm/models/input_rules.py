"""Per-family rules for the model inputs that are not tokens: what a completion token gets, and positions.

A prompt's processor output holds side inputs beside `input_ids` and
`attention_mask`. Sampling and scoring append completion tokens to the prompt
(batching.append_completions), so each per-token side input needs a value for
them, and the family decides it. HF `generate` applies these rules in each
model class's `_update_model_kwargs_for_generation` and
`prepare_inputs_for_generation`; rlvlm's own decoder and its scoring pass need
them stated, or their log-probs are silently those of another model:

- PaliGemma's `token_type_ids` mark the bidirectional prefix with 0, so a
  completion token is 1 (causal suffix); padding it with 0 put the answer in
  the prefix (log-probs off by 1e-2). Its positions count from 1.
- Mllama's 4-D `cross_attention_mask` (batch, tokens, images, tiles) says which
  image tiles a token attends to; a completion token repeats the last prompt
  token's row. Dropping it let decoding attend to padded tiles.
- PaliGemma's processor refuses a prompt without an image; a text-only prompt
  is tokenized as the processor lays out text after an image (BOS, text, "\n").
- Gemma 3's `token_type_ids` (1 = image token) are 0 for completions, the
  default for every per-token input.

A family without an entry gets the defaults. Rules are keyed by the
transformers `model_type` (`register_input_rules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch

# Processor outputs that are training targets, never model inputs (PaliGemma returns `labels`).
NOT_INPUTS = ("labels",)


@dataclass(frozen=True)
class InputRules:
    position_offset: int = 0  # added to the positions from the model's own rule (PaliGemma: 1)
    completion_values: Mapping[str, int] = field(default_factory=dict)  # per-token input -> completion value (default 0)
    repeat_last: tuple[str, ...] = ()  # per-token inputs whose completion rows repeat the last prompt token's
    # A processor that refuses prompts without an image (PaliGemma's): text-only prompts are tokenized
    # with its tokenizer in this format instead, as the processor lays out the text after an image.
    text_only_format: str | None = None


DEFAULT = InputRules()
RULES: dict[str, InputRules] = {}


def register_input_rules(model_type: str, rules: InputRules) -> InputRules:
    RULES[model_type] = rules
    return rules


def input_rules(config) -> InputRules:
    """The rules of a model config's family (its `model_type`), or the defaults."""
    return RULES.get(getattr(config, "model_type", None), DEFAULT)


def model_inputs(enc: Mapping) -> dict:
    """A processor's output without the keys that are not model inputs."""
    return {k: v for k, v in enc.items() if k not in NOT_INPUTS}


def per_token_keys(enc: Mapping[str, torch.Tensor]) -> list[str]:
    """Side inputs with one entry per token: shaped (B, T, ...) like input_ids (token types, cross-attention masks)."""
    shape = tuple(enc["input_ids"].shape)
    return [k for k, v in enc.items() if k not in ("input_ids", "attention_mask")
            and torch.is_tensor(v) and v.dim() >= 2 and tuple(v.shape[:2]) == shape]


def completion_side_input(rules: InputRules, key: str, prompt_part: torch.Tensor, n: int) -> torch.Tensor:
    """The (B, n, ...) values of per-token input `key` for n completion tokens after `prompt_part` (B, P, ...)."""
    if key in rules.repeat_last:
        return prompt_part[:, -1:].expand(-1, n, *prompt_part.shape[2:]).clone()
    fill = rules.completion_values.get(key, 0)
    return torch.full((prompt_part.shape[0], n, *prompt_part.shape[2:]), fill, dtype=prompt_part.dtype,
                      device=prompt_part.device)


register_input_rules("paligemma", InputRules(position_offset=1, completion_values={"token_type_ids": 1},
                                             text_only_format="{bos}{text}\n"))
register_input_rules("mllama", InputRules(repeat_last=("cross_attention_mask",)))
