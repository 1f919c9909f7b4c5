"""A run's numbers depend only on its config and seed (issue 15).

Not on whether the tiny model was built in-process, read from the cache or
loaded from a directory; not on the current directory; not on what ran earlier
in the same process. Wall-clock fields (`time/*`) are the only ones allowed to differ.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from rlvlm.config import load_config
from rlvlm.models.tiny import cache_dir, cached_tiny_model
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

ARGS = ["updates=2", "sft.episodes=2", "sft.epochs=2", "eval.episodes=4", "eval.num_envs=4", "algo.lr=0.001"]


def _run(model: str, out, *extra) -> tuple[list[dict], dict]:
    cfg = load_config(TrainConfig, "smoke", [f"model.name_or_path={model}", f"output_dir={out}", *ARGS, *extra])
    report = train(cfg, progress=lambda s: None)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in m.items() if not k.startswith("time/")} for m in lines]
    figures = {k: report[k] for k in ("sft", "final")}
    for f in figures.values():
        f.pop("seconds", None)
        f.pop("mean_reply_seconds", None)
    return strip, figures


def test_same_seed_same_run_whatever_the_model_source_cwd_or_history(tmp_path, monkeypatch):
    monkeypatch.setenv("RLVLM_CACHE", str(tmp_path / "cache"))
    # 1. Empty cache: the model is built inside the run (its build draws random numbers).
    cold = _run("tiny:qwen2_vl", tmp_path / "cold")
    # 2. Warm cache, after other work has used every global stream in this process.
    random.random(), np.random.rand(), torch.rand(3)
    warm = _run("tiny:qwen2_vl", tmp_path / "warm")
    # 3. The same model as a plain directory, from another current directory, relative output_dir.
    model_dir = cached_tiny_model("qwen2_vl")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    torch.manual_seed(12345)
    other = _run(str(model_dir), tmp_path / "elsewhere" / "rel")
    assert len(cold[0]) == 2
    assert cold == warm
    assert cold == other
    # A different seed is a different run (the comparison above can fail).
    seed1 = _run(str(model_dir), tmp_path / "seed1", "seed=1")
    assert seed1[0] != cold[0]


def test_cache_dir_honours_rlvlm_cache_then_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("RLVLM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == (tmp_path / "xdg" / "rlvlm").resolve()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLVLM_CACHE", "rel-cache")  # relative: pinned to where it was read
    assert cache_dir() == (tmp_path / "rel-cache").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("RLVLM_CACHE")
    assert cache_dir().is_absolute() and cache_dir().name == "rlvlm"


def test_building_a_tiny_model_leaves_the_global_streams_alone(tmp_path):
    from rlvlm.models.tiny import build_tiny_model

    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    build_tiny_model(tmp_path / "m", "qwen2_vl", "tiny", seed=0)
    assert torch.equal(torch.rand(4), expected)


def test_the_callers_thread_count_does_not_change_the_run(tmp_path, monkeypatch):
    """`threads` (default 1) pins torch's CPU threads for the run and restores the caller's afterwards.

    Without the pin, a 2-core CI box and a laptop with more cores ran the same
    seed as two different runs (float rounding in reductions).
    """
    monkeypatch.setenv("RLVLM_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("tiny:qwen2_vl", tmp_path / "one")
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        two = _run("tiny:qwen2_vl", tmp_path / "two")
        assert torch.get_num_threads() == 2  # restored after the run
        assert one == two
        # And the pin is what makes them equal: the run really uses cfg.threads.
        seen = []
        monkeypatch.setattr("rlvlm.train.rl._train", lambda cfg, progress, dist: seen.append(torch.get_num_threads()))
        train(load_config(TrainConfig, "smoke", [f"output_dir={tmp_path / 'three'}", "threads=3"]))
        assert seen == [3] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
