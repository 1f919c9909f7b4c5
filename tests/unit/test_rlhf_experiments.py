"""The RLHF harness: per-seed commands that read their own seed's inputs, in dependency order, and
tables whose cells are the hand-worked aggregates over seeds of the reports."""

from __future__ import annotations

import json
import re
import sys

import pytest

from experiments import gym_cards as gc
from experiments import rlhf_experiments as rh
from experiments import rlhf_tables as rt
from experiments.seeds import aggregate

STEPS = rh.runs("RUNS")
BY_KEY = {r.key: r for r in STEPS}
TRAIN = [r for r in STEPS if r.kind == "train"]
DOC = """# results
hand-written intro
<!-- rlhf:prefs -->
old prefs
<!-- /rlhf:prefs -->
<!-- rlhf:reward-models -->
<!-- /rlhf:reward-models -->
between, kept
<!-- rlhf:rm-onpolicy -->
<!-- /rlhf:rm-onpolicy -->
<!-- rlhf:rl -->
old rl
<!-- /rlhf:rl -->
<!-- rlhf:commands -->
<!-- /rlhf:commands -->
<!-- rewards:far -->
other harness, kept
<!-- /rewards:far -->
"""


# ------------------------------------------------------------------ commands
def test_every_run_runs_on_three_seeds_in_pipeline_order():
    assert rh.SEEDS == (0, 1, 2)
    assert list(BY_KEY) == ["rlhf-sft", "prefs", "rm", "rm-vlm", "ppo", "dpo", "ppo-far", "ppo-far-gt", "grpo",
                            "grpo-gt", "grpo-dr", "grpo-dr-gt", "dpo-gentle", "rm-onpolicy", "rm-vlm-onpolicy"]
    # every input comes before the runs that read it
    for i, run in enumerate(STEPS):
        assert all(k in [r.key for r in STEPS[:i]] for k in rh.NEEDS.get(run.key, ()))


@pytest.mark.parametrize("seed", rh.SEEDS)
def test_each_run_reads_its_own_seeds_upstream_outputs(seed, tmp_path):
    """Every path into the runs dir is RUNS/KEY/seedS/... with S this seed and KEY the run itself or a run it NEEDS."""
    pattern = re.compile(re.escape(str(tmp_path)) + r"/([^/ ]+)/seed([^/ ]+)")
    for run in rh.runs(tmp_path):
        argv = run.seed_argv(tmp_path, seed)
        read = {m.group(1) for a in argv for m in pattern.finditer(a) if m.group(1) != run.key}
        assert {m.group(2) for a in argv for m in pattern.finditer(a)} == {str(seed)}, run.key
        assert read == set(rh.NEEDS.get(run.key, ())), run.key
        assert not any(rh.SEED_SLOT in a for a in argv)


