"""The README's family table: every tiny-model family, built and checked as a user would.

    python -m experiments.families [--sizes tiny small] [--archs A B ...] [--json OUT]

For each family and size: `rlvlm tiny-model` in its own process into a temporary
directory (build seconds as it reports them: tokenizer training, weights, saving;
parameter count; HF class), then the worst disagreement between the
log-probs a policy sampled and the ones it re-scores, over every scoring path:
prompt sharing on and off, gradient checkpointing, LoRA, and both decoders
(`rlvlm` and transformers `generate`). Prints one markdown row per family.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.tiny import ARCHS, SIZES

# name -> load_policy options; each is one scoring path the trainer can take
PATHS = {
    "shared": {},
    "unshared": {"share_prompts": False},
    "checkpointing": {"gradient_checkpointing": True},
    "lora": {"lora": {"r": 4}},
    "hf-generate": {"decoder": "hf", "share_prompts": False},
}


def worst_disagreement(model_dir: Path, size: str) -> dict[str, float]:
    """Max |sampled - re-scored| log-prob per scoring path (fp32), over image and text-only prompts."""
    side = SIZES[size]["image_size"]
    rng = np.random.default_rng(0)
    obs = [{"image": rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "text": "Target: 3. Current: 1."},
           {"image": rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "text": "Move?"},
           {"image": None, "text": "Say hi."}]
    out = {}
    for name, options in PATHS.items():
        torch.manual_seed(0)
        policy = load_policy(model_dir, value_head=False, **options)
        samples = policy.sample(obs, SamplingConfig(temperature=1.0, max_new_tokens=12, n=2))
        scored = policy.score(samples).logprobs.detach()
        out[name] = max(float(np.abs(np.array(s.logprobs) - scored[i, :s.num_tokens].numpy()).max())
                        for i, s in enumerate(samples))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=list(SIZES))
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--json", help="also write the figures here")
    a = p.parse_args(argv)
    rows = []
    print("| family | HF class | " + " | ".join(f"{s} params | {s} build s" for s in a.sizes)
          + " | worst log-prob gap (tiny, all paths) |")
    print("|---|---|" + "---|---|" * len(a.sizes) + "---|")
    for arch in a.archs:
        row: dict = {"arch": arch}
        with tempfile.TemporaryDirectory() as tmp:
            for size in a.sizes:
                out = Path(tmp) / size
                subprocess.run([sys.executable, "-m", "rlvlm.cli", "tiny-model", "--arch", arch, "--size", size,
                                str(out)], check=True, capture_output=True)
                summary = json.loads((out / "rlvlm_tiny.json").read_text())
                row[size] = {"params": summary["params"], "build_seconds": summary["build_seconds"]}
                if size == "tiny":
                    row["hf_class"] = json.loads((Path(tmp) / size / "config.json").read_text())["architectures"][0]
                    row["gaps"] = worst_disagreement(Path(tmp) / size, size)
        rows.append(row)
        gap = max(row["gaps"].values()) if "gaps" in row else float("nan")
        cells = " | ".join(f"{row[s]['params'] / 1e6:.2f} M | {row[s]['build_seconds']:.1f}" for s in a.sizes)
        print(f"| {arch} | {row.get('hf_class', '?')} | {cells} | {gap:.1e} |", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
