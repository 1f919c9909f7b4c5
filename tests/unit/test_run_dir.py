"""Run outputs: metrics.jsonl + TensorBoard, report.json/.md, curves.png."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rlvlm.train.run_dir import (
    METRICS_FILE, RunLogger, plot_curves, read_metrics, report_markdown, truncate_metrics, write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def log_steps(run_dir: Path, steps: range, **kwargs) -> None:
    with RunLogger(run_dir, **kwargs) as logger:
        for s in steps:
            logger.log({
                "rollout/env_steps": 64 * (s + 1), "rollout/success_rate": min(1.0, 0.1 * s),
                "rollout/return": torch.tensor(0.5 * s), "loss/policy": np.float32(-0.01),
                "loss/value": math.nan if s == 2 else 1.0, "time/phase": "update",
            }, step=s)


def test_logger_writes_strict_jsonl_and_tensorboard(tmp_path: Path):
    log_steps(tmp_path, range(4))
    records = read_metrics(tmp_path / METRICS_FILE)
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert records[3]["rollout/return"] == 1.5 and records[1]["loss/policy"] == pytest.approx(-0.01)
    assert records[2]["loss/value"] is None  # NaN → null keeps the file strict JSON
    for line in (tmp_path / METRICS_FILE).read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_truncates_and_appends(tmp_path: Path):
    log_steps(tmp_path, range(5), tensorboard=False)
    with open(tmp_path / METRICS_FILE, "a") as fh:
        fh.write('{"step": 5, "rollo')  # torn line from a crash
    assert [r["step"] for r in read_metrics(tmp_path / METRICS_FILE)] == [0, 1, 2, 3, 4]
    log_steps(tmp_path, range(3, 6), tensorboard=False, resume_step=2)
    assert [r["step"] for r in read_metrics(tmp_path / METRICS_FILE)] == [0, 1, 2, 3, 4, 5]
    assert truncate_metrics(tmp_path / METRICS_FILE, 1) == 2


def test_logger_rejects_misuse(tmp_path: Path):
    logger = RunLogger(tmp_path, tensorboard=False)
    with pytest.raises(ValueError, match="must not contain 'step'"):
        logger.log({"step": 1}, step=0)
    with pytest.raises(TypeError, match=r"metrics.x is a object"):
        logger.log({"x": object()}, 0)
    logger.close()
    logger.close()
    with pytest.raises(RuntimeError, match="closed"):
        logger.log({}, step=1)


def test_report_json_and_markdown(tmp_path: Path):
    report = {
        "sft": {"success_rate": 0.735, "return": 0.2, "episodes": 200},
        "final": {"success_rate": 0.93, "return": 0.81, "episodes": 200, "kl": float("nan")},
        "env": "rlvlm/NumberLine-v0", "wall_seconds": 281.5, "config": {"seed": 0, "algo": {"lr": 1e-5}},
    }
    json_path, md_path = write_report(tmp_path, report)
    back = json.loads(json_path.read_text())
    assert back["sft"] == report["sft"] and back["final"]["kl"] is None and back["config"] == report["config"]
    md = md_path.read_text()
    assert "| metric | sft | final |" in md
    assert "| success_rate | 0.735 | 0.93 |" in md and "| kl |  | n/a |" in md
    assert "| env | rlvlm/NumberLine-v0 |" in md and "| config.algo.lr | 1.000e-05 |" in md
    assert report_markdown({"a": 1}).splitlines()[2:4] == ["| key | value |", "|---|---|"]


def test_plot_curves_writes_a_png(tmp_path: Path):
    log_steps(tmp_path, range(6), tensorboard=False)
    out = plot_curves(tmp_path / METRICS_FILE, tmp_path / "curves.png", hlines={"SFT": 0.2},
                      ys=["rollout/success_rate", "rollout/return", "eval/missing"], smooth=0.5, title="t")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    # No record has the x key: falls back to `step`; per-panel levels by name.
    out2 = plot_curves(tmp_path / METRICS_FILE, tmp_path / "c2.png", x="nope",
                       hlines={"rollout/return": {"SFT": 1.0}})
    assert out2.read_bytes()[:8] == PNG_MAGIC


def test_fresh_run_into_a_used_directory_starts_new_curves(tmp_path):
    from rlvlm.train.config import TrainConfig
    from rlvlm.train.outputs import RunOutputs
    from rlvlm.train.run_dir import read_metrics

    cfg = TrainConfig(output_dir=str(tmp_path / "run"))
    first = RunOutputs(cfg)
    first.logger.log({"rollout/success_rate": 0.1}, step=1)
    first.logger.log({"rollout/success_rate": 0.2}, step=2)
    first.logger.close()
    second = RunOutputs(cfg)  # same output_dir, not resuming
    second.logger.log({"rollout/success_rate": 0.9}, step=1)
    second.logger.close()
    assert [r["rollout/success_rate"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [0.9]
