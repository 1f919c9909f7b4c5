"""Build small from-scratch VLMs of real Hugging Face architectures, offline.

`build_tiny_model(out_dir, arch, size, seed)` writes a directory that the
standard Auto classes load with no network: random weights from a small config
of the real architecture class, a byte-level BPE tokenizer trained locally, the
architecture's own processor class, and a chat template. It is how rlvlm
debugs the whole pipeline without a model hub, through exactly the code path a
user's `Qwen/Qwen2.5-VL-3B-Instruct` takes. The families are in spec.FAMILIES.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlvlm.errors import ConfigError, did_you_mean
from rlvlm.models.seeding import private_stream
from rlvlm.models.tiny.spec import FAMILIES, SIZES, TINY_IMAGE_MEAN, TINY_IMAGE_STD
from rlvlm.models.tokenizer import train_bpe_tokenizer


def build_tokenizer(arch: str, size: str = "tiny", seed: int = 0):
    """The locally trained tokenizer for `arch`, as a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[arch]
    specials = list(dict.fromkeys(list(spec.named_tokens.values()) + list(spec.extra_tokens)))
    raw = train_bpe_tokenizer(specials, vocab_size=SIZES[size]["vocab"], seed=seed)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, **spec.named_tokens, extra_special_tokens=list(spec.extra_tokens),
        chat_template=spec.chat_template, padding_side="left", model_max_length=4096,
    )
    return tok


def _reinit_zero_matrices(model, std: float) -> None:
    """Give all-zero weight matrices random values.

    Some architectures zero-initialise a layer because their real checkpoints
    always overwrite it (Gemma 3's image projection). From scratch, a zero
    projection blocks every gradient into the vision tower, so the image would
    be ignored until the projection drifts off zero.
    """
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2 and not p.any():
                p.normal_(0.0, std)


def _check_choice(field: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(
            f"{field}={value!r} is not supported{did_you_mean(value, choices)}; choose one of {', '.join(choices)}"
        )


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2_vl", size: str = "tiny", seed: int = 0) -> dict:
    """Build and save a from-scratch VLM; return a summary (params, seconds, image tokens).

    Deterministic: the same (arch, size, seed) gives byte-identical weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    _check_choice("arch", arch, tuple(FAMILIES))
    _check_choice("size", size, tuple(SIZES))
    t0 = time.perf_counter()
    shape = SIZES[size]
    spec = FAMILIES[arch]
    tok = build_tokenizer(arch, size, seed)
    ids = {name: tok.convert_tokens_to_ids(text) for name, text in spec.named_tokens.items()}
    config, processor = spec.build(shape, ids, tok)
    # The weights come from a private copy of the global stream: building a model
    # in-process must not shift the caller's random numbers, or a training run would
    # depend on whether its model came from the cache (issue 15).
    with private_stream(seed):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
        _reinit_zero_matrices(model, std=getattr(config, "initializer_range", None) or 0.02)
        if spec.post_init is not None:
            spec.post_init(model)
    stop_ids = [tok.convert_tokens_to_ids(t) for t in spec.stop_tokens]
    model.generation_config = GenerationConfig(
        eos_token_id=stop_ids, pad_token_id=ids["pad_token"], bos_token_id=ids["bos_token"],
        do_sample=True, max_new_tokens=64,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    summary = {
        "arch": arch, "size": size, "seed": seed, "params": n_params,
        "image_size": shape["image_size"], "build_seconds": round(time.perf_counter() - t0, 2),
        "image_mean": TINY_IMAGE_MEAN, "image_std": TINY_IMAGE_STD,
    }
    (out / "rlvlm_tiny.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# Bump when a change to this file changes what gets built, so caches refresh.
BUILDER_VERSION = 1


def cache_dir() -> Path:
    """Where built tiny models are cached: $RLVLM_CACHE, else $XDG_CACHE_HOME/rlvlm, else ~/.cache/rlvlm.

    Always an absolute path, so a relative $RLVLM_CACHE names the same cache from any directory.
    """
    import os

    if os.environ.get("RLVLM_CACHE"):
        root = Path(os.environ["RLVLM_CACHE"])
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "rlvlm"
    else:
        root = Path.home() / ".cache" / "rlvlm"
    return root.expanduser().resolve()


def cached_tiny_model(arch: str = "qwen2_vl", size: str = "tiny", seed: int = 0) -> Path:
    """Path of a tiny model, building it once into the cache.

    The build goes to a temporary sibling directory that is renamed into
    place, so an interrupted build never leaves a half-written model behind
    and concurrent builders do not see each other's partial files.
    """
    import shutil
    import tempfile

    _check_choice("arch", arch, tuple(FAMILIES))
    _check_choice("size", size, tuple(SIZES))
    final = cache_dir() / "tiny" / f"{arch}-{size}-seed{seed}-v{BUILDER_VERSION}"
    if (final / "rlvlm_tiny.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    try:
        build_tiny_model(tmp, arch, size, seed)
        try:
            tmp.rename(final)
        except OSError:  # another process finished first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
