"""Tiny from-scratch VLMs of real transformers families (`rlvlm tiny-model`), built offline.

Each family module registers its builder (spec.register_family); importing the
package registers them all, in the order ARCHS lists them.
"""

from rlvlm.models.tiny import gemma, idefics, internvl, llava, mllama, qwen  # noqa: F401  (register the families)
from rlvlm.models.tiny.build import (
    BUILDER_VERSION, build_tiny_model, build_tokenizer, cache_dir, cached_tiny_model,
)
from rlvlm.models.tiny.spec import FAMILIES, SIZES, TINY_IMAGE_MEAN, TINY_IMAGE_STD, ArchSpec, register_family

# The order the five first families were tested in, then the others.
_FIRST = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "gemma3")
ARCHS = tuple(a for a in _FIRST if a in FAMILIES) + tuple(a for a in FAMILIES if a not in _FIRST)

__all__ = [
    "ARCHS", "ArchSpec", "BUILDER_VERSION", "FAMILIES", "SIZES", "TINY_IMAGE_MEAN", "TINY_IMAGE_STD",
    "build_tiny_model", "build_tokenizer", "cache_dir", "cached_tiny_model", "register_family",
]
