"""The gym-cards results harness: its commands are valid, its tables say what the reports say."""

from __future__ import annotations

import json

import pytest

from rlvlm.config import load_config
from rlvlm.envs.runner import parse_eval_args
from experiments import gym_cards as gc
from rlvlm.train.config import TrainConfig


TRAIN = [r for r in gc.RUNS if r.kind == "train"]
BASELINES = [r for r in gc.RUNS if r.kind == "baseline"]


def test_every_row_runs_on_three_seeds():
    assert gc.SEEDS == (0, 1, 2)


@pytest.mark.parametrize("seed", gc.SEEDS)
@pytest.mark.parametrize("run", TRAIN, ids=lambda r: r.key)
def test_every_training_command_is_a_valid_config(run, seed, tmp_path):
    argv = run.seed_argv(tmp_path, seed)
    assert argv[:2] == ["rlvlm", "train"] and f"seed={seed}" in argv
    cfg = load_config(TrainConfig, argv[2], argv[3:])  # validates
    assert cfg.output_dir == str(tmp_path / run.key / f"seed{seed}")
    assert cfg.seed == seed and cfg.eval.episodes >= 500, "table numbers need >= 500 held-out episodes"
    assert cfg.env.id == gc.TASKS[run.task][0]


@pytest.mark.parametrize("seed", gc.SEEDS)
@pytest.mark.parametrize("run", BASELINES, ids=lambda r: r.key)
def test_every_baseline_command_parses_and_uses_the_training_eval_seeds(run, seed, tmp_path):
    argv = run.seed_argv(tmp_path, seed)
    assert argv[-1] == f"output_dir={tmp_path / run.key / f'seed{seed}'}"
    opts = parse_eval_args(argv[2:])
    # = the evaluation seed of the training run on the same seed (rlvlm eval's 1_000_000 + seed)
    assert opts.seed == 1_000_000 + seed and opts.episodes == 500 and opts.env == gc.TASKS[run.task][0]


def test_the_docs_command_writes_the_seed_literally():
    runs_dir = "runs/gym_cards"
    assert gc.RUNS_BY_KEY["numberline-ppo"].seed_command(runs_dir) == \
        "rlvlm train numberline seed=S output_dir=runs/gym_cards/numberline-ppo/seedS"
    assert gc.RUNS_BY_KEY["numberline-random"].seed_command(runs_dir).endswith(
        "episodes=500 seed=1000000+S output_dir=runs/gym_cards/numberline-random/seedS")


def test_run_keys_are_unique_and_every_table_key_is_a_run():
    keys = [r.key for r in gc.RUNS]
    assert len(keys) == len(set(keys))
    for _, key in gc.COT_KEYS + gc.LAMBDA_KEYS:
        assert key in gc.RUNS_BY_KEY
    for _, series in gc.CURVE_SETS.values():
        assert all(key in gc.RUNS_BY_KEY for _, key in series)


def _write_train_run(root, key, seed, sft, final, wall=120.0):
    d = root / key / f"seed{seed}"
    d.mkdir(parents=True)
    report = {"sft": {"success_rate": sft, "episodes": 500},
              "final": {"success_rate": final, "episodes": 500, "invalid_action_rate": 0.01},
              "wall_seconds": wall, "env_steps": 7680}
    (d / "report.json").write_text(json.dumps(report))
    lines = [{"step": i + 1, "rollout/env_steps": 128 * (i + 1), "rollout/success_rate": s, "policy/entropy": 0.2}
             for i, s in enumerate([sft, (sft + final) / 2, final])]
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def _write_seeds(root, key, sfts, finals, walls=(120.0, 120.0, 120.0)):
    for seed, (sft, final, wall) in enumerate(zip(sfts, finals, walls)):
        _write_train_run(root, key, seed, sft, final, wall)


def _rows(table):
    lines = table.splitlines()
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}


@pytest.fixture
def results(tmp_path):
    # numberline-ppo: sft 0.5/0.6/0.7 -> final 1.0/0.9/0.8; final mean 0.9, sample std 0.1, worst 0.8;
    # gain per seed 0.5/0.3/0.1 -> mean 0.3, std sqrt((0.04 + 0 + 0.04) / 2) = 0.2, worst 0.1;
    # spread of the final 1.0 - 0.8 = 0.2 < gain 0.3 -> "no".
    _write_seeds(tmp_path, "numberline-ppo", (0.5, 0.6, 0.7), (1.0, 0.9, 0.8), walls=(180.0, 240.0, 210.0))
    # no CoT: sft 0.5 everywhere -> final 0.3/0.6/0.9; gain 0.1 against a spread of 0.6 -> "yes".
    _write_seeds(tmp_path, "numberline-ppo-nocot", (0.5, 0.5, 0.5), (0.3, 0.6, 0.9))
    # GRPO has 2 of its 3 seeds: final 0.7/0.5 -> mean 0.6, worst 0.5.
    _write_seeds(tmp_path, "numberline-grpo", (0.4, 0.4), (0.7, 0.5))
    for seed, rate in enumerate((0.26, 0.25, 0.27)):
        d = tmp_path / "numberline-random" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "report.json").write_text(json.dumps({"success_rate": rate, "episodes": 500}))
    return gc.collect(tmp_path)


