"""Data-parallel training on 2 CPU processes (gloo), started the way a user starts it:
`accelerate launch --multi_gpu --num_processes 2`, or `--config_file configs/accelerate/X.yaml`
for FSDP2 and DeepSpeed ZeRO-2/3 (issue 18).

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
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
ACCELERATE = Path(sys.executable).with_name("accelerate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int, *, config: Path | None = None, check: bool = True, timeout: int = 300):
    """Run `python ARGS` alone, or under `accelerate launch` with `processes` CPU processes
    (DDP, or what the accelerate `config` file says)."""
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        backend = ["--config_file", str(config)] if config else ["--multi_gpu", "--num_machines", "1",
                                                                 "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd = [str(ACCELERATE), "launch", *backend, "--num_processes", str(processes),
               "--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port()), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


FSDP2 = ROOT / "configs" / "accelerate" / "fsdp2.yaml"
CONFIGS = {"ddp": None, "fsdp2": FSDP2, "zero2": ROOT / "configs" / "accelerate" / "zero2.yaml",
           "zero3": ROOT / "configs" / "accelerate" / "zero3.yaml"}


def needs(backend: str) -> None:
    """DeepSpeed is optional (the [deepspeed] extra, in [dev]): its tests run where it is installed."""
    if backend.startswith("zero"):
        pytest.importorskip("deepspeed")


@pytest.fixture(scope="module")
def one_process(model_dir, tmp_path_factory):
    """The 1-process update of each setup, run once and compared with every 2-process backend."""
    out = tmp_path_factory.mktemp("one")
    cache: dict[str, dict] = {}

    def get(setup: str) -> dict:
        if setup not in cache:
            path = out / f"{setup}.safetensors"
            launch([str(HERE / "run_update.py"), str(model_dir), setup, str(path)], 1)
            cache[setup] = load_file(str(path))
        return cache[setup]

    return get


# (backend, 2-process setup, 1-process setup): gae_micro accumulates micro-batches of 2 on each
# rank, so it is compared with the plain 1-process update.
CASES = [("ddp", "gae", "gae"), ("ddp", "grpo", "grpo"), ("ddp", "gae_micro", "gae"), ("fsdp2", "gae", "gae"),
         ("fsdp2", "grpo_lora", "grpo_lora"), ("zero2", "gae", "gae"), ("zero2", "gae_micro", "gae"),
         ("zero3", "grpo", "grpo"), ("zero3", "grpo_lora", "grpo_lora")]


@pytest.mark.parametrize("backend,setup,single", CASES)
def test_two_processes_update_equals_one_process(model_dir, tmp_path, one_process, backend, setup, single):
    needs(backend)
    path = tmp_path / "two.safetensors"
    launch([str(HERE / "run_update.py"), str(model_dir), setup, str(path)], 2, config=CONFIGS[backend])
    one, two = one_process(single), load_file(str(path))
    assert one.keys() == two.keys()
    # fp32. AdamW divides each gradient by its own running size, so rounding noise in a gradient
    # near Adam's eps moves a weight by up to ~lr x noise / eps: measured 7.8e-6 (gae), 5.1e-6 (grpo),
    # 8.9e-6 (ZeRO-3 gae_micro). SGD has no such gain: at most 1.5e-7.
    for opt, tol in (("sgd", 1e-6), ("adamw", 1e-5)):
        after = [k for k in one if k.startswith(f"{opt}/after/")]
        assert after
        diff = max(float((one[k] - two[k]).abs().max()) for k in after)
        moved = max(float((one[k] - one[k.replace("/after/", "/before/")]).abs().max()) for k in after)
        # The same parameters, after an update that moved them by far more than the tolerance.
        assert diff <= tol, (backend, setup, opt, diff)
        assert moved > 20 * tol, (backend, setup, opt, moved)


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


def test_fsdp2_run_saves_an_ordinary_policy_and_resumes(model_dir, tmp_path):
    """FSDP2 on 2 processes: updates sharded, checkpoint gathered whole, loaded again, resumed."""
    from rlvlm.models.policy import load_policy

    common = ["-m", "rlvlm.cli", "train", "smoke", f"model.name_or_path={model_dir}", "updates=2",
              "checkpoint_every=1", "checkpoint_keep=0", "eval.episodes=4", "algo.lr=0.003"]
    full, part = tmp_path / "full", tmp_path / "part"
    out = launch([*common, f"output_dir={full}"], 2, config=FSDP2)
    assert "2 processes (FSDP2)" in out.stdout
    step1, step2 = full / "checkpoints" / "step-1", full / "checkpoints" / "step-2"
    # The saved policy is a plain one: it loads in one process, its weights the gathered whole ones.
    saved = load_policy(step2 / "policy")
    w1 = load_file(str(step1 / "policy" / "model.safetensors"))
    w2 = load_file(str(step2 / "policy" / "model.safetensors"))
    assert max(float((w2[k] - w1[k]).abs().max()) for k in w1) > 1e-4  # update 2 changed them
    again = load_file(str(saved.save(tmp_path / "again") / "model.safetensors"))
    assert again.keys() == w2.keys() and all(torch.equal(again[k], w2[k]) for k in w2)
    launch([*common, f"output_dir={part}", f"resume={step1}"], 2, config=FSDP2)
    assert _rows(part) == _rows(full)[1:]
    w2b = load_file(str(part / "checkpoints" / "step-2" / "policy" / "model.safetensors"))
    assert all(torch.equal(w2[k], w2b[k]) for k in w2)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_run_resumes_into_the_same_run(model_dir, tmp_path, stage):
    """DeepSpeed ZeRO on 2 processes: the SFT warm-start's engine, then the RL update's; the
    checkpoint holds whole weights and a whole AdamW state, and resuming equals the full run."""
    needs(f"zero{stage}")
    from rlvlm.models.policy import load_policy

    common = ["-m", "rlvlm.cli", "train", "smoke", f"model.name_or_path={model_dir}", "updates=2",
              "checkpoint_every=1", "checkpoint_keep=0", "eval.episodes=4", "algo.lr=0.003"]
    full, part = tmp_path / "full", tmp_path / "part"
    out = launch([*common, f"output_dir={full}"], 2, config=CONFIGS[f"zero{stage}"])
    assert f"2 processes (DeepSpeed ZeRO-{stage})" in out.stdout
    step1, step2 = full / "checkpoints" / "step-1", full / "checkpoints" / "step-2"
    w1 = load_file(str(step1 / "policy" / "model.safetensors"))
    w2 = load_file(str(step2 / "policy" / "model.safetensors"))
    assert max(float((w2[k] - w1[k]).abs().max()) for k in w1) > 1e-4  # update 2 changed them
    load_policy(step2 / "policy")  # an ordinary policy directory (stage 3: gathered whole)
    launch([*common, f"output_dir={part}", f"resume={step1}"], 2, config=CONFIGS[f"zero{stage}"])
    assert _rows(part) == _rows(full)[1:]
    w2b = load_file(str(part / "checkpoints" / "step-2" / "policy" / "model.safetensors"))
    assert all(torch.equal(w2[k], w2b[k]) for k in w2)


def _pairs_file(path: Path, n: int = 12) -> Path:
    """n preference pairs over digit records: the right digit in the JSON format against nonsense."""
    from rlvlm.rewards.preferences import resolve_record, write_pairs_jsonl

    pairs = []
    for i in range(n):
        rid = f"digits/train/0/{i}"
        d = resolve_record(rid, 56)["answers"][0]
        pairs.append({"record_id": rid, "question": "What digit is shown?", "margin": 0.9, "rejected": "blah",
                      "chosen": json.dumps({"thoughts": f"I see the digit {d}", "answer": d}),
                      "scores_chosen": {}, "scores_rejected": {}})
    return write_pairs_jsonl(pairs, path)


@pytest.mark.parametrize("backend", ["ddp", "zero3"])
def test_two_process_dpo_equals_one_process(idefics3_dir, tmp_path, backend):
    """`rlvlm dpo` on 2 processes: batches split over the ranks, the same weights and report."""
    needs(backend)
    path = _pairs_file(tmp_path / "pairs.jsonl")
    common = ["-m", "rlvlm.cli", "dpo", f"policy={idefics3_dir}", f"pairs={path}", "epochs=2", "batch_size=5",
              "lr=1e-3", "image_size=56", "eval_episodes=3", "eval_every=0", "max_new_tokens=8"]
    launch([*common, f"output_dir={tmp_path / 'one'}"], 1)
    out = launch([*common, f"output_dir={tmp_path / 'two'}"], 2, config=CONFIGS[backend])
    assert out.stdout.count("[dpo] epoch 2/2") == 1  # rank 0 alone reports
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    for key in ("first_step_loss", "held_out_accuracy", "held_out_accuracy_before"):
        assert two[key] == pytest.approx(one[key], abs=1e-5), key
    assert two["epochs"][-1]["train_loss"] == pytest.approx(one["epochs"][-1]["train_loss"], abs=1e-4)
    assert two["after"] == one["after"]  # 3 greedy test questions, sharded 2 + 1
    a = load_file(str(tmp_path / "one" / "policy" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "policy" / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def test_two_process_reward_model_equals_one_process(idefics3_dir, tmp_path):
    """`rlvlm reward-model` on 2 processes: the same head and held-out figures as 1 process."""
    path = _pairs_file(tmp_path / "pairs.jsonl", 16)
    common = ["-m", "rlvlm.cli", "reward-model", f"name_or_path={idefics3_dir}", f"pairs={path}", "epochs=3",
              "batch_size=5", "image_size=56"]
    launch([*common, f"output_dir={tmp_path / 'one'}"], 1)
    out = launch([*common, f"output_dir={tmp_path / 'two'}"], 2)
    assert out.stdout.count("held-out pair accuracy") == 1
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two["loss_curve"] == pytest.approx(one["loss_curve"], abs=1e-5)
    assert two["held_out_accuracy"] == one["held_out_accuracy"]
    a = load_file(str(tmp_path / "one" / "model" / "reward_head.safetensors"))
    b = load_file(str(tmp_path / "two" / "model" / "reward_head.safetensors"))
    # The last layer's bias shifts r(chosen) and r(rejected) alike, so the Bradley-Terry loss gives it
    # an exactly zero gradient and AdamW moves it by rounding noise alone (measured 3.4e-4 apart after
    # 9 steps at lr 1e-3); no score difference depends on it. Every other weight: 3.4e-7 at most.
    shared = [k for k in a if k != "mlp.net.2.bias"]
    assert len(shared) == len(a) - 1
    assert max(float((a[k] - b[k]).abs().max()) for k in shared) <= 1e-5
    assert one["loss_curve"][-1] < one["loss_curve"][0]  # it learned something
