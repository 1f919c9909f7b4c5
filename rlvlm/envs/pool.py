"""Env pools: the N envs a collector steps, behind one batched interface.

The collector never touches an env object: it asks its pool to

    pool.reset([(i, seed), ...])                  -> [(obs, info), ...]
    pool.step([(i, action_text), ...])            -> [(obs, reward, terminated, truncated, info), ...]
    pool.replay([(i, seed, [action, ...]), ...])  -> [(obs, info), ...]   (Collector.load_state_dict)
    pool.close()

Each call names a *subset* of env indices (in episode mode an env whose
episode ended waits while the others step). A worker backend sends every
request of a call before it awaits any reply, so slow steps overlap.

A crash inside one env's `step` ends that episode only, on every backend:
the step returns `(None, 0.0, True, False, {"error": ..., "traceback": ...})`
and a warning is logged. A worker process that dies or stops answering is
restarted and its episode ends the same way (see rlvlm/envs/workers.py).

Backends are a registry (what `env.backend` accepts):

    @register_env_backend("mine")
    class MyPool(EnvPool):
        remote = True   # envs live outside this process
        def __init__(self, make_env, num_envs, *, step_timeout=None): ...

Built in: `inprocess` (the default: the env objects in this process, one
call after another, exactly as before pools existed), `processes` (one
worker process per env, rlvlm/envs/workers.py) and `ray` (one Ray actor per
env, rlvlm/envs/ray_pool.py; needs `pip install 'rlvlm[ray]'`).
"""

from __future__ import annotations

import logging
import time
import traceback
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

from rlvlm.errors import ConfigError, RlvlmError, register_into, registered

log = logging.getLogger(__name__)

StepOutcome = tuple[Any, float, bool, bool, dict]  # gymnasium's (obs, reward, terminated, truncated, info)
CRASH_WARNING = "env %d crashed in step (%s); ending its episode"


class EnvWorkerError(RlvlmError, RuntimeError):
    """A worker holding an env could not be (re)started or died again while resetting."""


def error_outcome(error: str, trace: str) -> StepOutcome:
    """The step outcome of an episode ended by an error: reward 0, terminated, the error in info."""
    return None, 0.0, True, False, {"error": error, "traceback": trace}


class EnvHost:
    """One env and the commands a pool sends it. The same code runs the env in
    this process, in a worker process and in a Ray actor, so a step gives the
    same outcome whichever backend runs it."""

    def __init__(self, env):
        self.env = env

    @classmethod
    def build(cls, make_env: Callable[[], Any]) -> "EnvHost":
        return cls(make_env())

    def reset(self, seed: int):
        return self.env.reset(seed=seed)

    def step(self, action: str) -> tuple[StepOutcome, str | None]:
        """The env's step, or the error outcome if it raises (and the error text, for the pool's warning).
        One bad episode must not end training."""
        try:
            return self.env.step(action), None
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
            return error_outcome(error, traceback.format_exc(limit=3)), error

    def replay(self, seed: int, actions: Sequence[str]):
        """Reset with `seed` and step `actions` again: envs are deterministic given both,
        so this restores an episode without pickling the env."""
        obs, info = self.env.reset(seed=seed)
        for action in actions:
            obs, _, _, _, info = self.env.step(action)
        return obs, info

    def close(self) -> None:
        self.env.close()


COMMANDS = ("reset", "step", "replay")  # what a worker runs on its EnvHost


class EnvPool(ABC):
    """N envs behind batched calls (see the module docstring)."""

    remote: bool = False  # True: the envs live outside this process (no env objects to inspect)

    @classmethod
    def check_available(cls) -> None:
        """Raise a ConfigError naming the fix when the backend cannot run here (a missing package)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def reset(self, requests: Sequence[tuple[int, int]]) -> list[tuple[Any, dict]]:
        """Reset env i with seed s for each (i, s); the (obs, info) of each, in request order."""

    @abstractmethod
    def step(self, requests: Sequence[tuple[int, str]]) -> list[StepOutcome]:
        """Step env i with action text a for each (i, a); one outcome each, in request order."""

    @abstractmethod
    def replay(self, requests: Sequence[tuple[int, int, Sequence[str]]]) -> list[tuple[Any, dict]]:
        """For each (i, seed, actions): reset env i with seed, step the actions; the final (obs, info)."""

    def close(self) -> None:
        """Release the envs (worker backends end their workers). Safe to call twice."""

    @property
    def local_envs(self) -> list | None:
        """The env objects when they live in this process (explore_ask inspects them), else None."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


