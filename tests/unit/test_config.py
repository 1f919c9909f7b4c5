"""Typed config: presets, inheritance, overrides, coercion, errors, help text, round trips."""

from __future__ import annotations  # annotations are strings: the loader must resolve them

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pytest

from rlvlm.config import (
    F, FF, all_keys, apply_overrides, config_from_dict, config_to_dict, describe_config,
    dump_config_yaml, list_presets, load_config, parse_override,
)
from rlvlm.errors import ConfigError


class Estimator(StrEnum):
    GAE = "gae"
    DR_GRPO = "dr_grpo"


@dataclass
class LoraCfg:
    r: int = F(8, "LoRA rank")
    targets: list[str] = FF(lambda: ["q_proj", "v_proj"], "modules LoRA wraps")


@dataclass
class ModelCfg:
    name_or_path: str | None = F(None, "hub id or local directory; null builds a tiny model")
    dtype: Literal["float32", "bfloat16"] = F("float32", "parameter dtype")
    lora: LoraCfg | None = F(None, "LoRA adapters; null trains all weights")


@dataclass
class AlgoCfg:
    clip_low: float = F(0.2, "PPO lower clip range")
    clip_high: float = F(0.28, "PPO upper clip range (clip-higher)")
    epochs: int = F(4, "PPO epochs per update")
    advantage: Estimator = F(Estimator.GAE, "advantage estimator")
    use_kl: bool = F(False, "add a KL penalty to the reference")
    betas: tuple[float, float] = F((0.9, 0.999), "Adam betas")

    def validate(self) -> None:
        if self.clip_low > self.clip_high:
            raise ConfigError(f"algo.clip_low={self.clip_low} must be <= algo.clip_high={self.clip_high}")


@dataclass
class TrainCfg:
    model: ModelCfg = FF(ModelCfg, "the policy model")
    algo: AlgoCfg = FF(lambda: AlgoCfg(epochs=2), "the RL algorithm")
    seed: int = F(0, "global seed")
    lr: float = F(1e-5, "learning rate")
    output_dir: Path = F(Path("runs/default"), "run directory")
    reward_weights: dict[str, float] = FF(lambda: {"env": 1.0}, "weight of each reward function")
    tags: list[str] = FF(list, "free-form run tags")

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr} must be > 0")


@pytest.fixture()
def presets(tmp_path: Path) -> Path:
    d = tmp_path / "presets"
    d.mkdir()
    (d / "root.yaml").write_text("seed: 1\nalgo:\n  epochs: 8\n  clip_low: 0.1\ntags: [a]\n")
    (d / "child.yaml").write_text("base: root\nseed: 2\nalgo.use_kl: true\nmodel:\n  lora: {r: 4}\n")
    (d / "typo.yaml").write_text("algo:\n  clip_lo: 0.1\n")
    (d / "loop_a.yaml").write_text("base: loop_b\n")
    (d / "loop_b.yaml").write_text("base: loop_a\n")
    (d / "bad.yaml").write_text("algo: {epochs: four}\n")
    return d


def test_defaults_and_factory_sections_survive():
    cfg = load_config(TrainCfg, None, [])
    assert cfg == TrainCfg()
    assert cfg.algo.epochs == 2  # from the section's default factory, not AlgoCfg's own default
    cfg = load_config(TrainCfg, None, ["algo.clip_low=0.1"])
    assert cfg.algo.epochs == 2 and cfg.algo.clip_low == 0.1


def test_overrides_are_typed():
    cfg = load_config(TrainCfg, None, [
        "seed=3", "algo.clip_low=0.1", "model.name_or_path=Qwen/Qwen2.5-VL-3B-Instruct",
        "lr=1e-4", "algo.epochs=1e1", "algo.advantage=Dr-GRPO", "algo.use_kl=true",
        "algo.betas=[0.8, 0.9]", "tags=[x, 7]", "output_dir=/tmp/run", "model.dtype=bfloat16",
    ])
    assert cfg.seed == 3 and cfg.algo.clip_low == 0.1 and cfg.lr == 1e-4 and cfg.algo.epochs == 10
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert cfg.algo.advantage is Estimator.DR_GRPO and cfg.algo.use_kl is True
    assert cfg.algo.betas == (0.8, 0.9) and cfg.tags == ["x", "7"]
    assert cfg.output_dir == Path("/tmp/run") and cfg.model.dtype == "bfloat16"