def test_collect_aggregates_over_seeds(results):
    ppo = results["numberline-ppo"]
    assert (ppo["final"]["n"], ppo["final"]["missing"]) == (3, 0)
    assert ppo["final"]["mean"] == pytest.approx(0.9) and ppo["final"]["std"] == pytest.approx(0.1)
    assert (ppo["final"]["min"], ppo["final"]["max"]) == (0.8, 1.0)
    assert ppo["sft"]["mean"] == pytest.approx(0.6)
    assert ppo["gain"]["mean"] == pytest.approx(0.3) and ppo["gain"]["std"] == pytest.approx(0.2)
    assert ppo["gain"]["min"] == pytest.approx(0.1) and ppo["gain"]["max"] == pytest.approx(0.5)
    assert ppo["spread_exceeds_gain"] is False
    assert results["numberline-ppo-nocot"]["spread_exceeds_gain"] is True
    grpo = results["numberline-grpo"]["final"]
    assert (grpo["n"], grpo["missing"]) == (2, 1) and grpo["mean"] == pytest.approx(0.6) and grpo["min"] == 0.5
    rnd = results["numberline-random"]
    assert rnd["final"]["mean"] == pytest.approx(0.26) and "gain" not in rnd
    never = results["points24-ppo"]["final"]
    assert (never["n"], never["missing"], never["mean"]) == (0, 3, None)


def test_main_table_shows_mean_and_worst_seed(results):
    rows = _rows(gc.main_table(results))
    assert rows["Random policy"] == ["26.0 (25.0)", "–", "–", "–"]
    assert rows["SFT only (warm-start of the PPO run)"][0] == "60.0 (50.0)"
    assert rows["**rlvlm PPO** (SFT + PPO)"] == ["90.0 (80.0)", "–", "–", "–"]
    assert rows["rlvlm GRPO (SFT + GRPO)"][0] == "60.0 (50.0)"  # the two seeds it has
    assert rows["Target (issue 5)"] == ["95.0", "90.0", "30.0", "41.0"]
    assert rows["RL4VLM, LLaVA-7B (published)"] == ["89.4", "50.0", "2.3", "40.2"]


def test_ablation_table_gives_mean_std_worst_and_the_spread_flag(results):
    rows = _rows(gc.ablation_table(results, gc.COT_KEYS))
    assert rows["NumberLine, CoT (preset)"] == ["60.0 ± 10.0 (worst 50.0)", "90.0 ± 10.0 (worst 80.0)",
                                                "30.0 ± 20.0 (worst 10.0)", "no"]
    # final 0.3/0.6/0.9: std 0.3; gain 0.1 ± 0.3 (worst -0.2); spread 0.6 > gain 0.1
    assert rows["NumberLine, no CoT"] == ["50.0 ± 0.0 (worst 50.0)", "60.0 ± 30.0 (worst 30.0)",
                                          "10.0 ± 30.0 (worst -20.0)", "yes"]
    lam = _rows(gc.ablation_table(results, gc.LAMBDA_KEYS))
    assert lam["λ = 0.1"] == ["–", "–", "–", "–"]


def test_commands_table_per_seed_figures_and_not_run_rows(results):
    rows = _rows(gc.commands_table(results, "runs/gym_cards"))
    prefix = "`XDG_CACHE_HOME=$(mktemp -d) rlvlm train"
    assert rows["numberline-ppo"] == [
        f"{prefix} numberline seed=S output_dir=runs/gym_cards/numberline-ppo/seedS`",
        "0.500 → **1.000**", "0.600 → **0.900**", "0.700 → **0.800**",
        "0.900 ± 0.100 (worst 0.800)", "0.300 ± 0.200 (worst 0.100)", "3.0–4.0 min", "no"]
    assert rows["numberline-ppo-nocot"][-1] == "yes"
    assert rows["numberline-grpo"][1:4] == ["0.400 → **0.700**", "0.400 → **0.500**", "–"]
    assert rows["numberline-grpo"][4] == "0.600 ± 0.141 (worst 0.500)"  # n = 2: sqrt(0.02 / 1)
    assert rows["numberline-random"][1:] == ["**0.260**", "**0.250**", "**0.270**",
                                             "0.260 ± 0.010 (worst 0.250)", "", "–", ""]
    assert rows["points24-ppo"][1:] == ["–", "–", "–", "–", "–", "–", "–"]


