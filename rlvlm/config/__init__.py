"""Typed configs: nested dataclasses ← YAML presets ← `key=value` overrides.

    from rlvlm.config import F, FF, load_config, describe_config

    @dataclass
    class AlgoConfig:
        clip_low: float = F(0.2, "PPO lower clip range")

    @dataclass
    class TrainConfig:
        algo: AlgoConfig = FF(AlgoConfig, "the RL algorithm")
        seed: int = F(0, "seeds envs, sampling and data order")

    cfg = load_config(TrainConfig, "smoke", ["algo.clip_low=0.1", "seed=3"])

Supported field types: int, float, bool, str, Path, Optional/unions,
Literal, Enum (StrEnum), list/tuple/set, dict, and nested dataclasses
(optionally `Section | None`). Values are parsed with `yaml.safe_load` and
never evaluated. Errors are one-line `rlvlm.errors.ConfigError`s naming the
full dotted key, the value, the expected type and close matches.
"""

from rlvlm.config.coerce import coerce, validate_config
from rlvlm.config.fields import F, FF, all_keys, describe_config, field_types, type_name
from rlvlm.config.loading import (
    apply_overrides, config_from_dict, config_to_dict, config_yaml, default_presets_dir,
    dump_config_yaml, is_config_path, list_presets, load_config, parse_override,
)

__all__ = [
    "F", "FF", "all_keys", "apply_overrides", "coerce", "config_from_dict", "config_to_dict",
    "config_yaml", "default_presets_dir", "describe_config", "dump_config_yaml", "field_types",
    "is_config_path", "list_presets", "load_config", "parse_override", "type_name", "validate_config",
]
