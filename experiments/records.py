"""Committed records of the result runs: the data the tables of docs/results.md are rebuilt from.

A harness's runs write to `runs/` (scratch, not committed: checkpoints and
full logs are large), so a table rebuilt on a new checkout would lose every row
a previous session measured. After each harness run, every (run, seed) that has
finished is copied here, small enough to commit:

    RECORDS/KEY/seedS/
        <marker> and report.json     as the run wrote them (the figures)
        metrics.jsonl                per-update records, only the keys the plots read
                                     (`rollout/*`, `eval/*`, update, step), floats to 5 digits
        process_seconds.txt          the whole process's wall time, where the harness timed it
        config.yaml                  the resolved config of a training run (runs dir written RUNS)
        record.json                  the command (runs dir written RUNS), commit, CPU, date

The tables and plots are then built from the records alone, so every row a
checkout shows says which command, commit and CPU kind measured it, and a
table rebuilt from the records equals the one built from the runs.

A record, or a finished run, is stale when its command is no longer the run's
command (the harness's run list changed) or, for `rlvlm train`, when the config
that command resolves to now differs from the one it ran with (a preset
changed). Stale runs are run again; stale records are removed when the harness
records again. Other commands (`rlvlm eval`, `reward-model`, `dpo`, ...) are
compared by their command text only.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import yaml

from rlvlm.config import load_config
from rlvlm.config.loading import config_yaml
from rlvlm.train.config import TrainConfig

from experiments.seeds import PROCESS_SECONDS, git_commit

RECORDS_DIR = Path("docs/results/records")
RECORD = "record.json"
PROVENANCE = "provenance.json"  # written by the harness next to a run's output when it starts the run
METRIC_PREFIXES = ("rollout/", "eval/")
METRIC_KEYS = ("update", "step")
DIGITS = 5


def seed_dir(root: str | Path, key: str, seed: int) -> Path:
    """Seed `seed` of run `key` under a runs directory, or its record under a records directory."""
    return Path(root) / key / f"seed{seed}"


def cpu_kind() -> str:
    """This machine's CPU in a few words, e.g. "Intel Xeon, AVX-512": the kind changes float
    rounding (so a run's numbers), and AVX-512 is what told the kinds seen here apart."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            info.setdefault(name.strip(), value.strip())  # the first core's lines
    except OSError:
        pass
    model, flags = info.get("model name") or platform.processor() or platform.machine(), info.get("flags", "")
    for noise in ("(R)", "(TM)", "(tm)", " Processor", " CPU", " Core"):
        model = model.replace(noise, "")
    model = " ".join(w for w in model.split() if not w.endswith("-Core"))
    if flags:
        model += ", AVX-512" if "avx512f" in flags.split() else ", no AVX-512"
    return model


def provenance() -> dict:
    """What measured a run: the checkout's commit (`+dirty` with local changes), the CPU kind, the date."""
    return {"commit": git_commit(), "cpu": cpu_kind(), "date": time.strftime("%Y-%m-%d")}


def save_provenance(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PROVENANCE).write_text(json.dumps(provenance()) + "\n")


def _round(v):
    if isinstance(v, float) and math.isfinite(v) and v != 0.0:
        return float(f"{v:.{DIGITS}g}")
    return v


def trim_metrics(lines: Iterable[str]) -> list[str]:
    """Each JSON line reduced to the keys the result plots read, floats to DIGITS significant digits."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        kept = {k: _round(v) for k, v in row.items() if k in METRIC_KEYS or k.startswith(METRIC_PREFIXES)}
        out.append(json.dumps(kept))
    return out


def portable(command: str, runs_dir: str | Path) -> str:
    """The command with the runs directory written RUNS, so a record compares across --runs-dir."""
    return command.replace(str(Path(runs_dir)), "RUNS")


def _config_text(text: str) -> str:
    """A resolved config without its output_dir (where a run writes is not what it runs), sorted."""
    tree = yaml.safe_load(text) or {}
    tree.pop("output_dir", None)
    return yaml.safe_dump(tree, sort_keys=True)


def train_config(argv: Sequence[str]) -> str | None:
    """The config an `rlvlm train [PRESET] key=value ...` command resolves to now (output_dir left
    out); None for any other command."""
    if list(argv[:2]) != ["rlvlm", "train"]:
        return None
    items = list(argv[2:])
    spec = items.pop(0) if items and "=" not in items[0] else "numberline"  # as rlvlm.cli's train
    return _config_text(config_yaml(load_config(TrainConfig, spec, items)))


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changed(config_path: Path, argv: Sequence[str], runs_dir: str | Path) -> bool:
    """Whether the config saved at `config_path` (its paths under `runs_dir`, or already written
    RUNS) differs from what the training command `argv` resolves to now, on the keys both have.
    False where either is unknown (not a training run, no config saved).

    A key that exists on one side only (a field added or retired since the run) is a change of
    the code, not of the run's settings: like any code change it shows in the commit column,
    and the record stays until its command or a shared key changes.
    """
    now = train_config(argv)
    if now is None or not config_path.is_file():
        return False
    then = _flat(yaml.safe_load(portable(_config_text(config_path.read_text()), runs_dir)) or {})
    now_flat = _flat(yaml.safe_load(portable(now, runs_dir)) or {})
    return any(then[k] != now_flat[k] for k in then.keys() & now_flat.keys())


def record_seed(run_dir: Path, dest: Path, *, marker: str, command: str, runs_dir: str | Path) -> None:
    """Copy one finished seed's figures from `run_dir` into `dest` (replacing what was there)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if (run_dir / "config.yaml").is_file():
        (dest / "config.yaml").write_text(portable(_config_text((run_dir / "config.yaml").read_text()), runs_dir))
    for name in dict.fromkeys((marker, "report.json", PROCESS_SECONDS)):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, dest / name)
    if (run_dir / "metrics.jsonl").is_file():
        with open(run_dir / "metrics.jsonl") as fh:
            (dest / "metrics.jsonl").write_text("".join(f"{line}\n" for line in trim_metrics(fh)))
    prov_path = run_dir / PROVENANCE
    if prov_path.is_file():
        prov = json.loads(prov_path.read_text())
    else:  # a run started before the harness wrote provenance: say where it was recorded instead
        prov = {**provenance(), "note": "commit and cpu of the recording, not of the run"}
    (dest / RECORD).write_text(json.dumps({"command": command, **prov}, indent=1) + "\n")