@pytest.mark.parametrize("seed", rh.SEEDS)
def test_commands(seed, tmp_path):
    by_key = {r.key: r for r in rh.runs(tmp_path)}
    d = lambda key: tmp_path / key / f"seed{seed}"  # noqa: E731
    sft = str(d("rlhf-sft") / "checkpoints" / "step-0" / "policy")
    # The ground-truth controls differ from their reward-model runs only in the reward weights.
    diff = set(by_key["grpo-gt"].args) ^ set(by_key["grpo"].args)
    assert diff == {"reward.weights.reward_model=0", "reward.weights.accuracy=1"}
    prefs = by_key["prefs"].seed_argv(tmp_path, seed)
    assert prefs[:2] == ["rlvlm", "preferences"] and f"policy={sft}" in prefs and "n_prompts=8192" in prefs
    assert prefs[-2:] == [f"out={d('prefs') / 'pairs.jsonl'}", f"seed={seed}"]
    assert not any("output_dir=" in a for a in prefs)
    for key, run in by_key.items():
        if run.kind not in ("preferences", "check"):
            assert run.seed_argv(tmp_path, seed)[-2:] == [f"seed={seed}", f"output_dir={d(key)}"]
    ppo = by_key["ppo"].seed_argv(tmp_path, seed)
    assert ppo[1:3] == ["train", "rlhf"] and f"reward.options.reward_model.path={d('rm') / 'model'}" in ppo
    assert f"model.name_or_path={sft}" in ppo and set(rh.PPO_ARGS) <= set(ppo)
    assert "kind=vlm" in by_key["rm-vlm"].args and "kind=vlm" not in by_key["rm"].args
    assert f"reward_model={d('rm') / 'model'}" in by_key["dpo"].seed_argv(tmp_path, seed)
    # rlvlm.eval.reward_model_check has no seed option: the check of seed S's model carries none
    assert by_key["rm-vlm-onpolicy"].seed_argv(tmp_path, seed) == [
        "python", "-m", "rlvlm.eval.reward_model_check", sft, str(d("rm-vlm") / "model"),
        "--out", str(d("rm-vlm-onpolicy") / "onpolicy.json")]
    assert rh.report_path(by_key["prefs"], tmp_path, seed) == d("prefs") / "pairs.summary.json"
    assert rh.report_path(by_key["rm-onpolicy"], tmp_path, seed) == d("rm-onpolicy") / "onpolicy.json"
    assert rh.report_path(by_key["ppo"], tmp_path, seed) == d("ppo") / "report.json"


def test_the_docs_command_writes_the_seed_literally():
    by_key = {r.key: r for r in rh.runs("runs/rlhf")}
    assert by_key["ppo"].seed_command("runs/rlhf") == (
        "rlvlm train rlhf model.name_or_path=runs/rlhf/rlhf-sft/seedS/checkpoints/step-0/policy sft.episodes=0 "
        "reward.options.reward_model.path=runs/rlhf/rm/seedS/model seed=S output_dir=runs/rlhf/ppo/seedS")
    assert by_key["prefs"].seed_command("runs/rlhf").endswith("out=runs/rlhf/prefs/seedS/pairs.jsonl seed=S")
    with pytest.raises(NotImplementedError, match="per seed"):
        by_key["ppo"].argv("runs/rlhf")  # a single-seed command would leave the seed slot in its paths


def test_process_argv():
    assert rh.process_argv(["rlvlm", "train", "x"]) == [sys.executable, "-m", "rlvlm.cli", "train", "x"]
    assert rh.process_argv(["python", "-m", "m", "a"]) == [sys.executable, "-m", "m", "a"]


@pytest.mark.parametrize("seed", rh.SEEDS)
def test_train_commands_are_valid_configs(seed, tmp_path):
    from rlvlm.config import load_config
    from rlvlm.train.config import TrainConfig

    by_key = {r.key: r for r in rh.runs(tmp_path)}
    argv = by_key["rlhf-sft"].seed_argv(tmp_path, seed)
    sft = load_config(TrainConfig, "fast-and-right", argv[3:], validate=False)
    assert sft.updates == 0 and sft.env.image_size == 56 and sft.env.kwargs["task"] == "digits" and sft.seed == seed
    for run in [r for r in by_key.values() if r.kind == "train" and r.key != "rlhf-sft"]:
        argv = run.seed_argv(tmp_path, seed)
        cfg = load_config(TrainConfig, argv[2], argv[3:], validate=False)
        assert cfg.seed == seed and cfg.output_dir == str(tmp_path / run.key / f"seed{seed}")
        assert cfg.model.name_or_path == rh.sft_policy(tmp_path, seed) and cfg.sft.episodes == 0
        assert cfg.reward.options["reward_model"]["path"] == rh.rm_model(tmp_path, seed)
    ppo = load_config(TrainConfig, "rlhf", by_key["ppo"].seed_argv(tmp_path, seed)[3:], validate=False)
    assert ppo.algo.lr == 0.0001  # the rlhf preset


