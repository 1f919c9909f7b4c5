"""`env.backend=processes`: each env in its own worker process.

For envs whose `step` is slow (a simulator, a browser): the collector sends
every env its action, then awaits the replies, so N slow steps take about as
long as one. The worker runs the same `EnvHost` code as the in-process pool,
so a step's outcome is the same whichever backend runs it.

Why not gymnasium's `AsyncVectorEnv`: it steps all N envs with one batched
action (the collector steps subsets while finished episodes wait), resets and
auto-resets through its own seed sequence (the collector resets single envs
with seeds it chooses), batches actions through the action space (ours are
free text), and an exception in one env shuts that worker down and is
re-raised for the whole vector, with no restart. Here one env's exception
ends only its episode, and a dead worker is replaced.

Workers are never a fork of the trainer, whose torch OpenMP thread pool and
locks a fork would copy (a forked OpenMP runtime can deadlock): they come from
multiprocessing's `forkserver`, a clean process started once that imports
rlvlm.envs and then forks each worker (0.01 s a worker instead of a fresh
interpreter's imports; a restart is as cheap), or from `spawn` where there is
no forkserver (Windows). The env is built in the worker from `make_env`, which
must pickle: `rlvlm.envs.EnvFactory` (an env id and its kwargs) does, and
`rlvlm train` passes one. As with every start method but fork, a worker first
imports the trainer's main script as `__mp_main__` (not a `python -m` module,
not the `rlvlm` command): a script needs the `if __name__ == "__main__":`
guard, and one that imports torch at its top makes every worker import it.

A worker that dies (killed, `os._exit`, a segfault in a native simulator) is
seen at once: the parent waits on the reply pipe and the process sentinel
together, never on the pipe alone. With `step_timeout` a step that has not
answered in time also counts as dead. Either way the worker is killed and
restarted, its episode ends with info["error"] = "EnvWorkerDied: ...", and a
warning is logged.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
import traceback
import weakref
from multiprocessing.connection import wait
from typing import Any, Callable

from rlvlm.envs.pool import COMMANDS, EnvHost, RemotePool, register_env_backend

if "forkserver" in mp.get_all_start_methods():
    _CONTEXT = mp.get_context("forkserver")
    # What every worker needs, imported once in the server rather than in each worker ("__main__" is
    # multiprocessing's default; Python 3.11's server skips it, its workers import it). This sets the
    # process-wide forkserver's list; it is read when the server starts, so a server started earlier
    # by someone else stays as it is (its workers then import rlvlm.envs themselves).
    _CONTEXT.set_forkserver_preload(["__main__", "rlvlm.envs"])
else:
    _CONTEXT = mp.get_context("spawn")
_JOIN_SECONDS = 5.0  # a closing worker gets this long to close its env before it is killed


def _worker(conn, make_env: Callable[[], Any]) -> None:
    """A worker's life: build the env, answer commands until "close" or the parent is gone."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        host = EnvHost.build(make_env)
    except Exception as err:
        _reply(conn, ("raise", err, traceback.format_exc()))
        return
    _reply(conn, ("ok", None))
    try:
        while True:
            try:
                command, args = conn.recv()
            except (EOFError, OSError):  # the parent died or closed the pipe
                break
            if command == "close":
                break
            try:
                _reply(conn, ("ok", getattr(host, command)(*args)))  # command is one of COMMANDS (the parent sends it)
            except Exception as err:
                _reply(conn, ("raise", err, traceback.format_exc()))
    finally:
        host.close()


def _reply(conn, reply: tuple) -> None:
    """Send a reply; one that does not pickle (an exotic info value) becomes an error the parent can read."""
    try:
        conn.send(reply)
    except Exception as err:  # pickling fails before any byte is written, so the pipe stays in step
        conn.send(("raise", RuntimeError(f"the env's reply could not be sent to the trainer: "
                                         f"{type(err).__name__}: {err}"), traceback.format_exc()))


def _shutdown(procs: list, conns: list) -> None:
    """End every worker: ask politely, then kill. Also run when a pool is dropped unclosed."""
    for conn in conns:
        if conn is not None:
            try:
                conn.send(("close", ()))
            except OSError:
                pass
    for k, proc in enumerate(procs):
        if proc is None:
            continue
        proc.join(_JOIN_SECONDS)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if conns[k] is not None:
            conns[k].close()
        procs[k] = conns[k] = None


@register_env_backend("processes")
class ProcessPool(RemotePool):
    """One spawned worker process per env (see the module docstring)."""

    kind = "worker process"

    def __init__(self, make_env: Callable[[], Any], num_envs: int, *, step_timeout: float | None = None):
        super().__init__(num_envs, step_timeout)
        self.make_env = make_env
        self._procs: list = [None] * num_envs
        self._conns: list = [None] * num_envs
        # Workers end with the pool even when nobody calls close() (an exception mid-run).
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns)
        self._start_all()

    def _start(self, i: int) -> None:
        parent, child = _CONTEXT.Pipe()
        proc = _CONTEXT.Process(target=_worker, args=(child, self.make_env), daemon=True, name=f"rlvlm-env-{i}")
        proc.start()
        # Only the worker holds the child end now, so its death shows as EOF on ours.
        child.close()
        self._procs[i], self._conns[i] = proc, parent

    def _send(self, i: int, command: str, args: tuple) -> bool:
        assert command in COMMANDS
        try:
            self._conns[i].send((command, args))
            return True
        except OSError:  # the worker is gone (broken pipe); _receive reports it dead
            return False

    def _receive(self, i: int, handle, deadline: float | None) -> tuple:
        proc, conn = self._procs[i], self._conns[i]
        if handle is False:
            return "dead", f"exited (exit code {proc.exitcode})"
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = wait([conn, proc.sentinel], timeout)
        if conn in ready:  # a reply sent just before dying is still a reply
            try:
                return conn.recv()
            except (EOFError, OSError):
                pass
        if not ready:
            proc.kill()  # it will not answer in time; a late reply must never be read as the next one
            proc.join()
            return "dead", f"did not answer within env.step_timeout={self.step_timeout}s and was killed"
        proc.join()
        return "dead", f"exited (exit code {proc.exitcode})"

    def _stop(self, i: int) -> None:
        procs, conns = [self._procs[i]], [self._conns[i]]
        _shutdown(procs, conns)
        self._procs[i] = self._conns[i] = None

    def close(self) -> None:
        # Every worker is asked to close before any is awaited: their env.close() calls overlap.
        self.closed = True
        self._finalizer()  # runs _shutdown once; a second call does nothing

    @property
    def pids(self) -> list[int | None]:
        """The workers' process ids (tests kill one to check the restart)."""
        return [p.pid if p is not None else None for p in self._procs]
