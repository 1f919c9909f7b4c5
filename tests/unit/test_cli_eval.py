"""`rlvlm eval env=ID policy=...`: the CLI path for scripted policies."""

from __future__ import annotations

import json

import pytest

from rlvlm.cli import main
from rlvlm.envs.runner import parse_eval_args
from rlvlm.errors import ConfigError


def test_cli_eval_oracle_writes_report_and_pngs(tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["eval", "env=rlvlm/EZPoints-v0", "policy=oracle", "episodes=30", "seed=3",
               f"output_dir={out}", "env_kwargs.image_size=48"])  # fmt: skip
    assert rc == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("rlvlm/EZPoints-v0 policy=oracle episodes=30 seed=3: success_rate=1.000")
    report = json.loads((out / "report.json").read_text())
    assert report["episodes"] == 30 and report["success_rate"] == 1.0 and len(report["per_episode"]) == 30
    assert report["env_kwargs"] == {"image_size": 48}
    assert len(list((out / "observations").glob("*.png"))) >= 1


def test_cli_eval_random_is_worse_than_oracle(tmp_path):
    reports = {}
    for policy in ("oracle", "random"):
        assert main(["eval", "env=rlvlm/NumberLine-v0", f"policy={policy}", "episodes=100",
                     f"output_dir={tmp_path / policy}", "env_kwargs.image_size=32"]) == 0  # fmt: skip
        reports[policy] = json.loads((tmp_path / policy / "report.json").read_text())
    assert reports["oracle"]["success_rate"] == 1.0
    assert reports["random"]["success_rate"] < 0.6


def test_cli_eval_help_seeking_options(tmp_path, capsys):
    rc = main(["eval", "env=rlvlm/VisualQA-v0", "policy=oracle", "episodes=40",
               "env_kwargs.missing_info=0.5", "env_kwargs.ask_for_help.mode=single_turn", "env_kwargs.task=digits",
               "env_kwargs.image_size=32"])  # fmt: skip
    assert rc == 0
    line = capsys.readouterr().out
    assert "asked_rate=" in line and "info_missing_rate=" in line


def test_eval_args_go_through_the_config_parser():
    cfg = parse_eval_args(["env=rlvlm/NumberLine-v0", "episodes=5", "env_kwargs.image_size=64",
                           "env_kwargs.missing_info.p=0.3", "env_kwargs.missing_info.modes=[blur, crop]",
                           "env_kwargs.prompt_style=action_only"])  # fmt: skip
    assert (cfg.env, cfg.episodes, cfg.policy, cfg.seed) == ("rlvlm/NumberLine-v0", 5, "oracle", 0)
    assert cfg.env_kwargs == {"image_size": 64, "missing_info": {"p": 0.3, "modes": ["blur", "crop"]},
                              "prompt_style": "action_only"}  # fmt: skip


@pytest.mark.parametrize(
    "args, match",
    [
        (["env=rlvlm/NumberLin-v0"], "Did you mean"),
        (["env=rlvlm/NumberLine-v0", "env_kwargs.colour=3"], "colour"),
        (["env=rlvlm/NumberLine-v0", "image_size=3"], "env options go under env_kwargs: env_kwargs.image_size=3"),
        (["env=rlvlm/NumberLine-v0", "env_kwargs.missing_info=0.3", "env_kwargs.missing_info.modes=[blur]"],
         "env_kwargs.missing_info=0.3 is a value"),
        (["env=rlvlm/NumberLine-v0", "episodes=x"], "episodes='x' is not an int"),
        (["env=rlvlm/NumberLine-v0", "episodes=0"], "positive integer"),
        (["env=rlvlm/NumberLine-v0", "policy=orcale"], "did you mean: oracle"),
        (["policy=oracle"], "missing required config key 'env'"),
        (["env=rlvlm/NumberLine-v0", "seed"], "not key=value"),
    ],
)
def test_cli_eval_bad_input_is_one_clear_line(args, match, capsys):
    assert main(["eval", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlvlm: error:") and len(err.splitlines()) == 1
    assert match in err