@pytest.mark.parametrize("seed", rh.SEEDS)
def test_other_commands_are_valid_configs(seed, tmp_path):
    from rlvlm.config import load_config
    from rlvlm.train.preferences import PreferenceConfig, summary_path
    from rlvlm.train.dpo import DPOConfig
    from rlvlm.train.reward_model import RewardModelConfig

    by_key = {r.key: r for r in rh.runs(tmp_path)}
    prefs = load_config(PreferenceConfig, None, by_key["prefs"].seed_argv(tmp_path, seed)[2:], validate=False)
    assert prefs.out == rh.pairs_path(tmp_path, seed) and prefs.k == 4 and prefs.weights == {"mentions": 1, "structure": 1}
    assert prefs.seed == seed and prefs.policy == rh.sft_policy(tmp_path, seed)
    assert summary_path(prefs.out) == rh.report_path(by_key["prefs"], tmp_path, seed)  # the marker is its summary
    for key, kind in (("rm", "mlp"), ("rm-vlm", "vlm")):
        rm = load_config(RewardModelConfig, None, by_key[key].seed_argv(tmp_path, seed)[2:], validate=False)
        assert rm.kind == kind and rm.image_size == prefs.image_size and rm.seed == seed
        assert rm.output_dir == str(tmp_path / key / f"seed{seed}") and rm.pairs == prefs.out
        assert rm.name_or_path == rh.sft_policy(tmp_path, seed)
    for key in ("dpo", "dpo-gentle"):
        dpo = load_config(DPOConfig, None, by_key[key].seed_argv(tmp_path, seed)[2:], validate=False)
        assert dpo.pairs == prefs.out and dpo.reward_model == rh.rm_model(tmp_path, seed) and dpo.seed == seed
        assert dpo.policy == rh.sft_policy(tmp_path, seed)


# ------------------------------------------------------------------- running
def _marker(tmp_path, key, seed):
    p = rh.report_path(BY_KEY[key], tmp_path, seed)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("{}")


def test_missing_inputs_come_along_per_seed(tmp_path):
    all_runs = rh.runs(tmp_path)
    by_key = {r.key: r for r in all_runs}
    assert [r.key for r in rh.with_inputs([by_key["dpo"]], all_runs, tmp_path, 1)] == ["rlhf-sft", "prefs", "rm", "dpo"]
    for key in ("rlhf-sft", "prefs", "rm"):
        _marker(tmp_path, key, 0)
    assert [r.key for r in rh.with_inputs([by_key["ppo"]], all_runs, tmp_path, 0)] == ["ppo"]
    todo = [(r.key, s) for r, s in rh.plan([by_key["ppo"]], all_runs, rh.SEEDS, tmp_path)]
    # seed 0 has its inputs; seeds 1 and 2 bring theirs, every seed of a run before the next run
    assert todo == [("rlhf-sft", 1), ("rlhf-sft", 2), ("prefs", 1), ("prefs", 2), ("rm", 1), ("rm", 2),
                    ("ppo", 0), ("ppo", 1), ("ppo", 2)]


