"""`rlvlm reward-model`: fit an image-conditioned reward model to preference pairs.

Pairs are {record_id, question, chosen, rejected, margin} (see
rlvlm.rewards.preferences). Each record id is rebuilt into its procedural
record, and the observation is the one `rlvlm/VisualQA-v0` shows for it, so
the reward model reads the exact prompt a policy answers. Pairs are split by
record (no prompt is on both sides), and the model minimises the
Bradley–Terry loss

    loss = mean_i −log σ(r(x_i, y_c,i) − r(x_i, y_r,i) − m_i)     (m_i = margin, or 0)

Reported per epoch: train loss / pair accuracy (running means over the
epoch's minibatches) and held-out loss / pair accuracy (a full pass after the
epoch); epoch 0 is the untrained model. Ties count ½, so an untrained
(constant) model sits at exactly 0.5.

Calibration on held-out pairs: with p = σ(r_c − r_r), the model's confidence
in the answer it ranks higher is max(p, 1 − p), and it is right when that
answer is the chosen one. `calibration_bins` groups pairs by confidence and
compares the mean confidence with the observed fraction ranked right; a
calibrated model lies on the diagonal.

Run directory: config.yaml, report.json, curves.png, calibration.png, model/.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch

import rlvlm.envs  # noqa: F401  (registers rlvlm/... ids)
from rlvlm.algos.preference import bradley_terry_loss
from rlvlm.config import F, config_to_dict, dump_config_yaml
from rlvlm.errors import ConfigError
from rlvlm.models.reward_model import KINDS, RewardModel, build_reward_model
from rlvlm.rewards.preferences import load_pairs, resolve_record, split_pairs
from rlvlm.train.rl import resolve_model
from rlvlm.train.run_dir import atomic_write_text, to_json_value
from rlvlm.train.distributed import Distributed

ENV_ID = "rlvlm/VisualQA-v0"


@dataclass
class RewardModelConfig:
    COMMAND = "rlvlm reward-model"  # not a field (no annotation): the command that reloads a saved config.yaml
    kind: Literal["mlp", "vlm"] = F("mlp", "mlp: frozen-VLM features [image ⊕ question ⊕ answer] -> MLP | "
                                    "vlm: the VLM + scalar head on the last answer token")
    name_or_path: str = F("tiny:idefics3", "base VLM: hub id, model directory, or tiny:ARCH[:SIZE[:SEED]]")
    image_size: int = F(84, "side in pixels of the procedural images the pairs' records are rebuilt at")
    pairs: str = F("", "JSONL preference pairs (rlvlm.rewards.preferences.write_pairs_jsonl)")
    held_out_fraction: float = F(0.2, "fraction of records whose pairs are held out for evaluation")
    epochs: int = F(20, "passes over the training pairs")
    lr: float = F(1e-3, "AdamW learning rate (the head; with kind=vlm also the VLM or its LoRA)")
    batch_size: int = F(32, "pairs per optimisation step")
    margin: bool = F(False, "subtract each pair's score margin inside the loss: −log σ(r_c − r_r − m)")
    lora_r: int = F(0, "kind=vlm: LoRA rank; 0 trains every weight")
    seed: int = F(0, "seeds the head, the held-out split and the pair order")
    device: str = F("cpu", "torch device, e.g. cpu or cuda")
    output_dir: str = F("runs/reward-model", "run directory")

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r} is not one of {', '.join(KINDS)}; fix: kind=mlp or kind=vlm")
        if not self.name_or_path:
            raise ConfigError("name_or_path is empty; fix: give a hub id, a model directory or tiny:idefics3")
        if self.image_size < 8:
            raise ConfigError(f"image_size={self.image_size} is too small; fix: image_size >= 8 (e.g. 84)")
        if self.pairs and not Path(self.pairs).is_file():
            raise ConfigError(f"pairs={self.pairs!r} is not a file; "
                              "fix: give a JSONL file written by write_pairs_jsonl")
        if not 0 <= self.held_out_fraction < 1:
            raise ConfigError(f"held_out_fraction={self.held_out_fraction} must be in [0, 1); fix: e.g. 0.2")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1; fix: {name}=1 or more")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr} must be > 0; fix: e.g. lr=1e-3")
        if self.lora_r < 0:
            raise ConfigError(f"lora_r={self.lora_r} must be >= 0; fix: 0 (full training) or a rank like 8")
        if self.lora_r > 0 and self.kind == "mlp":
            raise ConfigError(f"lora_r={self.lora_r} applies only to kind=vlm (the mlp kind's VLM is frozen); "
                              "fix: lora_r=0 or kind=vlm")
        if not self.output_dir:
            raise ConfigError("output_dir is empty; fix: output_dir=runs/reward-model")


# ------------------------------------------------------------ calibration ---
def calibration_bins(prob: Sequence[float], correct: Sequence[float], bins: int = 10,
                     low: float = 0.0) -> list[dict]:
    """Reliability table: `bins` equal-width bins of predicted probability over [low, 1].

    Bin k covers [lo_k, hi_k) (the last also takes 1.0); for its n_k
    predictions it gives mean_prob = mean p and accuracy = mean correct
    (correct may be fractional, e.g. ½ for a tie). Empty bins have None for both.
    Returns [{"lo", "hi", "count", "mean_prob", "accuracy"}, ...].
    """
    prob, correct = [float(p) for p in prob], [float(c) for c in correct]
    if len(prob) != len(correct):
        raise ValueError(f"calibration_bins: {len(prob)} probabilities but {len(correct)} outcomes")
    if bins < 1 or not 0 <= low < 1:
        raise ValueError(f"calibration_bins: bins={bins} must be >= 1 and low={low} in [0, 1)")
    width = (1.0 - low) / bins
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, p in enumerate(prob):
        if not low <= p <= 1.0:
            raise ValueError(f"calibration_bins: probability {p} is outside [{low}, 1]")
        members[min(int((p - low) / width), bins - 1)].append(i)
    table = []
    for k, idx in enumerate(members):
        n = len(idx)
        table.append({"lo": low + k * width, "hi": low + (k + 1) * width, "count": n,
                      "mean_prob": sum(prob[i] for i in idx) / n if n else None,
                      "accuracy": sum(correct[i] for i in idx) / n if n else None})
    return table


def expected_calibration_error(table: Sequence[dict]) -> float | None:
    """ECE = Σ_k (n_k / N) · |accuracy_k − mean_prob_k| over a `calibration_bins` table (None if empty)."""
    total = sum(b["count"] for b in table)
    if not total:
        return None
    return sum(b["count"] / total * abs(b["accuracy"] - b["mean_prob"]) for b in table if b["count"])


def pair_calibration(diff: torch.Tensor, bins: int = 10) -> dict:
    """Confidence-vs-accuracy table of score differences diff = r_c − r_r `(N,)` (see module doc)."""
    p = torch.sigmoid(diff.detach().float().cpu())
    conf = torch.maximum(p, 1 - p).clamp(0.5, 1.0)
    correct = (diff > 0).float() + 0.5 * (diff == 0).float()
    table = calibration_bins(conf.tolist(), correct.tolist(), bins=bins, low=0.5)
    return {"confidence": "max(p, 1 - p), p = sigmoid(r_chosen - r_rejected)", "bins": table,
            "ece": expected_calibration_error(table)}


# ------------------------------------------------------------ data ---
def pair_observations(record_ids: Sequence[str], image_size: int) -> dict[str, dict]:
    """{record_id: observation} exactly as `rlvlm/VisualQA-v0` shows each procedural record."""
    import gymnasium as gym


    ids = list(dict.fromkeys(str(r) for r in record_ids))
    if not ids:
        return {}
    env = gym.make(ENV_ID, records=[resolve_record(r, image_size) for r in ids], image_size=image_size)
    out = {}
    for i, rid in enumerate(ids):
        obs, _ = env.reset(seed=0, options={"index": i})
        out[rid] = obs
    env.close()
    return out


class _PairScorer:
    """r(chosen), r(rejected) for lists of pairs. For the mlp kind, each distinct
    (record, answer) is run through the frozen VLM once and its features reused
    every epoch; the vlm kind runs the (trainable) VLM on every call."""

    def __init__(self, model: RewardModel, observations: dict[str, dict], pairs: Sequence[dict], batch: int):
        self.model, self.obs = model, observations
        self.rows: dict[tuple[str, str], int] = {}
        self.features = None
        if model.kind == "mlp":
            for p in pairs:
                for text in (p["chosen"], p["rejected"]):
                    self.rows.setdefault((str(p["record_id"]), text), len(self.rows))
            keys = list(self.rows)
            self.features = model.features([observations[r] for r, _ in keys], [t for _, t in keys], batch_size=batch)

    def feature_rows(self, pairs: Sequence[dict]) -> torch.Tensor:
        """(2N, 3H) features: the N chosen answers, then the N rejected ones."""
        return self.features[[self.rows[(str(p["record_id"]), p["chosen"])] for p in pairs]
                             + [self.rows[(str(p["record_id"]), p["rejected"])] for p in pairs]]

    def __call__(self, pairs: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(pairs)
        if self.features is not None:
            return self.model.score_features(self.feature_rows(pairs)).split(n)
        obs = [self.obs[str(p["record_id"])] for p in pairs]
        return self.model.score(obs + obs, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]).split(n)


def _margins(pairs: Sequence[dict], use: bool, device) -> torch.Tensor | None:
    return torch.tensor([float(p["margin"]) for p in pairs], device=device) if use else None


@torch.no_grad()
def _evaluate(scorer: _PairScorer, pairs: Sequence[dict], cfg: RewardModelConfig) -> dict | None:
    """Held-out style pass: loss, accuracy and the score differences (N,), or None for no pairs."""
    if not pairs:
        return None
    scorer.model.eval()
    c, r = zip(*(scorer(pairs[i:i + cfg.batch_size]) for i in range(0, len(pairs), cfg.batch_size)))
    c, r = torch.cat(c), torch.cat(r)
    loss, m = bradley_terry_loss(c, r, _margins(pairs, cfg.margin, c.device))
    return {"loss": m["loss/bradley_terry"], "accuracy": m["reward_model/accuracy"], "diff": c - r}


# ------------------------------------------------------------ training ---
def train_reward_model(cfg: RewardModelConfig, pairs: Sequence[dict] | None = None,
                       progress: Callable[[str], None] | None = print, dist: Distributed | None = None) -> dict:
    """Train, evaluate and save a reward model; returns the report (also written to report.json).

    Under `accelerate launch` every process runs this: each batch of pairs is split
    over the ranks, each rank's mean loss weighted by its share and the gradients
    averaged over the ranks (`Distributed.average_gradients`), so every rank takes
    the step the whole batch gives; rank 0 alone prints and writes. (Held-out
    pairs are few and scored on every rank.)
    """
    cfg.validate()
    dist = dist or Distributed.from_environment()
    say = (progress or (lambda _s: None)) if dist.is_main else (lambda _s: None)
    t_start = time.perf_counter()
    pairs = load_pairs(cfg.pairs, pairs, need_margin=cfg.margin)
    train, held = split_pairs(pairs, cfg.held_out_fraction, cfg.seed)
    out = Path(cfg.output_dir)
    if dist.is_main:
        dump_config_yaml(cfg, out / "config.yaml")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)

    t0 = time.perf_counter()
    model = build_reward_model(cfg.kind, resolve_model(cfg.name_or_path), lora_r=cfg.lora_r, seed=cfg.seed,
                               device=cfg.device)
    obs = pair_observations([p["record_id"] for p in pairs], cfg.image_size)
    scorer = _PairScorer(model, obs, pairs, cfg.batch_size)
    if model.kind == "mlp":
        model.fit_normalizer(scorer.feature_rows(train))  # statistics of training members only
    setup_s = time.perf_counter() - t0
    say(f"reward model ({cfg.kind}) on {cfg.name_or_path}: {len(train)} train / {len(held)} held-out pairs, "
        f"{sum(p.numel() for p in model.trainable_parameters()):,} trainable parameters, setup {setup_s:.1f}s")

    params = model.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    before_train, before_held = _evaluate(scorer, train, cfg), _evaluate(scorer, held, cfg)
    epochs = [_epoch_row(0, before_train["loss"], before_train["accuracy"], before_held, 0.0)]
    say(_epoch_line(epochs[-1], cfg.epochs))
    t_train = time.perf_counter()
    order = list(range(len(train)))
    for epoch in range(1, cfg.epochs + 1):
        te = time.perf_counter()
        model.train()
        rng.shuffle(order)
        sums = {"loss": 0.0, "accuracy": 0.0}
        for start in range(0, len(order), cfg.batch_size):
            batch = [train[i] for i in order[start:start + cfg.batch_size]]
            mine = [batch[i] for i in dist.shard(len(batch))] if dist.active else batch
            c, r = scorer(mine or batch[:1])  # no share: one pair at weight 0
            loss, m = bradley_terry_loss(c, r, _margins(mine or batch[:1], cfg.margin, c.device))
            if dist.active:  # (1/W) Σ_r W·n_r/n · mean_r = the whole batch's mean
                loss = loss * (dist.world * len(mine) / len(batch))
                tot = dist.sum(torch.tensor([m["loss/bradley_terry"] * len(mine),
                                             m["reward_model/accuracy"] * len(mine)], dtype=torch.float64))
                m = {"loss/bradley_terry": float(tot[0]) / len(batch),
                     "reward_model/accuracy": float(tot[1]) / len(batch)}
            opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sums["loss"] += m["loss/bradley_terry"] * len(batch)
            sums["accuracy"] += m["reward_model/accuracy"] * len(batch)
        held_eval = final = _evaluate(scorer, held, cfg)
        epochs.append(_epoch_row(epoch, sums["loss"] / len(train), sums["accuracy"] / len(train), held_eval,
                                 time.perf_counter() - te))
        say(_epoch_line(epochs[-1], cfg.epochs))
    train_s = time.perf_counter() - t_train

    if not dist.is_main:
        return {}
    model.save(out / "model")
    calibration = pair_calibration(final["diff"]) if final else None
    report = {
        "kind": cfg.kind, "base_model": cfg.name_or_path,
        "pairs": {"train": len(train), "held_out": len(held), "train_records": len({p["record_id"] for p in train}),
                  "held_out_records": len({p["record_id"] for p in held})},
        "held_out_accuracy": final["accuracy"] if final else None,
        "held_out_loss": final["loss"] if final else None,
        "held_out_accuracy_before": before_held["accuracy"] if before_held else None,
        "train_accuracy": epochs[-1]["train_accuracy"],
        "loss_curve": [e["train_loss"] for e in epochs],
        "epochs": epochs,
        "calibration": calibration,
        "seconds": {"setup": setup_s, "train": train_s, "total": time.perf_counter() - t_start},
        "model_dir": str(out / "model"),
        "config": config_to_dict(cfg),
    }
    _write_outputs(out, report)
    acc = "n/a" if final is None else f"{final['accuracy']:.3f}"
    say(f"held-out pair accuracy {acc}; wrote {out}/report.json, curves.png, calibration.png, model/")
    return report


def _epoch_row(epoch: int, train_loss: float, train_acc: float, held: dict | None, seconds: float) -> dict:
    return {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
            "held_out_loss": held["loss"] if held else None, "held_out_accuracy": held["accuracy"] if held else None,
            "seconds": seconds}


def _epoch_line(row: dict, total: int) -> str:
    held = "" if row["held_out_accuracy"] is None else \
        f"  held-out loss {row['held_out_loss']:.4f} acc {row['held_out_accuracy']:.3f}"
    return (f"epoch {row['epoch']}/{total}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
            f"{held}  ({row['seconds']:.1f}s)")


# ------------------------------------------------------------ outputs ---
def _write_outputs(out: Path, report: dict) -> None:
    import json


    text = json.dumps(to_json_value(report, "report"), indent=2, allow_nan=False) + "\n"
    atomic_write_text(out / "report.json", text)
    _plot_curves(report["epochs"], out / "curves.png")
    _plot_calibration(report["calibration"], out / "calibration.png")


def _figure(width: float, height: float):
    # The Agg canvas directly: never touches the global matplotlib backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.tight_layout()
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def _plot_curves(epochs: list[dict], path: Path) -> None:
    """Loss and pair accuracy per epoch (epoch 0 = untrained), train and held-out."""
    fig = _figure(7.0, 5.6)
    ax_loss, ax_acc = fig.subplots(2, 1, sharex=True)
    xs = [e["epoch"] for e in epochs]
    for ax, key, name in ((ax_loss, "loss", "Bradley–Terry loss"), (ax_acc, "accuracy", "pair accuracy")):
        for split, style in (("train", "o-"), ("held_out", "s--")):
            pts = [(x, e[f"{split}_{key}"]) for x, e in zip(xs, epochs) if e[f"{split}_{key}"] is not None]
            if pts:
                ax.plot(*zip(*pts), style, ms=3, lw=1.2, label=split.replace("_", "-"))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    ax_loss.axhline(math.log(2), ls=":", color="grey", lw=1)  # −log σ(0): a constant scorer
    ax_acc.axhline(0.5, ls=":", color="grey", lw=1)  # chance
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_xlabel("epoch (0 = before training; train = running mean over the epoch)")
    _save(fig, path)


def _plot_calibration(calibration: dict | None, path: Path) -> None:
    """Reliability diagram: observed fraction ranked right vs mean confidence per bin."""
    fig = _figure(5.0, 5.0)
    ax = fig.subplots()
    ax.plot([0.5, 1.0], [0.5, 1.0], ls="--", color="grey", lw=1, label="calibrated")
    if calibration is None:
        ax.text(0.75, 0.75, "no held-out pairs", ha="center", va="center")
    else:
        rows = [b for b in calibration["bins"] if b["count"]]
        ax.bar([(b["lo"] + b["hi"]) / 2 for b in rows], [b["accuracy"] for b in rows],
               width=(rows[0]["hi"] - rows[0]["lo"]) * 0.9 if rows else 0.05, alpha=0.6, label="observed")
        ax.plot([b["mean_prob"] for b in rows], [b["accuracy"] for b in rows], "o", color="C1", ms=4,
                label="(mean confidence, accuracy)")
        for b in rows:
            ax.annotate(str(b["count"]), ((b["lo"] + b["hi"]) / 2, b["accuracy"]), ha="center", va="bottom", fontsize=7)
        ece = calibration["ece"]
        ax.set_title(f"held-out calibration (ECE {ece:.3f})" if ece is not None else "held-out calibration")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("confidence max(p, 1 − p), p = σ(r_c − r_r)")
    ax.set_ylabel("fraction ranked right")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)
