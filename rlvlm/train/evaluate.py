"""`rlvlm eval RUN_DIR|CHECKPOINT [episodes=N seed=S temperature=T] [env_kwargs.KWARG=VALUE ...]`.

Loads the policy of a checkpoint (a run directory means its latest one) with
the run's own config, plays held-out episodes and writes `eval/report.json`
next to it. Seeds default to the run's evaluation range, disjoint from the
training seeds. `env_kwargs.KWARG=VALUE` changes one env kwarg for this evaluation
(e.g. `env_kwargs.missing_info.p=1.0` to test asking on degraded images only).
Under the help wrappers the report adds the help metrics (rlvlm.envs.help_metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rlvlm.config import F, FF, load_config
from rlvlm.errors import ConfigError
from rlvlm.eval.episodes import EVAL_SEED_OFFSET, evaluate
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.train.checkpoint import policy_dir, resolve_checkpoint
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import make_env_factory, merge_kwargs

@dataclass
class RunEvalConfig:
    """`rlvlm eval RUN key=value ...`: the keys of the run's own `eval` section (plus `seed`); unset keys take
    the run's values."""

    COMMAND = "rlvlm eval RUN"

    episodes: Optional[int] = F(None, "held-out episodes (null: the run's eval.episodes)")
    seed: Optional[int] = F(None, "seed of the first episode (null: the run's seed + 1_000_000, the seeds of its "
                            "own evaluations, disjoint from training)")
    temperature: Optional[float] = F(None, "0 = greedy (null: the run's eval.temperature)")
    num_envs: Optional[int] = F(None, "envs per evaluation batch (null: the run's eval.num_envs)")
    env_kwargs: dict = FF(dict, "env kwargs for this evaluation, merged over the run's eval.env_kwargs and "
                          "env.kwargs, e.g. env_kwargs.missing_info.p=1.0")

    def validate(self) -> None:
        for name in ("episodes", "num_envs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"eval {name}={getattr(self, name)} must be >= 1")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"eval temperature={self.temperature} must be >= 0 (0 = greedy)")


def _or_run(value, run_default):
    return run_default if value is None else value


def evaluate_run(path: str | Path, overrides: list[str] | None = None) -> dict:

    overrides = list(overrides or [])
    for item in overrides:
        if item.startswith("env."):  # the spelling before 0.2, one parser ago
            raise ConfigError(f"eval override {item!r}: env kwargs are env_kwargs.KEY=VALUE; fix: env_kwargs.{item[4:]}")
    opts = load_config(RunEvalConfig, None, overrides)
    ckpt = resolve_checkpoint(path)
    cfg = load_config(TrainConfig, str(Path(ckpt) / "config.yaml"))
    policy = load_policy(policy_dir(ckpt))
    # The run's evaluation env (eval.env_kwargs over env.kwargs), then this call's env_kwargs.
    make_env = make_env_factory(cfg, merge_kwargs(cfg.eval.env_kwargs, opts.env_kwargs))
    result = evaluate(
        policy, make_env, episodes=_or_run(opts.episodes, cfg.eval.episodes),
        seed=_or_run(opts.seed, cfg.seed + EVAL_SEED_OFFSET),
        sampling=SamplingConfig(temperature=_or_run(opts.temperature, cfg.eval.temperature),
                                max_new_tokens=cfg.rollout.max_new_tokens),
        num_envs=_or_run(opts.num_envs, cfg.eval.num_envs),
    )
    report = {"checkpoint": str(ckpt), "env": cfg.env.id, "eval": result}
    out = Path(ckpt) / "eval"
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    report["written_to"] = str(out / "report.json")
    return report
