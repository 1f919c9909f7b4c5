"""rlvlm's own exception types.

Every message names the field (or setting), the bad value and the fix, on one
line, so a user can act on it without reading a traceback.
"""

from __future__ import annotations


class RlvlmError(Exception):
    """Base class of every error rlvlm raises on purpose."""


class ConfigError(RlvlmError, ValueError):
    """A config field, CLI override or preset has a bad key or value."""


class ModelSetupError(RlvlmError):
    """A model, processor or tokenizer cannot be used as configured."""


class ImageTokenMismatchError(ModelSetupError):
    """Image placeholder tokens in the prompt disagree with the vision features."""


class DataError(RlvlmError, ValueError):
    """A dataset record, image or observation is malformed."""


def did_you_mean(name: str, choices) -> str:
    """Return ' (did you mean: a, b?)' for close matches of `name`, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


class OptionalDependencyError(RlvlmError, ImportError):
    """A feature needs an optional package that is not installed."""
