"""The learner: the trainable model and its value head, with a `forward` that re-scores completions.

`Learner(samples)` returns per-token log-probs, entropies and values, with
grad, of each sample's completion under exactly the prompt and image it was
sampled with. Every trainable parameter, the value head included, lives in
this module and nothing else does, so it is what DDP or FSDP wraps; the frozen
KL reference is scored through `score_completions` with another model and is
never part of it.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from rlvlm.algos.logprobs import token_logprobs
from rlvlm.models import shared_prefix
from rlvlm.models.batching import Sample
from rlvlm.models.token_rules import pad_rows, split_by_image

log = logging.getLogger(__name__)


@dataclass
class ScoreOutput:
    """Re-scored completions, right-padded to `Tc` tokens."""

    logprobs: torch.Tensor  # (B, Tc) log_softmax(logits / T) of each completion token, with grad
    entropy: torch.Tensor  # (B, Tc) entropy of that distribution
    values: torch.Tensor | None  # (B,) value of the prompt, or None without a value head
    mask: torch.Tensor  # (B, Tc) bool, real completion tokens
    thought_mask: torch.Tensor  # (B, Tc) bool
    action_mask: torch.Tensor  # (B, Tc) bool

    def to(self, device) -> "ScoreOutput":
        """The same output on `device` (e.g. a reference's scores back on the policy's device)."""
        move = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in vars(self).items()}
        return ScoreOutput(**move)


@dataclass
class ScoringSetup:
    """What scoring needs besides the weights: how prompts are encoded, the pad and blocked ids,
    and the speed options (prompt sharing, the log-prob chunk)."""

    encode: Callable[[Sequence[str], Sequence], dict]
    pad_id: int
    blocked_ids: list[int]
    share_prompts: bool  # in the grad pass; off for models with recurrent layers (shared_prefix.has_recurrent_layers)
    logprob_chunk: int
    autocast: torch.dtype | None = None  # model.autocast: forward passes under torch.autocast in this dtype


def autocast_context(dtype: torch.dtype | None, device: torch.device):
    """`torch.autocast` on `device`'s type in `dtype` (None: a no-op context).

    Only the model's forward passes run under it: the log-prob/entropy pass
    upcasts the logits to float32 itself, and the value head runs in float32.
    """
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def score_completions(model, hf, setup: ScoringSetup, samples: Sequence[Sample], value_head=None,
                      context=nullcontext) -> ScoreOutput:
    """Log-probs, entropies (and values, given a head) of the samples' completions under `model`.

    `hf` is the unwrapped transformers model (positions, decoder); `context`
    wraps each forward pass (e.g. a LoRA adapter disabled for the reference).
    Inputs go to `model`'s device, where the results are (a reference copy may
    live elsewhere than the policy, `model.reference_device`). Results are in
    input order, right-padded to the longest completion.
    """
    if not samples:
        raise ValueError("scoring needs at least one sample")
    dev = next(model.parameters()).device
    Tc = max(s.num_tokens for s in samples)
    B = len(samples)
    logprobs = torch.zeros((B, Tc), device=dev)
    entropy = torch.zeros((B, Tc), device=dev)
    values = torch.zeros((B,), device=dev) if value_head is not None else None
    pieces = []
    for idx in split_by_image([(s.image, s.prompt_text) for s in samples]):
        lp, ent, val = _score_batch(model, hf, setup, [samples[i] for i in idx], Tc, value_head, context, dev)
        pieces.append((idx, lp, ent, val))
    if len(pieces) == 1 and pieces[0][0] == list(range(B)):
        _, logprobs, entropy, v = pieces[0]
        values = v if values is not None else None
    else:  # scatter back into input order (keeps autograd through index_put)
        for idx, lp, ent, val in pieces:
            index = torch.as_tensor(idx, device=dev)
            logprobs = logprobs.index_put((index,), lp)
            entropy = entropy.index_put((index,), ent)
            if values is not None:
                values = values.index_put((index,), val)
    mask = torch.zeros((B, Tc), dtype=torch.bool, device=dev)
    thought = torch.zeros_like(mask)
    action = torch.zeros_like(mask)
    for i, s in enumerate(samples):
        n = s.num_tokens
        mask[i, :n] = True
        thought[i, :n] = torch.as_tensor(s.thought_mask, dtype=torch.bool)
        action[i, :n] = torch.as_tensor(s.action_mask, dtype=torch.bool)
    return ScoreOutput(logprobs * mask, entropy * mask, values, mask, thought, action)


def _score_batch(model, hf, setup: ScoringSetup, samples: Sequence[Sample], Tc: int, value_head, context, dev):
    want_hidden = value_head is not None
    comps = [s.completion_ids for s in samples]
    if setup.share_prompts and _can_share_with_grad(hf):
        first, inverse = shared_prefix.unique_prompts([s.prompt_text for s in samples], [s.image for s in samples])
        enc = _on(dev, setup.encode([samples[i].prompt_text for i in first], [samples[i].image for i in first]))
        with context(), autocast_context(setup.autocast, dev):
            pieces, hidden = shared_prefix.score_logits(model, hf, enc, inverse, comps, setup.pad_id, want_hidden)
        n_c = sum(x.shape[1] for x in pieces)
        targets, _ = pad_rows(comps, n_c, setup.pad_id, dev)
        val = None
        if want_hidden:
            val = value_head(hidden).index_select(0, torch.as_tensor(inverse, device=dev))
    else:
        enc = _on(dev, setup.encode([s.prompt_text for s in samples], [s.image for s in samples]))
        pos, inputs = shared_prefix.completion_positions(hf, enc, comps, setup.pad_id)
        inputs = _on(dev, inputs)
        kw = {k: v for k, v in inputs.items() if k != "input_ids"}
        kw["position_ids"] = pos.to(dev)
        n_c = inputs["input_ids"].shape[1] - enc["input_ids"].shape[1]
        with context(), autocast_context(setup.autocast, dev):
            # Logits only where they predict completion tokens (the last n_c + 1
            # positions): the prompt's full-vocabulary logits are never built.
            out = model(input_ids=inputs["input_ids"], **kw, logits_to_keep=n_c + 1,
                        output_hidden_states=want_hidden, use_cache=False)
        pieces = [out.logits[:, :-1]]
        targets = inputs["input_ids"][:, -n_c:] if n_c else inputs["input_ids"][:, :0]
        val = None
        if want_hidden:
            val = value_head(out.hidden_states[-1][:, enc["input_ids"].shape[1] - 1])
    temps = torch.tensor([s.temperature for s in samples], device=dev)
    lps, ents, t = [], [], 0
    for x in pieces:
        lp, ent = token_logprobs(x, targets[:, t:t + x.shape[1]], temps, setup.blocked_ids, setup.logprob_chunk)
        lps.append(lp)
        ents.append(ent)
        t += x.shape[1]
    lp, ent = torch.cat(lps, dim=1), torch.cat(ents, dim=1)
    lp = torch.nn.functional.pad(lp, (0, Tc - n_c))
    ent = torch.nn.functional.pad(ent, (0, Tc - n_c))
    return lp, ent, val


def _can_share_with_grad(hf) -> bool:
    """Prompt sharing in this pass: always, unless gradient checkpointing is active and this transformers
    drops the cache from checkpointed layers (`shared_prefix.checkpointing_keeps_cache`); then the pass
    runs unshared, with the same values, and says so once."""
    if shared_prefix.checkpointing_keeps_cache() or not (hf.training and torch.is_grad_enabled()):
        return True
    if not any(getattr(m, "gradient_checkpointing", False) for m in hf.modules()):
        return True
    if not _FALLBACK_LOGGED:
        _FALLBACK_LOGGED.append(True)
        log.warning("model.share_prompts: this transformers drops the KV cache from gradient-checkpointed layers "
                    "(no GradientCheckpointingLayer._can_checkpoint_with_cache), so scoring with grad runs "
                    "unshared (same values, more compute); upgrade transformers to share prompts there")
    return False


_FALLBACK_LOGGED: list[bool] = []


def _on(dev, tensors: dict) -> dict:
    return {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in tensors.items()}


class Learner(nn.Module):
    """The trainable model (LoRA-wrapped or not) and the value head; `forward(samples) -> ScoreOutput`."""

    def __init__(self, model: nn.Module, hf: nn.Module, value_head: nn.Module | None, setup: ScoringSetup):
        super().__init__()
        self.model = model
        self.value_head = value_head
        # The unwrapped model is reachable through `model` already (peft wraps it); kept out of the
        # module tree so its parameters are registered once, under `model`.
        self.__dict__["hf"] = hf
        self.setup = setup

    def forward(self, samples: Sequence[Sample]) -> ScoreOutput:
        return score_completions(self.model, self.hf, self.setup, samples, value_head=self.value_head)
