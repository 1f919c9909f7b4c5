"""The seed harness's aggregation (experiments/seeds.py), with hand-worked values."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest

from experiments.seeds import aggregate, fmt, git_commit, read_figures, spread_exceeds_gain, summarise


def test_aggregate_hand_worked():
    # mean 0.9; deviations -0.1, 0.1, 0, 0 -> sum of squares 0.02; / (n-1)=3 -> std sqrt(0.02/3) = 0.08165
    agg = aggregate([0.8, 1.0, 0.9, 0.9])
    assert agg["n"] == 4 and agg["missing"] == 0
    assert agg["mean"] == pytest.approx(0.9)
    assert agg["std"] == pytest.approx(math.sqrt(0.02 / 3))
    assert (agg["min"], agg["max"]) == (0.8, 1.0)


def test_aggregate_one_value_and_missing_values():
    assert aggregate([0.5]) == {"n": 1, "missing": 0, "mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}
    agg = aggregate([1.0, float("nan"), None, 0.0])
    assert (agg["n"], agg["missing"], agg["mean"]) == (2, 2, 0.5)
    assert agg["std"] == pytest.approx(math.sqrt(0.5))  # (0.25 + 0.25) / 1
    assert aggregate([])["mean"] is None


def test_spread_versus_gain():
    before = aggregate([0.5, 0.5, 0.5])
    # gain 0.9 - 0.5 = 0.4 against a spread of 1.0 - 0.8 = 0.2: the gain stands out
    assert not spread_exceeds_gain(before, aggregate([0.8, 0.9, 1.0]))
    # gain 0.6 - 0.5 = 0.1 against a spread of 0.9 - 0.3 = 0.6: it does not
    assert spread_exceeds_gain(before, aggregate([0.3, 0.6, 0.9]))


def test_summarise_names_the_worst_seed_and_the_gain():
    per_seed = {0: read_figures({"sft": {"success_rate": 0.5}, "final": {"success_rate": 1.0}, "wall_seconds": 200}),
                1: read_figures({"sft": {"success_rate": 0.4}, "final": {"success_rate": 0.7}, "wall_seconds": 210})}
    assert per_seed[0]["gain"] == pytest.approx(0.5)
    s = summarise(per_seed)
    assert s["worst_seed"] == 1
    assert s["gain"]["mean"] == pytest.approx(0.4)  # (0.5 + 0.3) / 2
    assert s["final"]["min"] == 0.7 and s["wall_seconds"]["max"] == 210
    assert s["spread_exceeds_gain"] is False  # spread 0.3 < gain 0.4
    assert fmt(s["final"]) == "0.850 ± 0.212 (worst 0.700)"
    assert fmt(aggregate([])) == "–"


def test_summary_names_the_commit_it_measured():
    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    got = git_commit()
    assert got is not None and got.split("+")[0] == head
    assert got in (head, head + "+dirty")
