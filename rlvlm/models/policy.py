"""The policy: any Hugging Face image-text-to-text model that samples and re-scores text.

`load_policy(name_or_path, ...)` goes through the standard Auto classes for a
hub id (`Qwen/Qwen2.5-VL-3B-Instruct`) or a directory (an `rlvlm tiny-model`
build, or a saved policy) with no per-name special cases.

`Policy.sample` generates for a batch of observations and returns `Sample`s
carrying everything PPO needs from the rollout: token ids, log-probs under the
sampling distribution, the value of the prompt, timing, and thought/action
masks. `Policy.score` recomputes log-probs, entropies and values with grad
for the same tokens under the same prompts.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from rlvlm.errors import ConfigError, ModelSetupError
from rlvlm.models import lora as lora_mod
from rlvlm.models.batching import (
    Sample, chat_prompt, encode_prompts, observation_parts,
)
from rlvlm.algos.logprobs import token_logprobs
from rlvlm.models import shared_prefix
from rlvlm.models.spans import thought_action_masks
from rlvlm.models.token_rules import (
    block_ids, cut_at_stop, pad_rows, split_by_image, StepClock, stop_token_ids, turn_end_ids, vision_token_ids,
)
from rlvlm.models.value_head import ValueHead

log = logging.getLogger(__name__)

POLICY_FILE = "rlvlm_policy.json"
VALUE_HEAD_FILE = "value_head.safetensors"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class SamplingConfig:
    """How completions are drawn. temperature 0 means greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    n: int = 1  # completions per observation (a group); the prompt is encoded once per observation

    def validate(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"sampling.temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p={self.top_p} must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ConfigError(f"sampling.max_new_tokens={self.max_new_tokens} must be >= 1")
        if self.n < 1:
            raise ConfigError(f"sampling.n={self.n} must be >= 1")


@dataclass
class ScoreOutput:
    """Re-scored completions, right-padded to `Tc` tokens."""

    logprobs: torch.Tensor  # (B, Tc) log_softmax(logits / T) of each completion token, with grad
    entropy: torch.Tensor  # (B, Tc) entropy of that distribution
    values: torch.Tensor | None  # (B,) value of the prompt, or None without a value head
    mask: torch.Tensor  # (B, Tc) bool, real completion tokens
    thought_mask: torch.Tensor  # (B, Tc) bool
    action_mask: torch.Tensor  # (B, Tc) bool


@dataclass
class PolicyOptions:
    """Everything `load_policy` takes besides the model name; saved with the policy."""

    dtype: str = "float32"
    device: str = "cpu"
    lora: lora_mod.LoraSettings | None = None
    value_head: bool = True
    gradient_checkpointing: bool = False
    reference: str = "auto"  # auto: LoRA-disabled model if LoRA, else none; "copy": frozen copy; "none"
    attn_implementation: str | None = "sdpa"
    trust_remote_code: bool = False
    system_prompt: str | None = None
    # Speed levers (issue 8); each leaves log-probs unchanged (tests), benchmarks/grpo_vs_trl.py measures them.
    decoder: str = "rlvlm"  # rlvlm: own KV-cache sampling loop | hf: transformers generate()
    share_prompts: bool = True  # one vision + prompt pass per distinct (prompt, image), cache shared by its samples
    # decoder=rlvlm: preallocated KV cache written in place instead of grown by concatenation. Off: on CPU it
    # measured no faster (small model, 64 x 64 and 64 x 128 tokens: within noise, 9 % slower on the tiny one).
    static_cache: bool = False
    logprob_chunk: int = 4  # rows per chunk of the fused log-prob/entropy pass over the vocabulary (0: all rows)
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.dtype not in _DTYPES:
            raise ConfigError(f"model.dtype={self.dtype!r} is not one of {', '.join(_DTYPES)}")
        if self.decoder not in ("rlvlm", "hf"):
            raise ConfigError(f"model.decoder={self.decoder!r} must be rlvlm (own sampling loop) or hf (generate)")
        if self.logprob_chunk < 0:
            raise ConfigError(f"model.logprob_chunk={self.logprob_chunk} must be >= 0 (0: no chunking)")
        if self.reference not in ("auto", "copy", "none"):
            raise ConfigError(f"model.reference={self.reference!r} must be auto, copy or none")


def load_policy(name_or_path: str | Path, options: PolicyOptions | None = None, **overrides) -> "Policy":
    """Load a policy from a hub id, a model directory or a saved policy directory.

    Keyword overrides set `PolicyOptions` fields, e.g.
    `load_policy("Qwen/Qwen2.5-VL-3B-Instruct", dtype="bfloat16", device="cuda", lora={"r": 16})`.
    """
    options = copy.deepcopy(options) if options is not None else PolicyOptions()
    saved = Path(name_or_path) / POLICY_FILE
    saved_state = json.loads(saved.read_text()) if saved.is_file() else None
    if saved_state is not None and options == PolicyOptions() and not overrides:
        options = _options_from_dict(saved_state["options"])
    for key, value in overrides.items():
        if not hasattr(options, key):
            from rlvlm.errors import did_you_mean

            raise ConfigError(f"load_policy got unknown option {key!r}{did_you_mean(key, asdict(options))}")
        setattr(options, key, value)
    if isinstance(options.lora, dict):
        options.lora = lora_mod.LoraSettings(**options.lora)
    options.validate()
    return Policy(str(name_or_path), options, saved_state)


def _options_from_dict(d: dict) -> PolicyOptions:
    d = dict(d)
    if d.get("lora"):
        d["lora"] = lora_mod.LoraSettings(**d["lora"])
    return PolicyOptions(**d)


class Policy(nn.Module):
    """A VLM with its processor, optional LoRA, value head and reference policy."""

    def __init__(self, name_or_path: str, options: PolicyOptions, saved_state: dict | None = None):
        super().__init__()
        from transformers import AutoModelForImageTextToText

        from rlvlm.models.processors import load_processor

        self.name_or_path = name_or_path
        self.options = options
        base_path = name_or_path
        adapter_dir = None
        if saved_state is not None and saved_state.get("adapter"):
            base_path, adapter_dir = saved_state["base_model"], name_or_path
        dtype = _DTYPES[options.dtype]
        t0 = time.perf_counter()
        try:
            hf = AutoModelForImageTextToText.from_pretrained(
                base_path, dtype=dtype, attn_implementation=options.attn_implementation,
                trust_remote_code=options.trust_remote_code,
            )
        except (OSError, ValueError, KeyError) as err:
            raise ModelSetupError(
                f"model.name_or_path={base_path!r} could not be loaded as an image-text-to-text model "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); give a hub id, "
                f"or a directory made by save_pretrained / `rlvlm tiny-model`"
            ) from err
        self.base_model_path = base_path
        self.processor = load_processor(name_or_path if adapter_dir is None else base_path,
                                        trust_remote_code=options.trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.hf = hf  # the unwrapped transformers model (peft wraps it below)
        if options.lora is not None:
            self.model = lora_mod.apply_lora(hf, options.lora, adapter_dir=adapter_dir)
        else:
            self.model = hf
        if options.gradient_checkpointing:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if options.lora is not None:
                hf.enable_input_require_grads()
        hidden = hf.config.get_text_config().hidden_size
        self.value_head = ValueHead(hidden) if options.value_head else None
        if self.value_head is not None and saved_state is not None and saved_state.get("value_head"):
            from safetensors.torch import load_file

            self.value_head.load_state_dict(load_file(str(Path(name_or_path) / VALUE_HEAD_FILE)))
        self.reference = None
        if options.reference == "copy":
            self.reference = copy.deepcopy(hf).eval().requires_grad_(False)
        self.to(options.device)
        self.stop_token_ids = stop_token_ids(hf, self.tokenizer)
        self.turn_end_ids = turn_end_ids(self.processor, self.stop_token_ids)
        self.blocked_token_ids = vision_token_ids(hf.config, self.processor)
        self.load_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ info
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameters of the policy (model + value head); a frozen reference copy is not counted."""
        ref = {id(p) for p in self.reference.parameters()} if self.reference is not None else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in ref and (p.requires_grad or not trainable_only))

    def reference_parameters(self) -> int:
        """Parameters of the frozen reference copy (0 without one)."""
        return sum(p.numel() for p in self.reference.parameters()) if self.reference is not None else 0

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # --------------------------------------------------------------- prompts
    def build_prompt(self, text: str, has_image: bool) -> str:
        return chat_prompt(self.processor, text, has_image, self.options.system_prompt)

    def _encode(self, prompts: Sequence[str], images: Sequence) -> dict:
        enc = encode_prompts(self.processor, prompts, images)
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in enc.items()}

    # -------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, observations: Sequence[Any], sampling: SamplingConfig | None = None) -> list[Sample]:
        """Sample `sampling.n` completions for each observation; returns them observation-major.

        Observations are {"image": uint8 HxWx3 | PIL | None, "text": str}.
        Observations with and without images are generated in separate
        batches (processors do not mix them), then returned in input order.
        """
        sampling = sampling or SamplingConfig()
        sampling.validate()
        parts = [observation_parts(o, i) for i, o in enumerate(observations)]
        out: list[list[Sample] | None] = [None] * len(parts)
        for idx in split_by_image(parts):
            samples = self._sample_batch([parts[i] for i in idx], sampling)
            for j, i in enumerate(idx):
                out[i] = samples[j * sampling.n:(j + 1) * sampling.n]
        return [s for group in out for s in group]

    def _sample_batch(self, parts, sampling: SamplingConfig) -> list[Sample]:
        images = [im for im, _ in parts]
        prompts = [self.build_prompt(text, im is not None) for im, text in parts]
        if self.options.decoder == "rlvlm":
            return self._sample_shared(prompts, images, sampling)
        enc = self._encode(prompts, images)
        P = enc["input_ids"].shape[1]
        clock = StepClock(self.blocked_token_ids)
        greedy = sampling.temperature == 0
        gen_kwargs = dict(
            max_new_tokens=sampling.max_new_tokens, do_sample=not greedy, num_return_sequences=sampling.n,
            return_dict_in_generate=True, output_logits=True, logits_processor=[clock],
            eos_token_id=self.stop_token_ids, pad_token_id=self.tokenizer.pad_token_id,
        )
        if not greedy:
            gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        with self._eval_mode(), self._capture_prompt_hidden() as captured:
            clock.start()
            gen = self.model.generate(**enc, **gen_kwargs)
        seqs = gen.sequences[:, P:]
        temp = 1.0 if greedy else sampling.temperature
        # (B, Tc, V) logits -> log-probs of the chosen tokens under softmax(logits / T).
        logits = block_ids(torch.stack(gen.logits, dim=1).float(), self.blocked_token_ids)
        chosen = torch.log_softmax(logits / temp, dim=-1).gather(-1, seqs[:, : logits.shape[1], None]).squeeze(-1)
        values = None
        if self.value_head is not None and captured:
            values = self.value_head(captured[0]).tolist()
        rows = [(r // sampling.n, r // sampling.n) for r in range(seqs.shape[0])]
        return self._to_samples(prompts, images, enc, rows, seqs.tolist(), chosen.tolist(), values, temp,
                                clock.elapsed_at)

    def _sample_shared(self, prompts, images, sampling: SamplingConfig) -> list[Sample]:
        """Sampling with the own decode loop: each distinct prompt is encoded and prefilled once."""
        if self.options.share_prompts:
            first, inverse = shared_prefix.unique_prompts(prompts, images)
        else:
            first, inverse = list(range(len(prompts))), list(range(len(prompts)))
        enc = self._encode([prompts[i] for i in first], [images[i] for i in first])
        rows = [u for u in inverse for _ in range(sampling.n)]  # observation-major, n per observation
        with self._eval_mode():
            dec = shared_prefix.decode(
                self.model, self.hf, enc, rows, max_new_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature, top_p=sampling.top_p, stop_ids=self.stop_token_ids,
                pad_id=self.tokenizer.pad_token_id, blocked=self.blocked_token_ids,
                want_hidden=self.value_head is not None, static_cache=self.options.static_cache)
        values = None
        if dec.prompt_hidden is not None:
            per_prompt = self.value_head(dec.prompt_hidden).tolist()
            values = [per_prompt[u] for u in rows]
        temp = 1.0 if sampling.temperature == 0 else sampling.temperature
        return self._to_samples(prompts, images, enc, [(first[u], u) for u in rows], dec.tokens.tolist(),
                                dec.logprobs.tolist(), values, temp, dec.elapsed_at)

    def _to_samples(self, prompts, images, enc, rows, tokens, logprobs, values, temp, elapsed_at) -> list[Sample]:
        """One Sample per output row; rows[r] = (observation index, row of `enc` holding its prompt).

        tokens / logprobs / values are per output row (values may be None);
        elapsed_at(n) is the batch's wall-clock when a reply of n tokens stopped.
        """
        samples = []
        for r, (src, e) in enumerate(rows):
            ids, stopped = cut_at_stop(tokens[r], self.stop_token_ids)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            thought, action = thought_action_masks(self.tokenizer, ids, text)
            prompt_ids = enc["input_ids"][e][enc["attention_mask"][e].bool()].tolist()
            samples.append(Sample(
                prompt_text=prompts[src], image=images[src], prompt_ids=prompt_ids, completion_ids=ids,
                text=text, logprobs=logprobs[r][: len(ids)], thought_mask=thought, action_mask=action,
                temperature=temp, value=None if values is None else values[r],
                gen_seconds=elapsed_at(len(ids)), truncated=not stopped,
            ))
        return samples

    @contextmanager
    def _eval_mode(self):
        """Sampling runs the model in eval mode and leaves its train/eval state as it found it."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def values(self, observations: Sequence[Any]) -> list[float]:
        """V(observation) for each observation (one prompt-only forward pass)."""
        if self.value_head is None:
            raise ConfigError("model.value_head is off; values() needs model.value_head=true")
        parts = [observation_parts(o, i) for i, o in enumerate(observations)]
        out = [0.0] * len(parts)
        for idx in split_by_image(parts):
            images = [parts[i][0] for i in idx]
            enc = self._encode([self.build_prompt(parts[i][1], parts[i][0] is not None) for i in idx], images)
            hs = self.model(**enc, logits_to_keep=1, output_hidden_states=True, use_cache=False).hidden_states[-1]
            for j, v in zip(idx, self.value_head(hs[:, -1]).tolist()):
                out[j] = v
        return out

    def samples_from_text(self, observations: Sequence[Any], completions: Sequence[str]) -> list[Sample]:
        """Teacher-forced samples: given completions (SFT demonstrations, preference pairs).

        Each completion is tokenized and closed with the chat template's
        end-of-turn token, exactly as a sampled completion that stopped.
        `logprobs` are left empty (score() computes them).
        """
        if len(observations) != len(completions):
            raise ValueError(f"{len(observations)} observations but {len(completions)} completions")
        samples = []
        for i, (obs, text) in enumerate(zip(observations, completions)):
            image, prompt = observation_parts(obs, i)
            full = self.build_prompt(prompt, image is not None)
            ids = self.tokenizer.encode(text, add_special_tokens=False) + self.turn_end_ids
            thought, action = thought_action_masks(self.tokenizer, ids, text)
            samples.append(Sample(
                prompt_text=full, image=image, prompt_ids=[], completion_ids=ids, text=text, logprobs=[],
                thought_mask=thought, action_mask=action, temperature=1.0,
            ))
        return samples

    @torch.no_grad()
    def forced_samples(self, observations: Sequence[Any], completions: Sequence[str],
                       temperature: float = 1.0) -> list[Sample]:
        """Teacher-forced samples that can join a rollout: `samples_from_text` with
        `logprobs` filled under the current weights at `temperature` (eval mode, as
        sampling runs), so a PPO ratio against them starts at exactly 1."""
        samples = self.samples_from_text(observations, completions)
        for s in samples:
            s.temperature = float(temperature)
        with self._eval_mode():
            out = self.score(samples)
        for i, s in enumerate(samples):
            s.logprobs = out.logprobs[i, : s.num_tokens].tolist()
            s.meta["forced"] = True
        return samples

    @contextmanager
    def _capture_prompt_hidden(self):
        """Capture the decoder's last hidden state at the last prompt token during prefill.

        The value comes from the same forward pass that samples, so no extra
        pass over the prompt is needed. Only the first (prefill) call is kept.
        """
        captured: list[torch.Tensor] = []
        if self.value_head is None:
            yield captured
            return

        def hook(_module, _args, output):
            if not captured:
                hs = output[0] if isinstance(output, tuple) else output.last_hidden_state
                captured.append(hs[:, -1].detach())

        handle = self.hf.get_decoder().register_forward_hook(hook)
        try:
            yield captured
        finally:
            handle.remove()

    # --------------------------------------------------------------- scoring
    def score(self, samples: Sequence[Sample], *, use_reference: bool = False) -> ScoreOutput:
        """Per-token log-probs, entropies (and values) of the samples' completions.

        With grad unless called under `torch.no_grad()`. Each sample is scored
        under exactly the prompt and image it was sampled with. Results are in
        input order, right-padded to the longest completion.
        """
        if not samples:
            raise ValueError("score() needs at least one sample")
        Tc = max(s.num_tokens for s in samples)
        dev = self.device
        B = len(samples)
        logprobs = torch.zeros((B, Tc), device=dev)
        entropy = torch.zeros((B, Tc), device=dev)
        values = torch.zeros((B,), device=dev) if self.value_head is not None and not use_reference else None
        pieces = []
        for idx in split_by_image([(s.image, s.prompt_text) for s in samples]):
            lp, ent, val = self._score_batch([samples[i] for i in idx], Tc, use_reference)
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

    def _score_batch(self, samples: Sequence[Sample], Tc: int, use_reference: bool):
        model = self._reference_model() if use_reference else self.model
        want_hidden = self.value_head is not None and not use_reference
        ctx = self._lora_disabled() if use_reference and self.reference is None else nullcontext()
        comps = [s.completion_ids for s in samples]
        # Prompt sharing needs the KV cache in the grad pass; gradient checkpointing turns the cache off.
        if self.options.share_prompts and not self.options.gradient_checkpointing:
            first, inverse = shared_prefix.unique_prompts([s.prompt_text for s in samples],
                                                          [s.image for s in samples])
            enc = self._encode([samples[i].prompt_text for i in first], [samples[i].image for i in first])
            with ctx:
                pieces, hidden = shared_prefix.score_logits(model, self.hf, enc, inverse, comps,
                                                            self.tokenizer.pad_token_id, want_hidden)
            n_c = sum(x.shape[1] for x in pieces)
            targets, _ = pad_rows(comps, n_c, self.tokenizer.pad_token_id, self.device)
            val = None
            if want_hidden:
                val = self.value_head(hidden).index_select(0, torch.as_tensor(inverse, device=self.device))
        else:
            enc = self._encode([s.prompt_text for s in samples], [s.image for s in samples])
            pos, inputs = shared_prefix.completion_positions(self.hf, enc, comps, self.tokenizer.pad_token_id)
            inputs = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
            kw = {k: v for k, v in inputs.items() if k != "input_ids"}
            kw["position_ids"] = pos.to(self.device)
            n_c = inputs["input_ids"].shape[1] - enc["input_ids"].shape[1]
            with ctx:
                # Logits only where they predict completion tokens (the last n_c + 1
                # positions): the prompt's full-vocabulary logits are never built.
                out = model(input_ids=inputs["input_ids"], **kw, logits_to_keep=n_c + 1,
                            output_hidden_states=want_hidden, use_cache=False)
            pieces = [out.logits[:, :-1]]
            targets = inputs["input_ids"][:, -n_c:] if n_c else inputs["input_ids"][:, :0]
            val = None
            if want_hidden:
                val = self.value_head(out.hidden_states[-1][:, enc["input_ids"].shape[1] - 1])
        temps = torch.tensor([s.temperature for s in samples], device=self.device)
        lps, ents, t = [], [], 0
        for x in pieces:
            lp, ent = token_logprobs(x, targets[:, t:t + x.shape[1]], temps, self.blocked_token_ids,
                                     self.options.logprob_chunk)
            lps.append(lp)
            ents.append(ent)
            t += x.shape[1]
        lp, ent = torch.cat(lps, dim=1), torch.cat(ents, dim=1)
        lp = torch.nn.functional.pad(lp, (0, Tc - n_c))
        ent = torch.nn.functional.pad(ent, (0, Tc - n_c))
        return lp, ent, val

    @torch.no_grad()
    def reference_logprobs(self, samples: Sequence[Sample]) -> torch.Tensor:
        """(B, Tc) log-probs of the completions under the reference policy."""
        if self.reference is None and self.options.lora is None:
            raise ConfigError(
                "model.reference: no reference policy; enable LoRA (its disabled adapter is the reference) "
                "or set model.reference=copy for a frozen copy"
            )
        return self.score(samples, use_reference=True).logprobs

    def snapshot_reference(self) -> None:
        """Make the frozen reference copy equal to the current weights (e.g. the end of an SFT warm-start).

        The copy is taken when the policy loads; a run that warm-starts before RL
        must re-take it, or a KL penalty would pull towards the untrained model.
        """
        if self.reference is None:
            raise ConfigError("model.reference: snapshot_reference needs model.reference=copy")
        self.reference.load_state_dict(self.model.state_dict())

    def _reference_model(self):
        return self.reference if self.reference is not None else self.model

    @contextmanager
    def _lora_disabled(self):
        with self.model.disable_adapter():
            yield

    # ------------------------------------------------------------ save/load
    def save(self, directory: str | Path) -> Path:
        """Write the policy (weights as safetensors, processor, value head, options)."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        adapter = self.options.lora is not None
        self.model.save_pretrained(out, safe_serialization=True)
        self.processor.save_pretrained(out)
        if self.value_head is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()},
                      str(out / VALUE_HEAD_FILE))
        state = {
            "format": 1, "adapter": adapter, "value_head": self.value_head is not None,
            "base_model": _absolute_if_local(self.base_model_path), "options": _options_to_dict(self.options),
        }
        (out / POLICY_FILE).write_text(json.dumps(state, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path, **overrides) -> "Policy":
        return load_policy(directory, **overrides)


def _options_to_dict(o: PolicyOptions) -> dict:
    d = asdict(o)
    d["device"] = "cpu"  # a saved policy loads on CPU unless told otherwise
    return d


def _absolute_if_local(path: str) -> str:
    p = Path(path)
    return str(p.resolve()) if p.exists() else path
