"""Atomic, pickle-free checkpoints: `run_dir/checkpoints/step-N/`.

    step-N/
      policy/                     whatever the policy's save function writes (safetensors)
      optimizer.json/.safetensors the optimizer state_dict
      scheduler.json[/.safetensors]
      rng.json/.safetensors       python `random`, NumPy global, torch CPU (and CUDA) RNG
      extra_state.json/.safetensors  step counters, running statistics, ...
      config.yaml                 the resolved config
      meta.json                   written last: format version and step

Loading never unpickles: tensors live in safetensors files and everything
else in JSON, whose structure (int dict keys, tuples, NumPy arrays, NaN) is
kept by a small tagged encoding. A checkpoint is written into a temp folder
next to its final place, synced, then renamed, so `step-N/` either exists
complete or not at all.

Pruning (`keep_last=K`) after each save keeps the K newest checkpoints at or
below the step just saved. A pruned folder is first renamed to
`.trash-step-N-*` (one atomic rename, after which it no longer matches
`step-N`), then deleted; a crash mid-delete leaves only a dot-folder that
`list_checkpoints` / `resolve_checkpoint` never pick up and that the next
prune sweeps away.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from rlvlm.errors import RlvlmError

CHECKPOINTS_DIR = "checkpoints"
POLICY_DIR = "policy"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__items__", "__float__")


class CheckpointError(RlvlmError):
    """A checkpoint is missing, incomplete, or does not fit what it is loaded into."""


# --- state trees <-> JSON + safetensors -------------------------------------------------


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor], seen: set[int]) -> Any:
    """JSON-able form of `obj`; tensors and arrays are moved into `tensors` under unique names."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        is_array = isinstance(obj, np.ndarray)
        if is_array:
            if obj.dtype.hasobject:
                raise TypeError(f"{path}: NumPy arrays of Python objects cannot be checkpointed")
            t = torch.from_numpy(np.ascontiguousarray(obj))
        else:
            t = obj.detach().to("cpu").contiguous()
        # safetensors refuses tensors that share memory (or are views into a
        # larger buffer); a copy is cheap next to a failed save.
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        name, n = path, 1
        while name in tensors:
            name, n = f"{path}#{n}", n + 1
        tensors[name] = t
        return {"__ndarray__" if is_array else "__tensor__": name}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), path, tensors, seen)
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}  # keeps the files strict JSON
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}", tensors, seen) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}", tensors, seen) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and k not in _TAGS for k in obj):
            return {k: _encode(v, f"{path}.{k}", tensors, seen) for k, v in obj.items()}
        # Optimizer states key params by int; JSON objects only have str keys.
        return {"__items__": [[_encode(k, f"{path}.key", tensors, seen), _encode(v, f"{path}.{k}", tensors, seen)]
                              for k, v in obj.items()]}
    raise TypeError(f"{path} is a {type(obj).__name__}; checkpoint state may hold tensors, NumPy arrays, "
                    "numbers, strings, None, lists, tuples and dicts")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag in ("__tensor__", "__ndarray__"):
            if value not in tensors:
                raise CheckpointError(f"{where}: tensor {value!r} is missing from its safetensors file")
            return tensors[value].numpy() if tag == "__ndarray__" else tensors[value]
        if tag == "__tuple__":
            return tuple(_decode(v, tensors, where) for v in value)
        if tag == "__items__":
            return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in value}
        if tag == "__float__":
            return float(value)
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


def save_state(directory: str | os.PathLike, name: str, state: Any) -> None:
    """Write `state` as `name.json` (+ `name.safetensors` when it holds tensors or arrays)."""
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(state, name, tensors, set())
    (directory / f"{name}.json").write_text(json.dumps(encoded, allow_nan=False), encoding="utf-8")
    if tensors:
        save_file(tensors, str(directory / f"{name}.safetensors"), metadata={"format": "pt"})


def load_state(directory: str | os.PathLike, name: str) -> Any:
    """Read back what `save_state(directory, name, ...)` wrote; tensors come back on the CPU."""
    directory = Path(directory)
    json_path = directory / f"{name}.json"
    if not json_path.is_file():
        raise CheckpointError(f"{directory} has no {name} state ({json_path.name} missing)")
    st_path = directory / f"{name}.safetensors"
    tensors = load_file(str(st_path), device="cpu") if st_path.is_file() else {}
    return _decode(json.loads(json_path.read_text(encoding="utf-8")), tensors, str(json_path))


