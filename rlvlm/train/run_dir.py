"""Run-directory outputs: `metrics.jsonl`, TensorBoard events, `report.json`/`.md`, `curves.png`.

Layout of a run directory (see DESIGN.md):

    output_dir/
      config.yaml          resolved config (rlvlm.config.dump_config_yaml)
      metrics.jsonl        one JSON object per update: {"step": N, "rollout/success_rate": ...}
      tensorboard/         the same scalars as TensorBoard events
      checkpoints/step-N/  rlvlm.train.checkpoint
      report.json, report.md, curves.png

metrics.jsonl is strict JSON: non-finite floats are written as `null` (the
TensorBoard mirror keeps the NaN), so `jq`, pandas and browsers read it.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CURVES_PNG = "curves.png"


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temp file in the same folder and `os.replace`.

    A reader (or a crash) sees the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def to_json_value(value: Any, name: str = "value") -> Any:
    """`value` as strict JSON: tensors/NumPy scalars → numbers, non-finite floats → None."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # 0-d torch tensor or NumPy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # small arrays or tensors, e.g. a histogram
        return to_json_value(value.tolist(), name)
    raise TypeError(f"{name} is a {type(value).__name__}; log numbers, strings, lists or dicts")


def _scalar(value: Any) -> float | None:
    """A number for TensorBoard, or None for strings/lists (which only go to the JSON)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl file; a torn last line (a crash mid-write) is dropped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path} line {i + 1} is not JSON: {line[:80]!r}") from None
    return records


def truncate_metrics(path: str | os.PathLike, after_step: int) -> int:
    """Drop records with `step > after_step` (a resumed run redoes them); returns how many stay."""
    path = Path(path)
    if not path.exists():
        return 0
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= after_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return len(kept)


class RunLogger:
    """Appends one JSON line per update to `metrics.jsonl` and mirrors scalars to TensorBoard.

        with RunLogger(run_dir) as logger:
            logger.log({"rollout/success_rate": 0.8, "time/rollout": 1.2}, step=update)

    TensorBoard is opened on the first `log` (its import costs time) and is
    skipped with a warning when the package is missing. `resume_step` drops
    records after that step, in the JSON and (via `purge_step`) in TensorBoard,
    so a resumed run's curves do not double back.
    """

    def __init__(self, run_dir: str | os.PathLike, *, tensorboard: bool = True, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.resume_step = resume_step
        if resume_step is not None:
            truncate_metrics(self.metrics_path, resume_step)
        # Line buffering: each record reaches the OS as soon as it is written,
        # so a crash loses at most the record being written.
        self._file = open(self.metrics_path, "a", encoding="utf-8", buffering=1)
        self._tensorboard = tensorboard
        self._writer: Any = None

    def log(self, metrics: Mapping[str, Any], step: int) -> dict:
        """Write one record `{"step": step, **metrics}`; returns it as written.

        The argument order follows `wandb.log(metrics, step=...)`.
        """
        if self._file is None:
            raise RuntimeError(f"RunLogger for {self.run_dir} is closed")
        if "step" in metrics:
            raise ValueError("metrics must not contain 'step'; pass it as log(metrics, step=N)")
        record = {"step": int(step), **to_json_value(dict(metrics), "metrics")}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        writer = self._tb_writer()
        if writer is not None:
            for name, value in metrics.items():
                number = _scalar(value)
                if number is not None:
                    writer.add_scalar(name, number, global_step=int(step))
        return record

    def _tb_writer(self) -> Any:
        if self._writer is None and self._tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # tensorboard is optional at run time
                warnings.warn(f"TensorBoard logging disabled ({err}); metrics.jsonl still has everything")
                self._tensorboard = False
                return None
            purge = None if self.resume_step is None else self.resume_step + 1
            self._writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR), purge_step=purge)
        return self._writer

    def flush(self) -> None:
        """Push buffered TensorBoard events to disk (JSON lines are never buffered)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Close the files; safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}`."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}".rstrip("0").rstrip(".")
        return f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        value = json.dumps(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def report_markdown(report: Mapping[str, Any], title: str = "rlvlm report") -> str:
    """A readable markdown view of a report.

    Top-level sections that share metric names (e.g. `sft` and `final`) become
    one comparison table, a column each; everything else is a flat
    `key | value` table with dotted keys.
    """
    sections = {k: flatten(v) for k, v in report.items() if isinstance(v, Mapping)}
    compared = [k for k, flat in sections.items()
                if any(set(flat) & set(other) for o, other in sections.items() if o != k)]
    lines = [f"# {title}", ""]
    if compared:
        metrics = list(dict.fromkeys(m for k in compared for m in sections[k]))
        lines += _table(["metric", *compared], ([m, *(sections[k].get(m, "") for k in compared)] for m in metrics))
        lines.append("")
    rest = flatten({k: v for k, v in report.items() if k not in compared})
    if rest:
        lines += _table(["key", "value"], ([k, v] for k, v in rest.items()))
        lines.append("")
    return "\n".join(lines)


def write_report(run_dir: str | os.PathLike, report: Mapping[str, Any], *,
                 title: str = "rlvlm report") -> tuple[Path, Path]:
    """Write `report.json` (strict JSON, non-finite → null) and `report.md`; returns both paths."""
    run_dir = Path(run_dir)
    data = to_json_value(dict(report), "report")
    json_path = atomic_write_text(run_dir / REPORT_JSON, json.dumps(data, indent=2, allow_nan=False) + "\n")
    md_path = atomic_write_text(run_dir / REPORT_MD, report_markdown(data, title))
    return json_path, md_path


def _ema(values: list[float], alpha: float) -> list[float]:
    out, acc = [], values[0]
    for v in values:
        acc = alpha * acc + (1 - alpha) * v
        out.append(acc)
    return out


def plot_curves(metrics_path: str | os.PathLike, out_png: str | os.PathLike, *,
                x: str = "rollout/env_steps", ys: Iterable[str] = ("rollout/success_rate", "rollout/return"),
                hlines: Mapping[str, Any] | None = None, title: str | None = None,
                smooth: float = 0.0) -> Path:
    """Plot metrics against `x`, one panel per name in `ys`, into a PNG.

    `hlines={"SFT": 0.73}` draws labelled dashed levels on the first panel;
    `hlines={"rollout/return": {"SFT": 0.5}}` targets a panel by name.
    Records without `x` use `step` when no record has `x` at all. `smooth` in
    [0, 1) overlays an exponential moving average. Uses the Agg canvas
    directly, so it never touches the global matplotlib backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ys = list(ys)
    records = read_metrics(metrics_path)
    if not any(x in r for r in records):
        x = "step"
    fig = Figure(figsize=(7.0, 0.6 + 2.6 * len(ys)), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ys), 1, sharex=True, squeeze=False)[:, 0]
    hlines = dict(hlines or {})
    for i, (ax, y) in enumerate(zip(axes, ys)):
        pts = [(r[x], r[y]) for r in records if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))]
        if pts:
            xs, vs = zip(*pts)
            ax.plot(xs, vs, marker="o" if len(pts) < 30 else None, ms=3, lw=1.2,
                    alpha=0.35 if smooth else 1.0, color="C0", label=y)
            if smooth:
                ax.plot(xs, _ema(list(vs), smooth), lw=1.8, color="C0", label=f"{y} (EMA {smooth})")
        else:
            ax.text(0.5, 0.5, f"no data for {y}", transform=ax.transAxes, ha="center", va="center")
        levels = {k: v for k, v in hlines.items() if not isinstance(v, Mapping)} if i == 0 else {}
        levels.update(hlines.get(y, {}) if isinstance(hlines.get(y), Mapping) else {})
        for j, (label, level) in enumerate(levels.items()):
            ax.axhline(float(level), ls="--", lw=1.2, color=f"C{j + 1}", label=f"{label} ({_cell(float(level))})")
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        if pts or levels:
            ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel(x)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out_png)
    return out_png