def test_string_fields_keep_the_raw_text_and_nothing_is_evaluated():
    cfg = load_config(TrainCfg, None, ["model.name_or_path=007", "tags=[__import__('os')]", "output_dir=2024"])
    assert cfg.model.name_or_path == "007"  # not the int 7
    assert cfg.tags == ["__import__('os')"]
    assert cfg.output_dir == Path("2024")
    cfg = load_config(TrainCfg, None, ["model.name_or_path=null"])
    assert cfg.model.name_or_path is None


def test_optional_section_and_dict_entries():
    cfg = load_config(TrainCfg, None, ["model.lora.r=16"])
    assert cfg.model.lora == LoraCfg(r=16)
    cfg = load_config(TrainCfg, None, ["model.lora={r: 2}", "model.lora=null"])
    assert cfg.model.lora is None
    cfg = load_config(TrainCfg, None, ["reward_weights.accuracy=0.5"])
    assert cfg.reward_weights == {"env": 1.0, "accuracy": 0.5}
    cfg = load_config(TrainCfg, None, ["reward_weights={acc: 2}"])
    assert cfg.reward_weights == {"acc": 2.0}


def test_unknown_key_names_close_matches():
    with pytest.raises(ConfigError) as err:
        load_config(TrainCfg, None, ["algo.clip_lo=0.1"])
    assert str(err.value) == "unknown config key 'algo.clip_lo' (did you mean: algo.clip_low?)"
    with pytest.raises(ConfigError, match=r"did you mean: algo.clip_low\?"):
        load_config(TrainCfg, None, ["clip_low=0.1"])  # section forgotten
    with pytest.raises(ConfigError, match=r"'seed' is a int with no sub-keys"):
        load_config(TrainCfg, None, ["seed.x=1"])
    with pytest.raises(ConfigError, match=r"valid keys here: algo.clip_low"):
        load_config(TrainCfg, None, ["algo.zzzzzzzz=1"])


@pytest.mark.parametrize("override, message", [
    ("algo.epochs=four", "algo.epochs='four' is not an int"),
    ("algo.epochs=2.5", "algo.epochs=2.5 is not an int"),
    ("algo.use_kl=maybe", "algo.use_kl='maybe' is not a bool (true or false)"),
    ("lr=fast", "lr='fast' is not a float"),
    ("model.dtype=bfloat", "model.dtype='bfloat' is not one of: float32, bfloat16 (did you mean: bfloat16?)"),
    ("algo.advantage=gea", "algo.advantage='gea' is not one of: gae, dr_grpo (did you mean: gae?)"),
    ("algo.betas=[0.9]", "algo.betas=[0.9] is not a tuple[float, float] (write it as [a, b]) (2 items, got 1)"),
    ("seed=null", "seed=null is not an int"),
    ("algo=3", "algo=3 is not a section mapping"),
    ("reward_weights.acc=high", "reward_weights.acc='high' is not a float"),
])
def test_bad_values_fail_with_one_line(override: str, message: str):
    with pytest.raises(ConfigError) as err:
        load_config(TrainCfg, None, [override])
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_malformed_overrides():
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_override("seed")
    with pytest.raises(ConfigError, match="not a dotted config key"):
        parse_override("--seed=1")
    assert parse_override("a.b=[1, 2") == ("a.b", "[1, 2", "[1, 2")  # unparseable YAML stays text


def test_presets_inherit_and_overrides_win(presets: Path):
    assert list_presets(presets) == ["bad", "child", "loop_a", "loop_b", "root", "typo"]
    cfg = load_config(TrainCfg, "child", ["seed=9"], presets)
    assert cfg.seed == 9  # override > child (2) > root (1)
    assert cfg.algo.epochs == 8 and cfg.algo.clip_low == 0.1 and cfg.algo.use_kl
    assert cfg.model.lora == LoraCfg(r=4) and cfg.tags == ["a"]


