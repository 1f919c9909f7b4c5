"""Pairwise preference losses: Bradley–Terry for reward models, and DPO.

Both model P(chosen ≻ rejected) = σ(z) for a score difference z, and minimise
−log σ(z) = softplus(−z), computed with `logsigmoid` so a large |z| neither
overflows nor loses the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlvlm.algos._checks import check_range, check_same_shape, to_floats


# DPO's implicit rewards compare log-probs from the policy and from its frozen
# copy: equal weights, yet the two passes may round differently (about 1e-6
# per sequence: other memory, other kernel blocking). Margins this small are ties.
DPO_TIE = 1e-5


def _pair_accuracy(diff: torch.Tensor, tie: float = 0.0) -> torch.Tensor:
    """Fraction of pairs ranked right; a tie (|diff| <= tie) counts ½.

    Counting ties as half means a constant scorer (e.g. a freshly initialised
    reward model) scores the chance level 0.5, not 0.
    """
    ties = diff.abs() <= tie
    return ((diff > tie).to(diff.dtype) + 0.5 * ties.to(diff.dtype)).mean()


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Bradley–Terry pairwise loss for a scalar reward model.

        loss = mean_i −log σ(r_c,i − r_r,i − m_i)

    The optional margin m (Llama 2's reward models) asks for a larger gap on
    pairs the labeller was surer about; m = 0 is plain Bradley–Terry.
    Shapes: chosen_rewards, rejected_rewards, margin `(B,)` (margin may be a float).
    Metrics: loss/bradley_terry, reward_model/accuracy (ties ½),
    reward_model/margin (mean r_c − r_r), reward_model/chosen, reward_model/rejected.
    """
    check_same_shape(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    diff = chosen_rewards - rejected_rewards
    z = diff if margin is None else diff - torch.as_tensor(margin, dtype=diff.dtype, device=diff.device)
    loss = -F.logsigmoid(z).mean()
    with torch.no_grad():
        metrics = {
            "loss/bradley_terry": loss,
            "reward_model/accuracy": _pair_accuracy(diff),
            "reward_model/margin": diff.mean(),
            "reward_model/chosen": chosen_rewards.mean(),
            "reward_model/rejected": rejected_rewards.mean(),
        }
    return loss, to_floats(metrics)


def dpo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Direct Preference Optimisation, sigmoid form (Rafailov et al., 2023).

    The implicit reward of a response y is β·(log π(y) − log π_ref(y)); with
        z = β·[(log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))],
        loss = mean_i [ −(1 − ε)·log σ(z_i) − ε·log σ(−z_i) ].
    ε = `label_smoothing` treats each label as flipped with probability ε
    (conservative DPO, Mitchell 2023); ε = 0 is plain DPO.

    Shapes: all four `(B,)`, each the summed completion log-prob of a sequence
    (see `sequence_logprob`). The reference log-probs are detached.
    Metrics: loss/dpo, dpo/accuracy (implicit reward of chosen > rejected,
    ties ½, |z| <= DPO_TIE a tie), dpo/margin (mean z), dpo/reward_chosen, dpo/reward_rejected.
    """
    check_range("dpo.beta", beta, 0.0, float("inf"), low_open=True)
    check_range("dpo.label_smoothing", label_smoothing, 0.0, 0.5, high_open=True)
    check_same_shape(
        policy_chosen_logp=policy_chosen_logp,
        policy_rejected_logp=policy_rejected_logp,
        ref_chosen_logp=ref_chosen_logp,
        ref_rejected_logp=ref_rejected_logp,
    )
    reward_chosen = beta * (policy_chosen_logp - ref_chosen_logp.detach())
    reward_rejected = beta * (policy_rejected_logp - ref_rejected_logp.detach())
    z = reward_chosen - reward_rejected
    loss = (-(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)).mean()
    with torch.no_grad():
        metrics = {
            "loss/dpo": loss,
            "dpo/accuracy": _pair_accuracy(z, DPO_TIE),
            "dpo/margin": z.mean(),
            "dpo/reward_chosen": reward_chosen.mean(),
            "dpo/reward_rejected": reward_rejected.mean(),
        }
    return loss, to_floats(metrics)