ENV_BACKENDS: dict[str, type[EnvPool]] = {}


def register_env_backend(name: str, *, replace: bool = False):
    """Class decorator: register an `EnvPool` subclass under `name` (what `env.backend` accepts).
    Its constructor is `(make_env, num_envs, *, step_timeout=None)`."""
    def deco(cls):
        register_into(ENV_BACKENDS, name, cls, "env backend", replace=replace)
        return cls
    return deco


def env_pool_backend(name: str) -> type[EnvPool]:
    """The registered backend `name`; a ConfigError naming `env.backend`, close matches and the choices if unknown."""
    return registered(ENV_BACKENDS, name, field="env.backend", what="env backend",
                           register="rlvlm.envs.register_env_backend")


def make_env_pool(backend: str, make_env: Callable[[], Any], num_envs: int, *,
                  step_timeout: float | None = None) -> EnvPool:
    """`num_envs` envs from the no-argument constructor `make_env`, run by `backend`.
    Worker backends send `make_env` to each worker, so it must pickle (rlvlm.envs.EnvFactory does)."""
    cls = env_pool_backend(backend)
    cls.check_available()
    return cls(make_env, num_envs, step_timeout=step_timeout)


def as_env_pool(envs) -> EnvPool:
    """A pool as it is, or a sequence of env objects in an in-process pool (evaluation and tests pass lists)."""
    return envs if isinstance(envs, EnvPool) else InProcessPool.wrap(envs)


@register_env_backend("inprocess")
class InProcessPool(EnvPool):
    """The env objects in this process, stepped one after another in request order
    (the collector's behaviour before pools: same calls, same order, same results)."""

    def __init__(self, make_env: Callable[[], Any], num_envs: int, *, step_timeout: float | None = None):
        if step_timeout is not None:
            raise ConfigError(f"env.step_timeout={step_timeout} needs a worker backend: an in-process step cannot "
                              "be interrupted; fix: set env.backend=processes, or env.step_timeout=null")
        self._hosts = [EnvHost.build(make_env) for _ in range(num_envs)]

    @classmethod
    def wrap(cls, envs: Sequence[Any]) -> "InProcessPool":
        pool = cls.__new__(cls)
        pool._hosts = [EnvHost(e) for e in envs]
        return pool

    def __len__(self) -> int:
        return len(self._hosts)

    @property
    def local_envs(self) -> list:
        return [h.env for h in self._hosts]

    def reset(self, requests):
        return [self._hosts[i].reset(seed) for i, seed in requests]

    def step(self, requests):
        out = []
        for i, action in requests:
            outcome, crash = self._hosts[i].step(action)
            if crash:
                log.warning(CRASH_WARNING, i, crash)
            out.append(outcome)
        return out

    def replay(self, requests):
        return [self._hosts[i].replay(seed, actions) for i, seed, actions in requests]

    def close(self) -> None:
        for h in self._hosts:
            h.close()