def test_yaml_errors_name_the_file(presets: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"unknown config key 'algo.clip_lo' in preset 'typo' "
                                          r"\(did you mean: algo.clip_low\?\)"):
        load_config(TrainCfg, "typo", [], presets)
    with pytest.raises(ConfigError, match=r"algo.epochs='four' is not an int \(in preset 'bad'\)"):
        load_config(TrainCfg, "bad", [], presets)
    with pytest.raises(ConfigError, match="inheritance cycle"):
        load_config(TrainCfg, "loop_a", [], presets)
    with pytest.raises(ConfigError, match=r"unknown preset 'chlid' \(available: .*\) \(did you mean: child\?\)"):
        load_config(TrainCfg, "chlid", [], presets)
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match=r"cannot parse file '.*broken.yaml' line \d+"):
        load_config(TrainCfg, str(broken), [], presets)
    with pytest.raises(ConfigError, match="not found"):
        load_config(TrainCfg, str(tmp_path / "missing.yaml"), [], presets)
    listy = tmp_path / "listy.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(TrainCfg, str(listy), [], presets)


def test_file_inherits_from_preset_and_relative_file(presets: Path, tmp_path: Path):
    (tmp_path / "mine.yaml").write_text("base: child\nlr: 3.0e-4\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "top.yaml").write_text("base: ../mine.yaml\nalgo: {epochs: 1}\n")
    cfg = load_config(TrainCfg, str(tmp_path / "sub" / "top.yaml"), [], presets)
    assert (cfg.lr, cfg.seed, cfg.algo.epochs, cfg.algo.clip_low) == (3e-4, 2, 1, 0.1)


def test_validate_hooks_run_after_overrides():
    with pytest.raises(ConfigError, match=r"algo.clip_low=0.5 must be <= algo.clip_high=0.28"):
        load_config(TrainCfg, None, ["algo.clip_low=0.5"])
    assert load_config(TrainCfg, None, ["algo.clip_low=0.5", "algo.clip_high=0.6"]).algo.clip_low == 0.5
    with pytest.raises(ConfigError, match=r"invalid config: lr=-1.0 must be > 0"):  # ValueError is wrapped
        load_config(TrainCfg, None, ["lr=-1"])


def test_required_fields():
    @dataclass
    class Inner:
        name: str

    with pytest.raises(ConfigError, match="missing required config key 'name'"):
        config_from_dict(Inner, {})
    assert config_from_dict(Inner, {"name": "x"}) == Inner("x")


def test_describe_lists_every_key_with_type_default_and_help():
    text = describe_config(TrainCfg)
    for key in all_keys(TrainCfg):
        assert key in text
    assert "  algo.epochs  (int, default: 2)\n      PPO epochs per update" in text
    assert "  algo.advantage  ({gae, dr_grpo}, default: gae)" in text
    assert "  model.name_or_path  (str | null, default: null)" in text
    assert "model.lora: (optional section, default: null)  LoRA adapters" in text
    assert "  model.lora.targets  (list[str], default: [q_proj, v_proj])" in text
    assert "  algo.betas  (tuple[float, float], default: [0.9, 0.999])" in text


def test_round_trips_exactly(tmp_path: Path):
    cfg = load_config(TrainCfg, None, [
        "model.lora.r=3", "algo.advantage=dr_grpo", "lr=3.3e-7", "algo.betas=[0.5, 0.25]",
        "tags=['1', 'yes']", "reward_weights.x=0.1", "output_dir=out/dir", "model.name_or_path=1.50",
    ])
    d = config_to_dict(cfg)
    assert d["algo"]["advantage"] == "dr_grpo" and d["output_dir"] == "out/dir"
    assert config_from_dict(TrainCfg, d) == cfg
    path = dump_config_yaml(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(TrainCfg, str(path)) == cfg
    assert apply_overrides(cfg, ["seed=5"]) == load_config(TrainCfg, str(path), ["seed=5"])


def test_packaged_presets_dir_is_readable():
    assert isinstance(list_presets(), list)  # importlib.resources path works for the install
