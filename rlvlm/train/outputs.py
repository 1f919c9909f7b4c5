"""The run directory of `rlvlm train`: config, metrics, progress, checkpoints, report.

Layout (../shared/DESIGN.md): config.yaml, metrics.jsonl, TensorBoard events,
checkpoints/step-N/, report.json, report.md, curves.png.
"""

from __future__ import annotations

from pathlib import Path

from rlvlm.config import config_to_dict, dump_config_yaml
from rlvlm.train.distributed import SINGLE, Distributed
from rlvlm.train.run_dir import RunLogger, plot_curves, write_report

# Metrics shown on the progress bar, with short labels.
_BAR = (("rollout/success_rate", "succ"), ("rollout/return", "ret"), ("rollout/invalid_action_rate", "inv"),
        ("policy/entropy", "ent"), ("eval/success_rate", "eval"))


class RunOutputs:
    """Writes the run directory. In a data-parallel run only rank 0 writes (`dist.is_main`);
    the other ranks keep the phase timings and take part in checkpoint collectives."""

    def __init__(self, cfg, dist: Distributed = SINGLE):
        self.cfg = cfg
        self.dist = dist
        self.dir = Path(cfg.output_dir)
        self.config_dict = config_to_dict(cfg)
        self.logger = None
        if dist.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            dump_config_yaml(cfg, self.dir / "config.yaml")
            # A fresh run into a used directory starts its curves afresh (resume_step=0 drops every old
            # record); a resumed run keeps the records it continues from.
            self.logger = RunLogger(self.dir, resume_step=None if cfg.resume else 0)
        self.phase_seconds: dict[str, float] = {}

    # ------------------------------------------------------------ progress
    def progress_bar(self, total: int, initial: int):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc="rl", unit="upd", dynamic_ncols=True,
                    disable=not self.dist.is_main)

    def log(self, metrics: dict, bar) -> None:
        for k, v in metrics.items():
            if k.startswith("time/"):
                self.phase_seconds[k[5:]] = self.phase_seconds.get(k[5:], 0.0) + v
        if self.logger is not None:
            self.logger.log(metrics, step=metrics.get("update", 0))
        bar.set_postfix({label: f"{metrics[k]:.2f}" for k, label in _BAR if k in metrics}, refresh=False)
        bar.update(1)

    def phase_totals(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in sorted(self.phase_seconds.items())}

    # --------------------------------------------------------- checkpoints
    def checkpoint(self, state) -> Path | None:
        """Save the whole `TrainState` as checkpoints/step-{state.update}/; keeps the newest
        cfg.checkpoint_keep (0: all), the one just written, and so the final one, always.
        A collective in a data-parallel run (every rank's streams and envs go in)."""
        return state.save(self.dir, config_dict=self.config_dict, keep_last=self.cfg.checkpoint_keep,
                          dist=self.dist)

    # -------------------------------------------------------------- report
    def finish(self, report: dict) -> None:
        if not self.dist.is_main:
            return
        self.logger.close()
        write_report(self.dir, report)
        sft = report.get("sft", {}).get("success_rate")
        # One panel per reward component too (reward/<name> means over each rollout): with
        # zero-weight components these are the curves that show reward hacking (rlhf preset).
        # Each panel also shows the component's mean on the held-out questions before RL (report["sft"]).
        parts = [f"reward/{n}" for n in self.cfg.reward.weights] if len(self.cfg.reward.weights) > 1 else []
        hlines: dict = {"SFT (eval)": sft} if sft is not None else {}
        hlines.update({y: {"before RL (eval)": report["sft"][y]} for y in parts if y in report.get("sft", {})})
        plot_curves(self.dir / "metrics.jsonl", self.dir / "curves.png", x="rollout/env_steps",
                    ys=["rollout/success_rate", "rollout/return", *parts], hlines=hlines)


