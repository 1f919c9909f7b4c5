"""`rlvlm eval RUN_DIR|CHECKPOINT [episodes=N seed=S temperature=T] [env.KWARG=VALUE ...]`.

Loads the policy of a checkpoint (a run directory means its latest one) with
the run's own config, plays held-out episodes and writes `eval/report.json`
next to it. Seeds default to the run's evaluation range, disjoint from the
training seeds. `env.KWARG=VALUE` changes one env kwarg for this evaluation
(e.g. `env.missing_info.p=1.0` to test asking on degraded images only).
Under the help wrappers the report adds the help metrics (rlvlm.envs.help_metrics).
"""

from __future__ import annotations

import json
from pathlib import Path

from rlvlm.config import load_config
from rlvlm.errors import ConfigError, did_you_mean
from rlvlm.eval.episodes import EVAL_SEED_OFFSET, evaluate
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.train.checkpoint import policy_dir, resolve_checkpoint
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import make_env_factory, merge_kwargs

_KEYS = {"episodes": int, "seed": int, "temperature": float, "num_envs": int}


def _parse(overrides: list[str]) -> tuple[dict, dict]:
    """(eval options, env kwargs overrides); `env.KEY=VALUE` sets an env kwarg, e.g. env.missing_info.p=0.5."""
    import yaml

    out: dict = {}
    env: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"eval override {item!r} is not key=value; use e.g. episodes=500")
        if key.startswith("env.") and len(key) > 4:
            parts = key[4:].split(".")
            node = env
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"eval override {item!r} sets a key below a value; fix: set {key.rsplit('.', 1)[0]} once")
            node[parts[-1]] = yaml.safe_load(raw)
            continue
        if key not in _KEYS:
            raise ConfigError(f"unknown eval key {key!r}{did_you_mean(key, _KEYS)}; keys: {', '.join(_KEYS)}, env.KWARG")
        try:
            out[key] = _KEYS[key](raw)
        except ValueError:
            raise ConfigError(f"eval {key}={raw!r} is not a {_KEYS[key].__name__}") from None
    return out, env


def evaluate_run(path: str | Path, overrides: list[str] | None = None) -> dict:

    opts, env_overrides = _parse(list(overrides or []))
    ckpt = resolve_checkpoint(path)
    cfg = load_config(TrainConfig, str(Path(ckpt) / "config.yaml"))
    policy = load_policy(policy_dir(ckpt))
    # The run's evaluation env (eval.env_kwargs over env.kwargs), then this call's env.* overrides.
    make_env = make_env_factory(cfg, merge_kwargs(cfg.eval.env_kwargs, env_overrides))
    episodes = opts.get("episodes", cfg.eval.episodes)
    if episodes < 1:
        raise ConfigError(f"eval episodes={episodes} must be >= 1")
    result = evaluate(
        policy, make_env, episodes=episodes, seed=opts.get("seed", cfg.seed + EVAL_SEED_OFFSET),
        sampling=SamplingConfig(temperature=opts.get("temperature", cfg.eval.temperature),
                                max_new_tokens=cfg.rollout.max_new_tokens),
        num_envs=opts.get("num_envs", cfg.eval.num_envs),
    )
    report = {"checkpoint": str(ckpt), "env": cfg.env.id, "eval": result}
    out = Path(ckpt) / "eval"
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    report["written_to"] = str(out / "report.json")
    return report
