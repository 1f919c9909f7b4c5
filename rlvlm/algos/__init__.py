"""rlvlm.algos: the RL math as pure tensor functions.

Nothing here touches a model, an environment or a file: every function takes
tensors and returns tensors (losses return `(loss, metrics)`, with metric names
namespaced `loss/`, `policy/`, `value/`, …). Shapes are documented per function
as `(B, T)` with a mask, or time-major `(T, N)` for rollouts of N envs.

Modules:
- advantages: GAE, discounted returns, GRPO / Dr. GRPO / RLOO / REINFORCE++;
- policy_loss: PPO clip (clip-higher, dual clip), REINFORCE, action log-probs;
- value: clipped value loss, explained variance;
- kl: k1/k2/k3 estimators and a KL loss; entropy: bonus and adaptive coefficient;
- normalization: running mean/std, reward scaling; preference: Bradley–Terry, DPO;
- masked: masked reductions and `aggregate`; enums: the closed choices;
- batch: `RolloutBatch`, a rollout as tensors; registry/estimators: the open axes
  (advantage estimators and policy losses by name) and their built-in entries;
- logprobs: per-token log-probs and entropies from logits, chunked over rows.
"""

from rlvlm.algos.advantages import (
    discounted_returns,
    dr_grpo_advantages,
    gae,
    gigpo_advantages,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    zero_variance_group_fraction,
)
from rlvlm.algos.entropy import EntropyCoefficient, entropy_bonus
from rlvlm.algos.batch import RolloutBatch
from rlvlm.algos.enums import AggregationMode, KLEstimator, parse_choice
from rlvlm.algos.kl import KL_ESTIMATORS, kl_estimate, kl_k1, kl_k2, kl_k3, kl_loss
from rlvlm.algos.logprobs import token_logprobs
from rlvlm.algos.masked import aggregate, global_whiten, masked_mean, masked_sum, masked_var, masked_whiten
from rlvlm.algos.normalization import RewardScaler, RunningMeanStd
from rlvlm.algos.policy_loss import action_logprob, ppo_clip_loss, reinforce_loss, sequence_logprob
from rlvlm.algos.preference import bradley_terry_loss, dpo_loss
from rlvlm.algos.registry import (
    ADVANTAGE_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageEstimatorSpec,
    PolicyLossSpec,
    advantage_estimator,
    policy_loss,
    register_advantage,
    register_policy_loss,
)
from rlvlm.algos import estimators as _estimators  # noqa: F401  (registers the built-in entries)
from rlvlm.algos.value import explained_variance, value_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "AdvantageEstimatorSpec",
    "AggregationMode",
    "EntropyCoefficient",
    "KLEstimator",
    "PolicyLossSpec",
    "RolloutBatch",
    "RewardScaler",
    "RunningMeanStd",
    "action_logprob",
    "aggregate",
    "bradley_terry_loss",
    "advantage_estimator",
    "discounted_returns",
    "dpo_loss",
    "dr_grpo_advantages",
    "entropy_bonus",
    "explained_variance",
    "gae",
    "gigpo_advantages",
    "grpo_advantages",
    "kl_estimate",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_loss",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "global_whiten",
    "parse_choice",
    "policy_loss",
    "ppo_clip_loss",
    "reinforce_loss",
    "register_advantage",
    "register_policy_loss",
    "reinforce_pp_advantages",
    "rloo_advantages",
    "sequence_logprob",
    "value_loss",
    "zero_variance_group_fraction",
]
