"""The reward-experiments harness: valid commands, and tables that say what the reports say."""

from __future__ import annotations

import json

import pytest

from rlvlm.config import load_config
from experiments import reward_experiments as rx
from rlvlm.train.config import TrainConfig

RUNS = rx.runs("runs/rewards")


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.key)
def test_every_command_is_a_valid_config(run, tmp_path):
    argv = run.argv(tmp_path)
    assert argv[:2] == ["rlvlm", "train"]
    cfg = load_config(TrainConfig, argv[2], argv[3:])
    assert cfg.eval.episodes >= 500 and cfg.eval.env_kwargs["split"] == "test"
    assert cfg.env.id == "rlvlm/VisualQA-v0"
    if run.task == "help":
        assert cfg.reward.weights == {"help_ternary": 1.0} and cfg.env.kwargs["ask_for_help"]
        if run.key == "help-multi-from-single":
            assert cfg.model.name_or_path == rx.help_policy("runs/rewards") and cfg.sft.episodes == 0
    elif run.key == "far-sft":
        assert cfg.updates == 0 and cfg.sft.episodes > 0
    else:  # every sweep run starts from the one shared warm-start
        assert cfg.sft.episodes == 0 and cfg.model.name_or_path == rx.sft_policy("runs/rewards")
        assert cfg.reward.weights["accuracy"] == 1.0


def test_keys_unique_and_the_sweep_is_what_the_doc_says():
    keys = [r.key for r in RUNS]
    assert len(keys) == len(set(keys))
    for stabilised in (True, False):
        assert len(rx.stability_keys(stabilised)) == 3 and set(rx.stability_keys(stabilised)) <= set(keys)
    by_key = {r.key: r for r in RUNS}
    assert "reward.weights.tokens=0" in by_key["far-acc"].args  # accuracy only
    assert len(rx.ALPHAS) >= 3 and all(f"far-tok{a:g}" in by_key for a in rx.ALPHAS)
    plain = by_key["far-plain-s1"].args
    assert "algo.reward_norm=false" in plain and "algo.entropy_coef=0" in plain and "seed=1" in plain


def _ev(success, tokens=20.0, seconds=0.1, **help_):
    return {"success_rate": success, "episodes": 500, "mean_completion_tokens": tokens, "mean_reply_seconds": seconds,
            **{f"help/{k}": v for k, v in help_.items()}}


def _write(root, key, sft, final, metrics=()):
    d = root / key
    d.mkdir(parents=True)
    (d / "report.json").write_text(json.dumps({"sft": sft, "final": final, "wall_seconds": 90.0}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))


def test_help_tables(tmp_path):
    sft = _ev(0.5, ask_recall=0.0, ask_precision=0.0, ask_f1=0.0, false_ask_rate=0.0, accuracy_clear=0.7,
              phi_1=0.2, phi_10=-4.0, coverage=1.0, per_mode={"blank": {"episodes": 30, "ask_recall": 0.0, "accuracy": 0.1}})
    fin = _ev(0.6, ask_recall=0.96, ask_precision=0.98, ask_f1=0.97, false_ask_rate=0.01, accuracy_clear=0.71,
              phi_1=0.6, phi_10=0.3, coverage=0.69, per_mode={"blank": {"episodes": 30, "ask_recall": 1.0, "accuracy": 0.0}})
    _write(tmp_path, "help-single", sft, fin,
           [{"update": 1, "rollout/ask_recall": 0.1, "rollout/false_ask_rate": 0.1},
            {"update": 2, "rollout/ask_recall": 0.9, "rollout/false_ask_rate": 0.02}])
    results = rx.collect(tmp_path)
    table = rx.help_table(results)
    assert "| single-turn (ask = abstain) | SFT (guessing baseline) | 0.000 | 0.000 | 0.000 | 0.000 | 0.700 |" in table
    assert "| **SFT + GRPO** | 0.960 | 0.980 | 0.970 | 0.010 | 0.710 | 0.600 | 0.300 | 0.690 |" in table
    assert "| multi-turn (ask, then answer) | not run yet |" in table
    assert rx.help_modes_table(results).splitlines()[-1] == "| blank | 0.00 → 1.00 (30) |"
    assert rx.plot_help(results, tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_far_table_pareto_and_spread(tmp_path):
    _write(tmp_path, "far-sft", _ev(0.7), _ev(0.7, tokens=20.0))
    _write(tmp_path, "far-acc", _ev(0.7), _ev(0.8, tokens=21.0))
    _write(tmp_path, "far-tok0.02", _ev(0.7), _ev(0.79, tokens=12.0),
           [{"update": u, "rollout/success_rate": s} for u, s in ((1, 0.5), (2, 0.7))])
    _write(tmp_path, "far-tok0.02-s1", _ev(0.7), _ev(0.75, tokens=13.0),
           [{"update": u, "rollout/success_rate": s} for u, s in ((1, 0.7), (2, 0.7))])
    results = rx.collect(tmp_path)
    table = rx.far_table(results)
    assert "| SFT only (verbose warm-start) | 0.700 | 20.0 | 0.100 |  |" in table
    assert "| RL, accuracy − 0.02·tokens | 0.790 | 12.0 | 0.100 | -40% |" in table  # 12 / 20 - 1
    assert "| RL, accuracy only (α = 0) | 0.800 | 21.0 | 0.100 | +5% |" in table
    # (20, .7) is beaten by (12, .79); (21, .8) and (12, .79) trade off
    assert rx.pareto_front([(20, 0.7), (21, 0.8), (12, 0.79)]) == [(12, 0.79), (21, 0.8)]
    # per-update sd across the two seeds: update 1 sd of (.5, .7) = .1414, update 2: 0
    assert rx.curve_spread(results, ["far-tok0.02", "far-tok0.02-s1"]) == pytest.approx(0.1414 / 2, abs=1e-4)
    assert "| reward scaling + entropy bonus (preset) | 2 | 0.770 ± 0.028 | 12.500 ± 0.707 | 0.071 |" in rx.stability_table(results)
    assert "| neither | not run yet |" in rx.stability_table(results)
    assert rx.plot_pareto(results, tmp_path / "p.png").is_file()
    assert rx.plot_stability(results, tmp_path / "s.png").is_file()


def test_doc_blocks_are_rewritten_in_place(tmp_path):
    doc = tmp_path / "results.md"
    names = rx.render_blocks({}, "runs/rewards")
    doc.write_text("intro\n" + "".join(f"<!-- rewards:{n} -->\nold\n<!-- /rewards:{n} -->\nprose {n}\n" for n in names))
    rx.write_results(tmp_path / "none", doc, tmp_path / "fig")
    text = doc.read_text()
    assert "old" not in text and "prose help" in text and "not run yet" in text


def test_cli_dry_run_and_unknown_key(capsys):
    assert rx.main(["--dry-run", "--only", "far-acc"]) == 0
    assert "reward.weights.tokens=0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        rx.main(["--only", "far-nope"])
    assert "unknown run 'far-nope'" in capsys.readouterr().err
