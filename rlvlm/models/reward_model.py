"""Image-conditioned scalar reward models r(image, question, answer).

Two kinds share one API, `score(observations, answers) -> (B,)`, `save(dir)`,
`load_reward_model(dir)` and a `kind` attribute:

- "mlp" (`FeatureMLPRewardModel`, the seed project's design): a FROZEN VLM
  reads image + prompt + answer once, and three mean-pooled last-layer
  hidden states become the features

      f = [ mean_{t ∈ image tokens} h_t  ⊕  mean_{t ∈ prompt text} h_t  ⊕  mean_{t ∈ answer} h_t ]  (3H,)
      r = MLP((f − μ) / σ)

  μ, σ are per-dimension statistics of the training features (fitted once,
  saved with the head): hidden states of a transformer have a few dimensions
  with large constant offsets, and standardising them lets one learning rate
  suit every dimension. Only the MLP trains, so features can be computed once
  per pair member (`features`) and the head trained on them (`score_features`).
- "vlm" (`VLMRewardModel`): the VLM itself plus a scalar head on the
  last-layer hidden state of the LAST completion token (the end-of-turn token,
  which has attended to image, prompt and the whole answer), trained fully or
  with LoRA: r = head(h_last).

Both heads are `ValueHead`s (Linear-GELU-Linear, last layer zero-initialised),
so an untrained reward model scores every answer 0 and ranks pairs at exactly
chance (ties count ½). Observations are {"image": uint8 HxWx3 | None, "text": str},
as the envs produce them; the answer is tokenized and closed with the chat
template's end-of-turn token, exactly like a sampled reply that stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from rlvlm.errors import ConfigError, ModelSetupError, did_you_mean
from rlvlm.models.batching import Sample
from rlvlm.models.shared_prefix import completion_positions
from rlvlm.models.policy import Policy, load_policy
from rlvlm.models.value_head import ValueHead

KINDS = ("mlp", "vlm")
CONFIG_FILE = "rlvlm_reward_model.json"
HEAD_FILE = "reward_head.safetensors"
VLM_DIR = "vlm"
FORMAT = 1


def _seeded_head(in_features: int, seed: int) -> ValueHead:
    # The head's random first layer is drawn from its own seeded stream, so two
    # reward models built with one seed are identical and the caller's global
    # RNG state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ValueHead(in_features)


def _image_token_ids(policy: Policy) -> list[int]:
    """Ids whose positions hold vision features: the config's image placeholder, else every vision token."""
    cfg = policy.hf.config
    for key in ("image_token_id", "image_token_index"):
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            return [value]
    return list(policy.blocked_token_ids)


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(b, T, H), (b, T) bool -> (b, H) mean over masked positions; 0 where a row has none."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def _groups(samples: Sequence[Sample]) -> list[list[int]]:
    # Processors do not mix prompts with and without images in one call.
    with_img = [i for i, s in enumerate(samples) if s.image is not None]
    without = [i for i, s in enumerate(samples) if s.image is None]
    return [g for g in (with_img, without) if g]


def last_hidden_states(policy: Policy, samples: Sequence[Sample]):
    """Run the VLM over prompt + completion; yield one tuple per image/no-image group:

        (indices, hidden (b, P+Tc, H), prompt_ids (b, P), prompt_mask (b, P) bool, completion_mask (b, Tc) bool)

    Prompts are left-padded and completions right-padded (batching.py's layout),
    with positions from the model's own rule, exactly as `Policy.score` runs it.
    Only one logit row is built (`logits_to_keep=1`): the reward reads hidden
    states, never the vocabulary. Grad flows unless called under no_grad.
    """
    for idx in _groups(samples):
        batch = [samples[i] for i in idx]
        enc = policy.encode([s.prompt_text for s in batch], [s.image for s in batch])
        completions = [s.completion_ids for s in batch]
        pos, inputs = completion_positions(policy.hf, enc, completions, policy.tokenizer.pad_token_id)
        cmask = inputs["attention_mask"][:, enc["input_ids"].shape[1]:].bool()
        dev = policy.device
        inputs = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in inputs.items()}
        kw = {k: v for k, v in inputs.items() if k != "input_ids"}
        kw["position_ids"] = pos.to(dev)
        out = policy.model(input_ids=inputs["input_ids"], **kw, logits_to_keep=1, output_hidden_states=True,
                           use_cache=False)
        P = enc["input_ids"].shape[1]
        yield (idx, out.hidden_states[-1], inputs["input_ids"][:, :P], inputs["attention_mask"][:, :P].bool(),
               cmask.to(dev))