class RemotePool(EnvPool):
    """What the worker backends share: one worker per env, every request of a call
    sent before any reply is awaited, and a dead or silent worker restarted.

    A subclass supplies `_start(i)`, `_send(i, command, args) -> handle`,
    `_receive(i, handle, deadline) -> reply` and `_stop(i)`, where a reply is
    ("ok", value), ("raise", exception, worker traceback text) or ("dead", why).
    `_receive` must return ("dead", ...) rather than block past `deadline`
    (a `time.monotonic()` value, or None: wait as long as the worker lives).
    """

    remote = True
    kind = "worker"  # how warnings name a worker

    def __init__(self, num_envs: int, step_timeout: float | None):
        if step_timeout is not None and not step_timeout > 0:
            raise ConfigError(f"env.step_timeout={step_timeout} must be > 0 seconds (or null: no limit)")
        self.step_timeout = step_timeout
        self.num_envs = num_envs
        self.restarts = 0  # workers restarted after dying or timing out (a health figure for tests and logs)
        self.closed = False

    @abstractmethod
    def _start(self, i: int) -> None: ...

    @abstractmethod
    def _send(self, i: int, command: str, args: tuple) -> Any: ...

    @abstractmethod
    def _receive(self, i: int, handle: Any, deadline: float | None) -> tuple: ...

    @abstractmethod
    def _stop(self, i: int) -> None: ...

    def __len__(self) -> int:
        return self.num_envs

    def _start_all(self) -> None:
        """Start every worker, then wait for each to have built its env (the builds overlap)."""
        try:
            for i in range(self.num_envs):
                self._start(i)
            self._await_ready(range(self.num_envs))
        except BaseException:
            self.close()
            raise

    def _await_ready(self, indices) -> None:
        indices = list(indices)
        replies = [self._receive(i, None, None) for i in indices]
        for i, reply in zip(indices, replies):
            if reply[0] == "raise":
                raise _with_worker_trace(reply[1], reply[2])
            if reply[0] == "dead":
                raise EnvWorkerError(f"the {self.kind} of env {i} died while building its env ({reply[1]})")

    def _restart(self, i: int) -> None:
        self._stop(i)
        self._start(i)
        self._await_ready([i])
        self.restarts += 1

    def _run(self, command: str, requests: Sequence[tuple[int, tuple]]) -> list[tuple]:
        if self.closed:
            raise EnvWorkerError("the env pool is closed")
        deadline = time.monotonic() + self.step_timeout if command == "step" and self.step_timeout else None
        handles = [self._send(i, command, args) for i, args in requests]  # all sent first: the work overlaps
        return [self._receive(i, h, deadline) for (i, _), h in zip(requests, handles)]

    def step(self, requests):
        out = []
        for (i, _), reply in zip(requests, self._run("step", [(i, (a,)) for i, a in requests])):
            if reply[0] == "ok":
                outcome, crash = reply[1]
                if crash:
                    log.warning(CRASH_WARNING, i, crash)
                out.append(outcome)
                continue
            if reply[0] == "dead":
                error, trace = f"EnvWorkerDied: {reply[1]}", ""
                log.warning("env %d: its %s %s during step; restarting it and ending its episode", i, self.kind, reply[1])
                self._restart(i)  # the collector resets this env next; a fresh worker answers it
            else:  # EnvHost.step catches Exception; here an outcome that could not be sent back
                error, trace = f"{type(reply[1]).__name__}: {reply[1]}", reply[2]
                log.warning(CRASH_WARNING, i, error)
            out.append(error_outcome(error, trace))
        return out

    def _checked(self, command: str, requests: Sequence[tuple[int, tuple]]) -> list:
        """Run a reset or replay; a worker that dies is restarted and asked once more.
        An exception the env raised is raised here, as in-process (after every reply is in)."""
        replies = self._run(command, requests)
        dead = [k for k, r in enumerate(replies) if r[0] == "dead"]
        for k in dead:
            i = requests[k][0]
            log.warning("env %d: its %s %s during %s; restarting it and trying again", i, self.kind, replies[k][1], command)
            self._restart(i)
        if dead:
            for k, reply in zip(dead, self._run(command, [requests[k] for k in dead])):
                replies[k] = reply
        for (i, _), reply in zip(requests, replies):
            if reply[0] == "dead":
                self._restart(i)  # leave the pool usable
                raise EnvWorkerError(f"env {i}: its {self.kind} died twice in {command} ({reply[1]}); the env "
                                     "itself kills its worker there")
            if reply[0] == "raise":
                raise _with_worker_trace(reply[1], reply[2])
        return [r[1] for r in replies]

    def reset(self, requests):
        return self._checked("reset", [(i, (seed,)) for i, seed in requests])

    def replay(self, requests):
        return self._checked("replay", [(i, (seed, list(actions))) for i, seed, actions in requests])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for i in range(self.num_envs):
            self._stop(i)


def _with_worker_trace(err: BaseException, trace: str) -> BaseException:
    """The env's exception, re-raised here with the worker's traceback attached (the frames are over there)."""
    if trace and hasattr(err, "add_note"):
        err.add_note(f"raised in an env worker:\n{trace.rstrip()}")
    return err
