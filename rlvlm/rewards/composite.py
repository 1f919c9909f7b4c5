"""A weighted sum of named reward components, built from config.

    reward = CompositeReward({"accuracy": 1.0, "format": 0.1, "overlong": 1.0},
                             options={"overlong": {"max_tokens": 512, "cache": 128}})
    total, parts = reward(sample, info, env_reward)

A component is a callable `fn(sample, info) -> float | None`. One that is
costly per call (a reward model runs a VLM) may also expose
`fn.score_batch(samples, infos) -> list[float | None]`; `score` then calls it
once for the whole rollout instead of once per transition.

Config layout (one name per component, from `REWARDS`, or a custom callable
passed through the Python API):

    reward:
      weights: {env: 1.0, tokens: -0.001}
      options: {overlong: {max_tokens: 512, cache: 128}}
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from numbers import Real
from typing import Callable

from rlvlm.errors import ConfigError, RlvlmError, did_you_mean
from rlvlm.rewards import functions as F
from rlvlm.rewards import rlhf


def _accuracy_soft() -> F.RewardFn:
    """`accuracy(scoring="soft")`: the VQA score min(#matches / 3, 1)."""
    return F.accuracy(scoring="soft")


REWARDS: dict[str, Callable[..., F.RewardFn]] = {
    "env": F.env_reward,
    "accuracy": F.accuracy,
    "accuracy_soft": _accuracy_soft,
    "format": F.format_valid,
    "tokens": F.tokens,
    "seconds": F.seconds,
    "overlong": F.overlong,
    "length_target": F.length_target,
    "help_ternary": F.help_ternary,
    "help_phi": F.help_phi,
    "help_confidence": F.help_confidence,
    # RLHF (rewards/rlhf.py). One heuristic factory under three names, so a run
    # can log the preference heuristic and a held-out one side by side.
    "reward_model": rlhf.reward_model,
    "heuristic": rlhf.heuristic,
    "heuristic_train": rlhf.heuristic,
    "heuristic_heldout": rlhf.heuristic,
}


def _params(factory) -> str:
    names = list(inspect.signature(factory).parameters)
    return ", ".join(names) if names else "none"


def _build(name: str, factory, opts) -> F.RewardFn:
    where = f"reward.options.{name}"
    if not isinstance(opts, Mapping):
        raise ConfigError(f"{where}={opts!r} must be a mapping of keyword arguments, e.g. {{max_tokens: 512}}")
    params = inspect.signature(factory).parameters
    for key in opts:
        if key not in params:
            raise ConfigError(
                f"{where}.{key} is not an option of {name!r}{did_you_mean(str(key), params)}; "
                f"accepted parameters: {_params(factory)}"
            )
    try:
        # Bind first so only a bad option set becomes a ConfigError; a TypeError
        # raised inside the factory would be a bug and should surface as one.
        inspect.signature(factory).bind(**opts)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}; accepted parameters: {_params(factory)}") from None
    try:
        return factory(**opts)
    except ConfigError as err:
        # Factory messages start with the parameter name ("cache=0 must ..."),
        # so the prefix turns them into a full config path.
        raise ConfigError(f"{where}.{err}") from None