def test_the_harness_wall_time_wins_over_the_reports(results, tmp_path):
    # process_seconds.txt (the whole process from an empty cache) is what the harness measured
    for seed, secs in enumerate((300.0, 360.0, 330.0)):
        (tmp_path / "numberline-ppo" / f"seed{seed}" / "process_seconds.txt").write_text(f"{secs}\n")
    rows = _rows(gc.commands_table(gc.collect(tmp_path), "runs/gym_cards"))
    assert rows["numberline-ppo"][6] == "5.0–6.0 min"


def test_plot_set_draws_a_comparison_only_when_every_series_has_run(results, tmp_path):
    png = gc.plot_set(tmp_path, tmp_path / "fig" / "nl.png", "NumberLine",
                      [("PPO", "numberline-ppo"), ("GRPO", "numberline-grpo")], results)
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # λ 0.1 has no runs: a comparison with it is not drawn (half a comparison reads as a result)
    assert gc.plot_set(tmp_path, tmp_path / "part.png", "x", [("PPO", "numberline-ppo"),
                                                              ("λ", "numberline-ppo-lambda0.1")], results) is None
    assert gc.plot_set(tmp_path, tmp_path / "none.png", "x", [("λ", "numberline-ppo-lambda0.1")], results) is None
    assert not (tmp_path / "part.png").exists()


def test_run_seeds_skips_done_seeds_and_reports_failures(tmp_path, monkeypatch):
    _write_train_run(tmp_path, "numberline-ppo", 0, 0.5, 1.0)
    calls = []

    def fake_run_one(argv, out_dir, log=print):
        calls.append(argv)
        out_dir.mkdir(parents=True, exist_ok=True)
        if "seed=1" in argv:  # seed 1 succeeds, seed 2 fails
            (out_dir / "report.json").write_text("{}")
        return 42.0

    monkeypatch.setattr(gc, "run_one", fake_run_one)
    failed = gc.run_seeds([gc.RUNS_BY_KEY["numberline-ppo"]], gc.SEEDS, tmp_path, progress=lambda _: None)
    assert [a[a.index("rlvlm.cli") + 1:] for a in calls] == [
        ["train", "numberline", f"seed={s}", f"output_dir={tmp_path / 'numberline-ppo' / f'seed{s}'}"] for s in (1, 2)]
    assert failed == [f"XDG_CACHE_HOME=$(mktemp -d) rlvlm train numberline seed=2 "
                      f"output_dir={tmp_path / 'numberline-ppo' / 'seed2'}"]
    assert (tmp_path / "numberline-ppo" / "seed1" / "process_seconds.txt").read_text() == "42.0\n"


def test_replace_blocks_keeps_the_prose_around_them():
    text = "intro\n<!-- gym-cards:main -->\nold\n<!-- /gym-cards:main -->\nanalysis\n"
    out = gc.replace_blocks(text, {"main": "| new |"})
    assert out == "intro\n<!-- gym-cards:main -->\n| new |\n<!-- /gym-cards:main -->\nanalysis\n"
    assert gc.replace_blocks(out, {"main": "| new |"}) == out  # idempotent
    with pytest.raises(ValueError, match="docs block 'lambda' is missing"):
        gc.replace_blocks(text, {"lambda": "x"})


def test_cli_dry_run_and_unknown_key(capsys):
    assert gc.main(["--dry-run", "--only", "numberline-ppo", "ezpoints-random", "--seeds", "0", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4
    assert out[0].split() == ["numberline-ppo", "seed", "0", "XDG_CACHE_HOME=$(mktemp", "-d)", "rlvlm", "train",
                              "numberline", "seed=0", "output_dir=runs/gym_cards/numberline-ppo/seed0"]
    assert out[1].split()[:3] == ["numberline-ppo", "seed", "2"] and out[1].endswith("numberline-ppo/seed2")
    assert out[3].startswith("ezpoints-random") and "policy=random episodes=500 seed=1000002" in out[3]
    assert gc.main(["--dry-run", "--only", "numberline-ppo"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # every seed by default
    with pytest.raises(SystemExit):
        gc.main(["--only", "numberline-sac"])
    assert "unknown run 'numberline-sac'" in capsys.readouterr().err


def test_docs_results_has_every_block():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    for name in ("main", "commands", "cot", "lambda"):
        assert f"<!-- gym-cards:{name} -->" in text and f"<!-- /gym-cards:{name} -->" in text
