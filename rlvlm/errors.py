"""rlvlm's own exception types, and the two registry operations whose failures they are.

Every message names the field (or setting), the bad value and the fix, on one
line, so a user can act on it without reading a traceback. Advantage
estimators and policy losses (algos), generator backends (models) and env
backends (envs) are dicts filled by decorators: `register_into` and `registered`
give them one duplicate rule and one unknown-name error.
"""

from __future__ import annotations

from typing import Any


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


def register_into(table: dict, name: str, value: Any, what: str, *, replace: bool = False) -> None:
    """`table[name] = value`; a second registration of `name` fails unless `replace`."""
    if name in table and not replace:
        raise ValueError(f"{what} {name!r} is already registered; pass replace=True to override")
    table[name] = value


def registered(table: dict, name: str, *, field: str, what: str, register: str | None = None) -> Any:
    """`table[name]`, or a ConfigError naming `field`, close matches, the choices and, given
    `register` (a dotted decorator name), how to add another."""
    try:
        return table[name]
    except (KeyError, TypeError):
        hint = f" (or register one with {register})" if register else ""
        raise ConfigError(f"{field}={name!r} is not a registered {what}{did_you_mean(str(name), table)}; "
                          f"choose one of {', '.join(table)}{hint}") from None
