"""Gradient accumulation (`algo.micro_batch_size`): micro-batches summed into one step equal the
whole minibatch's step, in one process (tests/distributed checks it across 2 processes too)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.train.config import TrainConfig
from rlvlm.train.distributed import SINGLE

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

_spec = importlib.util.spec_from_file_location(
    "run_update", Path(__file__).parent.parent / "distributed" / "run_update.py")
run_update = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_update)


@pytest.mark.slow
def test_micro_batches_give_the_minibatch_update(model_dir):
    for opt, tol in (("sgd", 1e-6), ("adamw", 1e-5)):
        before, whole, _, n = run_update._one_update(SINGLE, str(model_dir), "gae", opt)
        _, micro, metrics, _ = run_update._one_update(SINGLE, str(model_dir), "gae_micro", opt)
        assert n == 8 and metrics["update/optimizer_steps"] == 2  # 2 epochs x one minibatch of 8, in 4 pieces
        diff = max(float((whole[k] - micro[k]).abs().max()) for k in whole)
        moved = max(float((whole[k] - before[k]).abs().max()) for k in whole)
        assert diff <= tol and moved > 20 * tol, (opt, diff, moved)  # measured: sgd 7.5e-8, adamw 4.9e-6


def test_negative_micro_batch_size_is_refused():
    with pytest.raises(ConfigError, match=r"algo.micro_batch_size=-1 must be >= 0; fix"):
        load_config(TrainConfig, "smoke", ["algo.micro_batch_size=-1"]).validate()