class CompositeReward:
    """total = Σ_i w_i · r_i(sample, info) over the components i with r_i ≠ None.

    `weights` maps component names to finite weights (0 keeps a component for
    logging only); `options` gives keyword arguments per component; `custom`
    maps extra names to ready reward callables `fn(sample, info)`. Each
    component sees the step's info plus info["env_reward"], the env's reward.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        options: Mapping[str, Mapping] | None = None,
        custom: Mapping[str, F.RewardFn] | None = None,
    ):
        options = {} if options is None else options
        custom = {} if custom is None else custom
        for field, value in (("reward.weights", weights), ("reward.options", options), ("custom", custom)):
            if not isinstance(value, Mapping):
                kind = type(value).__name__
                raise ConfigError(f"{field} is a {kind}; expected a mapping of component name -> value")
        if not weights:
            raise ConfigError(
                f"reward.weights is empty; fix: weight at least one of {', '.join(REWARDS)}, e.g. {{env: 1.0}}"
            )
        for name, fn in custom.items():
            if name in REWARDS:
                raise ConfigError(f"custom reward {name!r} shadows the built-in component; fix: give it another name")
            if not callable(fn):
                kind = type(fn).__name__
                raise ConfigError(f"custom reward {name!r} is a {kind}; expected fn(sample, info) -> float | None")
            if name not in weights:
                raise ConfigError(f"custom reward {name!r} has no weight; fix: add reward.weights.{name}")
        for name in options:
            if name not in weights:
                raise ConfigError(
                    f"reward.options.{name} is set but {name!r} is not in reward.weights; "
                    "fix: add a weight or drop the options"
                )
            if name in custom:
                raise ConfigError(f"reward.options.{name}: custom reward callables take no options; fix: drop them")

        self.weights: dict[str, float] = {}
        self.functions: dict[str, F.RewardFn] = {}
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, Real) or not math.isfinite(weight):
                raise ConfigError(f"reward.weights.{name}={weight!r} must be a finite number")
            if name in custom:
                fn = custom[name]
            elif name in REWARDS:
                fn = _build(name, REWARDS[name], options.get(name, {}))
            else:
                choices = list(REWARDS) + list(custom)
                raise ConfigError(
                    f"reward.weights.{name} is not a reward component{did_you_mean(str(name), choices)}; "
                    f"valid: {', '.join(choices)}"
                )
            self.weights[name] = float(weight)
            self.functions[name] = fn

    @classmethod
    def from_config(cls, weights: Mapping[str, float], options: Mapping[str, Mapping] | None = None) -> "CompositeReward":
        """Same as the constructor, for the config's `reward.weights` / `reward.options`."""
        return cls(weights, options)

    def _info(self, info: Mapping, env_reward: float | None) -> dict:
        info = dict(info)  # a copy: the caller's info must not gain our key
        if env_reward is not None:
            info["env_reward"] = float(env_reward)
        return info

    @staticmethod
    def _checked(name: str, value) -> float | None:
        if value is None:
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise RlvlmError(f"reward component {name!r} returned {value!r}; expected a float or None") from None
        if not math.isfinite(value):
            raise RlvlmError(f"reward component {name!r} returned {value}; rewards must be finite")
        return value

    def _total(self, values: Mapping[str, float | None]) -> tuple[float, dict[str, float]]:
        parts = {n: v for n, v in values.items() if v is not None}
        return sum((self.weights[n] * v for n, v in parts.items()), 0.0), parts

    def __call__(self, sample, info: Mapping, env_reward: float | None = None) -> tuple[float, dict[str, float]]:
        """(total, parts): parts maps each component that applied to its raw value."""
        info = self._info(info, env_reward)
        return self._total({name: self._checked(name, fn(sample, info)) for name, fn in self.functions.items()})

    def score(self, transitions) -> tuple[list[float], dict[str, float]]:
        """Totals for objects with `.sample`, `.info`, `.reward` (the env reward), and metrics.

        Components with `score_batch` are called once with every transition;
        the others once per transition. Metrics: "reward/<name>" is the mean
        raw value of a component over the transitions where it applied (left
        out if it never did); "reward/total" is the mean total over all
        transitions.
        """
        transitions = list(transitions)
        samples = [tr.sample for tr in transitions]
        infos = [self._info(tr.info, tr.reward) for tr in transitions]
        columns: dict[str, list[float | None]] = {}
        for name, fn in self.functions.items():
            batch = getattr(fn, "score_batch", None)
            values = list(batch(samples, infos)) if batch is not None else [fn(s, i) for s, i in zip(samples, infos)]
            if len(values) != len(samples):
                raise RlvlmError(f"reward component {name!r}.score_batch returned {len(values)} values "
                                 f"for {len(samples)} samples; expected one per sample")
            columns[name] = [self._checked(name, v) for v in values]
        totals: list[float] = []
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for i in range(len(transitions)):
            total, parts = self._total({name: col[i] for name, col in columns.items()})
            totals.append(total)
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
        # Keep the config's component order in the metrics.
        metrics = {f"reward/{n}": sums[n] / counts[n] for n in self.functions if n in counts}
        if totals:
            metrics["reward/total"] = sum(totals) / len(totals)
        return totals, metrics

    def __repr__(self) -> str:
        terms = " + ".join(f"{w:g}·{n}" for n, w in self.weights.items())
        return f"CompositeReward({terms})"
