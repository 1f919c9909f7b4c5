"""The schema side of the config system: documented fields, types and `--help` text.

A config is a tree of plain `@dataclass`es. Each field documents itself:

    @dataclass
    class AlgoConfig:
        clip_low: float = F(0.2, "PPO lower clip range ε_low")
        targets: list[str] = FF(lambda: ["q_proj"], "LoRA target modules")

`describe_config(TrainConfig)` then lists every dotted key (`algo.clip_low`)
with its type, default and help, which is what `rlvlm train --help` prints.
"""

from __future__ import annotations

import dataclasses
import enum
import pathlib
import types
import typing
from functools import lru_cache
from typing import Any, Callable, Literal, Mapping, Union, get_args, get_origin

import yaml

NoneType = type(None)


def F(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with an immutable `default` and a one-line `help` text."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def FF(factory: Callable[[], Any], help: str, **metadata: Any) -> Any:
    """A dataclass field whose default is built by `factory` (lists, dicts, sections)."""
    return dataclasses.field(default_factory=factory, metadata={"help": help, **metadata})


def field_help(f: dataclasses.Field) -> str:
    """The help text of a field, or '' when it has none."""
    return str(f.metadata.get("help", ""))


def is_config_class(tp: Any) -> bool:
    """True for a dataclass *type* (a config section), False for instances and others."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, Any]:
    """Resolved types of the init fields of dataclass `cls`, in declaration order.

    `from __future__ import annotations` leaves annotations as strings, so they
    are resolved with `typing.get_type_hints` against the defining module.
    """
    try:
        hints = typing.get_type_hints(cls)
    except NameError as err:
        raise TypeError(
            f"cannot resolve the annotations of config class {cls.__qualname__}: {err}; "
            "define config dataclasses at module level"
        ) from err
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def config_fields(cls: type) -> list[dataclasses.Field]:
    """The init fields of `cls` (the ones a config file may set)."""
    return [f for f in dataclasses.fields(cls) if f.init]


def is_union(tp: Any) -> bool:
    """True for `X | Y` and `Optional[X]` in either spelling."""
    return get_origin(tp) in (Union, types.UnionType)


def section_type(tp: Any) -> tuple[type | None, bool]:
    """`(dataclass, optional)` when `tp` is a section (`Cfg` or `Cfg | None`), else `(None, False)`."""
    if is_config_class(tp):
        return tp, False
    if is_union(tp):
        arms = [a for a in get_args(tp) if a is not NoneType]
        if len(arms) == 1 and is_config_class(arms[0]) and len(get_args(tp)) == 2:
            return arms[0], True
    return None, False


def default_value(f: dataclasses.Field) -> Any:
    """A field's default (calling its factory), or `dataclasses.MISSING`."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of the tree rooted at `cls`: sections and leaves."""
    keys: list[str] = []
    for name, tp in field_types(cls).items():
        key = prefix + name
        keys.append(key)
        sec, _ = section_type(tp)
        if sec is not None:
            keys.extend(all_keys(sec, key + "."))
    return keys


def type_name(tp: Any) -> str:
    """A short, user-facing spelling of a field type: `int | null`, `{a, b}`, `list[str]`."""
    if tp is NoneType or tp is None:
        return "null"
    if tp is Any:
        return "any"
    if is_union(tp):
        arms = sorted(get_args(tp), key=lambda a: a is NoneType)  # null last
        return " | ".join(type_name(a) for a in arms)
    origin = get_origin(tp)
    if origin is Literal:
        return "{" + ", ".join(str(c) for c in get_args(tp)) + "}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "{" + ", ".join(str(m.value) for m in tp) + "}"
    if is_config_class(tp):
        return "section"
    if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        return "path"
    if origin is not None:
        args = get_args(tp)
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]" if args else origin.__name__
    return getattr(tp, "__name__", str(tp))


def expected(tp: Any) -> str:
    """What a value of type `tp` must be, for error messages: 'an int', 'one of: a, b'."""
    if is_union(tp):
        return " or ".join(expected(a) for a in sorted(get_args(tp), key=lambda a: a is NoneType))
    if tp is NoneType:
        return "null"
    simple = {int: "an int", float: "a float", bool: "a bool (true or false)", str: "a string"}
    if tp in simple:
        return simple[tp]
    origin = get_origin(tp)
    if origin is Literal:
        return "one of: " + ", ".join(str(c) for c in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of: " + ", ".join(str(m.value) for m in tp)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        return f"a {type_name(tp)} (write it as [a, b])"
    if origin is dict or tp is dict:
        return f"a {type_name(tp)} mapping (write it as {{key: value}})"
    if is_config_class(tp):
        return "a section mapping (write it as {key: value})"
    return f"a {type_name(tp)}"


def to_plain(value: Any) -> Any:
    """Dataclasses, enums, paths and tuples → dicts, values, strings and lists (YAML/JSON-ready)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in config_fields(type(value))}
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    return value


def show_value(value: Any) -> str:
    """A value as a user would write it in YAML or an override: `null`, `true`, `[1, 2]`."""
    text = yaml.safe_dump(to_plain(value), default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def describe_config(cls: type, prefix: str = "") -> str:
    """Every dotted key of `cls` with its type, default and help, one block per key.

        algo:  the RL algorithm
          algo.clip_low  (float, default: 0.2)
              PPO lower clip range ε_low

    At each level the plain keys come first, then each section as a header
    line with its own help followed by its keys.
    """
    lines: list[str] = []
    _describe(cls, prefix, dataclasses.MISSING, lines)
    return "\n".join(lines).strip("\n")


def _describe(cls: type, prefix: str, instance: Any, lines: list[str]) -> None:
    sections = []
    for f in config_fields(cls):
        key, tp = prefix + f.name, field_types(cls)[f.name]
        # A section's defaults come from the parent's default instance when it
        # has one, so a factory like `lambda: AlgoConfig(epochs=1)` shows 1.
        default = default_value(f) if instance is dataclasses.MISSING else getattr(instance, f.name)
        sec, _ = section_type(tp)
        if sec is not None:
            sections.append((f, key, sec, default))
            continue
        shown = "required" if default is dataclasses.MISSING else f"default: {show_value(default)}"
        lines.append(f"  {key}  ({type_name(tp)}, {shown})")
        if field_help(f):
            lines.append(f"      {field_help(f)}")
    for f, key, sec, default in sections:
        note = " (optional section, default: null)" if default is None else ""
        lines += ["", f"{key}:{note}  {field_help(f)}".rstrip()]
        _describe(sec, key + ".", default if isinstance(default, sec) else dataclasses.MISSING, lines)
