"""The reward-experiments harness: valid per-seed commands, and tables that aggregate the seeds' reports
as worked out by hand below (mean, sample std, worst seed by the column's direction, spread > gain)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlvlm.config import load_config
from experiments import gym_cards as gc
from experiments import reward_experiments as rx
from experiments import reward_tables as rt
from rlvlm.train.config import TrainConfig

RUNS = rx.runs("runs/rewards")
BY_KEY = {r.key: r for r in RUNS}


def test_every_row_runs_on_three_seeds():
    assert rx.SEEDS == gc.SEEDS == (0, 1, 2)


@pytest.mark.parametrize("seed", rx.SEEDS)
@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.key)
def test_every_command_is_a_valid_config(run, seed, tmp_path):
    argv = run.seed_argv(tmp_path, seed)
    assert argv[:2] == ["rlvlm", "train"]
    cfg = load_config(TrainConfig, argv[2], argv[3:])
    assert cfg.seed == seed and cfg.output_dir == str(tmp_path / run.key / f"seed{seed}")
    assert cfg.eval.episodes >= 500 and cfg.eval.env_kwargs["split"] == "test"
    assert cfg.env.id == "rlvlm/VisualQA-v0"
    if isinstance(run, rx.FromRun):  # it continues from the same seed of its start run
        assert cfg.model.name_or_path == str(tmp_path / run.start / f"seed{seed}" / run.policy)
        assert cfg.sft.episodes == 0
    if run.task == "help":
        assert cfg.reward.weights == {"help_ternary": 1.0} and cfg.env.kwargs["ask_for_help"]
        if run.key == "help-multi-from-single":
            updates = load_config(TrainConfig, "help-seeking").updates
            assert run.start == "help-single" and run.policy == f"checkpoints/step-{updates}/policy"
    elif run.key == "far-sft":
        assert cfg.updates == 0 and cfg.sft.episodes > 0
    else:  # every sweep run starts from the warm-start of its own seed
        assert run.start == "far-sft" and run.policy == "checkpoints/step-0/policy"
        assert cfg.reward.weights["accuracy"] == 1.0


def test_the_docs_command_writes_the_seed_literally_and_single_seed_form_is_refused():
    assert BY_KEY["far-acc"].seed_command("runs/rewards") == (
        "rlvlm train fast-and-right model.name_or_path=runs/rewards/far-sft/seedS/checkpoints/step-0/policy "
        "sft.episodes=0 reward.weights.tokens=0 seed=S output_dir=runs/rewards/far-acc/seedS")
    assert BY_KEY["far-sft"].seed_command("runs/rewards") == \
        "rlvlm train fast-and-right updates=0 seed=S output_dir=runs/rewards/far-sft/seedS"
    with pytest.raises(TypeError, match="per-seed policy of far-sft"):
        BY_KEY["far-acc"].command("runs/rewards")


def test_keys_unique_and_every_table_row_is_a_run():
    keys = [r.key for r in RUNS]
    assert len(keys) == len(set(keys))
    for key in [k for k, *_ in rx.HELP_ROWS] + [k for k, _ in rx.FAR_ROWS + rx.STABILITY_ROWS]:
        assert key in BY_KEY
    assert "reward.weights.tokens=0" in BY_KEY["far-acc"].args  # accuracy only
    assert len(rx.ALPHAS) >= 3 and all(f"far-tok{a:g}" in BY_KEY for a in rx.ALPHAS)
    plain = BY_KEY["far-plain"].args
    assert plain == ("train", "fast-and-right", "sft.episodes=0", "algo.entropy_coef=0")  # the preset minus its entropy bonus
    assert not any("seed=" in a for r in RUNS for a in r.args)  # the seed comes from the harness alone


def test_starts_run_first_and_in_order():
    starts, ordered = rx.with_starts([BY_KEY["far-acc"], BY_KEY["help-multi-from-single"]], RUNS)
    assert [r.key for r in starts] == ["far-sft", "help-single"]
    assert [r.key for r in ordered] == ["help-multi-from-single", "far-acc"]
    starts, ordered = rx.with_starts([BY_KEY["far-acc"], BY_KEY["far-sft"]], RUNS)
    assert starts == [] and [r.key for r in ordered] == ["far-sft", "far-acc"]


# ----------------------------------------------------------- fake reports
def _ev(success, tokens=20.0, seconds=0.1, **help_):
    ev = {"success_rate": success, "episodes": 500, "mean_completion_tokens": tokens,
          **{f"help/{k}": v for k, v in help_.items()}}
    if seconds is not None:
        ev["mean_reply_seconds"] = seconds
    return ev


def _write(root, key, seed, sft, final, metrics=()):
    d = root / key / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "report.json").write_text(json.dumps({"sft": sft, "final": final, "wall_seconds": 90.0}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))


def _help(f1, false_asks=0.0, coverage=1.0, blank=(0.0, 30)):
    return dict(ask_recall=f1, ask_precision=f1, ask_f1=f1, false_ask_rate=false_asks, accuracy_clear=0.8,
                phi_1=0.5, phi_10=-1.0, coverage=coverage,
                per_mode={"blank": {"ask_recall": blank[0], "episodes": blank[1], "accuracy": 0.1}})


def _rows(table):
    """{first cell (or first two joined by ' / ' when the first repeats): the other cells}."""
    lines = table.splitlines()[2:]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    firsts = [c[0] for c in cells]
    return {(c[0] if firsts.count(c[0]) == 1 else f"{c[0]} / {c[1]}"): c[1 if firsts.count(c[0]) == 1 else 2:]
            for c in cells}


@pytest.fixture
def root(tmp_path):
    # help-single, 3 seeds: ask F1 0 -> 0.9/0.8/1.0 (mean 0.9, std 0.1, worst = min 0.8; spread 0.2 < gain 0.9);
    # false asks (lower is better) 0.01/0.03/0.02: mean 0.02, std 0.01, worst = MAX 0.03;
    # coverage (neither) 0.7/0.6/0.8: range 0.6-0.8; blank-mode ask rate 1.0/1.0/0.7 over 30+35+40 episodes:
    # mean 0.9, std sqrt((0.01 + 0.01 + 0.04) / 2) = 0.173, worst 0.7.
    for seed, (f1, fa, cov, blank) in enumerate([(0.9, 0.01, 0.7, (1.0, 30)), (0.8, 0.03, 0.6, (1.0, 35)),
                                                 (1.0, 0.02, 0.8, (0.7, 40))]):
        _write(tmp_path, "help-single", seed, _ev(0.5, **_help(0.0, blank=(0.0, blank[1]))),
               _ev(0.6, **_help(f1, fa, cov, blank)),
               [{"update": u, "rollout/ask_recall": r, "rollout/false_ask_rate": 0.1} for u, r in ((1, 0.1), (2, f1))])
    # help-multi, seeds 0 and 2 only: ask F1 0 -> 0.1/0.5: mean 0.3, std sqrt(0.08) = 0.283, worst 0.1;
    # spread 0.4 > gain 0.3.
    for seed, f1 in ((0, 0.1), (2, 0.5)):
        _write(tmp_path, "help-multi", seed, _ev(0.4, **_help(0.0)), _ev(0.4, **_help(f1)))
    # far-sft: the warm-start, accuracy 0.70/0.74/0.72 (mean 0.72, std 0.02), 23 tokens on every seed.
    sft = [_ev(a, tokens=23.0, seconds=0.15) for a in (0.70, 0.74, 0.72)]
    for seed in rx.SEEDS:
        _write(tmp_path, "far-sft", seed, sft[seed], sft[seed])
    # far-tok0.02: accuracy 0.76/0.83/0.72: mean 0.77, std sqrt((1 + 36 + 25) e-4 / 2) = 0.0557, worst 0.72;
    # gain 0.05 < spread 0.11 -> yes. Tokens (lower is better) 15/17/16: mean 16, std 1, worst = MAX 17;
    # saving 23 - 16 = 7 > spread 2 -> no (read as higher-is-better it would be a "gain" of -7: yes).
    # Tokens vs SFT: -34.8/-26.1/-30.4 %: mean -30.4, std 100/23 = 4.3, worst = MAX -26.1.
    # Seconds 0.10/0.12/0.11: mean 0.11, std 0.01, worst = MAX 0.12.
    # Rollout accuracy 0.5/0.7/0.6 then 0.7 on all: sds 0.1 and 0 -> curve spread 0.05.
    for seed, (acc, tok, sec, r1) in enumerate([(0.76, 15.0, 0.10, 0.5), (0.83, 17.0, 0.12, 0.7),
                                                (0.72, 16.0, 0.11, 0.6)]):
        _write(tmp_path, "far-tok0.02", seed, sft[seed], _ev(acc, tokens=tok, seconds=sec),
               [{"update": 1, "rollout/success_rate": r1}, {"update": 2, "rollout/success_rate": 0.7}])
    # far-plain, seeds 0 and 1: accuracy 0.80/0.78 (mean 0.79, std 0.014; gain over 0.72 = 0.07 > spread 0.02:
    # no), tokens 23/21 (mean 22, std 1.41, worst 23; saving 1 < spread 2: yes); curves 0.5/0.7 then 0.6:
    # sds 0.1414 and 0 -> 0.071. Seed 1's report has no seconds: that cell is over n=1.
    for seed, (acc, tok, sec, r1) in enumerate([(0.80, 23.0, 0.13, 0.5), (0.78, 21.0, None, 0.7)]):
        _write(tmp_path, "far-plain", seed, sft[seed], _ev(acc, tokens=tok, seconds=sec),
               [{"update": 1, "rollout/success_rate": r1}, {"update": 2, "rollout/success_rate": 0.6}])
    return tmp_path


@pytest.fixture
def results(root):
    return rx.collect(root)


def test_collect_keeps_seeds_apart_and_leaves_missing_ones_out(results):
    assert sorted(results["help-single"]) == [0, 1, 2] and sorted(results["help-multi"]) == [0, 2]
    assert results["help-single-noask"] == {}
    assert results["help-single"][1]["final"]["help/ask_f1"] == 0.8
    assert [m["update"] for m in results["help-single"][2]["metrics"]] == [1, 2]


def test_cells_take_the_worst_seed_by_the_columns_direction():
    agg = {"n": 3, "missing": 0, "mean": 0.02, "std": 0.01, "min": 0.01, "max": 0.03}
    assert rt.cell(agg, "higher") == "0.020 ± 0.010 (worst 0.010)"
    assert rt.cell(agg, "lower") == "0.020 ± 0.010 (worst 0.030)"
    assert rt.cell(agg, "neither") == "0.020 ± 0.010 (range 0.010–0.030)"
    assert rt.cell(agg, "lower", n=4) == "0.020 ± 0.010 (worst 0.030) [n=3]"
    assert rt.cell({"n": 0}, "higher") == "–"
    assert {m: b for _, m, b in rt.HELP_COLUMNS} == {
        "ask_recall": "higher", "ask_precision": "higher", "ask_f1": "higher", "false_ask_rate": "lower",
        "accuracy_clear": "higher", "phi_1": "higher", "phi_10": "higher", "coverage": "neither"}
    assert [c[2] for c in rt.FAR_COLUMNS] == ["higher", "lower", "lower", "lower"]
    # lower is better: a mean drop of 7 against a spread of 2 is a real saving
    before = {"n": 3, "mean": 23.0, "min": 23.0, "max": 23.0}
    after = {"n": 3, "mean": 16.0, "min": 15.0, "max": 17.0}
    assert rt.flag(before, after, "lower") == "no" and rt.flag(before, after, "higher") == "yes"
    assert rt.flag(before, {"n": 0}, "lower") == "–"


def test_help_table(results):
    rows = _rows(rt.help_table(results, rx.HELP_ROWS, rx.SEEDS))
    single = rows["single-turn (ask = abstain) / **SFT + GRPO**"]
    assert single[0] == "3/3"
    assert single[3] == "0.900 ± 0.100 (worst 0.800)"  # ask F1
    assert single[4] == "0.020 ± 0.010 (worst 0.030)"  # false asks: worst is the highest
    assert single[8] == "0.700 ± 0.100 (range 0.600–0.800)"  # coverage
    assert single[9] == "no"
    assert rows["single-turn (ask = abstain) / SFT (guessing baseline)"][3] == "0.000 ± 0.000 (worst 0.000)"
    assert rows["single-turn (ask = abstain) / SFT (guessing baseline)"][9] == ""
    multi = rows["multi-turn (ask, then answer) / **SFT + GRPO**"]
    assert multi[0] == "2/3" and multi[3] == "0.300 ± 0.283 (worst 0.100)" and multi[9] == "yes"
    never = rows["single-turn, warm-start never saw an ask / **SFT + GRPO**"]
    assert never == ["0/3"] + ["–"] * 9


def test_help_modes_table(results):
    rows = _rows(rt.help_modes_table(results, [k for k, *_ in rx.HELP_ROWS], rx.SEEDS))
    assert rows["help-single"] == ["blank", "3/3", "0.00 ± 0.00 (worst 0.00)", "0.90 ± 0.17 (worst 0.70)", "105", "no"]
    assert rows["help-single-noask"] == ["blank", "0/3", "–", "–", "–", "–"]


def test_far_table(results):
    rows = _rows(rt.far_table(results, rx.FAR_ROWS, rx.SEEDS, rx.FAR_BASELINE))
    assert rows["SFT only (verbose warm-start)"] == [
        "3/3", "0.720 ± 0.020 (worst 0.700)", "23.0 ± 0.0 (worst 23.0)", "0.150 ± 0.000 (worst 0.150)", "", "", ""]
    assert rows["RL, accuracy − 0.02·tokens"] == [
        "3/3", "0.770 ± 0.056 (worst 0.720)", "16.0 ± 1.0 (worst 17.0)", "0.110 ± 0.010 (worst 0.120)",
        "-30 ± 4 (worst -26)", "yes", "no"]
    assert rows["RL, accuracy only (α = 0)"] == ["0/3"] + ["–"] * 6


def test_stability_table(results):
    rows = _rows(rt.stability_table(results, rx.STABILITY_ROWS, rx.SEEDS))
    assert rows["entropy bonus (preset)"] == [
        "3/3", "0.770 ± 0.056 (worst 0.720)", "16.0 ± 1.0 (worst 17.0)", "0.050", "yes", "no"]
    assert rows["no entropy bonus"] == ["2/3", "0.790 ± 0.014 (worst 0.780)", "22.0 ± 1.4 (worst 23.0)", "0.071", "no", "yes"]
    # a figure one present report lacks is aggregated over the others and says so
    plain = rt.cell(rt.over_seeds(results, "far-plain", rx.SEEDS, rt.at("final", "mean_reply_seconds")), "lower", n=2)
    assert plain == "0.130 ± 0.000 (worst 0.130) [n=1]"


def test_commands_table_gives_each_seed_and_the_template(results, root):
    summaries = gc.collect(root, RUNS, rx.SEEDS)
    rows = _rows(rx.render_blocks(results, summaries, "runs/rewards")["commands"])
    assert rows["far-tok0.02"] == [
        "`XDG_CACHE_HOME=$(mktemp -d) rlvlm train fast-and-right "
        "model.name_or_path=runs/rewards/far-sft/seedS/checkpoints/step-0/policy sft.episodes=0 "
        "reward.weights.tokens=-0.02 seed=S output_dir=runs/rewards/far-tok0.02/seedS`",
        "0.700 → **0.760**", "0.740 → **0.830**", "0.720 → **0.720**",
        "0.770 ± 0.056 (worst 0.720)", "0.050 ± 0.046 (worst 0.000)", "1.5–1.5 min", "yes"]
    assert rows["help-single-noask"][1:] == ["–"] * 7


def test_pareto_front_and_plots(results, tmp_path):
    # (20, .7) is beaten by (12, .79); (21, .8) and (12, .79) trade off
    assert rx.pareto_front([(20, 0.7), (21, 0.8), (12, 0.79)]) == [(12, 0.79), (21, 0.8)]
    for plot, name in ((rx.plot_help, "h"), (rx.plot_pareto, "p"), (rx.plot_stability, "s")):
        assert plot(results, tmp_path / "fig" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert rx.plot_help({}, tmp_path / "none.png") is None and rx.plot_pareto({}, tmp_path / "none.png") is None


def _doc(path: Path) -> Path:
    names = ("help", "help-modes", "far", "stability", "commands")
    path.write_text("intro\n" + "".join(f"<!-- rewards:{n} -->\nold\n<!-- /rewards:{n} -->\nprose {n}\n"
                                        for n in names))
    return path


def test_doc_blocks_are_rewritten_in_place(tmp_path):
    doc = _doc(tmp_path / "results.md")
    rx.write_results(tmp_path / "none", doc, tmp_path / "fig")
    text = doc.read_text()
    assert "old" not in text and "prose help" in text and "| 0/3 | – |" in text


def test_main_runs_the_same_seed_of_the_start_first(tmp_path, monkeypatch):
    calls = []

    def fake_run_one(argv, out_dir, log=print):
        calls.append(argv[argv.index("rlvlm.cli") + 1:])
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps({"final": {"success_rate": 0.5}}))
        return 1.0

    monkeypatch.setattr(gc, "run_one", fake_run_one)
    doc = _doc(tmp_path / "results.md")
    runs_dir = tmp_path / "runs"
    args = ["--only", "far-acc", "--seeds", "1", "--runs-dir", str(runs_dir), "--doc", str(doc),
            "--figures", str(tmp_path / "fig"), "--records", str(tmp_path / "records")]
    assert rx.main(args) == 0
    assert (tmp_path / "records" / "far-acc" / "seed1" / "record.json").is_file()
    assert [c[1] for c in calls] == ["fast-and-right", "fast-and-right"]
    assert calls[0][-2:] == ["seed=1", f"output_dir={runs_dir / 'far-sft' / 'seed1'}"]
    assert f"model.name_or_path={runs_dir / 'far-sft' / 'seed1' / 'checkpoints/step-0/policy'}" in calls[1]
    assert calls[1][-1] == f"output_dir={runs_dir / 'far-acc' / 'seed1'}"
    calls.clear()
    assert rx.main(args + ["--force"]) == 0  # --force re-runs the named run, not its start
    assert [c[-1].rsplit("/", 2)[-2] for c in calls] == ["far-acc"]


def test_cli_dry_run_and_unknown_key(capsys):
    assert rx.main(["--dry-run", "--only", "far-acc", "--seeds", "0", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].split()[:3] == ["far-acc", "seed", "0"]
    assert "model.name_or_path=runs/rewards/far-sft/seed2/checkpoints/step-0/policy" in out[1]
    assert out[1].endswith("seed=2 output_dir=runs/rewards/far-acc/seed2")
    assert rx.main(["--dry-run"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(RUNS) * len(rx.SEEDS)
    with pytest.raises(SystemExit):
        rx.main(["--only", "far-nope"])
    assert "unknown run 'far-nope'" in capsys.readouterr().err


def test_docs_results_has_every_block():
    text = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    for name in rx.render_blocks({}, {k: gc.summarise_run(r, {}) for k, r in BY_KEY.items()}, "runs/rewards"):
        assert f"<!-- rewards:{name} -->" in text and f"<!-- /rewards:{name} -->" in text