def test_run_seeds_skips_done_seeds_and_a_failed_seeds_downstream(tmp_path, monkeypatch):
    all_runs = rh.runs(tmp_path)
    by_key = {r.key: r for r in all_runs}
    _marker(tmp_path, "prefs", 0)  # prefs is marked done by pairs.summary.json, not report.json
    calls = []

    def fake_run_one(argv, out_dir, log=print):
        calls.append((out_dir.parent.name, out_dir.name, argv))
        out_dir.mkdir(parents=True, exist_ok=True)
        if out_dir != tmp_path / "rm" / "seed1":  # rm fails on seed 1
            _marker(tmp_path, out_dir.parent.name, int(out_dir.name[4:]))
        return 42.0

    monkeypatch.setattr(gc, "run_one", fake_run_one)  # the shared loop, gym_cards.run_pairs
    todo = [(by_key[k], s) for k in ("rlhf-sft", "prefs", "rm", "ppo") for s in rh.SEEDS]
    failed = rh.run_seeds(todo, tmp_path, progress=lambda _: None)
    assert [(k, s) for k, s, _ in calls] == [
        ("rlhf-sft", f"seed{s}") for s in rh.SEEDS] + [("prefs", "seed1"), ("prefs", "seed2")] + [
        ("rm", f"seed{s}") for s in rh.SEEDS] + [("ppo", "seed0"), ("ppo", "seed2")]  # ppo seed 1 has no rm
    assert calls[0][2][:3] == [sys.executable, "-m", "rlvlm.cli"] and "seed=0" in calls[0][2]
    assert failed == [f"XDG_CACHE_HOME=$(mktemp -d) {by_key['rm'].seed_command(tmp_path, 1)}",
                      "ppo seed 1: not started, its input rm seed 1 is missing"]
    assert (tmp_path / "rm" / "seed1" / "process_seconds.txt").read_text() == "42.0\n"


