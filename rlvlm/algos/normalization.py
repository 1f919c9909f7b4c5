"""Running statistics for reward normalisation and PPO-style reward scaling."""

from __future__ import annotations

import torch

from rlvlm.algos._checks import check_range, check_same_shape


class RunningMeanStd:
    """Streaming mean and variance, merged batch by batch (Chan et al., 1979).

    State (float64, so millions of updates do not drift): mean, var (the
    population variance, M2 / count) and count. Merging a batch with mean m_b,
    population variance v_b and size n_b into (m, v, n):

        δ = m_b − m,   n' = n + n_b
        m' = m + δ · n_b / n'
        v' = (v·n + v_b·n_b + δ² · n·n_b / n') / n'

    which equals the statistics of the concatenated data exactly (up to
    rounding), in any batch order: it is the parallel form of Welford's update.

    `shape` is the shape of one observation; `update(x)` takes x of shape
    `(..., *shape)` and treats every leading index as a sample.
    """

    def __init__(self, shape: tuple[int, ...] = (), eps: float = 1e-8):
        check_range("eps", eps, 0.0, float("inf"))
        self.shape = tuple(shape)
        self.eps = eps
        self.mean = torch.zeros(self.shape, dtype=torch.float64)
        self.var = torch.ones(self.shape, dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.float64)

    @property
    def std(self) -> torch.Tensor:
        return torch.sqrt(self.var + self.eps)

    def update(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Merge a batch x `(..., *shape)`; `mask` (scalar shape only) selects samples.

        Non-finite samples are skipped: one NaN reward would otherwise corrupt
        the statistics for the rest of training.
        """
        x = x.detach().to(torch.float64).cpu()
        if mask is not None:
            if self.shape:
                raise ValueError("RunningMeanStd.update(mask=...) is supported only for scalar statistics (shape=())")
            check_same_shape(x=x, mask=mask)
            x = x[mask.bool().cpu()]
        n_dims = len(self.shape)
        if tuple(x.shape[x.dim() - n_dims :]) != self.shape:
            raise ValueError(f"RunningMeanStd of shape {list(self.shape)} got a batch of shape {list(x.shape)}")
        x = x.reshape(-1, *self.shape)
        x = x[torch.isfinite(x).reshape(x.shape[0], -1).all(dim=1)]
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(dim=0)
        var_b = x.var(dim=0, unbiased=False)
        total = self.count + n_b
        delta = mean_b - self.mean
        # With count = 0 the old (placeholder) var has weight 0, so the first
        # batch sets the statistics exactly.
        self.var = (self.var * self.count + var_b * n_b + delta**2 * self.count * n_b / total) / total
        self.mean = self.mean + delta * n_b / total
        self.count = total

    def normalize(self, x: torch.Tensor, center: bool = True, clip: float | None = None) -> torch.Tensor:
        """(x − mean) / √(var + eps), or x / √(var + eps) with center=False.

        Identity until two samples have been seen (one sample has no spread),
        so the first batch is not divided by √eps. Optionally clipped to
        [−clip, clip]. Shapes: `(..., *shape)` → same, in x's dtype.
        """
        if float(self.count) < 2:
            out = x
        else:
            mean = self.mean.to(device=x.device, dtype=x.dtype)
            std = self.std.to(device=x.device, dtype=x.dtype)
            out = ((x - mean) if center else x) / std
        if clip is not None:
            out = out.clamp(-clip, clip)
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        mean = torch.as_tensor(state["mean"], dtype=torch.float64)
        if tuple(mean.shape) != self.shape:
            raise ValueError(f"RunningMeanStd state has shape {list(mean.shape)}, expected {list(self.shape)}")
        self.mean = mean.clone()
        self.var = torch.as_tensor(state["var"], dtype=torch.float64).clone()
        self.count = torch.as_tensor(state["count"], dtype=torch.float64).clone()

    def __repr__(self) -> str:
        return f"RunningMeanStd(shape={self.shape}, count={int(self.count)})"


class RewardScaler:
    """PPO's reward scaling: divide each reward by the running std of the
    discounted return (Engstrom et al., 2020, "Implementation matters").

    Per env, G ← γ·G + r; G's running std σ_G is tracked over all envs and
    steps; the reward returned is r / σ_G. It is not centred: shifting rewards
    would change which episodes are better than ending early. G is reset to 0
    after an episode ends, so one episode's returns never leak into the next.

    For single-step episodes (QA) every step is done and G = r, so this scales
    by the running std of the rewards themselves.
    """

    def __init__(self, num_envs: int, gamma: float = 0.99, eps: float = 1e-8, clip: float | None = None):
        check_range("gamma", gamma, 0.0, 1.0)
        self.gamma = gamma
        self.clip = clip
        self.returns = torch.zeros(num_envs, dtype=torch.float64)
        self.stats = RunningMeanStd((), eps=eps)

    def scale(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Scale one lockstep step's rewards. Shapes: rewards, dones `(N,)` → `(N,)`."""
        check_same_shape(rewards=rewards, dones=dones, returns=self.returns)
        r = rewards.detach().to(torch.float64).cpu()
        # A non-finite reward must not enter G: it would never wash out.
        r_safe = torch.where(torch.isfinite(r), r, torch.zeros_like(r))
        self.returns = self.gamma * self.returns + r_safe
        self.stats.update(self.returns)
        self.returns = torch.where(dones.bool().cpu(), torch.zeros_like(self.returns), self.returns)
        return self.stats.normalize(rewards, center=False, clip=self.clip)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"returns": self.returns.clone(), **{f"stats.{k}": v for k, v in self.stats.state_dict().items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        returns = torch.as_tensor(state["returns"], dtype=torch.float64)
        check_same_shape(returns=returns, expected=self.returns)
        self.returns = returns.clone()
        self.stats.load_state_dict({k.removeprefix("stats."): v for k, v in state.items() if k.startswith("stats.")})
