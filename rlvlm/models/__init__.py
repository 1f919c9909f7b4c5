"""rlvlm.models"""

import os

import torch

# With deepspeed installed (the [deepspeed] extra), transformers imports it on every save to ask
# whether ZeRO-3 is on, and deepspeed then warns on each CPU-only machine that it found no GPU.
# Naming the CPU accelerator where there is no GPU says the same thing without the warning; on a
# GPU machine deepspeed still detects the device itself.
if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
