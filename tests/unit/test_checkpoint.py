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
    load_checkpoint_config, load_state, policy_dir, prune_checkpoints, resolve_checkpoint, save_checkpoint,
    save_state,
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


# --- keep-last-K pruning (TrainConfig.checkpoint_keep) -------------------------------------------


def _names(run_dir: Path) -> list[str]:
    """Every entry of checkpoints/, dot-folders included, sorted by name."""
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def _save(run_dir: Path, step: int, keep_last, **kw) -> Path:
    return save_checkpoint(run_dir, step, policy_save_fn=lambda d: (d / "w.safetensors").write_bytes(b"x"),
                           extra_state={"v": step}, keep_last=keep_last, **kw)


def test_keep_last_2_over_steps_1_to_5_leaves_step_4_and_5(tmp_path: Path):
    # Hand-worked: after each save the newest two (at or below the step just saved) remain.
    expected = {1: ["step-1"], 2: ["step-1", "step-2"], 3: ["step-2", "step-3"], 4: ["step-3", "step-4"],
                5: ["step-4", "step-5"]}
    for step in range(1, 6):
        _save(tmp_path, step, keep_last=2)
        assert [p.name for p in list_checkpoints(tmp_path)] == expected[step]
    assert _names(tmp_path) == ["step-4", "step-5"]  # nothing half-deleted or temporary left behind
    assert resolve_checkpoint(tmp_path).name == "step-5"
    assert load_checkpoint(tmp_path, restore_rng=False) == {"v": 5}


@pytest.mark.parametrize("keep_last", [0, None])
def test_keep_last_0_or_none_keeps_every_checkpoint(tmp_path: Path, keep_last):
    for step in range(1, 6):
        _save(tmp_path, step, keep_last=keep_last)
    assert _names(tmp_path) == [f"step-{s}" for s in range(1, 6)]
    assert prune_checkpoints(tmp_path, 0) == [] and len(list_checkpoints(tmp_path)) == 5
    assert [p.name for p in prune_checkpoints(tmp_path, 1)] == ["step-1", "step-2", "step-3", "step-4"]
    assert _names(tmp_path) == ["step-5"]


def test_keep_last_never_deletes_the_checkpoint_just_written(tmp_path: Path):
    # Higher steps left by an earlier run into the same folder: the step just written is the
    # lowest, so a naive "newest K by step" would delete it. Steps above it are not touched.
    for step in (10, 20):
        _save(tmp_path, step, keep_last=None)
    _save(tmp_path, 3, keep_last=1)
    assert _names(tmp_path) == ["step-10", "step-20", "step-3"]
    _save(tmp_path, 4, keep_last=1)
    assert _names(tmp_path) == ["step-10", "step-20", "step-4"]
    _save(tmp_path, 4, keep_last=1)  # replacing the newest keeps it too
    assert _names(tmp_path) == ["step-10", "step-20", "step-4"]


def test_a_prune_interrupted_mid_delete_is_never_picked_up(tmp_path: Path, monkeypatch):
    import rlvlm.train.checkpoint as ck

    _save(tmp_path, 1, keep_last=2)
    _save(tmp_path, 2, keep_last=2)
    real_rmtree = ck.shutil.rmtree

    def crash_midway(path, ignore_errors=False):
        (Path(path) / "policy" / "w.safetensors").unlink()  # part of the folder is gone ...
        raise KeyboardInterrupt  # ... when the process dies

    monkeypatch.setattr(ck.shutil, "rmtree", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 3, keep_last=2)
    monkeypatch.setattr(ck.shutil, "rmtree", real_rmtree)
    names = _names(tmp_path)
    assert len(names) == 3 and names[0].startswith(".trash-step-1-") and names[1:] == ["step-2", "step-3"]
    # The half-deleted folder went out of the step-N namespace before the first file was removed.
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-3"]
    assert resolve_checkpoint(tmp_path).name == "step-3"
    _save(tmp_path, 4, keep_last=2)  # the next prune sweeps the leftover
    assert _names(tmp_path) == ["step-3", "step-4"]


def test_resolve_skips_folders_that_are_not_complete_checkpoints(tmp_path: Path):
    _save(tmp_path, 2, keep_last=None)
    root = tmp_path / "checkpoints"
    (root / "step-9" / "policy").mkdir(parents=True)  # no meta.json: incomplete
    trash = root / ".trash-step-8-deadbeef"
    _save(tmp_path, 8, keep_last=None).rename(trash)  # complete, but renamed away for deletion
    assert resolve_checkpoint(tmp_path).name == "step-2"
    assert [p.name for p in prune_checkpoints(tmp_path, 1)] == []  # one complete checkpoint: nothing to drop
    assert not trash.exists() and (root / "step-9").exists()  # swept trash; the unknown folder is left alone


def test_failed_replace_puts_the_old_checkpoint_back(tmp_path: Path, monkeypatch):
    import rlvlm.train.checkpoint as ck

    _save(tmp_path, 5, keep_last=2)
    real_rename = ck.os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".tmp-step-"):
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(ck.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(tmp_path, 5, policy_save_fn=lambda d: None, extra_state={"v": 55}, keep_last=2)
    assert _names(tmp_path) == ["step-5"]
    assert load_checkpoint(tmp_path, restore_rng=False) == {"v": 5}


def test_bad_keep_last_is_refused_before_anything_is_written(tmp_path: Path):
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="keep_last=.* must be an int >= 0"):
            _save(tmp_path, 1, keep_last=bad)
    assert not (tmp_path / "checkpoints").exists() or _names(tmp_path) == []


def test_checkpoint_keep_config_default_and_bad_value(tmp_path: Path):
    from rlvlm.config import apply_overrides
    from rlvlm.errors import ConfigError
    from rlvlm.train.config import TrainConfig

    cfg = TrainConfig()
    assert cfg.checkpoint_keep == 3
    assert apply_overrides(cfg, ["checkpoint_keep=0"]).checkpoint_keep == 0
    with pytest.raises(ConfigError, match=r"^checkpoint_keep=-1 must be >= 0; fix: set checkpoint_keep=K") as err:
        apply_overrides(cfg, ["checkpoint_keep=-1"])
    assert "\n" not in str(err.value)


def test_run_outputs_prune_keeps_the_final_checkpoint(tmp_path: Path):
    """rl.py's pattern: periodic checkpoints every 2 updates, then the final one at `updates`."""
    from types import SimpleNamespace

    from rlvlm.config import apply_overrides
    from rlvlm.train.config import TrainConfig
    from rlvlm.train.outputs import RunOutputs
    from rlvlm.train.state import TrainState

    cfg = apply_overrides(TrainConfig(), [f"output_dir={tmp_path}", "updates=5", "checkpoint_every=2",
                                          "checkpoint_keep=1"])
    out = RunOutputs(cfg)
    stub = SimpleNamespace(state_dict=lambda: {"s": 1})
    policy = SimpleNamespace(save=lambda d: (Path(d) / "w.safetensors").write_bytes(b"x"), reference=None)
    state = TrainState(policy, None, None, stub, stub)
    try:
        for update in range(1, cfg.updates + 1):
            if update % cfg.checkpoint_every == 0:
                state.update, state.env_steps = update, update * 8
                out.checkpoint(state)
                assert _names(tmp_path) == [f"step-{update}"]
        state.update, state.env_steps, state.report = cfg.updates, 40, {"final": True}
        out.checkpoint(state)
    finally:
        out.logger.close()
    assert _names(tmp_path) == ["step-5"]
    assert load_checkpoint(tmp_path, restore_rng=False)["report"] == {"final": True}
