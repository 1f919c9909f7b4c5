"""The policy: any Hugging Face image-text-to-text model that samples and re-scores text.

`load_policy(name_or_path, ...)` goes through the standard Auto classes for a
hub id (`Qwen/Qwen2.5-VL-3B-Instruct`) or a directory (an `rlvlm tiny-model`
build, or a saved policy) with no per-name special cases.

A `Policy` holds the parts of one model and the code that loads and saves
them: the processor, the (LoRA-wrapped) model, the value head, the frozen KL
reference, and two collaborators:

- `policy.generator` (a registered backend, `model.decoder`; generators.py)
  samples: `Policy.sample` returns `Sample`s carrying everything PPO needs
  from the rollout (token ids, log-probs under the sampling distribution, the
  prompt's value, timing, thought/action masks);
- `policy.learner` (learner.py) is the trainable module with a `forward`,
  the part DDP/FSDP wrap: `Policy.score` re-scores completions through it
  with grad, under the same prompts and images.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from rlvlm.errors import ConfigError, ModelSetupError
from rlvlm.models import lora as lora_mod
from rlvlm.models.batching import Sample, chat_prompt, encode_prompts, observation_parts
from rlvlm.models import shared_prefix, vision_parts
from rlvlm.models.input_rules import input_rules
from rlvlm.models.generators import eval_mode, generator_backend
from rlvlm.models.options import PolicyOptions, options_from_dict, options_to_dict
from rlvlm.models.learner import Learner, ScoreOutput, ScoringSetup, autocast_context, score_completions
from rlvlm.models.processors import load_processor
from rlvlm.models.spans import thought_action_masks
from rlvlm.models.token_rules import split_by_image, stop_token_ids, turn_end_ids, vision_token_ids
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


# The Auto classes a VLM can be registered under, tried in order: most are image-text-to-text
# models; omni models (Phi-4-multimodal, Qwen2.5-Omni) are registered as multimodal LMs only.
AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForMultimodalLM")


def load_hf_model(name_or_path: str, **kwargs) -> nn.Module:
    """The transformers model at `name_or_path`, through the first Auto class that knows its config."""
    import transformers

    tried = []
    for name in AUTO_CLASSES:
        auto = getattr(transformers, name, None)
        if auto is None:
            continue
        try:
            return auto.from_pretrained(name_or_path, **kwargs)
        except ValueError as err:
            if "Unrecognized configuration class" not in str(err):
                raise _load_error(name_or_path, err) from err
            tried.append(name)
        except (OSError, KeyError) as err:
            raise _load_error(name_or_path, err) from err
    model_type = getattr(transformers.AutoConfig.from_pretrained(name_or_path, **{
        k: v for k, v in kwargs.items() if k == "trust_remote_code"}), "model_type", "?")
    raise ModelSetupError(f"model.name_or_path={name_or_path!r} is a {model_type!r} model, which none of "
                          f"{', '.join(tried)} can load; rlvlm trains vision-language models with a language head")


def _load_error(name_or_path: str, err: BaseException) -> ModelSetupError:
    return ModelSetupError(
        f"model.name_or_path={name_or_path!r} could not be loaded as an image-text-to-text model "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); give a hub id, "
        f"or a directory made by save_pretrained / `rlvlm tiny-model`")


def load_policy(name_or_path: str | Path, options: PolicyOptions | None = None, **overrides) -> "Policy":
    """Load a policy from a hub id, a model directory or a saved policy directory.

    Keyword overrides set `PolicyOptions` fields, e.g.
    `load_policy("Qwen/Qwen2.5-VL-3B-Instruct", dtype="bfloat16", device="cuda", lora={"r": 16})`.
    """
    saved = Path(name_or_path) / POLICY_FILE
    saved_state = json.loads(saved.read_text()) if saved.is_file() else None
    base = options_to_dict(options) if options is not None else {}
    if saved_state is not None and base in ({}, options_to_dict(PolicyOptions())):
        # A saved policy loads with the options it was saved with (its LoRA, value head, ...);
        # keyword overrides then change single fields (e.g. device="cuda").
        base = saved_state["options"]
    # Overrides go through the config parser: the same types, checks and messages as `model.KEY=VALUE`.
    options = options_from_dict({**base, **overrides}, where="load_policy")
    return Policy(str(name_or_path), options, saved_state)


class Policy(nn.Module):
    """A VLM with its processor, optional LoRA, value head and reference policy."""

    def __init__(self, name_or_path: str, options: PolicyOptions, saved_state: dict | None = None):
        super().__init__()
        self.name_or_path = name_or_path
        self.options = options
        base_path = name_or_path
        adapter_dir = None
        if saved_state is not None and saved_state.get("adapter"):
            base_path, adapter_dir = saved_state["base_model"], name_or_path
        t0 = time.perf_counter()
        hf = load_hf_model(base_path, dtype=_DTYPES[options.dtype], attn_implementation=options.attn_implementation,
                           trust_remote_code=options.trust_remote_code)
        self.base_model_path = base_path
        self.processor = load_processor(name_or_path if adapter_dir is None else base_path,
                                        trust_remote_code=options.trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.hf = hf  # the unwrapped transformers model (peft wraps it below)
        if options.lora is not None:
            self.model = lora_mod.apply_lora(hf, options.lora, adapter_dir=adapter_dir,
                                             exclude=vision_parts.projector_paths(hf) if options.freeze_projector else ())
        else:
            self.model = hf
        frozen = vision_parts.freeze_vision_parts(hf, options.freeze_vision, options.freeze_projector)
        if frozen:
            log.info("froze %s vision encoder and %s projector parameters", f"{frozen['encoder']:,}",
                     f"{frozen['projector']:,}")
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
        # The copy is taken on the device the model loaded on (CPU) and placed after the policy moves,
        # so a reference kept off the GPU (model.reference_device=cpu) never occupies GPU memory.
        reference = copy.deepcopy(hf).eval().requires_grad_(False) if options.reference == "copy" else None
        self.stop_token_ids = stop_token_ids(hf, self.tokenizer)
        self.turn_end_ids = turn_end_ids(self.processor, self.stop_token_ids)
        self.blocked_token_ids = vision_token_ids(hf.config, self.processor)
        self.learner = Learner(self.model, hf, self.value_head, ScoringSetup(
            encode=self.encode, pad_id=self.tokenizer.pad_token_id, blocked_ids=self.blocked_token_ids,
            share_prompts=options.share_prompts and not shared_prefix.has_recurrent_layers(self.hf),
            logprob_chunk=options.logprob_chunk, autocast=_DTYPES.get(options.autocast)))
        self.generator = generator_backend(options.decoder)(self)
        self.to(options.device)
        if reference is not None:
            self.reference = reference.to(options.reference_device or options.device)
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

    def autocast(self):
        """The `model.autocast` context for a forward pass of the policy (a no-op when off)."""
        return autocast_context(self.learner.setup.autocast, self.device)

    # --------------------------------------------------------------- prompts
    def build_prompt(self, text: str, has_image: bool) -> str:
        return chat_prompt(self.processor, text, has_image, self.options.system_prompt)

    def encode(self, prompts: Sequence[str], images: Sequence) -> dict:
        """Model inputs of a homogeneous batch of chat-templated prompts (all with images, or none), on the device."""
        enc = encode_prompts(self.processor, prompts, images, input_rules(self.hf.config))
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
        return self.generator.generate(prompts, images, sampling)

    @torch.no_grad()
    def values(self, observations: Sequence[Any]) -> list[float]:
        """V(observation) for each observation (one prompt-only forward pass)."""
        if self.value_head is None:
            raise ConfigError("model.value_head is off; values() needs model.value_head=true")
        parts = [observation_parts(o, i) for i, o in enumerate(observations)]
        out = [0.0] * len(parts)
        for idx in split_by_image(parts):
            images = [parts[i][0] for i in idx]
            enc = self.encode([self.build_prompt(parts[i][1], parts[i][0] is not None) for i in idx], images)
            with self.autocast():
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
        with eval_mode(self.model):
            out = self.score(samples)
        for i, s in enumerate(samples):
            s.logprobs = out.logprobs[i, : s.num_tokens].tolist()
            s.meta["forced"] = True
        return samples

    # --------------------------------------------------------------- scoring
    def score(self, samples: Sequence[Sample], *, use_reference: bool = False) -> ScoreOutput:
        """Per-token log-probs, entropies (and values) of the samples' completions.

        The learner's forward (with grad unless called under `torch.no_grad()`),
        or with `use_reference` the frozen reference: a copy, or the model with its
        LoRA adapter disabled. Each sample is scored under exactly the prompt and
        image it was sampled with; results are in input order, right-padded.
        """
        if not use_reference:
            return self.engine(samples)
        if self.reference is not None:  # scored where it lives (model.reference_device), returned here
            return score_completions(self.reference, self.reference, self.learner.setup, samples).to(self.device)
        return score_completions(self.model, self.hf, self.learner.setup, samples, context=self._lora_disabled)

    @property
    def engine(self) -> nn.Module:
        """What `score` runs: the learner, or the wrapper `use_engine` installed."""
        return self.__dict__.get("_engine") or self.learner

    def use_engine(self, engine: nn.Module) -> None:
        """Score through `engine`, a wrapper of `self.learner` (DDP, FSDP, DeepSpeed), from now on.

        Kept out of the module tree (the wrapper holds the learner's own
        parameters), so saving, loading and `state_dict` keys do not change.
        """
        self.__dict__["_engine"] = engine

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
    def save(self, directory: str | Path, learner_state: dict | None = None) -> Path:
        """Write the policy (weights as safetensors, processor, value head, options).

        `learner_state` is the learner's whole state dict when the modules hold
        shards only (FSDP gathers it); by default the modules' own weights are saved.
        """
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        adapter = self.options.lora is not None
        model_kw, head = {}, self.value_head.state_dict() if self.value_head is not None else {}
        if learner_state is not None:
            model_kw["state_dict"] = {k[6:]: v for k, v in learner_state.items() if k.startswith("model.")}
            head = {k[11:]: v for k, v in learner_state.items() if k.startswith("value_head.")}
        self.model.save_pretrained(out, safe_serialization=True, **model_kw)
        self.processor.save_pretrained(out)
        if self.value_head is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, str(out / VALUE_HEAD_FILE))
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
    d = options_to_dict(o)
    # Placement is not saved: a saved policy loads on CPU unless told otherwise, its reference copy with it
    # (so loading it with reference=none, as resuming does, is not a contradiction).
    d["device"], d["reference_device"] = "cpu", None
    return d


def _absolute_if_local(path: str) -> str:
    p = Path(path)
    return str(p.resolve()) if p.exists() else path
