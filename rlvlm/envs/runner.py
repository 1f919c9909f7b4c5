"""Run scripted (or any text) policies in rlvlm envs: evaluation reports,
SFT demonstrations, and PNGs of observations for a person to look at.

`evaluate_policy` is the logic behind `rlvlm eval env=... policy=oracle|random`:
episode i is reset with seed + i, so two runs with the same seed see the
same deals, and success is counted as episode return > 0 (as in RL4VLM).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import gymnasium as gym
import numpy as np
from PIL import Image

from rlvlm.config import F, FF, load_config
from rlvlm.envs.policies import TextPolicy, make_policy
from rlvlm.envs.vector import make_env
from rlvlm.envs.help_metrics import EPISODE_KEYS, help_metrics
from rlvlm.errors import ConfigError

# Per-episode info keys copied into the report when present (help-seeking).
_EPISODE_KEYS = EPISODE_KEYS


def run_episode(env, policy: TextPolicy, seed: int | None = None, options: dict | None = None, on_step: Callable | None = None) -> dict:
    """Play one episode; `on_step(t, obs, reply, reward, info)` sees each step.
    Returns {"return", "length", "success", "invalid_steps", "final_info"}."""
    obs, info = env.reset(seed=seed, options=options)
    total, steps, invalid = 0.0, 0, 0
    while True:
        reply = policy.act(obs, info)
        next_obs, reward, terminated, truncated, info = env.step(reply)
        if on_step is not None:
            on_step(steps, obs, reply, reward, info)
        total += reward
        steps += 1
        invalid += not info.get("action_valid", True)
        obs = next_obs
        if terminated or truncated:
            return {"return": total, "length": steps, "success": total > 0, "invalid_steps": invalid, "final_info": info}


def _policy(policy, env, seed: int) -> tuple[TextPolicy, str]:
    if isinstance(policy, str):
        kwargs = {"seed": seed} if policy == "random" else {}
        return make_policy(policy, env, **kwargs), policy
    if not isinstance(policy, TextPolicy):
        raise ConfigError(f"policy={policy!r} is neither a name (oracle, random) nor an object with act(obs, info)")
    return policy, getattr(policy, "name", type(policy).__name__)


def evaluate_policy(
    env_id: str,
    policy="oracle",
    episodes: int = 200,
    seed: int = 0,
    output_dir: str | None = None,
    save_images: int = 6,
    missing_info=None,
    ask_for_help=None,
    **env_kwargs,
) -> dict:
    """Play `episodes` episodes and summarise; with `output_dir`, also write
    report.json and the first `save_images` observations as PNGs (with their
    prompts and replies in observations/index.jsonl)."""
    if not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes={episodes!r} must be a positive integer")
    env = make_env(env_id, missing_info=missing_info, ask_for_help=ask_for_help, **env_kwargs)
    pi, name = _policy(policy, env, seed)
    shots: list[dict] = []
    image_dir = os.path.join(output_dir, "observations") if output_dir else None

    def keep(ep: int):
        def on_step(t, obs, reply, reward, info):
            if image_dir is None or len(shots) >= save_images:
                return
            os.makedirs(image_dir, exist_ok=True)
            fname = f"ep{ep:03d}_step{t:02d}.png"
            Image.fromarray(obs["image"]).save(os.path.join(image_dir, fname))
            shots.append({"image": fname, "prompt": obs["text"], "reply": reply, "reward": reward})

        return on_step

    per_episode = []
    for i in range(episodes):
        out = run_episode(env, pi, seed=seed + i, on_step=keep(i))
        row = {"seed": seed + i, "return": out["return"], "length": out["length"], "success": out["success"], "invalid_steps": out["invalid_steps"]}
        row.update({k: out["final_info"][k] for k in _EPISODE_KEYS if k in out["final_info"]})
        per_episode.append(row)
    env.close()
    returns = np.array([r["return"] for r in per_episode], dtype=float)
    steps = sum(r["length"] for r in per_episode)
    summary = {
        "env": env_id,
        "policy": name,
        "episodes": episodes,
        "seed": seed,
        "success_rate": float(np.mean([r["success"] for r in per_episode])),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "mean_length": steps / episodes,
        "invalid_action_rate": sum(r["invalid_steps"] for r in per_episode) / max(1, steps),
        "env_kwargs": {k: v for k, v in env_kwargs.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "missing_info": missing_info,
        "ask_for_help": ask_for_help,
        "output_dir": output_dir,
    }
    for key in ("asked", "abstained", "info_missing"):  # help-seeking rates, when the wrappers are on
        flags = [bool(r[key]) for r in per_episode if key in r]
        if flags:
            summary[f"{key}_rate"] = float(np.mean(flags))
    summary.update(help_metrics(per_episode))  # ask recall/precision/F1, Φ_c, coverage, per mode
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "report.json"), "w") as fh:
            json.dump({**summary, "per_episode": per_episode}, fh, indent=2, default=str)
        if shots:
            with open(os.path.join(image_dir, "index.jsonl"), "w") as fh:
                fh.writelines(json.dumps(s) + "\n" for s in shots)
    return summary


@dataclass
class ScriptedEvalConfig:
    """`rlvlm eval env=ID [policy=oracle|random] [episodes=N] ... [env_kwargs.KEY=VALUE ...]`."""

    COMMAND = "rlvlm eval"

    env: str = dataclasses.field(metadata={"help": "gymnasium id of the environment, e.g. rlvlm/EZPoints-v0"})
    policy: str = F("oracle", "scripted policy: oracle | random")
    episodes: int = F(200, "episodes; episode i is reset with seed + i")
    seed: int = F(0, "seed of the first episode")
    output_dir: Optional[str] = F(None, "write report.json and observation PNGs here (null: print only)")
    save_images: int = F(6, "observations saved as PNGs under output_dir")
    env_kwargs: dict = FF(dict, "env constructor options, e.g. env_kwargs.image_size=48, "
                          "env_kwargs.missing_info=0.5, env_kwargs.ask_for_help.mode=multi_turn")

    def validate(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes} must be a positive integer")
        if self.save_images < 0:
            raise ConfigError(f"save_images={self.save_images} must be >= 0")


def parse_eval_args(items: list[str]) -> ScriptedEvalConfig:
    """`key=value` strings of `rlvlm eval env=ID ...`, through the config parser (rlvlm.config)."""
    for item in items:  # the one likely slip, an env option without its section, gets its fix
        key = item.partition("=")[0].split(".")[0].strip()
        if "=" in item and key.isidentifier() and key not in ScriptedEvalConfig.__dataclass_fields__:
            raise ConfigError(f"unknown eval key {key!r}; env options go under env_kwargs: "
                              f"env_kwargs.{item.strip()}")
    return load_config(ScriptedEvalConfig, None, items)


def evaluate_from_args(items: list[str]) -> dict:
    """`rlvlm eval env=ID [policy=oracle|random] [episodes=N] ...`: evaluate and
    return the summary. Unknown env options fail with the env's own message."""
    cfg = parse_eval_args(items)
    kwargs = dict(cfg.env_kwargs)
    try:
        return evaluate_policy(cfg.env, policy=cfg.policy, episodes=cfg.episodes, seed=cfg.seed,
                               output_dir=cfg.output_dir, save_images=cfg.save_images, **kwargs)
    except TypeError as err:  # an env constructor rejected an option
        raise ConfigError(f"{cfg.env}: {err}; check the env option names (see the env's docstring)") from None
    except gym.error.Error as err:  # unknown id, with gymnasium's own "did you mean"
        raise ConfigError(f"env={cfg.env!r}: {err}") from None


