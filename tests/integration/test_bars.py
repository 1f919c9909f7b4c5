"""The recipe bars of issue 15 for the presets too long for CI (help-seeking
17-22 min per run, fast-and-right about 5 min, on the 2-core machine).
Skipped unless RLVLM_BARS=1; `bash scripts/check_bars.sh` runs them. The main
job's bars run in CI (tests/integration/test_learning.py)."""

from __future__ import annotations

import os

import pytest

from rlvlm.config import load_config
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.skipif(os.environ.get("RLVLM_BARS") != "1",
                       reason="20+ min per run; set RLVLM_BARS=1 (bash scripts/check_bars.sh)"),
]


def _sft_and_final(preset: str, out, seed: int) -> tuple[dict, dict]:
    """The preset as shipped on `seed`: its evaluations after the warm-start and after RL."""
    report = train(load_config(TrainConfig, preset, [f"output_dir={out}", f"seed={seed}"]), progress=lambda s: None)
    return report["sft"], report["final"]


@pytest.mark.parametrize("seed", [0, 1])
def test_help_seeking_asks_where_it_should_and_keeps_reading(tmp_path, seed):
    sft, final = _sft_and_final("help-seeking", tmp_path, seed)
    assert final["help/episodes"] == 500
    assert final["help/ask_f1"] >= 0.95, f"seed {seed}: ask F1 {final['help/ask_f1']:.3f}"
    assert final["help/accuracy_clear"] >= sft["help/accuracy_clear"] - 0.01, (
        f"seed {seed}: clear accuracy {sft['help/accuracy_clear']:.3f} -> {final['help/accuracy_clear']:.3f}")
    assert final["help/false_ask_rate"] < 0.1  # an over-abstaining policy is a failure, never a result


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_and_right_cuts_tokens_and_keeps_accuracy(tmp_path, seed):
    sft, final = _sft_and_final("fast-and-right", tmp_path, seed)
    assert final["episodes"] == 500
    tokens, base = final["mean_completion_tokens"], sft["mean_completion_tokens"]
    assert tokens <= 0.7 * base, f"seed {seed}: tokens per reply {base:.1f} -> {tokens:.1f}, not 30 % fewer"
    assert final["success_rate"] >= sft["success_rate"], (
        f"seed {seed}: accuracy {sft['success_rate']:.3f} -> {final['success_rate']:.3f}, below the warm-start")
