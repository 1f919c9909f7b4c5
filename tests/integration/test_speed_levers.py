"""Speed levers (issue 8) leave the numbers unchanged: same log-probs, values and gradients with and without."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvlm.models import shared_prefix
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.tiny import ARCHS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _group_observations(n_distinct: int, copies: int, size: int = 64):
    """GRPO-style: each observation repeated `copies` times as SEPARATE arrays of one image."""
    rng = np.random.default_rng(0)
    base = [(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "Question: digit?" + " Look." * i)
            for i in range(n_distinct)]
    return [{"image": im.copy(), "text": text} for im, text in base for _ in range(copies)]


def _grads(policy):
    return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}


def test_unique_prompts_compare_images_by_content():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    c = a.copy()
    c[0, 0, 0] = 1
    first, inverse = shared_prefix.unique_prompts(["p", "p", "p", "q", "p"], [a, b, c, a, None])
    assert first == [0, 2, 3, 4]
    assert inverse == [0, 0, 1, 2, 3]


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prompt_scoring_matches_unshared(tiny_dirs, arch):
    """Log-probs, entropies, values and every parameter gradient agree with prompt sharing off."""
    torch.manual_seed(0)
    shared = load_policy(tiny_dirs[arch], share_prompts=True)
    plain = load_policy(tiny_dirs[arch], share_prompts=False)
    plain.load_state_dict(shared.state_dict())
    torch.nn.init.normal_(shared.value_head.net[2].weight, std=0.5)
    plain.value_head.load_state_dict(shared.value_head.state_dict())
    samples = shared.sample(_group_observations(2, 3), SamplingConfig(temperature=1.0, max_new_tokens=8))
    outs = []
    for policy in (shared, plain):
        policy.zero_grad(set_to_none=True)
        out = policy.score(samples)
        (out.logprobs.sum() + 0.1 * out.entropy.sum() + out.values.sum()).backward()
        outs.append((out, _grads(policy)))
    (a, ga), (b, gb) = outs
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)
    assert torch.allclose(a.entropy, b.entropy, atol=1e-4)
    assert torch.allclose(a.values, b.values, atol=1e-5)
    assert ga.keys() == gb.keys() and len(ga) > 0
    # Relative to each tensor's largest gradient; an absolute floor for gradients that are zero in
    # exact arithmetic (attention key biases: softmax ignores a shift) and only rounding noise here.
    bad = [k for k in ga if (ga[k] - gb[k]).abs().max() > 1e-3 * gb[k].abs().max() + 1e-7]
    assert not bad, f"{arch}: gradients differ in {bad[:3]}"


@pytest.mark.parametrize("arch", ARCHS)
def test_own_decoder_matches_generate_greedy(tiny_dirs, arch):
    """Greedy tokens and their log-probs: rlvlm's KV-cache loop == transformers generate()."""
    torch.manual_seed(0)
    mine = load_policy(tiny_dirs[arch], decoder="rlvlm")
    hf = load_policy(tiny_dirs[arch], decoder="hf", share_prompts=False)
    hf.load_state_dict(mine.state_dict())
    obs = _group_observations(3, 1)
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=12)
    a, b = mine.sample(obs, greedy), hf.sample(obs, greedy)
    for x, y in zip(a, b):
        assert x.completion_ids == y.completion_ids
        assert np.allclose(x.logprobs, y.logprobs, atol=1e-4)
        assert x.value == pytest.approx(y.value, abs=1e-5)


def test_static_and_growing_cache_decode_the_same(tiny_dirs):
    policy = load_policy(tiny_dirs["qwen2_vl"])
    obs = _group_observations(2, 1)
    prompts = [policy.build_prompt(o["text"], True) for o in obs]
    enc = policy.encode(prompts, [o["image"] for o in obs])
    kw = dict(max_new_tokens=10, temperature=0.0, top_p=1.0, stop_ids=policy.stop_token_ids,
              pad_id=policy.tokenizer.pad_token_id, blocked=policy.blocked_token_ids)
    with torch.no_grad():
        s = shared_prefix.decode(policy.model, policy.hf, enc, [0, 0, 1], static_cache=True, **kw)
        d = shared_prefix.decode(policy.model, policy.hf, enc, [0, 0, 1], static_cache=False, **kw)
    assert torch.equal(s.tokens, d.tokens)
    assert torch.allclose(s.logprobs, d.logprobs, atol=1e-5)


def _count_vision_images(policy):
    """A forward hook counting how many images go through the vision tower."""
    inner = policy.hf.model
    tower = next(getattr(inner, n) for n in ("visual", "vision_tower", "vision_model") if hasattr(inner, n))
    seen = []
    grid_calls = []

    def hook(_m, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        grid_calls.append(int(grid.shape[0]) if grid is not None else int(args[0].shape[0]))

    handle = tower.register_forward_pre_hook(hook, with_kwargs=True)
    return seen, grid_calls, handle


def test_vision_runs_once_per_distinct_image(tiny_dirs):
    obs = _group_observations(2, 4)  # 8 observations, 2 distinct images
    counts = {}
    for share in (True, False):
        policy = load_policy(tiny_dirs["qwen2_vl"], share_prompts=share)
        _seen, grids, handle = _count_vision_images(policy)
        samples = policy.sample(obs, SamplingConfig(max_new_tokens=4))
        sampled = sum(grids)
        policy.score(samples)
        counts[share] = (sampled, sum(grids) - sampled)
        handle.remove()
    assert counts[True] == (2, 2)  # sampling, scoring: one image each
    assert counts[False] == (8, 8)


def test_top_p_sampler_stays_in_the_nucleus():
    torch.manual_seed(0)
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2]]).expand(20000, 4)
    drawn = shared_prefix._sample_top_p(probs.log(), top_p=0.6)
    freq = torch.bincount(drawn, minlength=4).float() / drawn.numel()
    assert freq[1] == 0 and freq[3] == 0  # zero mass, and outside the 0.6 nucleus {0, 2}
    assert freq[0].item() == pytest.approx(0.5 / 0.8, abs=0.02)
    full = torch.bincount(shared_prefix._sample_top_p(probs.log(), top_p=1.0), minlength=4).float() / 20000
    assert torch.allclose(full, torch.tensor([0.5, 0.0, 0.3, 0.2]), atol=0.02) and full[1] == 0


def test_bad_lever_settings_fail_clearly(tiny_dirs):
    from rlvlm.errors import ConfigError

    with pytest.raises(ConfigError, match="model.decoder='vllm'"):
        load_policy(tiny_dirs["qwen2_vl"], decoder="vllm")
    with pytest.raises(ConfigError, match="model.logprob_chunk=-1 must be >= 0"):
        load_policy(tiny_dirs["qwen2_vl"], logprob_chunk=-1)