# ------------------------------------------------------------ fake outputs
def _put(path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _ev(rm, ht, hh, acc, episodes, dpo=False):
    """An evaluation on the four axes as train runs (reward/<axis>) or DPO (<axis>) write it."""
    pre = "" if dpo else "reward/"
    vals = {"reward_model": rm, "heuristic_train": ht, "heuristic_heldout": hh, "accuracy": acc}
    return {"episodes": episodes, "success_rate": acc, **{pre + k: v for k, v in vals.items()}}


def _seeds(root, key, per_seed: dict) -> None:
    for seed, obj in per_seed.items():
        _put(rh.report_path(BY_KEY[key], root, seed), obj)


@pytest.fixture
def results(tmp_path):
    """Three seeds of most runs; rm-vlm has seeds 0-1 and dpo seeds 0 and 2 (2 of 3); the rest none."""
    sft = {s: _ev(5.0 + 0.1 * s, 0.88, 0.92, 0.74 + 0.01 * s, 1000) for s in rh.SEEDS}
    _seeds(tmp_path, "rlhf-sft", {s: {"sft": sft[s], "final": sft[s], "wall_seconds": 240.0} for s in rh.SEEDS})
    _seeds(tmp_path, "prefs", {s: {
        "prompts": 8192, "replies": 32768, "pairs": 6900 + 100 * s, "mean_margin": 0.48 + 0.01 * s,
        "reply_accuracy": 0.60 + 0.05 * s, "chosen_correct": 0.96, "rejected_correct": 0.01 + 0.01 * s,
        "agreement": {"mentions": 0.97 + 0.01 * s}, "seconds": 190.0 + 10 * s} for s in rh.SEEDS})
    _seeds(tmp_path, "rm", {s: {
        "kind": "mlp", "pairs": {"train": (5569, 5600, 5540)[s], "held_out": 1374},
        "held_out_accuracy": (0.96, 0.92, 0.88)[s], "held_out_accuracy_before": 0.5,
        "train_accuracy": 1.0 - 0.01 * s, "calibration": {"ece": 0.02 + 0.01 * s, "bins": []},
        "seconds": {"total": 30.0 + 10 * s}} for s in rh.SEEDS})
    _seeds(tmp_path, "rm-vlm", {s: {
        "kind": "vlm", "pairs": {"train": 5569, "held_out": 1374}, "held_out_accuracy": (0.80, 0.84)[s],
        "held_out_accuracy_before": 0.5, "train_accuracy": (0.80, 0.82)[s], "calibration": {"ece": (0.03, 0.05)[s]},
        "seconds": {"total": (180.0, 200.0)[s]}} for s in (0, 1)})
    _seeds(tmp_path, "rm-onpolicy", {s: {
        "mixed_pairs": (1424, 1400, 1448)[s], "questions": 200, "k": 8, "ranking": (0.96, 0.95, 0.97)[s],
        "score_correct": 7.0 + 0.2 * s, "score_wrong": -2.0 - 0.2 * s, "std_between_questions": 9.5 + 0.1 * s,
        "std_within_question": 3.0 + 0.1 * s, "policy": "p", "reward_model": "r"} for s in rh.SEEDS})
    final = {0: _ev(5.5, 0.89, 0.95, 0.80, 1000), 1: _ev(6.0, 0.90, 0.95, 0.78, 1000),
             2: _ev(6.5, 0.92, 0.95, 0.82, 1000)}
    _seeds(tmp_path, "ppo", {s: {"sft": sft[s], "final": final[s], "wall_seconds": (60.0, 90.0, 120.0)[s]}
                             for s in rh.SEEDS})
    for s in rh.SEEDS:
        metrics = [{"update": u, "reward/reward_model": 3.0} for u in range(1, 21)]
        for m in metrics[9::10]:
            m.update({"eval/success_rate": 0.77 + 0.01 * s, "eval/reward/reward_model": 5.5})
        (tmp_path / "ppo" / f"seed{s}" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    dpo = {0: (_ev(5.7, 0.88, 0.92, 0.76, 100, True), _ev(6.9, 0.92, 0.95, 0.84, 100, True), 0.93, 1374),
           2: (_ev(5.8, 0.88, 0.92, 0.74, 100, True), _ev(6.1, 0.90, 0.94, 0.80, 100, True), 0.95, 1380)}
    _seeds(tmp_path, "dpo", {s: {
        "pairs": {"train": 5569, "held_out": n}, "held_out_accuracy": acc, "held_out_accuracy_before": 0.5,
        "evals": [{"epoch": 0, **before}, {"epoch": 3, **after}], "before": before, "after": after, "seconds": 300.0,
        "config": {"eval_episodes": 100}} for s, (before, after, acc, n) in dpo.items()})
    for s in (0, 2):  # the harness's own wall time, when it ran the process, wins over the report's
        (tmp_path / "dpo" / f"seed{s}" / "process_seconds.txt").write_text(f"{(360.0, 420.0)[s // 2]}\n")
    _seeds(tmp_path, "grpo", {s: {"sft": _ev(5.0, 0.88, 0.92, 0.765, 200),
                                  "final": _ev(0.0, 0.52, 0.63, 0.45 + 0.02 * s, 200)} for s in rh.SEEDS})
    return rh.collect(tmp_path)


def _rows(table):
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.splitlines()[2:] if line.startswith("|")}


def test_cell_directions():
    agg = aggregate([0.1, 0.2, 0.3])  # mean 0.2, std sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    assert rt.cell(agg, "higher") == "0.200 ± 0.100 (worst 0.100)"
    assert rt.cell(agg, "lower") == "0.200 ± 0.100 (worst 0.300)"
    assert rt.cell(agg, "neutral", 2) == "0.20 ± 0.10 (0.10 to 0.30)"
    assert rt.cell(aggregate([5, 5]), "count") == "5" and rt.cell(aggregate([4, 6]), "count") == "4–6"
    assert rt.cell(aggregate([None, None]), "higher") == "–" and rt.cell(rt.EMPTY, "count") == "–"
    better = {header: side for header, _, side, _ in rt.PREFS_COLUMNS + rt.RM_COLUMNS + rt.ONPOLICY_COLUMNS}
    assert better["reply accuracy"] == better["chosen correct"] == better["train accuracy"] == "higher"
    assert better["rejected correct"] == better["ECE"] == better["seconds"] == rt.SECONDS[2] == "lower"
    assert better["ranks the right reply higher"] == "higher" and better["mean score right"] == "neutral"


def test_collect_aggregates_over_seeds(results):
    acc = results["rm"]["agg"]["held_out_accuracy"]  # 0.96 / 0.92 / 0.88
    assert (acc["n"], acc["missing"]) == (3, 0) and acc["mean"] == pytest.approx(0.92)
    assert acc["std"] == pytest.approx(0.04) and (acc["min"], acc["max"]) == (0.88, 0.96)
    vlm = results["rm-vlm"]["agg"]["held_out_accuracy"]  # 2 of 3 seeds: 0.80 / 0.84
    assert (vlm["n"], vlm["missing"]) == (2, 1) and vlm["std"] == pytest.approx(0.02 * 2 ** 0.5)
    ppo = results["ppo"]["agg"]
    assert ppo["before.accuracy"]["mean"] == pytest.approx(0.75) and ppo["after.accuracy"]["min"] == 0.78
    assert ppo["after.reward_model"]["std"] == pytest.approx(0.5) and ppo["before.episodes"]["mean"] == 1000
    assert results["dpo"]["agg"]["after.accuracy"]["mean"] == pytest.approx(0.82)  # seeds 0 and 2
    assert results["dpo"]["agg"]["after.episodes"]["mean"] == 100  # DPO's count is config.eval_episodes
    assert results["rm"]["agg"]["calibration.ece"]["max"] == pytest.approx(0.04)
    assert len(results["ppo"]["metrics"][2]) == 20 and results["ppo-far"]["reports"] == {}
    assert results["ppo-far"]["agg"] == {}


def test_prefs_table(results):
    row = rt.prefs_table(results, rh.templates("R"), rh.SEEDS).splitlines()
    assert row[0] == ("| seeds | prompts | replies | pairs | mean margin | reply accuracy | chosen correct | "
                      "rejected correct | agreement: mentions | seconds |")
    # pairs 6900/7000/7100; rejected correct 0.01/0.02/0.03, worst = the most; seconds 190/200/210, worst = the most
    assert row[2] == ("| 3/3 | 8192 | 32768 | 7000 ± 100 (worst 6900) | 0.490 ± 0.010 (worst 0.480) | "
                      "0.650 ± 0.050 (worst 0.600) | 0.960 ± 0.000 (worst 0.960) | 0.020 ± 0.010 (worst 0.030) | "
                      "0.980 ± 0.010 (worst 0.970) | 200 ± 10 (worst 210) |")


def test_rm_table_with_a_two_of_three_seeds_row(results):
    rows = _rows(rt.rm_table(results, rh.templates("R"), rh.SEEDS))
    # after 0.96/0.92/0.88: 0.92 ± 0.04, worst 0.88; 2 seeds reach 0.90; spread 0.08 < gain 0.42
    assert rows["mlp"] == ["3/3", "5540–5600 / 1374", "0.500 ± 0.000 (worst 0.500) → 0.920 ± 0.040 (worst 0.880)",
                           "0.990 ± 0.010 (worst 0.980)", "0.030 ± 0.010 (worst 0.040)", "40 ± 10 (worst 50)",
                           "met (2/3 seeds)", "no"]
    # seeds 0-1 only: 0.80/0.84 -> 0.82 ± sqrt(0.0008) = 0.028; ECE 0.03/0.05, worst 0.05; 180/200 s
    assert rows["vlm"] == ["2/3", "5569 / 1374", "0.500 ± 0.000 (worst 0.500) → 0.820 ± 0.028 (worst 0.800)",
                           "0.810 ± 0.014 (worst 0.800)", "0.040 ± 0.014 (worst 0.050)", "190 ± 14 (worst 200)",
                           "missed (0/2 seeds)", "no"]


def test_onpolicy_table(results):
    rows = _rows(rt.onpolicy_table(results, rh.templates("R"), rh.SEEDS))
    assert rows["mlp"] == ["3/3", "1400–1448 (200 questions x 8)", "0.960 ± 0.010 (worst 0.950)",
                           "7.20 ± 0.20 (7.00 to 7.40)", "-2.20 ± 0.20 (-2.40 to -2.00)",
                           "9.60 ± 0.10 (9.50 to 9.70)", "3.10 ± 0.10 (3.00 to 3.20)"]
    assert rows["vlm"][:2] == ["0/3", "not run yet: `python -m rlvlm.eval.reward_model_check "
                               "R/rlhf-sft/seedS/checkpoints/step-0/policy R/rm-vlm/seedS/model "
                               "--out R/rm-vlm-onpolicy/seedS/onpolicy.json`"]


def test_rl_table_before_after_over_seeds_and_the_spread_flag(results):
    table = rt.rl_table(results, rh.templates("R"), rh.SEEDS)
    rows = _rows(table)
    # the common start is PPO's SFT evaluation: RM 5.0/5.1/5.2, accuracy 0.74/0.75/0.76
    assert rows["SFT warm-start (common start)"] == [
        "3/3", "1000", "5.100 ± 0.100 (worst 5.000)", "0.880 ± 0.000 (worst 0.880)", "0.920 ± 0.000 (worst 0.920)",
        "0.750 ± 0.010 (worst 0.740)", ""]
    # PPO after: RM 5.5/6.0/6.5 (gain 0.9 < spread 1.0: flagged); training heuristic 0.89/0.90/0.92 = 0.903 ± 0.015
    # (gain 0.023 < spread 0.03: flagged); held-out 0.95 x 3 (spread 0); accuracy 0.80 ± 0.02 (gain 0.05 > spread 0.04)
    assert rows["PPO on the reward model (rlhf preset, 150 updates)"] == [
        "3/3", "1000", "5.100 ± 0.100 (worst 5.000) → 6.000 ± 0.500 (worst 5.500)",
        "0.880 ± 0.000 (worst 0.880) → 0.903 ± 0.015 (worst 0.890)",
        "0.920 ± 0.000 (worst 0.920) → 0.950 ± 0.000 (worst 0.950)",
        "0.750 ± 0.010 (worst 0.740) → 0.800 ± 0.020 (worst 0.780)", "reward-model score, training heuristic"]
    # DPO on seeds 0 and 2: RM 5.7/5.8 -> 6.9/6.1 (gain 0.75 < spread 0.8); accuracy 0.76/0.74 -> 0.84/0.80
    assert rows["DPO on the pairs (beta 0.1, lr 1e-4, 3 epochs: the defaults before issue 15)"] == [
        "2/3", "100", "5.750 ± 0.071 (worst 5.700) → 6.500 ± 0.566 (worst 6.100)",
        "0.880 ± 0.000 (worst 0.880) → 0.910 ± 0.014 (worst 0.900)",
        "0.920 ± 0.000 (worst 0.920) → 0.945 ± 0.007 (worst 0.940)",
        "0.750 ± 0.014 (worst 0.740) → 0.820 ± 0.028 (worst 0.800)", "reward-model score"]
    # GRPO collapsed on every axis: a negative gain is always smaller than the spread
    grpo = rows["GRPO on the reward model (groups of 8, 60 updates)"]
    assert grpo[5] == "0.765 ± 0.000 (worst 0.765) → 0.470 ± 0.020 (worst 0.450)"
    assert grpo[6] == "reward-model score, training heuristic, held-out heuristic, ground-truth accuracy"
    assert rows["DPO on the pairs (beta 0.5, lr 1e-5, 2 epochs: the defaults)"][:2] == [
        "0/3", "not run yet: `rlvlm dpo policy=R/rlhf-sft/seedS/checkpoints/step-0/policy "
        "pairs=R/prefs/seedS/pairs.jsonl reward_model=R/rm/seedS/model beta=0.5 lr=0.00001 epochs=2 seed=S "
        "output_dir=R/dpo-gentle/seedS`"]
    assert ("(implicit reward): dpo: 0.500 ± 0.000 (worst 0.500) → 0.940 ± 0.014 (worst 0.930) on 1374–1380 "
            "pairs, spread > gain: no.") in table


def test_commands_table(results):
    rows = _rows(rt.commands_table(results, rh.templates("R"), rh.SEEDS, rh.CACHE_PREFIX))
    assert rows["ppo"] == ["`XDG_CACHE_HOME=$(mktemp -d) rlvlm train rlhf model.name_or_path="
                           "R/rlhf-sft/seedS/checkpoints/step-0/policy sft.episodes=0 "
                           "reward.options.reward_model.path=R/rm/seedS/model seed=S output_dir=R/ppo/seedS`",
                           "3/3", "1.0–2.0 min"]  # the reports' 60/90/120 s
    assert rows["dpo"][1:] == ["2/3", "6.0–7.0 min"]  # process_seconds.txt 360/420 s, not the reports' 300 s
    assert rows["ppo-far"][1:] == ["0/3", "–"]
    assert list(rows) == list(BY_KEY)


def test_nothing_run(tmp_path):
    results = rh.collect(tmp_path)
    blocks = rh.render_blocks(results, tmp_path)
    assert list(blocks) == ["prefs", "reward-models", "rm-onpolicy", "rl", "commands"]
    assert blocks["prefs"].startswith(f"_not run yet: `rlvlm preferences policy={tmp_path}/rlhf-sft/seedS/")
    assert f"| mlp | 0/3 | not run yet: `rlvlm reward-model pairs={tmp_path}/prefs/seedS/pairs.jsonl" \
        in blocks["reward-models"]
    assert "| SFT warm-start | 0/3 | not run yet: `rlvlm train fast-and-right updates=0" in blocks["rl"]
    assert "(implicit reward)" not in blocks["rl"]
    assert rt.plot_curves(results, tmp_path / "c.png") is None and not (tmp_path / "c.png").exists()


def test_ppo_curve_points(results):
    ppo = results["ppo"]
    xs, ys = rt.ppo_curves(ppo["reports"][1], ppo["metrics"][1])["accuracy"]
    # update 0 = SFT (0.75), the evaluations at updates 10 and 20 (0.78), the final one at the last update (0.78)
    assert xs == [0, 10, 20, 20] and ys == pytest.approx([0.75, 0.78, 0.78, 0.78])
    assert rt.dpo_curves(results["dpo"]["reports"][2])["accuracy"] == ([0, 3], [0.74, 0.80])


def test_write_results_replaces_only_rlhf_blocks_and_draws(results, tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text(DOC)
    rh.write_results(tmp_path, doc, tmp_path / "fig")
    text = doc.read_text()
    assert "old prefs" not in text and "old rl" not in text and "0.920 ± 0.040 (worst 0.880)" in text
    for kept in ("hand-written intro", "between, kept", "other harness, kept", "<!-- /rlhf:commands -->"):
        assert kept in text
    assert (tmp_path / "fig" / "rlhf_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_dry_run_prints_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gc, "run_one", lambda *a, **k: pytest.fail("--dry-run ran something"))
    assert rh.main(["--dry-run", "--runs-dir", str(tmp_path), "--only", "prefs", "ppo", "--seeds", "0", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in out] == [["prefs", "seed", "0"], ["prefs", "seed", "2"],
                                                   ["ppo", "seed", "0"], ["ppo", "seed", "2"]]
    assert f"out={tmp_path / 'prefs' / 'seed2' / 'pairs.jsonl'} seed=2" in out[1]
    assert "XDG_CACHE_HOME=$(mktemp -d) rlvlm train rlhf" in out[3]
    assert out[3].endswith(f"seed=2 output_dir={tmp_path / 'ppo' / 'seed2'}")
    assert f"reward.options.reward_model.path={tmp_path / 'rm' / 'seed2' / 'model'}" in out[3]
    assert not any(tmp_path.iterdir())
    assert rh.main(["--dry-run", "--runs-dir", str(tmp_path), "--only", "rm"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # every seed by default


def test_docs_results_has_every_block():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    for name in ("prefs", "reward-models", "rm-onpolicy", "rl", "commands"):
        assert f"<!-- rlhf:{name} -->" in text and f"<!-- /rlhf:{name} -->" in text
