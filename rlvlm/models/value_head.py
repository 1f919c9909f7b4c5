"""Value head: an MLP on the last-layer hidden state of the last prompt token.

RL4VLM reads the value from the VLM's own representation of the state (image +
prompt), so the critic shares the trunk with the policy and the value loss
shapes the trunk too. The head runs in float32 whatever the trunk's dtype:
value regression targets are unnormalised returns, where bf16's 8-bit mantissa
visibly quantises the loss.
"""

from __future__ import annotations

import torch
from torch import nn


class ValueHead(nn.Module):
    """`(B, H) hidden -> (B,) value`: Linear(H, W) - GELU - Linear(W, 1).

    The last layer starts at zero so initial values are exactly 0 and early PPO
    updates are not dominated by a random critic.
    """

    def __init__(self, hidden_size: int, width: int | None = None):
        super().__init__()
        width = width or min(max(hidden_size, 64), 1024)
        self.hidden_size = hidden_size
        self.width = width
        self.net = nn.Sequential(nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.float()).squeeze(-1)
