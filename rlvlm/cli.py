"""The `rlvlm` command line: wiring only, the logic lives in the packages."""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from rlvlm.models.tiny import build_tiny_model

    _quiet_transformers()
    summary = build_tiny_model(args.out_dir, arch=args.arch, size=args.size, seed=args.seed)
    print(f"built {summary['arch']} ({summary['size']}, seed {summary['seed']}): "
          f"{summary['params']:,} parameters, {summary['image_size']}px images, "
          f"{summary['build_seconds']:.1f}s -> {args.out_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rlvlm.config import load_config
    from rlvlm.train.config import TrainConfig
    from rlvlm.train.rl import train

    spec, overrides = _split_spec(args.args)
    cfg = load_config(TrainConfig, spec or "numberline", overrides)
    _quiet_transformers()
    train(cfg)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    path, overrides = _split_spec(args.args)
    if path is None:  # no run directory: a scripted policy in an env (env=ID policy=oracle|random)
        from rlvlm.envs.runner import evaluate_from_args, format_summary

        summary = evaluate_from_args(overrides)
        print(format_summary(summary))
        if summary.get("output_dir"):
            print(f"wrote {summary['output_dir']}/report.json and observations/*.png")
        return 0
    from rlvlm.train.evaluate import evaluate_run

    _quiet_transformers()
    report = evaluate_run(path, overrides)
    print(json.dumps(report, indent=2))
    return 0


def _config_command(module: str, cls: str, fn: str):
    """`rlvlm COMMAND [FILE.yaml] [key=value ...]` for a command driven by one config class:
    load `module.cls` (dataclass defaults, then the file, then the overrides) and call `module.fn(cfg)`."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        from rlvlm.config import load_config

        mod = importlib.import_module(module)
        spec, overrides = _split_spec(args.args)
        cfg = load_config(getattr(mod, cls), spec, overrides)
        _quiet_transformers()
        getattr(mod, fn)(cfg)
        return 0

    return run


def _split_spec(items: list[str]) -> tuple[str | None, list[str]]:
    """First positional without '=' is the preset name or YAML file; the rest are key=value."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


class _TrainHelp(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from rlvlm.config import describe_config, list_presets
        from rlvlm.train.config import TrainConfig

        print("usage: rlvlm train [PRESET | FILE.yaml] [key=value ...]\n")
        print("presets: " + ", ".join(list_presets()) + " (default: numberline)\n")
        print("fields (dotted keys for key=value overrides):")
        print(describe_config(TrainConfig))
        parser.exit()


def _fields_help(usage: str, module: str, cls: str) -> type[argparse.Action]:
    """An argparse action printing `usage` and every field of the config class `module.cls`."""

    class _Help(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            import importlib

            from rlvlm.config import describe_config

            print(f"usage: {usage}\n")
            print("fields (keys for key=value overrides):")
            print(describe_config(getattr(importlib.import_module(module), cls)))
            parser.exit()

    return _Help


def build_parser() -> argparse.ArgumentParser:
    from rlvlm.models.tiny import ARCHS, SIZES

    parser = argparse.ArgumentParser(prog="rlvlm", description="RL fine-tuning of vision-language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tiny-model", help="build a small from-scratch VLM of a real HF architecture, offline")
    p.add_argument("out_dir")
    p.add_argument("--arch", default="qwen2_vl", choices=ARCHS)
    p.add_argument("--size", default="tiny", choices=tuple(SIZES))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser("train", add_help=False, help="SFT warm-start + PPO/GRPO in a visual environment")
    p.add_argument("-h", "--help", action=_TrainHelp, nargs=0, help="list presets and every config field")
    p.add_argument("args", nargs="*", metavar="PRESET|FILE.yaml key=value")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("reward-model", add_help=False,
                       help="train an image-conditioned reward model on preference pairs (Bradley-Terry)")
    p.add_argument("-h", "--help", nargs=0, help="list every config field", action=_fields_help(
        "rlvlm reward-model [FILE.yaml] pairs=PAIRS.jsonl [key=value ...]", "rlvlm.train.reward_model",
        "RewardModelConfig"))
    p.add_argument("args", nargs="*", metavar="FILE.yaml key=value")
    p.set_defaults(func=_config_command("rlvlm.train.reward_model", "RewardModelConfig", "train_reward_model"))

    p = sub.add_parser("preferences", add_help=False,
                       help="sample K replies per procedural question and turn heuristic scores into preference pairs")
    p.add_argument("-h", "--help", nargs=0, help="list every config field", action=_fields_help(
        "rlvlm preferences [FILE.yaml] policy=DIR task=digits n_prompts=200 k=4 weights.mentions=1 "
        "weights.structure=1 out=runs/prefs/pairs.jsonl [key=value ...]",
        "rlvlm.train.preferences", "PreferenceConfig"))
    p.add_argument("args", nargs="*", metavar="FILE.yaml key=value")
    p.set_defaults(func=_config_command("rlvlm.train.preferences", "PreferenceConfig", "run_preferences"))

    p = sub.add_parser("dpo", add_help=False, help="train a policy with DPO on preference pairs, evaluated like RLHF")
    p.add_argument("-h", "--help", nargs=0, help="list every config field", action=_fields_help(
        "rlvlm dpo [FILE.yaml] policy=DIR pairs=PAIRS.jsonl [key=value ...]", "rlvlm.train.dpo", "DPOConfig"))
    p.add_argument("args", nargs="*", metavar="FILE.yaml key=value")
    p.set_defaults(func=_config_command("rlvlm.train.dpo", "DPOConfig", "train_dpo"))

    p = sub.add_parser(
        "eval", help="evaluate a run/checkpoint on held-out seeds, or a scripted policy in an env",
        description="rlvlm eval RUN_DIR|CHECKPOINT [episodes=N seed=S temperature=T num_envs=N] "
        "[env_kwargs.KEY=VALUE ...]\n"
        "rlvlm eval env=ID [policy=oracle|random] [episodes=N seed=S output_dir=DIR save_images=K] "
        "[env_kwargs.KEY=VALUE ...]\n(e.g. env_kwargs.missing_info=0.5 env_kwargs.ask_for_help=multi_turn)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("args", nargs="*", metavar="RUN_DIR|key=value")
    p.set_defaults(func=cmd_eval)

    return parser


def main(argv: list[str] | None = None) -> int:
    from rlvlm.errors import RlvlmError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RlvlmError as err:
        print(f"rlvlm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
