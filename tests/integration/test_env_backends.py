"""`env.backend=processes` in `rlvlm train`: the same run as in-process envs, and a resume that
replays the envs' episodes inside the workers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rlvlm.config import load_config
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

COMMON = ["updates=3", "checkpoint_every=1", "checkpoint_keep=0", "sft.episodes=0", "eval.episodes=2", "algo.lr=0.001"]


def _train(model_dir, out, *extra):
    cfg = load_config(TrainConfig, "smoke", [f"model.name_or_path={model_dir}", f"output_dir={out}", *COMMON, *extra])
    return train(cfg, progress=lambda s: None)


def _metrics(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def _weights(run, step):
    return load_file(str(run / "checkpoints" / f"step-{step}" / "policy" / "model.safetensors"))


def test_worker_envs_train_the_in_process_run_and_resume_it(model_dir, tmp_path):
    _train(model_dir, tmp_path / "inprocess")
    _train(model_dir, tmp_path / "workers", "env.backend=processes")
    assert _metrics(tmp_path / "inprocess") == _metrics(tmp_path / "workers")
    # Resumed with worker envs from the in-process run's update 1: the collector replays each env's
    # episode so far in its worker, and the run ends on the same weights.
    _train(model_dir, tmp_path / "resumed", "env.backend=processes",
           f"resume={tmp_path / 'inprocess' / 'checkpoints' / 'step-1'}")
    a, b = _weights(tmp_path / "inprocess", 3), _weights(tmp_path / "resumed", 3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