# --- RNG -------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states: python `random`, NumPy's legacy global, torch CPU, and CUDA if present."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the global RNGs from `capture_rng_state()` output (CUDA only where devices exist)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda:
        if not torch.cuda.is_available():
            warnings.warn("checkpoint has CUDA RNG state but CUDA is not available; it is not restored")
        else:
            n = min(len(cuda), torch.cuda.device_count())
            if n != len(cuda):
                warnings.warn(f"checkpoint has CUDA RNG state for {len(cuda)} devices; restoring {n}")
            for i in range(n):
                torch.cuda.set_rng_state(cuda[i], i)


# --- files and folders -----------------------------------------------------------------------


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` to disk before the rename publishes it."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TRASH_PREFIX = ".trash-"


def _trash_name(path: Path) -> Path:
    return path.with_name(f"{_TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")


def _remove_dir(path: Path) -> None:
    """Rename away first, then delete: a crash mid-delete never leaves a half `step-N/`."""
    trash = _trash_name(path)
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def checkpoint_dir(run_dir: str | os.PathLike, step: int) -> Path:
    """`run_dir/checkpoints/step-{step}`."""
    return Path(run_dir) / CHECKPOINTS_DIR / f"step-{step}"


def policy_dir(checkpoint: str | os.PathLike) -> Path:
    """The folder inside a checkpoint that the policy's save function wrote."""
    return Path(checkpoint) / POLICY_DIR


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True for a complete checkpoint folder (its meta.json is written last)."""
    return (Path(path) / META_FILE).is_file()


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """The step a checkpoint was saved at."""
    meta = Path(checkpoint) / META_FILE
    if not meta.is_file():
        raise CheckpointError(f"{checkpoint} is not a complete checkpoint (no {META_FILE})")
    return int(json.loads(meta.read_text(encoding="utf-8"))["step"])


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest step first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and is_checkpoint(p)]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder from `path`: the folder itself, or a run directory's latest checkpoint."""
    path = Path(path)
    if is_checkpoint(path):
        return path
    if (path / CHECKPOINTS_DIR).is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"run directory {path} has no complete checkpoint under {CHECKPOINTS_DIR}/")
        return latest
    raise CheckpointError(f"{path} is neither a checkpoint (no {META_FILE}) nor a run directory "
                          f"(no {CHECKPOINTS_DIR}/); pass RUN_DIR or RUN_DIR/{CHECKPOINTS_DIR}/step-N")


def _check_keep_last(keep_last: int | None) -> None:
    if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0):
        raise ValueError(f"keep_last={keep_last!r} must be an int >= 0 (0 or None: keep every checkpoint)")


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int | None, *, up_to: int | None = None) -> list[Path]:
    """Delete old checkpoints, keeping the `keep_last` newest; returns the deleted paths (oldest first).

    `keep_last` 0 or None keeps every checkpoint. With `up_to=S` (what
    `save_checkpoint` passes: the step it just wrote) only checkpoints at
    steps <= S count and may go; ones above S (left by an earlier run in the
    same folder, or by the run a resume branched from) are never touched, so
    the checkpoint just written is always among those kept. Each folder is
    renamed away before it is deleted (see `_remove_dir`), and leftover
    `.trash-*` folders of an interrupted prune are swept. A folder that cannot
    be removed is reported with a warning, not an error: the save itself
    already succeeded.
    """
    _check_keep_last(keep_last)
    found = list_checkpoints(run_dir)
    if up_to is not None:
        found = [p for p in found if int(_STEP_DIR.match(p.name).group(1)) <= up_to]
    removed = []
    for path in found[:-keep_last] if keep_last else []:
        try:
            _remove_dir(path)
        except OSError as err:
            warnings.warn(f"could not prune old checkpoint {path} ({err}); delete it by hand to free the space")
            continue
        removed.append(path)
    root = Path(run_dir) / CHECKPOINTS_DIR
    for leftover in root.glob(f"{_TRASH_PREFIX}*"):  # from a prune or replace interrupted mid-delete
        shutil.rmtree(leftover, ignore_errors=True)  # (swept with keep_last=0 too: never a checkpoint)
    return removed


# --- save / load -----------------------------------------------------------------------------


def save_checkpoint(run_dir: str | os.PathLike, step: int, *, policy_save_fn: Callable[[Path], Any],
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    extra_state: Mapping[str, Any] | None = None, config_dict: Mapping[str, Any] | None = None,
                    keep_last: int | None = None, states: Mapping[str, Any] | None = None) -> Path:
    """Write `run_dir/checkpoints/step-{step}/` atomically and return its path.

    `policy_save_fn(folder)` saves the policy into `step-N/policy/`. An
    exception anywhere (including in `policy_save_fn`) removes the temp folder
    and re-raises, leaving no `step-N/`. An existing `step-N/` is replaced.
    With `keep_last=K >= 1`, once the new checkpoint is in place, checkpoints
    older than the newest K at or below `step` are deleted
    (`prune_checkpoints(..., up_to=step)`); the one just written always stays.
    `keep_last` 0 or None keeps them all. `states` are further named states
    (e.g. a frozen reference's weights), each read back with `load_state`.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r} must be a non-negative int")
    _check_keep_last(keep_last)  # before writing anything
    final = checkpoint_dir(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Same parent folder, so the final os.rename stays on one filesystem (atomic).
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step}-", dir=final.parent))
    replaced: Path | None = None
    try:
        (tmp / POLICY_DIR).mkdir()
        policy_save_fn(tmp / POLICY_DIR)
        if optimizer is not None:
            save_state(tmp, "optimizer", optimizer.state_dict())
        if scheduler is not None:
            save_state(tmp, "scheduler", scheduler.state_dict())
        save_state(tmp, "rng", capture_rng_state())
        save_state(tmp, "extra_state", dict(extra_state or {}))
        for name, state in (states or {}).items():
            save_state(tmp, name, state)
        if config_dict is not None:
            text = yaml.safe_dump(dict(config_dict), sort_keys=False, allow_unicode=True)
            (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
        meta = {"format": FORMAT_VERSION, "step": step, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch": torch.__version__}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        _fsync_tree(tmp)
        if final.exists():  # move the old step-N aside, publish the new one, then delete the old
            replaced = _trash_name(final)
            os.rename(final, replaced)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if replaced is not None and not final.exists():
            os.rename(replaced, final)  # the new one never landed: put the old step-N back
        raise
    _fsync_dir(final.parent)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    prune_checkpoints(run_dir, keep_last, up_to=step)
    return final


def load_checkpoint(path: str | os.PathLike, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, *, restore_rng: bool = True) -> dict[str, Any]:
    """Restore optimizer, scheduler and global RNGs from a checkpoint; returns its `extra_state`.

    `path` is a checkpoint folder or a run directory (its latest checkpoint).
    The policy is loaded separately from `policy_dir(path)` by the policy
    itself. Optimizer tensors are moved to each parameter's device by
    `optimizer.load_state_dict`.
    """
    path = resolve_checkpoint(path)
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; "
                              f"this rlvlm reads format {FORMAT_VERSION}")
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        state = load_state(path, name)
        try:
            target.load_state_dict(state)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise CheckpointError(f"{name} state in {path} does not fit this {name} ({err}); resume with the "
                                  "same model, LoRA and optimizer settings as the saved run") from err
    if restore_rng:
        restore_rng_state(load_state(path, "rng"))
    return load_state(path, "extra_state")


def load_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The config dict saved with a checkpoint (or a run directory's latest one)."""
    path = resolve_checkpoint(path)
    config = path / CONFIG_FILE
    if not config.is_file():
        raise CheckpointError(f"{path} was saved without a config ({CONFIG_FILE} missing)")
    return yaml.safe_load(config.read_text(encoding="utf-8")) or {}


__all__ = [
    "CheckpointError", "capture_rng_state", "checkpoint_dir", "checkpoint_step",
    "is_checkpoint", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "load_checkpoint_config",
    "load_state", "policy_dir", "prune_checkpoints", "resolve_checkpoint", "restore_rng_state",
    "save_checkpoint", "save_state",
]
