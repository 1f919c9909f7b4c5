"""The per-update learning-rate factors of `rlvlm.train.rl.lr_schedule`, against hand-worked values."""

from __future__ import annotations

import pytest
import torch

from rlvlm.train.rl import lr_schedule


def _lrs(updates: int, warmup: int, kind: str, decay: int = 0) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = lr_schedule(opt, updates, warmup, kind, decay)
    seen = []
    for _ in range(updates):  # the trainer reads the lr of an update, steps, then the scheduler steps once
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


def test_wsd_holds_then_falls_linearly_to_one_over_decay():
    # 6 updates, decay over the last 4: factors 1, 1, then (6-2)/4, (6-3)/4, (6-4)/4, (6-5)/4.
    assert _lrs(6, 0, "wsd", 4) == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.5, 0.25])


def test_wsd_after_a_warm_up():
    # warm-up 2: 1/2, 2/2; then constant; decay 2 over the last two of 5 updates: 2/2 ... (5-3)/2=1, (5-4)/2.
    assert _lrs(5, 2, "wsd", 2) == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.5])


def test_constant_and_cosine():
    assert _lrs(4, 0, "constant") == pytest.approx([1.0] * 4)
    # cosine over 4 updates: 0.5 (1 + cos(pi k / 4)) for k = 0..3.
    assert _lrs(4, 0, "cosine") == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-6)
