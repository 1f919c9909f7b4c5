"""The committed run records: what they keep, that tables built from them equal tables built from
the runs, and that a record of an old command is dropped."""

from __future__ import annotations

import json

import yaml

from experiments import gym_cards as gc
from experiments import records as rec


def _finished_seed(root, key, seed, sft, final):
    d = gc.seed_dir(root, key, seed)
    d.mkdir(parents=True)
    report = {"sft": {"success_rate": sft, "episodes": 500}, "final": {"success_rate": final, "episodes": 500},
              "wall_seconds": 100.0 + seed}
    if gc.RUNS_BY_KEY[key].kind == "baseline":  # rlvlm eval's report
        report = {"success_rate": final, "episodes": 500}
    (d / "report.json").write_text(json.dumps(report))
    rows = [{"step": i + 1, "update": i + 1, "rollout/env_steps": 128 * (i + 1), "rollout/success_rate": s,
             "eval/success_rate": s, "loss/policy": 0.123456789, "time/update": 1.0}
            for i, s in enumerate([sft, (sft + final) / 2, final])]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "process_seconds.txt").write_text(f"{150.0 + seed}\n")
    (d / "checkpoints").mkdir()  # large outputs are not recorded
    (d / "checkpoints" / "weights.safetensors").write_bytes(b"x" * 100)
    return d


def test_trim_keeps_only_the_plotted_keys_and_rounds_to_five_digits():
    lines = [json.dumps({"update": 3, "step": 3, "rollout/success_rate": 0.123456789, "eval/reward/x": 2.0,
                         "loss/policy": 0.5, "policy/entropy": 0.3, "rollout/env_steps": 384}), ""]
    (out,) = rec.trim_metrics(lines)
    assert json.loads(out) == {"update": 3, "step": 3, "rollout/success_rate": 0.12346, "eval/reward/x": 2.0,
                               "rollout/env_steps": 384}


def test_portable_command_names_the_runs_dir_runs():
    run = gc.RUNS_BY_KEY["numberline-ppo"]
    assert rec.portable(run.seed_command("/tmp/x/runs", 1), "/tmp/x/runs") == \
        "rlvlm train numberline seed=1 output_dir=RUNS/numberline-ppo/seed1"


