"""`env.backend=ray`: each env in its own Ray actor (`pip install 'rlvlm[ray]'`).

The same pool as `processes` (rlvlm/envs/workers.py), with Ray actors in
place of spawned processes, so envs can live on other machines of a Ray
cluster: every request of a call is sent before any reply is awaited, an
env's exception in `step` ends only its episode, and an actor that dies (or
misses `env.step_timeout`) is killed, replaced, and its episode ends with
info["error"]. The actors run the same `EnvHost` code as every backend.

`ray.init()` is called with no address when Ray is not running yet, so it
joins the cluster named by RAY_ADDRESS, or starts a local one; the pool
leaves Ray running when it closes (it kills only its own actors).

Exercised with ray 2.60.0 on a local one-node cluster only (the ray tests in
tests/unit/test_env_pool.py run when ray is importable, and are skipped
otherwise); never on a multi-node cluster.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Callable

from rlvlm.envs.pool import COMMANDS, EnvHost, RemotePool, register_env_backend
from rlvlm.errors import ConfigError


class _EnvActor(EnvHost):
    """EnvHost built inside the actor from the factory (an env object never crosses to the trainer)."""

    def __init__(self, make_env: Callable[[], Any]):
        super().__init__(make_env())

    def ready(self) -> None:
        """Answered once the env is built: the pool awaits it before the first reset."""


@register_env_backend("ray")
class RayPool(RemotePool):
    """One Ray actor per env (see the module docstring)."""

    kind = "Ray actor"

    @classmethod
    def check_available(cls) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("env.backend=ray needs the ray package, which is not installed; fix: "
                              "pip install 'rlvlm[ray]', or set env.backend=processes")

    def __init__(self, make_env: Callable[[], Any], num_envs: int, *, step_timeout: float | None = None):
        self.check_available()
        import ray

        super().__init__(num_envs, step_timeout)
        if not ray.is_initialized():
            ray.init(include_dashboard=False)
        self._ray = ray
        self._actor_cls = ray.remote(max_restarts=0)(_EnvActor)  # restarts are the pool's, with a warning
        self.make_env = make_env
        self._actors: list = [None] * num_envs
        self._ready: list = [None] * num_envs
        self._start_all()

    def _start(self, i: int) -> None:
        self._actors[i] = self._actor_cls.remote(self.make_env)
        self._ready[i] = self._actors[i].ready.remote()

    def _send(self, i: int, command: str, args: tuple):
        assert command in COMMANDS
        return getattr(self._actors[i], command).remote(*args)

    def _receive(self, i: int, handle, deadline: float | None) -> tuple:
        ray = self._ray
        ref = self._ready[i] if handle is None else handle
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return "ok", ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            ray.kill(self._actors[i])  # it will not answer in time; a fresh actor takes its place
            return "dead", f"did not answer within env.step_timeout={self.step_timeout}s and was killed"
        except ray.exceptions.RayActorError as err:
            return "dead", f"died ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        except ray.exceptions.RayTaskError as err:  # the env raised: hand its own exception on
            return "raise", getattr(err, "cause", None) or err, str(err)

    def _stop(self, i: int) -> None:
        if self._actors[i] is not None:
            try:
                self._ray.get(self._actors[i].close.remote(), timeout=5)
            except Exception:  # noqa: BLE001 - a dead or stuck actor is killed below either way
                pass
            self._ray.kill(self._actors[i])
            self._actors[i] = self._ready[i] = None
