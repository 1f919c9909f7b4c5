"""The side-by-side benchmark's rlvlm step and its summaries (TRL itself is the optional [bench] extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import grpo_vs_trl as bench  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_questions_are_the_envs_digit_prompts():
    qs, again = bench.questions(3), bench.questions(3)
    assert len(qs) == 3  # both frameworks get the same questions: generation is deterministic
    assert all(a["text"] == b["text"] and a["answers"] == b["answers"] and (a["image"] == b["image"]).all()
               for a, b in zip(qs, again))
    assert all(q["image"].shape == (bench.IMAGE_SIZE, bench.IMAGE_SIZE, 3) for q in qs)
    assert all(q["answers"] and "digit" in q["text"] for q in qs)


def test_accuracy_reward_reads_the_json_answer():
    assert bench.accuracy('{"thoughts": "it is 7", "answer": "7"}', ["7"]) == 1.0
    assert bench.accuracy('{"thoughts": "it is 7", "answer": "1"}', ["7"]) == 0.0
    assert bench.accuracy("no json here", ["7"]) == 0.0


def test_rlvlm_step_reports_throughput_memory_and_phases():
    shape = {"size": "tiny", "prompts": 2, "generations": 2, "max_new_tokens": 4}
    r = bench.run_rlvlm(shape, steps=1, warmup=0, options={})
    assert r["framework"] == "rlvlm" and r["steps"] == 1
    assert r["completions_per_s"] > 0 and 0 < r["mean_completion_tokens"] <= 4
    assert r["tokens_per_s"] == pytest.approx(r["completions_per_s"] * r["mean_completion_tokens"])
    assert r["peak_rss_mib"] >= r["rss_after_setup_mib"] > 0
    assert set(r["phase_seconds"]) == {"generate", "reward", "other_prep", "forward", "backward", "optimizer"}
    assert r["phase_seconds"]["forward"] > 0 and r["phase_seconds"]["backward"] > 0
    assert sum(r["phase_seconds"].values()) <= r["seconds_per_step"] * 1.01


def _row(fw, size, cps, rss, options=None, gen=1.0, train=2.0):
    return {"framework": fw, "shape": {"size": size}, "options": options or {}, "completions_per_s": cps,
            "peak_rss_mib": rss, "phase_seconds_generate": gen, "phase_seconds_train": train}


def test_ratios_and_lever_effects_by_hand():
    rows = [_row("rlvlm", "tiny", 30.0, 500), _row("rlvlm", "tiny", 50.0, 600), _row("trl", "tiny", 20.0, 1000),
            _row("rlvlm", "tiny", 20.0, 700, {"share_prompts": False}, gen=2.0)]
    (r,) = bench.ratios(rows)
    assert r["completions_per_s_ratio"] == pytest.approx(40.0 / 20.0)  # mean of rlvlm runs / TRL
    assert r["peak_rss_ratio"] == pytest.approx(600 / 1000)  # worst rlvlm peak / worst TRL peak
    (e,) = bench.lever_effects(rows)
    assert e["lever"] == "share_prompts" and e["speedup"] == pytest.approx(2.0)
    assert (e["generate_s_on"], e["generate_s_off"]) == (1.0, 2.0)
    # An opt-in lever (off by default): "with it" is the toggled run.
    rows.append(_row("rlvlm", "tiny", 60.0, 450, {"static_cache": True}, gen=0.5))
    e = {x["lever"]: x for x in bench.lever_effects(rows)}["static_cache"]
    assert e["default"] is False and e["speedup"] == pytest.approx(60.0 / 40.0) and e["generate_s_on"] == 0.5
