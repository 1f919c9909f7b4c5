"""The gym-cards results harness: its commands are valid, its tables say what the reports say."""

from __future__ import annotations

import json

import pytest

from rlvlm.config import load_config
from rlvlm.envs.runner import parse_eval_overrides
from experiments import gym_cards as gc
from rlvlm.train.config import TrainConfig


@pytest.mark.parametrize("run", [r for r in gc.RUNS if r.kind == "train"], ids=lambda r: r.key)
def test_every_training_command_is_a_valid_config(run, tmp_path):
    argv = run.argv(tmp_path)
    assert argv[:2] == ["rlvlm", "train"]
    cfg = load_config(TrainConfig, argv[2], argv[3:])  # validates
    assert cfg.output_dir == str(tmp_path / run.key)
    assert cfg.seed == 0 and cfg.eval.episodes >= 500, "table numbers need >= 500 held-out episodes on the shared seeds"
    assert cfg.env.id == gc.TASKS[run.task][0]


@pytest.mark.parametrize("run", [r for r in gc.RUNS if r.kind == "baseline"], ids=lambda r: r.key)
def test_every_baseline_command_parses_and_uses_the_training_eval_seeds(run, tmp_path):
    argv = run.argv(tmp_path)
    opts = parse_eval_overrides(argv[2:])
    assert opts["seed"] == 1_000_000 and opts["episodes"] == 500 and opts["env"] == gc.TASKS[run.task][0]


def test_run_keys_are_unique_and_every_table_key_is_a_run():
    keys = [r.key for r in gc.RUNS]
    assert len(keys) == len(set(keys))
    for _, key in gc.COT_KEYS + gc.LAMBDA_KEYS:
        assert key in gc.RUNS_BY_KEY
    for _, series in gc.CURVE_SETS.values():
        assert all(key in gc.RUNS_BY_KEY for _, key in series)


def _write_train_run(root, key, sft, final, wall=120.0):
    d = root / key
    d.mkdir(parents=True)
    report = {"sft": {"success_rate": sft, "episodes": 500},
              "final": {"success_rate": final, "episodes": 500, "invalid_action_rate": 0.01},
              "wall_seconds": wall, "env_steps": 7680}
    (d / "report.json").write_text(json.dumps(report))
    lines = [{"step": i + 1, "rollout/env_steps": 128 * (i + 1), "rollout/success_rate": s, "policy/entropy": 0.2}
             for i, s in enumerate([sft, (sft + final) / 2, final])]
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_tables_read_the_reports(tmp_path):
    _write_train_run(tmp_path, "numberline-ppo", 0.465, 1.0, wall=199.0)
    _write_train_run(tmp_path, "numberline-ppo-nocot", 0.5, 0.75)
    d = tmp_path / "numberline-random"
    d.mkdir()
    (d / "report.json").write_text(json.dumps({"success_rate": 0.262, "episodes": 500}))
    results = gc.collect(tmp_path)
    assert set(results) == {"numberline-ppo", "numberline-ppo-nocot", "numberline-random"}
    assert results["numberline-ppo"]["last_entropy"] == 0.2

    table = gc.main_table(results).splitlines()
    by_name = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table[2:]}
    assert by_name["Random policy"] == ["26.2", "–", "–", "–"]
    assert by_name["SFT only (warm-start of the PPO run)"][0] == "46.5"
    assert by_name["**rlvlm PPO** (SFT + PPO)"][0] == "100.0"
    assert by_name["RL4VLM, LLaVA-7B (published)"] == ["89.4", "50.0", "2.3", "40.2"]

    cot = gc.ablation_table(results, gc.COT_KEYS)
    assert "| NumberLine, CoT (preset) | 46.5 | 100.0 | +53.5 |" in cot
    assert "| NumberLine, no CoT | 50.0 | 75.0 | +25.0 |" in cot

    cmds = gc.commands_table(results, "runs/gym_cards")
    assert "`rlvlm train numberline output_dir=runs/gym_cards/numberline-ppo` | 1.000 | 0.465 | 500 | 3.3 min" in cmds
    assert "| points24-ppo | `rlvlm train points24 output_dir=runs/gym_cards/points24-ppo` | not run yet |" in cmds


def test_plot_set_draws_available_runs_and_skips_missing(tmp_path):
    _write_train_run(tmp_path, "numberline-ppo", 0.465, 1.0)
    results = gc.collect(tmp_path)
    png = gc.plot_set(tmp_path, tmp_path / "fig" / "nl.png", "NumberLine",
                      [("PPO", "numberline-ppo"), ("GRPO", "numberline-grpo")], results)
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert gc.plot_set(tmp_path, tmp_path / "none.png", "x", [("GRPO", "numberline-grpo")], results) is None


def test_replace_blocks_keeps_the_prose_around_them():
    text = "intro\n<!-- gym-cards:main -->\nold\n<!-- /gym-cards:main -->\nanalysis\n"
    out = gc.replace_blocks(text, {"main": "| new |"})
    assert out == "intro\n<!-- gym-cards:main -->\n| new |\n<!-- /gym-cards:main -->\nanalysis\n"
    assert gc.replace_blocks(out, {"main": "| new |"}) == out  # idempotent
    with pytest.raises(ValueError, match="docs block 'lambda' is missing"):
        gc.replace_blocks(text, {"lambda": "x"})


def test_cli_dry_run_and_unknown_key(capsys):
    assert gc.main(["--dry-run", "--only", "numberline-ppo", "ezpoints-random"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["numberline-ppo", "rlvlm", "train", "numberline", "output_dir=runs/gym_cards/numberline-ppo"]
    assert out[1].startswith("ezpoints-random") and "policy=random episodes=500 seed=1000000" in out[1]
    with pytest.raises(SystemExit):
        gc.main(["--only", "numberline-sac"])
    assert "unknown run 'numberline-sac'" in capsys.readouterr().err


def test_docs_results_has_every_block():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    for name in ("main", "commands", "cot", "lambda"):
        assert f"<!-- gym-cards:{name} -->" in text and f"<!-- /gym-cards:{name} -->" in text
