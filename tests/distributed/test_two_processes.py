"""Data-parallel training on 2 CPU processes (gloo), started the way a user starts it:
`accelerate launch --multi_gpu --num_processes 2` (issue 18).

- one update on 2 processes x B/2 samples equals one on 1 process x B (PPO with a
  value head, GRPO), with SGD and with the trainer's AdamW;
- a 2-process `rlvlm train smoke` writes one run directory (one metrics row per
  update), and its checkpoint resumes under 2 processes into the same run;
- resuming it with another number of processes fails with the fix.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
ACCELERATE = Path(sys.executable).with_name("accelerate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int, *, check: bool = True, timeout: int = 300):
    """Run `python ARGS` alone, or under `accelerate launch` with `processes` CPU processes."""
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port()), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


@pytest.mark.parametrize("setup", ["gae", "grpo"])
def test_two_processes_update_equals_one_process(model_dir, tmp_path, setup):
    script = str(HERE / "run_update.py")
    launch([script, str(model_dir), setup, str(tmp_path / "one.safetensors")], 1)
    launch([script, str(model_dir), setup, str(tmp_path / "two.safetensors")], 2)
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert one.keys() == two.keys()
    # fp32. AdamW divides each gradient by its own running size, so rounding noise in a gradient
    # near Adam's eps moves a weight by up to ~lr x noise / eps: measured 7.8e-6 (gae), 5.1e-6 (grpo).
    # SGD has no such gain: 1.2e-7 for both.
    for opt, tol in (("sgd", 1e-6), ("adamw", 1e-5)):
        after = [k for k in one if k.startswith(f"{opt}/after/")]
        assert after
        diff = max(float((one[k] - two[k]).abs().max()) for k in after)
        moved = max(float((one[k] - one[k.replace("/after/", "/before/")]).abs().max()) for k in after)
        # The same parameters, after an update that moved them by far more than the tolerance.
        assert diff <= tol, (setup, opt, diff)
        assert moved > 20 * tol, (setup, opt, moved)


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_two_process_smoke_run_writes_one_run_and_resumes(model_dir, tmp_path):
    common = ["-m", "rlvlm.cli", "train", "smoke", f"model.name_or_path={model_dir}", "updates=3",
              "checkpoint_every=1", "checkpoint_keep=0", "eval.episodes=4", "algo.lr=0.003"]
    full, part = tmp_path / "full", tmp_path / "part"
    out = launch([*common, f"output_dir={full}"], 2)
    assert "2 processes" in out.stdout
    assert out.stdout.count("[done]") == 1  # rank 0 alone reports
    rows = _rows(full)
    assert [r["update"] for r in rows] == [1, 2, 3]  # one row per update, not one per rank
    # Steps of both ranks: 4 envs x 2 steps per update, counted once each.
    assert [r["rollout/env_steps"] for r in rows] == [8, 16, 24]
    step1 = full / "checkpoints" / "step-1"
    assert (step1 / "rank1.json").is_file()  # rank 1's streams and envs
    assert json.loads((full / "report.json").read_text())["final"]["episodes"] == 4  # sharded, then gathered

    launch([*common, f"output_dir={part}", f"resume={step1}"], 2)
    # The resumed run is the uninterrupted one from update 2 on.
    assert _rows(part) == rows[1:]
    a = load_file(str(full / "checkpoints" / "step-3" / "policy" / "model.safetensors"))
    b = load_file(str(part / "checkpoints" / "step-3" / "policy" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)

    bad = launch([*common, f"output_dir={tmp_path / 'bad'}", f"resume={step1}"], 1, check=False)
    assert bad.returncode != 0
    assert "saved by 2 process(es)" in bad.stderr and "--num_processes 2" in bad.stderr
