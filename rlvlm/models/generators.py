"""Generator backends: how a policy's completions are sampled, by name (`model.decoder`).

A generator turns a batch of prompts into `Sample`s: token ids, their log-probs
under the sampling distribution, the prompt's value (when the policy has a
value head), timing and thought/action masks. It shares the policy's weights
(same process); a backend on another engine (vLLM) would receive them instead.

`exact_logprobs` says whether the recorded log-probs equal what the learner's
forward pass computes for the same tokens under the same weights. Only then
may PPO use them as the old log-probs; otherwise the trainer re-scores the
rollout with the learner before the update (`rlvlm.train.rl`). Both built-in
backends are exact (tests/integration/test_fast_paths.py compares them).

    @register_generator("mine")
    class MyGenerator:
        exact_logprobs = False
        def __init__(self, policy): ...
        def generate(self, prompts, images, sampling) -> list[Sample]: ...
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Protocol, Sequence

import torch

from rlvlm.errors import register_into, registered
from rlvlm.models import shared_prefix
from rlvlm.models.batching import Sample
from rlvlm.models.spans import thought_action_masks
from rlvlm.models.token_rules import StepClock, block_ids, cut_at_stop


class Generator(Protocol):
    """What the collector and the trainer need from a sampling backend."""

    exact_logprobs: bool

    def generate(self, prompts: Sequence[str], images: Sequence, sampling) -> list[Sample]:
        """`sampling.n` completions per (chat-templated prompt, image), observation-major."""
        ...


GENERATORS: dict[str, Callable[..., Generator]] = {}


def register_generator(name: str, *, replace: bool = False):
    """Class decorator: register a generator backend under `name` (what `model.decoder` accepts)."""
    def deco(cls):
        register_into(GENERATORS, name, cls, "generator", replace=replace)
        return cls
    return deco


def generator_backend(name: str) -> Callable[..., Generator]:
    return registered(GENERATORS, name, field="model.decoder", what="generator")


@contextmanager
def eval_mode(model):
    """Sampling runs the model in eval mode and leaves its train/eval state as it found it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def to_samples(policy, prompts, images, enc, rows, tokens, logprobs, values, temp, elapsed_at) -> list[Sample]:
    """One Sample per output row; rows[r] = (observation index, row of `enc` holding its prompt).

    tokens / logprobs / values are per output row (values may be None);
    elapsed_at(n) is the batch's wall-clock when a reply of n tokens stopped.
    """
    samples = []
    for r, (src, e) in enumerate(rows):
        ids, stopped = cut_at_stop(tokens[r], policy.stop_token_ids)
        text = policy.tokenizer.decode(ids, skip_special_tokens=True)
        thought, action = thought_action_masks(policy.tokenizer, ids, text)
        prompt_ids = enc["input_ids"][e][enc["attention_mask"][e].bool()].tolist()
        samples.append(Sample(
            prompt_text=prompts[src], image=images[src], prompt_ids=prompt_ids, completion_ids=ids,
            text=text, logprobs=logprobs[r][: len(ids)], thought_mask=thought, action_mask=action,
            temperature=temp, value=None if values is None else values[r],
            gen_seconds=elapsed_at(len(ids)), truncated=not stopped,
        ))
    return samples


class _SharedWeights:
    """A backend that samples with the policy's own weights, in this process."""

    exact_logprobs = True

    def __init__(self, policy):
        self.policy = policy


@register_generator("rlvlm")
class OwnLoopGenerator(_SharedWeights):
    """The own KV-cache decode loop: each distinct (prompt, image) is encoded and prefilled once
    (`model.share_prompts`) and its cache shared by the group's samples."""

    @torch.no_grad()
    def generate(self, prompts, images, sampling) -> list[Sample]:
        p = self.policy
        if p.options.share_prompts:
            first, inverse = shared_prefix.unique_prompts(prompts, images)
        else:
            first, inverse = list(range(len(prompts))), list(range(len(prompts)))
        enc = p.encode([prompts[i] for i in first], [images[i] for i in first])
        rows = [u for u in inverse for _ in range(sampling.n)]  # observation-major, n per observation
        with eval_mode(p.model), p.autocast():
            dec = shared_prefix.decode(
                p.model, p.hf, enc, rows, max_new_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature, top_p=sampling.top_p, stop_ids=p.stop_token_ids,
                pad_id=p.tokenizer.pad_token_id, blocked=p.blocked_token_ids,
                want_hidden=p.value_head is not None, static_cache=p.options.static_cache)
        values = None
        if dec.prompt_hidden is not None:
            per_prompt = p.value_head(dec.prompt_hidden).tolist()
            values = [per_prompt[u] for u in rows]
        temp = 1.0 if sampling.temperature == 0 else sampling.temperature
        return to_samples(p, prompts, images, enc, [(first[u], u) for u in rows], dec.tokens.tolist(),
                          dec.logprobs.tolist(), values, temp, dec.elapsed_at)


@register_generator("hf")
class HFGenerator(_SharedWeights):
    """transformers' `generate()`, log-probs from its returned logits (after the same vision-token
    mask), the prompt's value from a hook on the decoder's prefill output."""

    @torch.no_grad()
    def generate(self, prompts, images, sampling) -> list[Sample]:
        p = self.policy
        enc = p.encode(prompts, images)
        P = enc["input_ids"].shape[1]
        clock = StepClock(p.blocked_token_ids)
        greedy = sampling.temperature == 0
        gen_kwargs = dict(
            max_new_tokens=sampling.max_new_tokens, do_sample=not greedy, num_return_sequences=sampling.n,
            return_dict_in_generate=True, output_logits=True, logits_processor=[clock],
            eos_token_id=p.stop_token_ids, pad_token_id=p.tokenizer.pad_token_id,
        )
        if not greedy:
            gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        with eval_mode(p.model), p.autocast(), self._capture_prompt_hidden() as captured:
            clock.start()
            gen = p.model.generate(**enc, **gen_kwargs)
        seqs = gen.sequences[:, P:]
        temp = 1.0 if greedy else sampling.temperature
        # (B, Tc, V) logits -> log-probs of the chosen tokens under softmax(logits / T).
        logits = block_ids(torch.stack(gen.logits, dim=1).float(), p.blocked_token_ids)
        chosen = torch.log_softmax(logits / temp, dim=-1).gather(-1, seqs[:, : logits.shape[1], None]).squeeze(-1)
        values = None
        if p.value_head is not None and captured:
            values = p.value_head(captured[0]).tolist()
        rows = [(r // sampling.n, r // sampling.n) for r in range(seqs.shape[0])]
        return to_samples(p, prompts, images, enc, rows, seqs.tolist(), chosen.tolist(), values, temp,
                          clock.elapsed_at)

    @contextmanager
    def _capture_prompt_hidden(self):
        """Capture the decoder's last hidden state at the last prompt token during prefill.

        The value comes from the same forward pass that samples, so no extra
        pass over the prompt is needed. Only the first (prefill) call is kept.
        """
        captured: list[torch.Tensor] = []
        if self.policy.value_head is None:
            yield captured
            return

        def hook(_module, _args, output):
            if not captured:
                hs = output[0] if isinstance(output, tuple) else output.last_hidden_state
                captured.append(hs[:, -1].detach())

        handle = self.policy.hf.get_decoder().register_forward_hook(hook)
        try:
            yield captured
        finally:
            handle.remove()
