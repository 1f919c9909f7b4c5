"""The RLHF harness: valid commands in dependency order, and tables that say what the reports say."""

from __future__ import annotations

import json

import pytest

from experiments import rlhf_experiments as rh

AXES = {"reward_model": 5.131, "heuristic_train": 0.883, "heuristic_heldout": 0.92, "accuracy": 0.765}
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


def _train_ev(scale: float = 1.0, episodes: int = 200) -> dict:
    return {"episodes": episodes, "success_rate": AXES["accuracy"] * scale,
            **{f"reward/{k}": v * scale for k, v in AXES.items()}}


def _put(path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _fake_runs(root) -> None:
    """Every run but rm-vlm, with hand-put numbers."""
    _put(root / "rlhf-sft" / "report.json", {"sft": _train_ev(), "final": _train_ev(), "wall_seconds": 120.0})
    _put(root / "prefs" / "pairs.summary.json",
         {"prompts": 8192, "replies": 32768, "pairs": 6943, "mean_margin": 0.4866, "reply_accuracy": 0.6546,
          "chosen_correct": 0.9641, "rejected_correct": 0.0079, "seconds": 197.05,
          "agreement": {"mentions": 0.98, "structure": 0.5309, "contradiction": 0.9909}})
    _put(root / "rm" / "report.json",
         {"kind": "mlp", "pairs": {"train": 5569, "held_out": 1374}, "held_out_accuracy": 0.9585152864456177,
          "held_out_accuracy_before": 0.5, "train_accuracy": 1.0, "held_out_loss": 0.12,
          "calibration": {"ece": 0.0208, "bins": []}, "seconds": {"total": 37.4}, "config": {}})
    _put(root / "ppo" / "report.json", {"sft": _train_ev(), "final": _train_ev(1.2), "wall_seconds": 86.0})
    metrics = [{"update": u, "reward/reward_model": 3.0} for u in range(1, 21)]
    for m in metrics[9::10]:
        m.update({"eval/success_rate": 0.8, **{f"eval/reward/{k}": v * 1.05 for k, v in AXES.items()}})
    (root / "ppo" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    evals = [{"epoch": e, "success_rate": 0.7 + 0.05 * e, **{k: v + 0.01 * e for k, v in AXES.items()}} for e in range(4)]
    _put(root / "dpo" / "report.json",
         {"pairs": {"train": 5569, "held_out": 1374}, "held_out_accuracy": 0.871, "held_out_accuracy_before": 0.5,
          "epochs": [{"epoch": e, "train_loss": None, "train_accuracy": None, "held_out_loss": 0.6,
                      "held_out_accuracy": 0.5} for e in range(4)],
          "evals": evals, "before": evals[0], "after": evals[-1], "seconds": 300.0,
          "config": {"eval_episodes": 100}})


def test_commands(tmp_path):
    by_key = {r.key: r for r in rh.runs(tmp_path)}
    assert list(by_key) == ["rlhf-sft", "prefs", "rm", "rm-vlm", "ppo", "dpo", "ppo-far", "ppo-far-gt", "grpo",
                            "grpo-gt", "grpo-dr", "grpo-dr-gt", "dpo-gentle"]
    # The ground-truth controls differ from their reward-model runs only in the reward weights.
    diff = set(by_key["grpo-gt"].args) ^ set(by_key["grpo"].args)
    assert diff == {"reward.weights.reward_model=0", "reward.weights.accuracy=1"}
    sft = str(tmp_path / "rlhf-sft" / "checkpoints" / "step-0" / "policy")
    prefs = by_key["prefs"].argv(tmp_path)
    assert prefs[:2] == ["rlvlm", "preferences"] and f"policy={sft}" in prefs and "n_prompts=8192" in prefs
    assert prefs[-1] == f"out={tmp_path / 'prefs' / 'pairs.jsonl'}" and not any("output_dir=" in a for a in prefs)
    for key, run in by_key.items():
        if key != "prefs":
            assert run.argv(tmp_path)[-1] == f"output_dir={tmp_path / key}"
    ppo = by_key["ppo"].argv(tmp_path)
    assert ppo[1:3] == ["train", "rlhf"] and f"reward.options.reward_model.path={tmp_path / 'rm' / 'model'}" in ppo
    assert f"model.name_or_path={sft}" in ppo and set(rh.PPO_ARGS) <= set(ppo)
    assert "kind=vlm" in by_key["rm-vlm"].args and "kind=vlm" not in by_key["rm"].args
    assert f"reward_model={tmp_path / 'rm' / 'model'}" in by_key["dpo"].args
    assert rh.report_path(by_key["prefs"], tmp_path) == tmp_path / "prefs" / "pairs.summary.json"


def test_train_commands_are_valid_configs(tmp_path):
    from rlvlm.config import load_config
    from rlvlm.train.config import TrainConfig

    by_key = {r.key: r for r in rh.runs(tmp_path)}
    sft = load_config(TrainConfig, "fast-and-right", by_key["rlhf-sft"].argv(tmp_path)[3:], validate=False)
    assert sft.updates == 0 and sft.env.image_size == 56 and sft.env.kwargs["task"] == "digits"
    ppo = load_config(TrainConfig, "rlhf", by_key["ppo"].argv(tmp_path)[3:], validate=False)
    assert ppo.sft.episodes == 0 and ppo.algo.lr == 0.0001  # the rlhf preset and ppo.reward.weights["reward_model"] == 1.0


def test_missing_inputs_come_along(tmp_path, monkeypatch):
    all_runs = rh.runs(tmp_path)
    by_key = {r.key: r for r in all_runs}
    assert [r.key for r in rh.with_inputs([by_key["dpo"]], all_runs, tmp_path)] == ["rlhf-sft", "prefs", "rm", "dpo"]
    _fake_runs(tmp_path)
    assert [r.key for r in rh.with_inputs([by_key["ppo"]], all_runs, tmp_path)] == ["ppo"]
    ran = []
    monkeypatch.setattr(rh, "run_all", lambda todo, *_a, **_k: ran.extend(r.key for r in todo))
    rh.run_pending(list(all_runs), tmp_path, progress=lambda _s: None)
    assert ran == ["rm-vlm", "ppo-far", "ppo-far-gt", "grpo", "grpo-gt", "grpo-dr", "grpo-dr-gt", "dpo-gentle"]  # those without output


def test_tables(tmp_path):
    _fake_runs(tmp_path)
    results = rh.collect(tmp_path)
    assert set(results) == {"rlhf-sft", "prefs", "rm", "ppo", "dpo"} and len(results["ppo"]["metrics"]) == 20
    blocks = rh.render_blocks(results, tmp_path)
    assert list(blocks) == ["prefs", "reward-models", "rm-onpolicy", "rl", "commands"]
    assert "not run yet: `python -m rlvlm.eval.reward_model_check" in blocks["rm-onpolicy"]
    (tmp_path / "rm" / rh.ONPOLICY_FILE).write_text(json.dumps(
        {"mixed_pairs": 1424, "questions": 200, "k": 8, "ranking": 0.962, "score_correct": 7.17, "score_wrong": -2.13,
         "std_between_questions": 9.55, "std_within_question": 3.05}))
    assert "| mlp | 1424 (200 questions x 8) | 0.962 | 7.17 / -2.13 | 9.55 / 3.05 |" in rh.onpolicy_table(tmp_path)
    assert "| 8192 | 32768 | 6943 | 0.487 | 0.655 | 0.964 | 0.008 | 0.980 | 0.531 | 0.991 | 197 |" in blocks["prefs"]
    assert "agreement: structure" in blocks["prefs"]
    rm = blocks["reward-models"]
    assert "| mlp | 5569 / 1374 | 0.500 → 0.959 | 1.000 | 0.021 | 37 | met |" in rm
    assert "| vlm | not run yet: `rlvlm reward-model kind=vlm" in rm
    rl = blocks["rl"]
    assert "| SFT warm-start (common start) | 200 | 5.131 | 0.883 | 0.920 | 0.765 |" in rl
    assert "| PPO on the reward model (rlhf preset, 150 updates) | 200 | 5.131 → 6.157 | 0.883 → 1.060 | 0.920 → 1.104 | 0.765 → 0.918 |" in rl
    assert "| DPO on the pairs (beta 0.1, lr 1e-4, 3 epochs) | 100 | 5.131 → 5.161 | 0.883 → 0.913 | 0.920 → 0.950 | 0.765 → 0.795 |" in rl
    assert "(implicit reward): dpo: 0.500 → 0.871 on 1374 pairs." in rl
    assert "| rm-vlm | `rlvlm reward-model kind=vlm" in blocks["commands"] and "| not run yet |" in blocks["commands"]
    assert "| ppo | `rlvlm train rlhf" in blocks["commands"] and "| 1.4 min |" in blocks["commands"]


def test_rm_target_missed_and_nothing_run(tmp_path):
    _put(tmp_path / "rm" / "report.json", {"held_out_accuracy": 0.8, "held_out_accuracy_before": 0.5})
    blocks = rh.render_blocks(rh.collect(tmp_path), tmp_path)
    assert "| 0.500 → 0.800 | – | – | – | missed |" in blocks["reward-models"]
    assert blocks["prefs"].startswith("_not run yet: `rlvlm preferences ")
    assert "| PPO on the reward model (rlhf preset, 150 updates) | not run yet: `rlvlm train rlhf" in blocks["rl"]
    assert "| SFT warm-start | not run yet: `rlvlm train fast-and-right updates=0" in blocks["rl"]
    assert rh.plot_curves(rh.collect(tmp_path), tmp_path / "c.png") is None and not (tmp_path / "c.png").exists()


def test_ppo_curve_points(tmp_path):
    _fake_runs(tmp_path)
    xs, ys = rh.ppo_curves(rh.collect(tmp_path)["ppo"])["accuracy"]
    assert xs == [0, 10, 20] and ys[0] == pytest.approx(0.765) and ys[1] == pytest.approx(0.765 * 1.05)


def test_write_results_replaces_only_rlhf_blocks_and_draws(tmp_path):
    runs_dir, doc = tmp_path / "runs", tmp_path / "results.md"
    _fake_runs(runs_dir)
    doc.write_text(DOC)
    rh.write_results(runs_dir, doc, tmp_path / "fig")
    text = doc.read_text()
    assert "old prefs" not in text and "old rl" not in text and "| 0.500 → 0.959 |" in text
    for kept in ("hand-written intro", "between, kept", "other harness, kept", "<!-- /rlhf:commands -->"):
        assert kept in text
    assert (tmp_path / "fig" / "rlhf_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_dry_run_prints_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(rh, "run_all", lambda *a, **k: pytest.fail("--dry-run ran something"))
    assert rh.main(["--dry-run", "--runs-dir", str(tmp_path), "--only", "prefs", "ppo"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("prefs") and f"out={tmp_path / 'prefs' / 'pairs.jsonl'}" in out[0]
    assert out[1].split()[0] == "ppo" and out[1].endswith(f"output_dir={tmp_path / 'ppo'}")
    assert not any(tmp_path.iterdir())


def test_other_commands_are_valid_configs(tmp_path):
    from rlvlm.config import load_config
    from rlvlm.rewards.collect_preferences import PreferenceConfig
    from rlvlm.train.dpo import DPOConfig
    from rlvlm.train.reward_model import RewardModelConfig

    by_key = {r.key: r for r in rh.runs(tmp_path)}
    prefs = load_config(PreferenceConfig, None, by_key["prefs"].argv(tmp_path)[2:], validate=False)
    assert prefs.out == rh.pairs_path(tmp_path) and prefs.k == 4 and prefs.weights == {"mentions": 1, "structure": 1}
    for key, kind in (("rm", "mlp"), ("rm-vlm", "vlm")):
        rm = load_config(RewardModelConfig, None, by_key[key].argv(tmp_path)[2:], validate=False)
        assert rm.kind == kind and rm.image_size == prefs.image_size and rm.output_dir == str(tmp_path / key)
    dpo = load_config(DPOConfig, None, by_key["dpo"].argv(tmp_path)[2:], validate=False)
    assert dpo.pairs == prefs.out and dpo.reward_model == rh.rm_model(tmp_path)
