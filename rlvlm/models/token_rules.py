"""Token rules of a policy: which ids stop, close or may never appear in a completion.

Also the row-padding and image/no-image grouping helpers both sampling paths
use, and the step clock that times each sampled token. Split out of policy.py
so the policy class reads as sampling, scoring and saving.
"""

from __future__ import annotations

import time

import torch

from rlvlm.errors import ModelSetupError


def pad_rows(rows, width: int, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, width) ids and their mask."""
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = True
    return out.to(device), mask.to(device)


def split_by_image(parts) -> list[list[int]]:
    with_img = [i for i, (im, _) in enumerate(parts) if im is not None]
    without = [i for i, (im, _) in enumerate(parts) if im is None]
    return [g for g in (with_img, without) if g]


def stop_token_ids(hf, tokenizer) -> list[int]:
    eos = hf.generation_config.eos_token_id if hf.generation_config is not None else None
    ids = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ModelSetupError("the model has no eos token: set generation_config.eos_token_id or tokenizer.eos_token")
    return ids


def turn_end_ids(processor, stop_ids: list[int]) -> list[int]:
    """Tokens the chat template puts after an assistant message, up to the first stop token.

    Read from the model's own template (render a conversation with a marker
    answer), so SFT targets end exactly as the model must stop when sampling.
    """
    marker = "\u2063MARK\u2063"
    msgs = [{"role": "user", "content": [{"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [{"type": "text", "text": marker}]}]
    try:
        rendered = processor.apply_chat_template(msgs, tokenize=False)
    except Exception:  # a template without assistant turns: fall back to the first stop token
        return stop_ids[:1]
    tail = rendered.split(marker, 1)[1] if marker in rendered else ""
    ids = processor.tokenizer.encode(tail, add_special_tokens=False)
    for k, t in enumerate(ids):
        if t in stop_ids:
            return ids[: k + 1]
    return stop_ids[:1]


def cut_at_stop(ids: list[int], stop: list[int]) -> tuple[list[int], bool]:
    """Completion tokens up to and including the first stop token."""
    for k, t in enumerate(ids):
        if t in stop:
            return ids[: k + 1], True
    return ids, False


def vision_token_ids(config, processor) -> list[int]:
    """Ids of image/video placeholder and delimiter tokens.

    A completion must never contain them: a sampled image placeholder makes
    the re-scoring pass see more image tokens than images and fail. They are
    masked out of the sampling distribution and, identically, out of the
    scored distribution, so log-probs still agree.
    """
    ids: set[int] = set()
    for cfg in (config, getattr(config, "text_config", None)):
        for key, value in (vars(cfg).items() if cfg is not None else ()):
            if (key.endswith(("_token_id", "_token_index")) and isinstance(value, int)
                    and any(w in key for w in ("image", "video", "vision", "boi", "eoi"))):
                ids.add(value)
    for key in ("image_token_id", "video_token_id", "fake_image_token_id", "global_image_token_id"):
        value = getattr(processor, key, None)
        if isinstance(value, int):
            ids.add(value)
    vocab = config.get_text_config().vocab_size
    return sorted(i for i in ids if 0 <= i < vocab)


def block_ids(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    if ids:
        logits = logits.clone()
        logits[..., ids] = float("-inf")
    return logits


class StepClock:
    """A logits processor that masks vision tokens and records when each step ran.

    The timestamps give each sample's wall-clock latency in a batch: the time
    at which the step producing its last token finished.
    """

    def __init__(self, blocked: list[int]):
        self.blocked = blocked
        self.t0 = 0.0
        self.stamps: list[float] = []

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.stamps = []

    def __call__(self, input_ids, scores):
        self.stamps.append(time.perf_counter() - self.t0)
        return block_ids(scores, self.blocked)

    def elapsed_at(self, n_tokens: int) -> float:
        if not self.stamps or n_tokens == 0:
            return 0.0
        return self.stamps[min(n_tokens, len(self.stamps)) - 1]
