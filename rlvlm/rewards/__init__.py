"""Reward functions and their weighted composition.

A reward function is `fn(sample, info) -> float | None` (None: does not apply
to this step). Components, by registry name (`REWARDS`):

- env: the env's own reward;
- accuracy / accuracy_soft: VQA exact / soft accuracy of the parsed answer;
- format: 1 if the reply parsed as a valid action;
- tokens, seconds: completion length and generation time (costs);
- overlong: DAPO soft overlong punishment (Yu et al., 2025);
- length_target: L1 length control, -|L - target| / target (Aggarwal & Welleck, 2025);
- help_ternary: +1 / -1 / ask rewards, TruthRL's ternary reward (2025);
- help_phi: effective reliability Φ_c (Whitehead et al., 2022);
- help_confidence: confidence target t, wrong costs t/(1-t) (Kalai et al., 2025);
- reward_model: a trained image-conditioned reward model (rewards/rlhf.py),
  scored once per rollout in batches;
- heuristic / heuristic_train / heuristic_heldout: the simulated annotator's
  weighted scorers (rewards/preferences.py), one factory under three names so
  the preference heuristic and a held-out one can be logged side by side.

`CompositeReward(weights, options)` sums weight · value over the components
that apply and reports each component's mean as `reward/<name>`.
"""

from rlvlm.rewards.composite import REWARDS, CompositeReward
from rlvlm.rewards.functions import (
    RewardFn,
    accuracy,
    env_reward,
    format_valid,
    help_confidence,
    help_phi,
    help_ternary,
    length_target,
    overlong,
    seconds,
    tokens,
)

__all__ = [
    "REWARDS",
    "CompositeReward",
    "RewardFn",
    "accuracy",
    "env_reward",
    "format_valid",
    "help_confidence",
    "help_phi",
    "help_ternary",
    "length_target",
    "overlong",
    "seconds",
    "tokens",
]
