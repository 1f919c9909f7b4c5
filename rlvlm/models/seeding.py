"""Random streams: one seed point for a run, and private streams for side work.

A run's numbers must depend only on its config and seed (issue 15). Two rules
make that hold:

- `seed_everything(seed)` resets Python's, NumPy's and torch's global streams
  (CPU and every CUDA device) at the point where training starts, so nothing that
  ran earlier in the process (a model build, another run, a test) leaks in.
- Work that is not part of the training stream (building a tiny model,
  evaluation with sampling) draws from `private_stream(seed)`: a forked copy of
  the global streams, seeded for that work and restored afterwards. It therefore
  neither depends on nor shifts what training draws next.

Bit-reproducibility holds for the same CPU kind, thread count and library
versions; a different CPU kind or `torch.get_num_threads()` changes float
rounding in reductions, and sampled tokens can then diverge. So a run pins
torch's CPU thread count (`cpu_threads`, config `threads`, default 1): without
that, the same command on a 2-core CI box and on an 8-core laptop were two
different runs (measured: NumberLine seed 0's warm-start 0.734 with 1 thread,
0.816 with 2).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's legacy global stream and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the body with torch using `n` CPU threads (0: leave torch's default), then restore."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextmanager
def private_stream(seed: int) -> Iterator[None]:
    """Run the body on freshly seeded global streams, then restore the caller's streams exactly."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=_cuda_devices()):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
