"""Typed value coercion and the key tree from which config objects are built.

Every layer of a config (a preset, the file it inherits from, CLI overrides,
a plain dict) is applied onto a *key tree*: a nested dict that mirrors the
dataclass tree and holds already-coerced leaf values. Coercing at insertion
time means each error can name where the bad value came from (a file, an
override). `build` then turns the finished tree into dataclass instances,
starting from the field defaults so untouched keys keep them.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import enum
import math
import pathlib
from typing import Any, Literal, Mapping, get_args, get_origin

from rlvlm.config.fields import (
    NoneType, all_keys, config_fields, default_value, expected, field_types, is_config_class,
    is_union, section_type, to_plain, type_name,
)
from rlvlm.errors import ConfigError

_SCALARS = (str, int, float, bool, datetime.date)


def _where(where: str) -> str:
    return f" (in {where})" if where else ""


def _bad(key: str, value: Any, tp: Any, where: str, extra: str = "") -> ConfigError:
    shown = "null" if value is None else repr(value)
    return ConfigError(f"{key}={shown} is not {expected(tp)}{extra}{_where(where)}")


def close_hint(name: str, choices: list[str], n: int = 3) -> str:
    """' (did you mean: a?)' like `rlvlm.errors.did_you_mean`, but only the clear winners.

    Dotted keys share long prefixes (`algo.`), which lifts every sibling over
    difflib's cutoff; keeping matches within 0.05 of the best ratio leaves the
    one or two a user most likely meant.
    """
    scored = sorted(((difflib.SequenceMatcher(None, name, c).ratio(), c) for c in choices), reverse=True)
    best = scored[0][0] if scored else 0.0
    close = [c for ratio, c in scored[:n] if ratio >= 0.6 and ratio >= best - 0.05]
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def _norm(text: str) -> str:
    # Same normalisation as rlvlm.algos.enums.parse_choice: "Dr-GRPO" finds dr_grpo.
    return text.strip().lower().replace("-", "_")


def coerce(value: Any, tp: Any, key: str, where: str = "", raw: str | None = None) -> Any:
    """Convert `value` to type `tp` or raise a one-line `ConfigError` naming `key`.

    `raw` is the override's original text: a `str` field takes it verbatim, so
    `name=yes` or `name=007` stay strings instead of becoming True or 7.
    Nothing is ever evaluated; values come from `yaml.safe_load` or a dict.
    """
    if tp is Any or tp is object:
        return value
    if is_union(tp):
        arms = get_args(tp)
        if value is None and NoneType in arms:
            return None
        for arm in arms:
            if arm is NoneType:
                continue
            try:
                return coerce(value, arm, key, where, raw)
            except ConfigError:
                continue
        raise _bad(key, value, tp, where)
    origin = get_origin(tp)
    if origin is Literal:
        return _coerce_choice(value, list(get_args(tp)), key, tp, where, raw)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        return tp(_coerce_choice(value, [m.value for m in tp], key, tp, where, raw))
    if value is None:
        raise _bad(key, value, tp, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(key, value, tp, where)
    if tp is int:
        return _coerce_int(value, key, where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML reads `1e-4` (no dot) as a string; a float field still takes it.
            try:
                return float(value.replace("_", ""))
            except ValueError:
                pass
        raise _bad(key, value, tp, where)
    if tp is str:
        if isinstance(value, str):
            return value
        if raw is not None:
            return raw
        if isinstance(value, _SCALARS) and not isinstance(value, bool):
            return str(value)
        raise _bad(key, value, tp, where)
    if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        if isinstance(value, (str, pathlib.PurePath)):
            return tp(value)
        if raw is not None:  # `output_dir=2024` is still a directory name
            return tp(raw)
        raise _bad(key, value, tp, where)
    if is_config_class(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            tree: dict = {}
            set_mapping(tree, tp, value, where, prefix=key + ".")
            return build(tp, tree, key + ".")
        raise _bad(key, value, tp, where)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        return _coerce_sequence(value, tp, key, where)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _bad(key, value, tp, where)
        kt, vt = get_args(tp) or (Any, Any)
        return {coerce(k, kt, f"{key} key", where): coerce(v, vt, f"{key}.{k}", where) for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _bad(key, value, tp, where)


def _coerce_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool):
        raise _bad(key, value, int, where)
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        # `1e6` arrives as a string (PyYAML needs a dot for floats); take it when integral.
        try:
            return int(value.replace("_", ""))
        except ValueError:
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                raise _bad(key, value, int, where) from None
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        return int(number)
    raise _bad(key, value, int, where)


def _coerce_choice(value: Any, choices: list, key: str, tp: Any, where: str, raw: str | None) -> Any:
    for choice in choices:
        # Compare types too, so True does not match a choice of 1.
        if type(choice) is type(value) and choice == value:
            return choice
    for text in (value, raw):
        if isinstance(text, str):
            for choice in choices:
                if isinstance(choice, str) and _norm(choice) == _norm(text):
                    return choice
    names = [str(c) for c in choices]
    hint = close_hint(_norm(str(raw if raw is not None else value)), names)
    raise _bad(key, value, tp, where, hint)


def _coerce_sequence(value: Any, tp: Any, key: str, where: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _bad(key, value, tp, where)
    origin = get_origin(tp) or tp
    args = get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise _bad(key, value, tp, where, f" ({len(args)} items, got {len(value)})")
        return tuple(coerce(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args)))
    elem = args[0] if args else Any
    return origin(coerce(v, elem, f"{key}[{i}]", where) for i, v in enumerate(value))


# Keys a release removed, with what replaces them; config modules add theirs, so an
# old preset or command fails with the fix instead of a bare "unknown key".
RETIRED_KEYS: dict[str, str] = {}


def _unknown_key(root: tuple[type, str], key: str, where: str) -> ConfigError:
    place = f" in {where}" if where else ""
    if key in RETIRED_KEYS:
        return ConfigError(f"config key '{key}'{place} was removed; fix: {RETIRED_KEYS[key]}")
    keys = all_keys(*root)
    leaf = key.rsplit(".", 1)[-1]
    # A key typed without its section (`clip_low=`) is found by its last part.
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf and k != key][:3]
    hint = f" (did you mean: {', '.join(same_leaf)}?)" if same_leaf else close_hint(key, keys)
    if not hint:
        section = key.rsplit(".", 1)[0] + "." if "." in key else ""
        siblings = [k for k in keys if k.startswith(section) and "." not in k[len(section):]]
        if 0 < len(siblings) <= 15:
            hint = f" (valid keys here: {', '.join(siblings)})"
    return ConfigError(f"unknown config key '{key}'{place}{hint}")


def set_value(tree: dict, cls: type, parts: list[str], value: Any, where: str = "",
              raw: str | None = None, prefix: str = "", root: tuple[type, str] | None = None) -> None:
    """Set the dotted key `parts` (relative to section `cls`) to `value` in `tree`.

    A mapping assigned to a section is merged key by key; `null` assigned to
    an optional section disables it; a key below a `dict` field sets one entry.
    `root` is the (class, prefix) of the whole tree, for close-match hints.
    """
    root = root or (cls, prefix)
    name, rest = parts[0], parts[1:]
    key = prefix + name
    types_ = field_types(cls)
    if name not in types_:
        raise _unknown_key(root, key + "".join("." + p for p in rest), where)
    tp = types_[name]
    sec, optional = section_type(tp)
    if sec is not None:
        if not rest and value is None:
            if not optional:
                raise ConfigError(f"{key}=null is not allowed: '{key}' is a required section{_where(where)}")
            tree[name] = None
            return
        if not rest and not isinstance(value, Mapping):
            if isinstance(value, sec):
                value = to_plain(value)
            else:
                raise _bad(key, value, sec, where, f" ('{key}' is a section; set its keys like {key}.KEY=VALUE)")
        sub = tree.get(name)
        if not isinstance(sub, dict):  # also re-enables a section set to null earlier
            sub = tree[name] = {}
        if rest:
            set_value(sub, sec, rest, value, where, raw, key + ".", root)
        else:
            set_mapping(sub, sec, value, where, key + ".", root)
        return
    if rest:
        if get_origin(tp) is dict or tp is dict:
            kt, vt = get_args(tp) or (Any, Any)
            entry = ".".join(rest)
            current = dict(tree[name]) if isinstance(tree.get(name), dict) else None
            if current is None:  # start from the field's default entries
                f = next(f for f in config_fields(cls) if f.name == name)
                default = default_value(f)
                current = dict(default) if isinstance(default, Mapping) else {}
            if len(rest) > 1 and (vt is Any or vt is dict or get_origin(vt) is dict):
                # `env.kwargs.ask_for_help.mode=x` sets one entry of a nested
                # mapping (a wrapper's options), instead of a key "ask_for_help.mode".
                node = current
                for i, part in enumerate(rest[:-1]):
                    if node.get(part) is not None and not isinstance(node[part], Mapping):
                        # Replacing it by a mapping would silently drop the value set earlier.
                        above = ".".join([key, *rest[:i + 1]])
                        raise ConfigError(f"{above}={node[part]!r} is a value, so {key}.{entry} cannot set a key "
                                          f"below it{_where(where)}; fix: set {above} as sub-keys only "
                                          f"({above}.KEY=VALUE ...) or as one mapping")
                    node[part] = dict(node[part]) if isinstance(node.get(part), Mapping) else {}
                    node = node[part]
                node[rest[-1]] = value
            else:
                current[coerce(entry, kt, f"{key} key", where)] = coerce(value, vt, f"{key}.{entry}", where, raw)
            tree[name] = current
            return
        raise ConfigError(f"unknown config key '{key}.{'.'.join(rest)}': '{key}' is a {type_name(tp)} "
                          f"with no sub-keys{_where(where)}")
    tree[name] = coerce(value, tp, key, where, raw)


def set_mapping(tree: dict, cls: type, mapping: Mapping, where: str = "", prefix: str = "",
                root: tuple[type, str] | None = None) -> None:
    """Apply every key of `mapping` (nested, or with dotted keys) onto `tree`."""
    for k, v in mapping.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"config key {k!r} under '{prefix or '<top>'}' must be a non-empty string"
                              f"{_where(where)}")
        set_value(tree, cls, k.split("."), v, where, None, prefix, root or (cls, prefix))


def build(cls: type, tree: Mapping, prefix: str = "", start: Any = None) -> Any:
    """Instantiate `cls` from a key tree, on top of `start` or the field defaults."""
    kwargs: dict[str, Any] = {}
    for f in config_fields(cls):
        tp = field_types(cls)[f.name]
        if f.name in tree:
            value = tree[f.name]
            sec, _ = section_type(tp)
            if sec is not None and isinstance(value, dict):
                # Start from the current section (or its default factory's
                # instance) so a factory's non-default values survive.
                base = getattr(start, f.name) if start is not None else default_value(f)
                value = build(sec, value, f"{prefix}{f.name}.", base if isinstance(base, sec) else None)
            kwargs[f.name] = value
        elif start is None and default_value(f) is dataclasses.MISSING:
            raise ConfigError(f"missing required config key '{prefix}{f.name}' ({type_name(tp)}); "
                              f"set it, e.g. {prefix}{f.name}=VALUE")
    return dataclasses.replace(start, **kwargs) if start is not None else cls(**kwargs)


def validate_config(cfg: Any, prefix: str = "") -> None:
    """Call `validate()` on every section, children first, then on `cfg` itself.

    A hook should raise `ConfigError`; a plain `ValueError` is re-raised as one
    naming the section, so a user never sees a traceback for a bad value.
    """
    for f in config_fields(type(cfg)):
        value = getattr(cfg, f.name)
        items = value if isinstance(value, (list, tuple)) else value.values() if isinstance(value, dict) else [value]
        for item in items:
            if dataclasses.is_dataclass(item) and not isinstance(item, type):
                validate_config(item, f"{prefix}{f.name}.")
    hook = getattr(cfg, "validate", None)
    if callable(hook):
        try:
            hook()
        except ConfigError:
            raise
        except ValueError as err:
            section = f"section '{prefix.rstrip('.')}'" if prefix else "config"
            raise ConfigError(f"invalid {section}: {err}") from err
