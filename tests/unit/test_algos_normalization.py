"""Running mean/std and PPO reward scaling."""

import math

import pytest
import torch
from torch.testing import assert_close

from rlvlm.algos import RewardScaler, RunningMeanStd


def test_running_mean_std_matches_concatenated_batches_in_any_order():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, generator=g) * 3 + 7 for n in (1, 5, 40, 2)]
    full = torch.cat(batches).double()
    for order in (batches, batches[::-1]):
        rms = RunningMeanStd()
        for b in order:
            rms.update(b)
        assert rms.count.item() == 48
        assert_close(rms.mean, full.mean())
        assert_close(rms.var, full.var(unbiased=False))
        assert rms.mean.dtype == torch.float64


def test_running_mean_std_hand_values_and_normalize():
    # [1, 3] then [5]: mean 3, population var ((−2)² + 0 + 2²)/3 = 8/3
    rms = RunningMeanStd(eps=0.0)
    x = torch.tensor([2.0])
    assert rms.normalize(x).item() == 2.0  # no data: identity
    rms.update(torch.tensor([1.0]))
    assert rms.normalize(x).item() == 2.0  # one sample has no spread: still identity
    rms.update(torch.tensor([3.0]))
    rms.update(torch.tensor([5.0]))
    assert rms.mean.item() == 3.0 and rms.var.item() == pytest.approx(8 / 3)
    std = math.sqrt(8 / 3)
    assert rms.normalize(torch.tensor([6.0])).item() == pytest.approx(3 / std)
    assert rms.normalize(torch.tensor([6.0]), center=False).item() == pytest.approx(6 / std)
    assert rms.normalize(torch.tensor([600.0]), clip=5.0).item() == 5.0
    assert rms.normalize(x.half()).dtype == torch.float16


def test_running_mean_std_vector_shape_mask_and_nonfinite():
    rms = RunningMeanStd(shape=(2,))
    rms.update(torch.tensor([[[0.0, 10.0], [2.0, 30.0]]]))  # leading dims (1, 2) are samples
    assert_close(rms.mean, torch.tensor([1.0, 20.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        rms.update(torch.zeros(3))
    scalar = RunningMeanStd()
    scalar.update(torch.tensor([1.0, math.nan, 3.0, 100.0]), mask=torch.tensor([1, 1, 1, 0]))
    assert scalar.count.item() == 2 and scalar.mean.item() == 2.0  # NaN skipped, 100 masked


def test_running_mean_std_state_round_trip():
    rms = RunningMeanStd()
    rms.update(torch.tensor([1.0, 4.0, 9.0]))
    other = RunningMeanStd()
    other.load_state_dict(rms.state_dict())
    for a, b in ((rms.mean, other.mean), (rms.var, other.var), (rms.count, other.count)):
        assert torch.equal(a, b)
    rms.update(torch.tensor([2.0]))  # the copy is independent
    assert other.count.item() == 3
    with pytest.raises(ValueError, match="shape"):
        RunningMeanStd(shape=(3,)).load_state_dict(other.state_dict())


def test_reward_scaler_hand_values():
    # γ = 0.5, two envs.
    # step 1: r = [1, 3], env 1 ends. G = [1, 3]; stats {1, 3}: var 1 → r/1 = [1, 3].
    #         env 1's G resets to 0.
    # step 2: r = [2, 2]. G = [0.5·1 + 2, 0 + 2] = [2.5, 2]; stats {1, 3, 2.5, 2}:
    #         mean 2.125, var (1.265625 + 0.765625 + 0.140625 + 0.015625)/4 = 0.546875
    #         → r/√0.546875 = 2/0.739510 = 2.704494
    sc = RewardScaler(num_envs=2, gamma=0.5, eps=0.0)
    assert_close(sc.scale(torch.tensor([1.0, 3.0]), torch.tensor([False, True])), torch.tensor([1.0, 3.0]))
    assert_close(sc.returns, torch.tensor([1.0, 0.0], dtype=torch.float64))
    out = sc.scale(torch.tensor([2.0, 2.0]), torch.tensor([False, False]))
    assert_close(out, torch.full((2,), 2.704494), atol=1e-5, rtol=0)

    resumed = RewardScaler(num_envs=2, gamma=0.5, eps=0.0)
    resumed.load_state_dict(sc.state_dict())
    r, d = torch.tensor([0.5, -1.0]), torch.tensor([True, False])
    assert torch.equal(resumed.scale(r, d), sc.scale(r, d))


def test_reward_scaler_nan_reward_does_not_poison_state():
    sc = RewardScaler(num_envs=2, gamma=0.9)
    sc.scale(torch.tensor([math.nan, 1.0]), torch.tensor([False, False]))
    assert torch.isfinite(sc.returns).all() and torch.isfinite(sc.stats.var).all()