class RewardModel(nn.Module):
    """Base class: `score(observations, answers) -> (B,)` float32 rewards."""

    kind = "base"

    def __init__(self, policy: Policy, seed: int):
        super().__init__()
        self.policy = policy
        self.seed = seed

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def samples(self, observations: Sequence[Any], answers: Sequence[str]) -> list[Sample]:
        return self.policy.samples_from_text(observations, answers)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def score(self, observations: Sequence[Any], answers: Sequence[str]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _config(self) -> dict:
        return {"format": FORMAT, "kind": self.kind, "seed": self.seed}

    def _write(self, out: Path, config: dict) -> None:
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(out / HEAD_FILE))
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


class _Standardize(nn.Module):
    """(x − μ) / σ per feature dimension; μ = 0, σ = 1 until `fit`."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, eps: float = 1e-5) -> None:
        self.mean.copy_(x.float().mean(0))
        # Unbiased std needs 2 rows; a constant dimension gets σ = 1 (stays 0 after centring).
        std = x.float().std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(self.std)
        self.std.copy_(torch.where(std > eps, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class _FeatureHead(nn.Module):
    def __init__(self, in_features: int, seed: int):
        super().__init__()
        self.norm = _Standardize(in_features)
        self.mlp = _seeded_head(in_features, seed)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(feats))


class FeatureMLPRewardModel(RewardModel):
    """Frozen-VLM features [image ⊕ question ⊕ answer] (B, 3H) -> MLP -> (B,) reward."""

    kind = "mlp"

    def __init__(self, policy: Policy, seed: int = 0):
        super().__init__(policy, seed)
        # Frozen: the VLM is a fixed feature extractor; only the head below trains.
        policy.requires_grad_(False)
        policy.eval()
        self.hidden_size = policy.hf.config.get_text_config().hidden_size
        self.image_ids = _image_token_ids(policy)
        self.head = _FeatureHead(3 * self.hidden_size, seed).to(policy.device)

    @classmethod
    def from_base(cls, name_or_path: str, *, seed: int = 0, device: str = "cpu") -> "FeatureMLPRewardModel":
        return cls(load_policy(name_or_path, value_head=False, reference="none", device=device), seed)

    def train(self, mode: bool = True) -> "FeatureMLPRewardModel":
        super().train(mode)
        self.policy.eval()  # the frozen trunk never leaves eval mode (no dropout in its features)
        return self

    @torch.no_grad()
    def features(self, observations: Sequence[Any], answers: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """(B, 3H) float32 features, computed without grad in batches of `batch_size`."""
        samples = self.samples(observations, answers)
        out = torch.zeros((len(samples), 3 * self.hidden_size), device=self.device)
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            for idx, hidden, prompt_ids, prompt_mask, cmask in last_hidden_states(self.policy, chunk):
                P = prompt_ids.shape[1]
                image = prompt_mask & torch.isin(prompt_ids, torch.as_tensor(self.image_ids, device=prompt_ids.device))
                # Question: the prompt's text tokens (template included), not the image placeholders.
                text = prompt_mask & ~torch.isin(
                    prompt_ids, torch.as_tensor(self.policy.blocked_token_ids or [-1], device=prompt_ids.device))
                h = hidden.float()
                feats = torch.cat([_masked_mean(h[:, :P], image), _masked_mean(h[:, :P], text),
                                   _masked_mean(h[:, P:], cmask)], dim=-1)
                out[torch.as_tensor([start + i for i in idx], device=self.device)] = feats
        return out

    def fit_normalizer(self, features: torch.Tensor) -> None:
        """Set the head's μ, σ from training features (B, 3H); call once before training."""
        self.head.norm.fit(features.to(self.device))

    def score_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 3H) features -> (B,) rewards, with grad through the head."""
        return self.head(features.to(self.device))

    def score(self, observations: Sequence[Any], answers: Sequence[str]) -> torch.Tensor:
        return self.score_features(self.features(observations, answers))

    def save(self, directory: str | Path) -> Path:
        """Head (with μ, σ) as safetensors + JSON naming the frozen base model (not copied: it is unchanged)."""
        out = Path(directory)
        base = self.policy.base_model_path
        base = str(Path(base).resolve()) if Path(base).exists() else base
        self._write(out, {**self._config(), "base_model": base, "hidden_size": self.hidden_size,
                          "features": ["image", "question", "answer"]})
        return out


class VLMRewardModel(RewardModel):
    """The VLM with a scalar head on the last completion token's hidden state: (B, H) -> (B,)."""

    kind = "vlm"

    def __init__(self, policy: Policy, seed: int = 0):
        super().__init__(policy, seed)
        self.hidden_size = policy.hf.config.get_text_config().hidden_size
        self.head = _seeded_head(self.hidden_size, seed).to(policy.device)

    @classmethod
    def from_base(cls, name_or_path: str, *, lora_r: int = 0, seed: int = 0, device: str = "cpu") -> "VLMRewardModel":
        """lora_r = 0 trains every weight of the VLM; r > 0 trains LoRA adapters (and the head) only."""
        lora = {"r": lora_r, "alpha": 2.0 * lora_r} if lora_r > 0 else None
        return cls(load_policy(name_or_path, value_head=False, reference="none", lora=lora, device=device), seed)

    def score(self, observations: Sequence[Any], answers: Sequence[str]) -> torch.Tensor:
        samples = self.samples(observations, answers)
        pieces: list[torch.Tensor | None] = [None] * len(samples)
        for idx, hidden, _ids, _pmask, cmask in last_hidden_states(self.policy, samples):
            P = hidden.shape[1] - cmask.shape[1]
            # Completions are right-padded after the prompt: the last real token sits at P + n_i − 1.
            last = P + cmask.sum(1) - 1
            rows = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
            for j, r in zip(idx, self.head(rows)):
                pieces[j] = r
        return torch.stack(pieces)  # input order, autograd intact

    def save(self, directory: str | Path) -> Path:
        """The VLM (`Policy.save`: safetensors weights or LoRA adapter) under vlm/, plus head and JSON."""
        out = Path(directory)
        self.policy.save(out / VLM_DIR)
        self._write(out, {**self._config(), "hidden_size": self.hidden_size,
                          "lora_r": self.policy.options.lora.r if self.policy.options.lora else 0})
        return out