def format_summary(summary: dict) -> str:
    """One line for the terminal."""
    return (
        f"{summary['env']} policy={summary['policy']} episodes={summary['episodes']} seed={summary['seed']}: "
        f"success_rate={summary['success_rate']:.3f} mean_return={summary['mean_return']:.3f} "
        f"mean_length={summary['mean_length']:.2f} invalid_action_rate={summary['invalid_action_rate']:.3f}"
        + "".join(f" {k}={summary[k]:.3f}" for k in ("info_missing_rate", "asked_rate", "abstained_rate") if k in summary)
        + format_help(summary)
    )


def format_help(summary: dict) -> str:
    """The help metrics as a second line ("" without the help wrappers)."""
    keys = ("ask_f1", "ask_recall", "ask_precision", "false_ask_rate", "accuracy_clear", "coverage", "phi_1", "phi_10")
    if "help/ask_f1" not in summary:
        return ""
    return "\nhelp: " + " ".join(f"{k}={summary['help/' + k]:.3f}" for k in keys)


def collect_demos(
    env_id: str,
    episodes: int,
    seed: int = 0,
    policy="oracle",
    only_success: bool = False,
    missing_info=None,
    ask_for_help=None,
    **env_kwargs,
) -> list[dict]:
    """Demonstrations for SFT: one dict per step with the exact observation
    the policy saw and its reply:
    {"image": uint8 HxWx3, "prompt": str, "completion": str, "reward": float,
     "episode": int, "step": int, "action_valid": bool, "success": bool}.
    Episode i uses seed + i; keep training and evaluation seeds disjoint."""
    env = make_env(env_id, missing_info=missing_info, ask_for_help=ask_for_help, **env_kwargs)
    pi, _ = _policy(policy, env, seed)
    demos: list[dict] = []
    for i in range(episodes):
        steps: list[dict] = []

        def on_step(t, obs, reply, reward, info, steps=steps, ep=i):
            steps.append({"image": obs["image"], "prompt": obs["text"], "completion": reply, "reward": float(reward),
                          "episode": ep, "step": t, "action_valid": bool(info.get("action_valid", True))})  # fmt: skip

        out = run_episode(env, pi, seed=seed + i, on_step=on_step)
        if only_success and not out["success"]:
            continue
        for s in steps:
            s["success"] = out["success"]
        demos.extend(steps)
    env.close()
    return demos
