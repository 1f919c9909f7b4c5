"""Checkpoints: exact resume, RNG restore, pickle-free files, atomicity, pruning."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rlvlm.train.checkpoint import (
    CheckpointError, checkpoint_step, latest_checkpoint, list_checkpoints, load_checkpoint,
    load_checkpoint_config, load_state, policy_dir, resolve_checkpoint, save_checkpoint, save_state,
)


def make_run(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    return model, opt, sched


def train(model, opt, sched, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(8, 4)  # data and dropout masks both come from the global RNG
        y = x.sum(dim=1, keepdim=True) + float(np.random.rand()) + random.random()
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def save_weights(model):
    return lambda folder: save_file(model.state_dict(), str(folder / "model.safetensors"))


def test_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path: Path):
    model, opt, sched = make_run()
    train(model, opt, sched, 3)
    ckpt = save_checkpoint(tmp_path, 3, policy_save_fn=save_weights(model), optimizer=opt, scheduler=sched,
                           extra_state={"updates": 3, "env_steps": 96}, config_dict={"seed": 0})
    train(model, opt, sched, 4)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    random.seed(123), np.random.seed(123), torch.manual_seed(123)  # the resumed process starts elsewhere
    model2, opt2, sched2 = make_run(seed=99)
    model2.load_state_dict(load_file(str(policy_dir(ckpt) / "model.safetensors")))
    extra = load_checkpoint(tmp_path, opt2, sched2)  # a run directory resolves to its latest checkpoint
    assert extra == {"updates": 3, "env_steps": 96}
    assert sched2.last_epoch == 3
    train(model2, opt2, sched2, 4)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_rng_is_restored(tmp_path: Path):
    ckpt = save_checkpoint(tmp_path, 0, policy_save_fn=lambda d: None)
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.random(), np.random.rand(5), torch.rand(5)  # move every RNG on
    load_checkpoint(ckpt)
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected


def test_files_are_pickle_free(tmp_path: Path):
    model, opt, sched = make_run()
    train(model, opt, sched, 1)
    ckpt = save_checkpoint(tmp_path, 1, policy_save_fn=save_weights(model), optimizer=opt, scheduler=sched,
                           extra_state={}, config_dict={"model": {"name_or_path": "x"}})
    suffixes = {p.suffix for p in ckpt.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".safetensors", ".yaml"}
    for path in ckpt.glob("*.json"):
        json.loads(path.read_text())  # strict JSON
    assert load_checkpoint_config(ckpt) == {"model": {"name_or_path": "x"}}
    assert checkpoint_step(ckpt) == 1


def test_extra_state_round_trips_structure(tmp_path: Path):
    shared = torch.arange(6.0)
    state = {
        "counts": {0: 1, 7: (2, 3)},  # int keys and tuples survive JSON
        "stats": {"mean": torch.tensor(0.5, dtype=torch.float64), "m2": torch.ones(2, 3, dtype=torch.bfloat16)},
        "views": [shared, shared[2:4], torch.zeros(0), torch.zeros(0)],  # shared storage and empty tensors
        "arr": np.arange(5, dtype=np.uint32), "scalar": np.float32(1.5),
        "floats": [math.inf, -math.inf, 1e-300], "nan": math.nan, "none": None, "text": "ok",
        "__tensor__": "a user key that looks like a tag",
    }
    save_state(tmp_path, "s", state)
    back = load_state(tmp_path, "s")
    assert back["counts"] == {0: 1, 7: (2, 3)}
    assert back["stats"]["mean"].dtype == torch.float64 and back["stats"]["m2"].dtype == torch.bfloat16
    assert torch.equal(back["views"][1], torch.tensor([2.0, 3.0])) and back["views"][3].numel() == 0
    assert back["arr"].dtype == np.uint32 and back["arr"].tolist() == [0, 1, 2, 3, 4]
    assert back["scalar"] == 1.5 and back["floats"] == [math.inf, -math.inf, 1e-300] and math.isnan(back["nan"])
    assert back["__tensor__"] == "a user key that looks like a tag" and back["none"] is None
    with pytest.raises(TypeError, match=r"s2.bad is a object; checkpoint state may hold tensors"):
        save_state(tmp_path, "s2", {"bad": object()})


def test_failed_save_leaves_nothing(tmp_path: Path):
    save_checkpoint(tmp_path, 1, policy_save_fn=lambda d: None)

    def crash(folder: Path) -> None:
        (folder / "half.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, policy_save_fn=crash)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-1"]  # no step-2, no temp dir
    assert latest_checkpoint(tmp_path).name == "step-1"


def test_overwrite_prune_and_resolve(tmp_path: Path):
    assert latest_checkpoint(tmp_path) is None
    for step in (2, 10, 5):
        save_checkpoint(tmp_path, step, policy_save_fn=lambda d: None, extra_state={"v": step})
    save_checkpoint(tmp_path, 5, policy_save_fn=lambda d: None, extra_state={"v": 55})  # replaces step-5
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-5", "step-10"]
    assert load_checkpoint(tmp_path / "checkpoints" / "step-5", restore_rng=False) == {"v": 55}
    save_checkpoint(tmp_path, 11, policy_save_fn=lambda d: None, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-10", "step-11"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-10", "step-11"]
    assert resolve_checkpoint(tmp_path).name == "step-11"
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        resolve_checkpoint(tmp_path / "nowhere")


def test_optimizer_mismatch_is_a_clear_error(tmp_path: Path):
    model, opt, _ = make_run()
    train(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), 1)
    ckpt = save_checkpoint(tmp_path, 1, policy_save_fn=lambda d: None, optimizer=opt)
    other = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(CheckpointError, match="does not fit this optimizer"):
        load_checkpoint(ckpt, other, restore_rng=False)
    with pytest.raises(CheckpointError, match="no scheduler state"):
        load_checkpoint(ckpt, scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
