"""Run scripted (or any text) policies in rlvlm envs: evaluation reports,
SFT demonstrations, and PNGs of observations for a person to look at.

`evaluate_policy` is the logic behind `rlvlm eval env=... policy=oracle|random`:
episode i is reset with seed + i, so two runs with the same seed see the
same deals, and success is counted as episode return > 0 (as in RL4VLM).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from PIL import Image

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


# The option a bare `missing_info=0.3` / `ask_for_help=multi_turn` sets (as in vector.wrapper_fns).
_WRAPPER_SCALAR = {"missing_info": "p", "ask_for_help": "mode"}
_RUN_KEYS = {"env": str, "policy": str, "episodes": int, "seed": int, "output_dir": str, "save_images": int}


def parse_eval_overrides(items: list[str]) -> dict:
    """`key=value` strings from `rlvlm eval env=ID ...` into evaluate_policy
    kwargs. Values are read as YAML scalars (safe_load: numbers, booleans,
    lists; never code). Keys other than env/policy/episodes/seed/output_dir/
    save_images go to the env constructor; `missing_info.modes=[blur]` style
    dotted keys build the wrapper option dicts."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"eval argument {item!r} is not key=value; use e.g. env=rlvlm/EZPoints-v0 policy=oracle")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        if key in _RUN_KEYS:
            want = _RUN_KEYS[key]
            if want is str:
                value = raw
            elif not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"eval {key}={raw!r} must be an integer")
            out[key] = value
        elif "." in key:
            head, _, sub = key.partition(".")
            if head not in _WRAPPER_SCALAR:
                raise ConfigError(f"eval key {key!r}: only missing_info.* and ask_for_help.* take dotted options")
            current = out.get(head)
            if not isinstance(current, dict):
                current = {} if current is None else {_WRAPPER_SCALAR[head]: current}
            current[sub] = value
            out[head] = current
        elif key in _WRAPPER_SCALAR and isinstance(out.get(key), dict):
            out[key][_WRAPPER_SCALAR[key]] = value
        else:
            out[key] = value
    if "env" not in out:
        raise ConfigError("eval of a scripted policy needs env=ID, e.g. env=rlvlm/NumberLine-v0 policy=oracle")
    return out


def evaluate_from_args(items: list[str]) -> dict:
    """`rlvlm eval env=ID [policy=oracle|random] [episodes=N] ...`: evaluate and
    return the summary. Unknown env options fail with the env's own message."""
    kwargs = parse_eval_overrides(items)
    env_id = kwargs.pop("env")
    try:
        return evaluate_policy(env_id, **kwargs)
    except TypeError as err:  # an env constructor rejected an option
        raise ConfigError(f"{env_id}: {err}; check the env option names (see the env's docstring)") from None
    except gym.error.Error as err:  # unknown id, with gymnasium's own "did you mean"
        raise ConfigError(f"env={env_id!r}: {err}") from None


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
