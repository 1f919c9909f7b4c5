"""Prompt sharing: one vision + prompt pass per distinct (prompt, image), reused by every sample of it.

GRPO draws G completions of one prompt, and its G envs render the same image.
Hugging Face `generate(num_return_sequences=G)` and a plain re-scoring pass
both copy the prompt G times before the first layer, so the vision tower and
every prompt token run G times. Here the distinct prompts are found first
(`unique_prompts`), encoded and run once (prefill), and their key/value cache
is indexed out to the samples (`expand_cache`):

- sampling (`decode`): prefill U distinct prompts, expand the cache to the B
  rows, then a token-by-token loop with that cache;
- scoring (`score_logits`): prefill with grad, expand, then ONE forward pass
  of all completion tokens against the shared cache. Autograd sums each
  sample's gradient into its prompt's activations, so the loss and its
  gradient are those of B separate prompt copies (tests compare log-probs and
  gradients against the unshared pass).

Positions come from the model's own `_prepare_position_ids_for_generation` on
the full (prompt + completion) layout, exactly as in the unshared scoring pass
(batching.py), so Qwen2-VL's 3-D M-RoPE positions match.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from transformers.cache_utils import DynamicCache, StaticCache, StaticLayer
from transformers.modeling_layers import GradientCheckpointingLayer

from rlvlm.models.batching import append_completions
from rlvlm.models.input_rules import input_rules, per_token_keys


def _image_key(image: np.ndarray | None) -> bytes | None:
    if image is None:
        return None
    arr = np.ascontiguousarray(image)
    return hashlib.blake2b(arr.tobytes(), digest_size=16).digest() + str(arr.shape).encode()


def unique_prompts(prompts: Sequence[str], images: Sequence[np.ndarray | None]) -> tuple[list[int], list[int]]:
    """(first index of each distinct (prompt, image), inverse map row -> distinct index).

    Images compare by content (a digest of their bytes): GRPO's G envs render
    separate arrays of one scene.
    """
    first: list[int] = []
    seen: dict = {}
    inverse: list[int] = []
    for i, (p, im) in enumerate(zip(prompts, images)):
        key = (p, _image_key(im))
        if key not in seen:
            seen[key] = len(first)
            first.append(i)
        inverse.append(seen[key])
    return first, inverse


def expand_cache(cache, index: torch.Tensor) -> None:
    """Index the batch dimension of every cache layer in place (rows may repeat).

    Through the cache's own `reorder_cache` (beam search's hook), so every layer
    kind follows: key/value layers, and the convolution and recurrent states of
    linear-attention layers (Qwen3.5's Gated DeltaNet).
    """
    cache.reorder_cache(index)


def has_recurrent_layers(hf) -> bool:
    """True when the model's cache holds recurrent (linear-attention) layers, e.g. Qwen3.5's Gated DeltaNet.

    Their convolution and recurrent states are updated in place by the pass
    that continues from them, so a prefix shared by a grad pass would be
    overwritten before its backward: scoring runs unshared for such models
    (sampling, without grad, still shares).
    """
    from transformers.cache_utils import DynamicCache, LinearAttentionCacheLayerMixin

    return any(isinstance(layer, LinearAttentionCacheLayerMixin) for layer in DynamicCache(config=hf.config).layers)


def completion_positions(hf, enc: dict, completions: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, dict]:
    """(position ids, inputs) of prompts + right-padded completions, from the model's own rule.

    The layout `generate` produces (batching.py), so sampled and re-scored
    positions match, Qwen2-VL's 3-D M-RoPE ones included; the family's rules
    (input_rules.py) add its offset and extend its per-token side inputs.
    """
    rules = input_rules(hf.config)
    inputs, _ = append_completions(enc, completions, pad_id, rules)
    keys = ["attention_mask", "image_grid_thw", "video_grid_thw", "mm_token_type_ids"] + per_token_keys(enc)
    pos_kwargs = {k: inputs[k] for k in keys if k in inputs}
    pos = hf._prepare_position_ids_for_generation(inputs["input_ids"], dict(pos_kwargs))
    return pos + rules.position_offset if rules.position_offset else pos, inputs


def _select_rows(enc: dict, index: torch.Tensor) -> dict:
    """Per-prompt tensors of `enc` (input ids, masks, per-token keys, grids) indexed by row."""
    B = enc["input_ids"].shape[0]
    out = {}
    for k, v in enc.items():
        if k in ("input_ids", "attention_mask") or k in per_token_keys(enc) or (
                k in ("image_grid_thw", "video_grid_thw") and torch.is_tensor(v) and v.shape[0] == B):
            out[k] = v.index_select(0, index.to(v.device))
    return out


def _first_rows(inverse: Sequence[int], n_prompts: int, device) -> torch.Tensor:
    """For each encoded prompt, the first output row that uses it (its positions are every such row's)."""
    first: dict[int, int] = {}
    for r, u in enumerate(inverse):
        first.setdefault(u, r)
    return torch.as_tensor([first[u] for u in range(n_prompts)], device=device)


def _continuation_kwargs(enc: dict, full: dict, P: int) -> dict:
    """Per-token side inputs (token types) of the continuation part, zeros = text."""
    return {k: full[k][:, P:] for k in per_token_keys(enc)}


# ---------------------------------------------------------------- sampling
@dataclass
class Decoded:
    tokens: torch.Tensor  # (B, T) sampled ids, pad after a row's stop token
    logprobs: torch.Tensor  # (B, T) log softmax(logits / temperature) of each sampled token
    stamps: list[float]  # seconds from the start at which each step's logits were ready
    prompt_hidden: torch.Tensor | None  # (U, H) last-layer state of each distinct prompt's last token

    def elapsed_at(self, n_tokens: int) -> float:
        """Seconds from the start until a reply of n_tokens had its last token (its latency in the batch)."""
        if not self.stamps or n_tokens == 0:
            return 0.0
        return self.stamps[min(n_tokens, len(self.stamps)) - 1]


@torch.no_grad()
def decode(model, hf, enc: dict, inverse: Sequence[int], *, max_new_tokens: int, temperature: float,
           top_p: float, stop_ids: Sequence[int], pad_id: int, blocked: Sequence[int],
           want_hidden: bool = False, static_cache: bool = False) -> Decoded:
    """Sample completions for rows `inverse` of the U encoded prompts, prefilling each prompt once.

    temperature 0 is greedy. The recorded log-prob of a token is
    log softmax(logits / T) under the blocked-token mask, as `Policy.score`
    recomputes it (top-p changes which tokens can be drawn, not that value).
    `static_cache`: decode into a preallocated cache of the whole window
    (written in place) instead of one that grows by concatenation.
    """
    dev = enc["input_ids"].device
    inv = torch.as_tensor(list(inverse), device=dev)
    B, P, T = len(inverse), enc["input_ids"].shape[1], max_new_tokens
    t0 = time.perf_counter()
    # Positions of the whole generation window, from the model's own rule.
    rows = _select_rows(enc, inv)
    pos, full = completion_positions(hf, rows, [[pad_id] * T] * B, pad_id)
    first_rows = _first_rows(inverse, enc["input_ids"].shape[0], dev)
    out = model(**enc, position_ids=pos[..., first_rows, :P], use_cache=True, logits_to_keep=1,
                output_hidden_states=want_hidden)
    hidden = out.hidden_states[-1][:, -1] if want_hidden else None
    cache = _static_copy(out.past_key_values, inv, hf.config, P + T) if static_cache else None
    if cache is None:  # grows by concatenation: every step copies the whole cache
        cache = out.past_key_values
        expand_cache(cache, inv)
    logits = out.logits[:, -1].index_select(0, inv).float()
    stop = torch.as_tensor(list(stop_ids), device=dev)
    block = torch.as_tensor(list(blocked), device=dev, dtype=torch.long)
    tokens = torch.full((B, T), pad_id, dtype=torch.long, device=dev)
    logps = torch.zeros((B, T), device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    stamps: list[float] = []
    side = _continuation_kwargs(enc, full, P)
    for t in range(T):
        if len(block):
            logits.index_fill_(-1, block, float("-inf"))
        stamps.append(time.perf_counter() - t0)
        logp = torch.log_softmax(logits / (temperature or 1.0), dim=-1)
        if temperature == 0:
            tok = logits.argmax(-1)
        else:
            tok = _sample_top_p(logp, top_p)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        tokens[:, t] = tok
        logps[:, t] = logp.gather(-1, tok[:, None]).squeeze(-1).masked_fill(done, 0.0)
        done = done | torch.isin(tok, stop)
        if bool(done.all()) or t == T - 1:
            break
        step = {k: v[:, t:t + 1] for k, v in side.items()}
        if isinstance(cache, StaticCache):  # preallocated: the mask spans the whole window
            step.update(attention_mask=full["attention_mask"],
                        cache_position=torch.tensor([P + t], device=dev))
        else:
            step["attention_mask"] = full["attention_mask"][:, :P + t + 1]
        out = model(input_ids=tok[:, None], position_ids=pos[..., P + t:P + t + 1], past_key_values=cache,
                    use_cache=True, **step)
        cache = out.past_key_values
        logits = out.logits[:, -1].float()
    return Decoded(tokens, logps, stamps, hidden)


def _static_copy(dynamic, inv: torch.Tensor, config, max_len: int):
    """A StaticCache of the B expanded rows holding the prefilled prompt; None where not supported.

    A cache grown by `torch.cat` copies all of itself at every step; a
    preallocated one is written in place but attends over the whole window
    every step. On CPU the two measured the same (benchmarks/grpo_vs_trl.py
    --levers), so it is opt-in. Sliding-window layers keep the growing cache.
    """
    try:
        static = StaticCache(config=config, max_cache_len=max_len)
    except Exception:  # a config this cache type does not know
        return None
    if len(static.layers) != len(dynamic.layers):
        return None
    for st, dy in zip(static.layers, dynamic.layers):
        if type(st) is not StaticLayer or getattr(dy, "is_sliding", False) or dy.keys is None:
            return None
        keys, values = dy.keys.index_select(0, inv), dy.values.index_select(0, inv)
        st.lazy_initialization(keys, values)
        st.update(keys, values)  # writes positions 0..P-1 and sets the length to P
    return static


def _sample_top_p(logp: torch.Tensor, top_p: float) -> torch.Tensor:
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always the top token).
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    # Inverse-CDF draw: the first token whose cumulative mass reaches u ∈ (0, total].
    # (torch.multinomial draws an exponential per vocabulary entry: 10% of decode time.)
    cdf = probs.cumsum(-1)
    u = (1.0 - torch.rand(cdf.shape[0], 1, device=cdf.device)) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


# ----------------------------------------------------------------- scoring
def score_logits(model, hf, enc: dict, inverse: Sequence[int], completions: Sequence[Sequence[int]], pad_id: int,
                 want_hidden: bool = False) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Logits predicting each completion token, with the prompt run once per distinct prompt.

    Row b's prompt is `enc` row `inverse[b]`; completions are right-padded to Tc.
    Returns the logits as pieces along time, [(B, 1, V), (B, Tc - 1, V)] (joining
    them would copy the largest tensor of the pass), and the (U, H)
    last-prompt-token hidden states if `want_hidden`.

    Works under gradient checkpointing (`model.gradient_checkpointing`):
    transformers drops the cache from a checkpointed layer because a layer
    that writes it would write again when backward replays it. Here no replay
    writes: the prompt pass fills a cache that is then emptied and made
    read-only, and the completion pass reads a read-only expanded copy, so a
    replayed layer sees exactly the cache its first run saw (`_replay_safe`).
    """
    dev = enc["input_ids"].device
    inv = torch.as_tensor(list(inverse), device=dev)
    P = enc["input_ids"].shape[1]
    rows = _select_rows(enc, inv)
    pos, full = completion_positions(hf, rows, completions, pad_id)
    full = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in full.items()}
    pos = pos.to(dev)
    first_rows = _first_rows(inverse, enc["input_ids"].shape[0], dev)
    Tc = full["input_ids"].shape[1] - P
    prompt_cache = DynamicCache(config=hf.config) if Tc > 1 else None
    empty = [dict(vars(layer)) for layer in prompt_cache.layers] if prompt_cache is not None else []
    cache_kw = _cache_kwarg(hf)
    with _cache_kept_when_checkpointing(hf):
        out = model(**enc, position_ids=pos[..., first_rows, :P], **{cache_kw: prompt_cache}, use_cache=Tc > 1,
                    logits_to_keep=1, output_hidden_states=want_hidden)
        hidden = out.hidden_states[-1][:, -1] if want_hidden else None
        first = out.logits[:, -1:].index_select(0, inv)  # predicts completion token 0
        if Tc <= 1:
            return [first[:, :Tc]], hidden
        shared = copy.copy(prompt_cache)
        shared.layers = [copy.copy(layer) for layer in prompt_cache.layers]
        expand_cache(shared, inv)
        for layer, state in zip(prompt_cache.layers, empty):  # a replay of the prompt pass starts empty again
            vars(layer).clear()
            vars(layer).update(state)
        _replay_safe(prompt_cache)
        _replay_safe(shared)
        rest = model(input_ids=full["input_ids"][:, P:-1], attention_mask=full["attention_mask"][:, :-1],
                     position_ids=pos[..., P:-1], **{cache_kw: shared}, use_cache=True,
                     **{k: v[:, :-1] for k, v in _continuation_kwargs(enc, full, P).items()})
    return [first, rest.logits], hidden


def checkpointing_keeps_cache() -> bool:
    """Whether this transformers lets a checkpointed layer keep a cache it only reads.

    The opt-in (`GradientCheckpointingLayer._can_checkpoint_with_cache`) is
    recent in 5.x; an older 5.x drops the cache from every checkpointed layer,
    so a shared completion pass would silently attend to no prompt there.
    """
    return "_can_checkpoint_with_cache" in vars(GradientCheckpointingLayer)


def _cache_kwarg(hf) -> str:
    """The cache's keyword: `cache` in recent 5.x, `past_key_values` before (a deprecated alias since)."""
    return "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"


def _replay_safe(cache) -> None:
    """Make each layer's `update` return what it would, and leave the layer as it was (read-only).

    The state is restored generically (the layer's attributes), so every
    layer kind that updates by reassignment follows: full and sliding-window
    key/value layers (recurrent ones update in place; scoring never shares
    their prompts, `has_recurrent_layers`).
    """
    for layer in cache.layers:
        def update(*args, _layer=layer, _update=layer.update, **kwargs):
            state = dict(vars(_layer))
            try:
                return _update(*args, **kwargs)
            finally:
                vars(_layer).clear()
                vars(_layer).update(state)

        layer.update = update


@contextmanager
def _cache_kept_when_checkpointing(hf):
    """Let checkpointed decoder layers keep the cache they are given (transformers' opt-in for layers that
    only read it; with `_replay_safe` caches ours only read, as far as a replay can tell)."""
    layers = [m for m in hf.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    for m in layers:
        m._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for m in layers:
            del m._can_checkpoint_with_cache  # back to the class's False