def build_reward_model(kind: str, name_or_path: str, *, lora_r: int = 0, seed: int = 0,
                       device: str = "cpu") -> RewardModel:
    """A fresh reward model of `kind` ("mlp" | "vlm") on the VLM `name_or_path` (hub id or directory)."""
    if kind == "mlp":
        return FeatureMLPRewardModel.from_base(name_or_path, seed=seed, device=device)
    if kind == "vlm":
        return VLMRewardModel.from_base(name_or_path, lora_r=lora_r, seed=seed, device=device)
    raise ConfigError(f"kind={kind!r} is not a reward model kind{did_you_mean(str(kind), KINDS)}; use mlp or vlm")


def load_reward_model(directory: str | Path, *, device: str = "cpu") -> RewardModel:
    """Load a reward model written by `save` (safetensors + JSON; nothing is unpickled)."""
    from safetensors.torch import load_file

    d = Path(directory)
    path = d / CONFIG_FILE
    if not path.is_file():
        raise ModelSetupError(f"{d} has no {CONFIG_FILE}; fix: give a directory written by RewardModel.save")
    config = json.loads(path.read_text())
    kind = config.get("kind")
    if kind == "mlp":
        model: RewardModel = FeatureMLPRewardModel(
            load_policy(config["base_model"], value_head=False, reference="none", device=device), config["seed"])
    elif kind == "vlm":
        # No overrides: load_policy then restores the saved options (LoRA adapter, no value head);
        # any override would replace them with defaults. The device is set afterwards.
        policy = load_policy(d / VLM_DIR)
        policy.options.device = device
        model = VLMRewardModel(policy.to(device), config["seed"])
    else:
        raise ModelSetupError(f"{path}: kind={kind!r} is not one of {', '.join(KINDS)}")
    model.head.load_state_dict(load_file(str(d / HEAD_FILE)))
    model.head.to(model.device)
    return model
