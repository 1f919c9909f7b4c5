"""rlvlm: reinforcement-learning fine-tuning of vision-language models.

`import rlvlm` is light: it registers the gymnasium environments and nothing
that needs torch. The policy layer (`rlvlm.load_policy`) is imported lazily on
first use, so env-only users never pay for torch/transformers.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_policy": ("rlvlm.models.policy", "load_policy"),
    "Policy": ("rlvlm.models.policy", "Policy"),
    "SamplingConfig": ("rlvlm.models.policy", "SamplingConfig"),
    "build_tiny_model": ("rlvlm.models.tiny", "build_tiny_model"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'rlvlm' has no attribute {name!r}")


# Environments register themselves with gymnasium under rlvlm/...-v0 (no torch).
from rlvlm import envs as _envs  # noqa: E402, F401
