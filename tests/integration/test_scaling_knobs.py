"""Memory and scale knobs (issue 18; docs/scaling_knobs.md), checked on CPU with tiny models.

Each knob is a `PolicyOptions` field; these tests set it through `load_policy` keywords,
which go through the same parser as `rlvlm train ... model.KEY=VALUE`.
"""

from __future__ import annotations

import pytest
import torch

from rlvlm.errors import ConfigError
from rlvlm.models.policy import SamplingConfig, load_policy
from tests.integration.test_policy import _sampled_matrix as _sampled
from tests.integration.test_speed_levers import _group_observations

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


# ------------------------------------------------------------------ autocast
def _autocast_spy(policy):
    """Records, at each forward pass of the language model, the autocast dtype in force (None: off)."""
    seen = []

    def hook(_m, _args):
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else None)

    return seen, policy.hf.get_decoder().register_forward_pre_hook(hook)


@pytest.mark.parametrize("arch", ["qwen2_vl", "gemma3"])
def test_bf16_autocast_close_to_fp32_with_fp32_weights(tiny_dirs, arch):
    torch.manual_seed(0)
    fp32 = load_policy(tiny_dirs[arch], reference="copy")
    mixed = load_policy(tiny_dirs[arch], reference="copy", autocast="bfloat16")
    mixed.load_state_dict(fp32.state_dict())
    seen, handle = _autocast_spy(mixed)
    samples = mixed.sample(_group_observations(2, 1), SamplingConfig(max_new_tokens=8, n=2))
    assert seen and set(seen) == {torch.bfloat16}, "sampling ran outside autocast"
    seen.clear()
    out = mixed.score(samples)
    ref = mixed.reference_logprobs(samples)
    assert seen and set(seen) == {torch.bfloat16}, "scoring or the reference ran outside autocast"
    handle.remove()
    base = fp32.score(samples)
    # Measured max |log-prob difference| to fp32 (tiny models, 8 tokens): qwen2_vl 3.8e-3, gemma3 4.8e-3,
    # idefics3 2.4e-3, llava 2.5e-3. Tolerance a few times that.
    assert (out.logprobs - base.logprobs).abs().max().item() < 2e-2
    assert (out.logprobs - base.logprobs).abs().max().item() > 0, "autocast changed nothing: not applied?"
    # Sampling and scoring both run under autocast: the recorded log-probs stay the scored ones (measured 5e-7),
    # and the reference copy, scored the same way, equals the untrained policy (KL 0 at the start).
    assert (_sampled(samples, out.logprobs) - out.logprobs).abs().max().item() < 1e-3
    assert torch.allclose(ref, out.logprobs.detach(), atol=1e-6)
    (out.logprobs.sum() + out.values.sum()).backward()
    grads = [p.grad for p in mixed.trainable_parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert all(p.dtype == torch.float32 for p in mixed.parameters()), "weights must stay fp32 (master weights)"


def test_fp16_autocast_runs_on_cpu(tiny_dirs):
    """torch 2.13 supports float16 autocast on CPU; measured max |diff| to fp32 here 4.4e-4 (qwen2_vl)."""
    fp32 = load_policy(tiny_dirs["qwen2_vl"])
    half = load_policy(tiny_dirs["qwen2_vl"], autocast="float16")
    samples = fp32.sample(_group_observations(2, 1), SamplingConfig(max_new_tokens=6))
    out = half.score(samples)
    assert (out.logprobs - fp32.score(samples).logprobs).abs().max().item() < 5e-3
    out.logprobs.sum().backward()
    assert all(p.dtype == torch.float32 for p in half.parameters())


def test_bad_autocast_settings_fail_clearly(tiny_dirs):
    with pytest.raises(ConfigError, match="autocast=.fp8. is not one of: none, bfloat16, float16"):
        load_policy(tiny_dirs["qwen2_vl"], autocast="fp8")
    with pytest.raises(ConfigError, match="model.autocast=bfloat16 keeps float32 master weights.*fix: model.dtype"):
        load_policy(tiny_dirs["qwen2_vl"], autocast="bfloat16", dtype="bfloat16")