def test_record_copies_figures_not_checkpoints_and_says_what_measured(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    src = _finished_seed(runs, "numberline-ppo", 0, 0.7, 1.0)
    rec.save_provenance(src)
    n = rec.record_runs([gc.RUNS_BY_KEY["numberline-ppo"]], [0, 1], runs, records)
    assert n == 1  # seed 1 has not run
    dest = gc.seed_dir(records, "numberline-ppo", 0)
    assert sorted(p.name for p in dest.iterdir()) == ["metrics.jsonl", "process_seconds.txt", "record.json",
                                                      "report.json"]
    assert (dest / "report.json").read_text() == (src / "report.json").read_text()
    meta = json.loads((dest / "record.json").read_text())
    assert meta["command"] == "rlvlm train numberline seed=0 output_dir=RUNS/numberline-ppo/seed0"
    assert meta["cpu"] == rec.cpu_kind() and "note" not in meta
    first = json.loads((dest / "metrics.jsonl").read_text().splitlines()[0])
    assert "loss/policy" not in first and first["rollout/success_rate"] == 0.7


def test_tables_from_records_equal_tables_from_runs(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    for seed, (sft, final) in enumerate([(0.7, 1.0), (0.75, 0.95), (0.8, 0.9)]):
        _finished_seed(runs, "numberline-ppo", seed, sft, final)
    _finished_seed(runs, "ezpoints-random", 0, 0.0, 0.004)
    doc = tmp_path / "doc.md"
    blocks = "".join(f"<!-- gym-cards:{n} -->\n<!-- /gym-cards:{n} -->\n" for n in ("main", "commands", "cot", "lambda"))
    doc.write_text(blocks)
    direct = gc.collect(runs)
    gc.write_results(runs, doc, tmp_path / "fig", records_dir=records)
    from_records = gc.collect(records)
    assert from_records == direct
    assert from_records["numberline-ppo"]["final"]["mean"] == (1.0 + 0.95 + 0.9) / 3
    text = doc.read_text()
    # The commands table names the runs dir the user ran, and what measured each row.
    assert f"output_dir={runs}/numberline-ppo/seedS" in text
    row = next(line for line in text.splitlines() if line.startswith("| numberline-ppo |"))
    assert row.rstrip(" |").endswith(rec.cpu_kind()) and "commit and cpu of the recording" not in row
    assert not (tmp_path / "fig" / "numberline.png").exists()  # GRPO has not run: no comparison plot

    # A new checkout has no runs: the tables come back from the records alone.
    doc2 = tmp_path / "doc2.md"
    doc2.write_text(blocks)
    gc.write_results(tmp_path / "empty", doc2, tmp_path / "fig2", records_dir=records)
    assert doc2.read_text().replace(str(tmp_path / "empty"), str(runs)) == text


def test_a_record_of_an_older_command_is_removed(tmp_path, capsys):
    runs, records = tmp_path / "runs", tmp_path / "records"
    dest = gc.seed_dir(records, "numberline-ppo", 2)
    dest.mkdir(parents=True)
    (dest / "report.json").write_text("{}")
    (dest / "record.json").write_text(json.dumps({"command": "rlvlm train numberline updates=9 seed=2"}))
    keep = gc.seed_dir(records, "numberline-ppo", 1)
    keep.mkdir(parents=True)
    (keep / "record.json").write_text(json.dumps(
        {"command": "rlvlm train numberline seed=1 output_dir=RUNS/numberline-ppo/seed1"}))
    rec.record_runs([gc.RUNS_BY_KEY["numberline-ppo"]], [1, 2], runs, records, progress=print)
    assert not dest.exists() and keep.exists()
    assert "stale record removed (numberline-ppo seed 2)" in capsys.readouterr().out


def test_measured_lists_each_distinct_commit_and_cpu(tmp_path):
    for seed, (commit, cpu) in enumerate([("abc1234", "AMD EPYC, AVX-512"), ("abc1234", "AMD EPYC, AVX-512"),
                                          ("def5678", "Intel Xeon, AVX-512")]):
        d = gc.seed_dir(tmp_path, "numberline-ppo", seed)
        d.mkdir(parents=True)
        (d / "record.json").write_text(json.dumps({"command": "c", "commit": commit, "cpu": cpu}))
    out = rec.measured([gc.RUNS_BY_KEY["numberline-ppo"], gc.RUNS_BY_KEY["ezpoints-ppo"]], [0, 1, 2], tmp_path)
    assert out == {"numberline-ppo": "abc1234, AMD EPYC, AVX-512; def5678, Intel Xeon, AVX-512", "ezpoints-ppo": ""}


def test_cpu_kind_is_a_short_name_with_the_avx512_flag():
    kind = rec.cpu_kind()
    assert kind and "(R)" not in kind and len(kind) < 60
    assert kind.endswith(("AVX-512", "no AVX-512")) or "," not in kind


def _write_config(run_dir, argv):
    """The config.yaml `rlvlm train` writes for `argv` (as rlvlm.cli resolves it)."""
    from rlvlm.config import load_config
    from rlvlm.config.loading import config_yaml
    from rlvlm.train.config import TrainConfig

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml(load_config(TrainConfig, argv[2], argv[3:])))


def test_a_run_whose_preset_changed_is_stale_and_its_record_is_dropped(tmp_path, capsys):
    runs, records = tmp_path / "runs", tmp_path / "records"
    run = gc.RUNS_BY_KEY["numberline-ppo"]
    src = _finished_seed(runs, run.key, 0, 0.7, 1.0)
    argv = run.seed_argv(runs, 0)
    _write_config(src, argv)
    assert not rec.config_changed(src / "config.yaml", argv, runs)
    rec.record_runs([run], [0], runs, records)
    dest = gc.seed_dir(records, run.key, 0)
    assert f"{runs}" not in (dest / "config.yaml").read_text()  # the record is portable
    assert not rec.config_changed(dest / "config.yaml", run.seed_argv(tmp_path / "elsewhere", 0), tmp_path / "elsewhere")

    # The preset changes under the saved run (here: the run had 7 more updates than the preset says now).
    for path in (src / "config.yaml", dest / "config.yaml"):
        tree = yaml.safe_load(path.read_text())
        tree["updates"] += 7
        path.write_text(yaml.safe_dump(tree))
    assert rec.config_changed(src / "config.yaml", argv, runs)
    assert rec.record_runs([run], [0], runs, records, progress=print) == 0
    assert not dest.exists()
    assert "config this command resolves to changed" in capsys.readouterr().out


def test_a_field_added_or_retired_since_the_run_keeps_its_record(tmp_path):
    """Only the keys both configs have are compared: a knob added with its default, or one retired
    (algo.name, issue 16), is a code change like any other, not a changed run."""
    runs = tmp_path / "runs"
    run = gc.RUNS_BY_KEY["numberline-ppo"]
    src = _finished_seed(runs, run.key, 0, 0.7, 1.0)
    argv = run.seed_argv(runs, 0)
    _write_config(src, argv)
    tree = yaml.safe_load((src / "config.yaml").read_text())
    tree["algo"]["name"] = "ppo"  # retired since
    del tree["algo"]["policy_loss"]  # added since
    (src / "config.yaml").write_text(yaml.safe_dump(tree))
    assert not rec.config_changed(src / "config.yaml", argv, runs)
    tree["algo"]["lr"] *= 2  # a shared key that differs: stale
    (src / "config.yaml").write_text(yaml.safe_dump(tree))
    assert rec.config_changed(src / "config.yaml", argv, runs)


def test_run_pairs_runs_a_stale_seed_again(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    run = gc.RUNS_BY_KEY["numberline-ppo"]
    fresh, stale = _finished_seed(runs, run.key, 0, 0.7, 1.0), _finished_seed(runs, run.key, 1, 0.7, 1.0)
    for seed, d in ((0, fresh), (1, stale)):
        _write_config(d, run.seed_argv(runs, seed))
    tree = yaml.safe_load((stale / "config.yaml").read_text())
    tree["algo"]["kl_coef"] += 0.125  # the run used another KL than the preset says now
    (stale / "config.yaml").write_text(yaml.safe_dump(tree))
    started = []
    monkeypatch.setattr(gc, "run_one", lambda argv, out, progress: started.append(out) or 1.0)
    gc.run_pairs([(run, 0), (run, 1)], runs, progress=lambda s: None)
    assert started == [stale]
    assert json.loads((stale / "provenance.json").read_text())["cpu"] == rec.cpu_kind()