def record_runs(runs: Sequence, seeds: Sequence[int], runs_dir: str | Path, records_dir: str | Path,
                progress: Callable[[str], None] = print) -> int:
    """Record every (run, seed) of `runs` whose marker exists under `runs_dir` and is not stale;
    remove stale records (see the module docstring). Returns how many seeds were recorded."""
    n = 0
    for run in runs:
        for seed in seeds:
            argv = run.seed_argv(runs_dir, seed)
            command = portable(run.seed_command(runs_dir, seed), runs_dir)
            src, dest = seed_dir(runs_dir, run.key, seed), seed_dir(records_dir, run.key, seed)
            if (src / run.marker).is_file() and not config_changed(src / "config.yaml", argv, runs_dir):
                record_seed(src, dest, marker=run.marker, command=command, runs_dir=runs_dir)
                n += 1
            elif (dest / RECORD).is_file():
                old = json.loads((dest / RECORD).read_text()).get("command")
                if old != command:
                    why = f"it ran `{old}`, the run is now `{command}`"
                elif config_changed(dest / "config.yaml", argv, runs_dir):
                    why = "the config this command resolves to changed (a preset?)"
                else:
                    continue
                progress(f"stale record removed ({run.key} seed {seed}): {why}")
                shutil.rmtree(dest)
    return n


def measured(runs: Sequence, seeds: Sequence[int], records_dir: str | Path) -> dict[str, str]:
    """run key -> the distinct `commit, CPU` of its recorded seeds (e.g. "202a2f3, Intel Xeon, AVX-512")."""
    out: dict[str, str] = {}
    for run in runs:
        seen = []
        for seed in seeds:
            path = seed_dir(records_dir, run.key, seed) / RECORD
            if path.is_file():
                rec = json.loads(path.read_text())
                seen.append(f"{rec.get('commit') or '?'}, {rec.get('cpu') or '?'}")
        out[run.key] = "; ".join(dict.fromkeys(seen))
    return out


def table_data(runs: Sequence, seeds: Sequence[int], runs_dir: str | Path,
               records_dir: str | Path | None) -> tuple[Path, dict[str, str] | None]:
    """Where a harness's tables read, and what measured each run: with `records_dir`, every finished
    seed of `runs_dir` is recorded first and the tables read the records (plus `measured`'s column);
    without it, they read `runs_dir` itself and have no such column."""
    if records_dir is None:
        return Path(runs_dir), None
    record_runs(runs, seeds, runs_dir, records_dir)
    return Path(records_dir), measured(runs, seeds, records_dir)
