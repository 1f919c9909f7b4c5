"""Resume equivalence (issue 16): a run interrupted after update 1 and resumed in a new `train`
call is the uninterrupted run from there on: weights, KL reference, metrics and report."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rlvlm.config import load_config
from rlvlm.train.checkpoint import load_state
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _rows(run) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def _run_twice(model_dir, tmp_path, *overrides):
    common = [f"model.name_or_path={model_dir}", "updates=3", "checkpoint_every=1", "checkpoint_keep=0",
              "eval.episodes=4", "algo.lr=0.003", *overrides]
    full_dir, part_dir = tmp_path / "full", tmp_path / "part2"
    full = train(load_config(TrainConfig, "smoke", [*common, f"output_dir={full_dir}"]), progress=lambda s: None)
    resumed = train(load_config(TrainConfig, "smoke", [*common, f"output_dir={part_dir}",
                                                       f"resume={full_dir / 'checkpoints' / 'step-1'}"]),
                    progress=lambda s: None)
    return full_dir, part_dir, full, resumed


def _untimed(d):
    """A report entry without its wall-clock fields (seconds differ between any two runs)."""
    if isinstance(d, dict):
        return {k: _untimed(v) for k, v in d.items() if "seconds" not in k}
    return d


def _weights(run, step):
    return load_file(str(run / "checkpoints" / f"step-{step}" / "policy" / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ppo_with_a_reference_copy_resumes_exactly(model_dir, tmp_path):
    # A warm-start, then PPO with KL to a frozen copy of the warm-started policy (as the rlhf preset).
    full_dir, part_dir, full, resumed = _run_twice(model_dir, tmp_path, "sft.episodes=4", "model.reference=copy",
                                                   "algo.kl_coef=0.1")
    ref_full = load_state(full_dir / "checkpoints" / "step-3", "reference")
    ref_resumed = load_state(part_dir / "checkpoints" / "step-3", "reference")
    # The reference is the warm-start throughout, not the checkpoint's trained weights (the bug: a
    # resumed run's reference was the step-1 policy).
    assert _same(ref_full, load_state(full_dir / "checkpoints" / "step-1", "reference"))
    assert _same(ref_resumed, ref_full)
    trained = _weights(full_dir, 1)
    assert any(not torch.equal(ref_full[k], trained[k]) for k in trained if k in ref_full)
    assert _same(_weights(part_dir, 3), _weights(full_dir, 3))
    assert _rows(part_dir) == _rows(full_dir)[1:]  # updates 2 and 3, to the last digit
    assert any(r["policy/kl"] > 0 for r in _rows(full_dir))
    for key in ("sft", "sft_training", "final", "env_steps"):
        assert _untimed(resumed[key]) == _untimed(full[key]), key


def test_grpo_resumes_exactly(model_dir, tmp_path):
    full_dir, part_dir, full, resumed = _run_twice(model_dir, tmp_path, "sft.episodes=0", "algo.advantage=grpo",
                                                   "rollout.group_size=2", "model.value_head=false")
    assert _same(_weights(part_dir, 3), _weights(full_dir, 3))
    assert _rows(part_dir) == _rows(full_dir)[1:]
    assert _untimed(resumed["final"]) == _untimed(full["final"]) and resumed["env_steps"] == full["env_steps"]
