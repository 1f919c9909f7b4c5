"""Resolving presets, YAML files and `key=value` overrides into a typed config.

Precedence, lowest first: the dataclass defaults, the root `base:` preset,
each preset or file that inherits from it, then the overrides in order.
Everything is checked before any work starts: an unknown key or a bad value
raises a one-line `ConfigError` naming the key, the value, what was expected
and where it came from.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

from rlvlm.config.coerce import build, set_mapping, set_value, validate_config
from rlvlm.config.fields import to_plain
from rlvlm.errors import ConfigError, did_you_mean

T = TypeVar("T")

BASE_KEY = "base"  # reserved top-level YAML key: the preset or file this one inherits from
YAML_SUFFIXES = (".yaml", ".yml")


def default_presets_dir() -> Any:
    """The packaged presets folder `rlvlm/presets/` (a Traversable, so zipped installs work)."""
    return importlib.resources.files("rlvlm").joinpath("presets")


def _presets_root(presets_dir: Any) -> Any:
    if presets_dir is None:
        return default_presets_dir()
    return Path(presets_dir) if isinstance(presets_dir, (str, os.PathLike)) else presets_dir


def list_presets(presets_dir: Any = None) -> list[str]:
    """Names of the presets in `presets_dir` (default: the packaged ones), sorted."""
    root = _presets_root(presets_dir)
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e.name[: -len(".yaml")] for e in entries if e.name.endswith(".yaml") and e.is_file())


def is_config_path(spec: str) -> bool:
    """True when `spec` names a YAML file rather than a preset."""
    return spec.endswith(YAML_SUFFIXES) or "/" in spec or os.sep in spec


@dataclass
class _Layer:
    data: dict
    where: str  # "preset 'smoke'" or "file 'runs/x/config.yaml'", for error messages


def _parse_yaml(text: str, where: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"cannot parse {where}{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of config keys, not a {type(data).__name__}")
    return data


def _read_spec(spec: str, presets_dir: Any, rel_to: Path | None) -> tuple[str, str, str, Path | None]:
    """(text, where, identity, folder for relative `base:` paths) of a preset name or file path."""
    if is_config_path(spec):
        path = Path(spec).expanduser()
        if not path.is_absolute() and rel_to is not None:
            path = rel_to / path
        if not path.is_file():
            raise ConfigError(f"config file '{spec}' not found; give an existing .yaml path or a preset name")
        return path.read_text(encoding="utf-8"), f"file '{path}'", str(path.resolve()), path.parent
    root = _presets_root(presets_dir)
    entry = root.joinpath(f"{spec}.yaml")
    if not entry.is_file():
        names = list_presets(presets_dir)
        listing = f" (available: {', '.join(names)})" if names else " (no presets installed)"
        raise ConfigError(f"unknown preset '{spec}'{listing}{did_you_mean(spec, names)}; "
                          "or give a path to a .yaml file")
    # Presets inherit from presets by name, so they need no folder for `base:`.
    return entry.read_text(encoding="utf-8"), f"preset '{spec}'", f"preset:{spec}", None


def _load_layers(spec: str, presets_dir: Any, rel_to: Path | None = None,
                 chain: tuple[str, ...] = ()) -> list[_Layer]:
    """The layers of `spec`, root `base:` first and `spec` itself last."""
    text, where, ident, folder = _read_spec(spec, presets_dir, rel_to)
    if ident in chain:
        raise ConfigError(f"config inheritance cycle: {' -> '.join(chain + (ident,))}")
    data = _parse_yaml(text, where)
    layers: list[_Layer] = []
    if BASE_KEY in data:
        base = data.pop(BASE_KEY)
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{where}: '{BASE_KEY}' must be a preset name or a .yaml path, not {base!r}")
        layers = _load_layers(base, presets_dir, folder, chain + (ident,))
    layers.append(_Layer(data, where))
    return layers


def parse_override(text: str) -> tuple[str, Any, str]:
    """Split `key=value` into (key, parsed value, raw value text).

    The value is parsed with `yaml.safe_load` (so `3`, `0.1`, `true`, `null`,
    `[a, b]` and `{k: 1}` work, and nothing is evaluated). Text YAML cannot
    parse stays a string; the field's type decides whether that is valid.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not key=value; write it like algo.clip_low=0.1")
    if any(not part.isidentifier() for part in key.split(".")):
        raise ConfigError(f"override key {key!r} is not a dotted config key like model.name_or_path")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key, value, raw


def apply_overrides(cfg: T, overrides: Iterable[str], *, validate: bool = True) -> T:
    """A copy of `cfg` with `key=value` overrides applied (e.g. on a resumed run's config)."""
    tree: dict = {}
    set_mapping(tree, type(cfg), to_plain(cfg))
    return _finish(type(cfg), tree, overrides, validate)


def _finish(cls: type[T], tree: dict, overrides: Iterable[str], validate: bool) -> T:
    """Apply the overrides onto `tree`, build `cls` and run the validate hooks."""
    for text in overrides:
        key, value, raw = parse_override(text)
        set_value(tree, cls, key.split("."), value, raw=raw)
    cfg = build(cls, tree)
    if validate:
        validate_config(cfg)
    return cfg


def load_config(cls: type[T], preset_or_file: str | os.PathLike | None = None,
                overrides: Iterable[str] = (), presets_dir: Any = None, *, validate: bool = True) -> T:
    """Resolve a preset name or YAML path, then `key=value` overrides, into a `cls` instance.

    `preset_or_file` is a preset name (`rlvlm/presets/NAME.yaml`, or
    `presets_dir/NAME.yaml`), a path to a YAML file (anything ending in .yaml
    or containing a '/'), or None for the dataclass defaults. A YAML file may
    start with `base: OTHER` (a preset name, or a path relative to the file)
    to inherit from it; keys may be nested or dotted (`algo.clip_low: 0.1`).
    After all layers, each section's `validate()` hook runs, children first.
    """
    tree: dict = {}
    if preset_or_file is not None and str(preset_or_file):
        for layer in _load_layers(os.fspath(preset_or_file), presets_dir):
            set_mapping(tree, cls, layer.data, layer.where)
    return _finish(cls, tree, overrides, validate)


def config_to_dict(cfg: Any) -> dict:
    """The config as plain dicts/lists/scalars (enums → values, paths → strings)."""
    return to_plain(cfg)


def config_from_dict(cls: type[T], data: Mapping, *, validate: bool = True, where: str = "") -> T:
    """Build `cls` from a (possibly partial) plain dict with full key and type checks.

    `config_from_dict(type(cfg), config_to_dict(cfg)) == cfg` for any config.
    """
    tree: dict = {}
    set_mapping(tree, cls, data, where)
    return _finish(cls, tree, (), validate)


def config_yaml(cfg: Any) -> str:
    """The resolved config as YAML text that `load_config(cls, path)` reads back exactly."""
    body = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True, default_flow_style=False)
    # A config class may name its own command (RewardModelConfig: `rlvlm reward-model`).
    command = getattr(type(cfg), "COMMAND", "rlvlm train")
    return f"# resolved {type(cfg).__name__}; reload with: {command} PATH key=value ...\n{body}"


def dump_config_yaml(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config to `path` (via a temp file and rename, never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(config_yaml(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path
